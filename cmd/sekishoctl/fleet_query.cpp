#include "cmd/sekishoctl/fleet_query.h"

#include <arpa/inet.h>
#include <libpq-fe.h>
#include <sys/stat.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <tuple>
#include <map>
#include <iostream>
#include <memory>
#include <set>
#include <stdexcept>
#include <vector>

#include "cmd/sekishoctl/fleet_commands.h"
#include "cmd/sekishoctl/fleet_store.h"
#include "cmd/sekishoctl/human_output.h"
#include "control/api/untrusted_text.h"
#include "control/observe/event_types.h"
#include "control/utc_time.h"

namespace sekisho::ctl {

namespace {

using nlohmann::json;

const std::string* flag(const command_request& rq, const std::string& name) {
    for (const auto& [k, v] : rq.flags)
        if (k == name) return &v;
    return nullptr;
}

int64_t time_flag(const command_request& rq, const char* name, int64_t fallback) {
    const std::string* v = flag(rq, name);
    if (!v) return fallback;
    const auto t = parse_time(*v);
    if (!t) throw usage_error(std::string(name) + " '" + escape_unprintable(*v) + "': Unix seconds or 2026-11-23T12:00:00Z");
    return *t;
}

// Runs a query with text parameters; throws store_error naming `what`.
fleet_store::result query(fleet_store& db, const std::string& sql, const std::vector<std::string>& params,
                          const std::string& what) {
    try {
        return db.exec(sql, params, "the " + what + " query");
    } catch (const store_error& e) {
        // A fleet where no gateway has shipped bindings yet: said plainly.
        if (std::string(e.what()).find("relation \"bindings\" does not exist") != std::string::npos)
            throw store_error("the fleet's PostgreSQL has no bindings table yet: no gateway with a binding "
                              "history has shipped to it (docs/fleet.md, \"Who held an address, fleet-wide\")");
        throw;
    }
}

int events(fleet_store& db, const command_request& rq) {
    const char* usage = "--fleet FILE events [--type T] [--address A[/LEN]] [--account A] [--gateway G] "
                        "[--since TIME] [--until TIME] [-n N]";
    if (rq.words.size() != 1) throw usage_error(std::string("usage: sekishoctl ") + usage);
    for (const auto& [k, v] : rq.flags)
        if (k != "--type" && k != "--address" && k != "--account" && k != "--gateway" && k != "--since" &&
            k != "--until" && k != "-n")
            throw usage_error("unknown option '" + k + "' for this command");
    uint64_t n = 50;
    if (const std::string* v = flag(rq, "-n")) {
        if (v->empty() || v->size() > 7 || v->find_first_not_of("0123456789") != std::string::npos)
            throw usage_error("-n '" + escape_unprintable(*v) + "': a number of events, at most 9999999");
        n = std::stoull(*v);
    }
    // A type that matches nothing would look like a quiet fleet: refused before asking. The
    // shipper's stand-in rows (unparsable, refused) are types too.
    if (const std::string* t = flag(rq, "--type"); t && !is_event_type(*t) && *t != "unparsable" && *t != "refused")
        throw usage_error("--type '" + escape_unprintable(*t) + "' is not an event type (" + event_type_list() +
                          ", unparsable, refused)");
    if (const std::string* a = flag(rq, "--address")) {
        // An address or a prefix; PostgreSQL's inet checks the rest.
        const std::string host = a->substr(0, a->find('/'));
        unsigned char b[16];
        if (inet_pton(AF_INET, host.c_str(), b) != 1 && inet_pton(AF_INET6, host.c_str(), b) != 1)
            throw usage_error("--address '" + escape_unprintable(*a) + "' is not an IPv4 or IPv6 address or prefix");
    }
    const int64_t since = time_flag(rq, "--since", 0), until = time_flag(rq, "--until", 253402300799);
    // The newest n matching, printed oldest first. Empty parameters match anything.
    const std::string sql =
        "SELECT gateway, line::text FROM ("
        " SELECT gateway, line, time, file_id, line_offset FROM events"
        " WHERE ($1 = '' OR type = $1)"
        " AND ($2 = '' OR address <<= $2::inet)"
        " AND ($3 = '' OR account = $3)"
        " AND ($4 = '' OR gateway = $4)"
        " AND time >= to_timestamp($5::bigint) AND time <= to_timestamp($6::bigint)"
        " ORDER BY time DESC, gateway DESC, file_id DESC, line_offset DESC LIMIT $7::bigint"
        ") newest ORDER BY time, gateway, file_id, line_offset";
    const std::string p[7] = {flag(rq, "--type") ? *flag(rq, "--type") : "",
                              flag(rq, "--address") ? *flag(rq, "--address") : "",
                              flag(rq, "--account") ? *flag(rq, "--account") : "",
                              flag(rq, "--gateway") ? *flag(rq, "--gateway") : "",
                              std::to_string(since),
                              std::to_string(until),
                              std::to_string(n)};
    const auto r = query(db, sql, {std::begin(p), std::end(p)}, "events");
    for (int i = 0; i < PQntuples(r.get()); ++i) {
        json e = json::parse(PQgetvalue(r.get(), i, 1), nullptr, false);
        if (!e.is_object()) continue;
        e["gateway"] = PQgetvalue(r.get(), i, 0);
        if (rq.as_json) {
            std::cout << e.dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
        } else {
            std::cout << escape_unprintable(PQgetvalue(r.get(), i, 0)) << "  ";
            print_event(e);
        }
    }
    return 0;
}


void check_address(const std::string& flag_name, const std::string& a) {
    const std::string host = a.substr(0, a.find('/'));
    unsigned char b[16];
    if (inet_pton(AF_INET, host.c_str(), b) != 1 && inet_pton(AF_INET6, host.c_str(), b) != 1)
        throw usage_error(flag_name + " '" + escape_unprintable(a) + "' is not an IPv4 or IPv6 address or prefix");
}

// "2026-11-23T02:13:20Z (1795400000)": the desk's time and the machine's.
std::string both_times(int64_t t) { return utc_time_text(t) + " (" + std::to_string(t) + ")"; }

// Where who-held-what comes from (--bindings-source): the gateways' own
// binding histories shipped into `bindings` (binding_shipper.h, the
// default), or the ISP's FreeRADIUS accounting table (`radacct` as
// FreeRADIUS's PostgreSQL schema.sql defines it and its queries.conf writes
// it; --radacct-table names another, e.g. a postgres_fdw foreign table of the
// RADIUS database). radacct knows no gateway: an address has one holder
// fleet-wide at a time, whichever edge it was seen behind.
struct binding_source {
    bool given = false;   // --bindings-source or --radacct-table on the command line
    bool radacct = false;
    std::string table = "bindings";
};

// A table name the SQL may carry as is: NAME or SCHEMA.NAME, each [A-Za-z_][A-Za-z0-9_]*.
bool plain_table_name(const std::string& t) {
    auto identifier = [](const std::string& x) {
        if (x.empty() || x.size() > 63 || (x[0] >= '0' && x[0] <= '9')) return false;
        return std::all_of(x.begin(), x.end(), [](char c) {
            return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
        });
    };
    const size_t dot = t.find('.');
    if (dot == std::string::npos) return identifier(t);
    return identifier(t.substr(0, dot)) && identifier(t.substr(dot + 1));
}

// Reads and removes --bindings-source and --radacct-table from `rq`.
binding_source take_binding_source(command_request& rq) {
    binding_source src;
    std::string table;
    for (auto it = rq.flags.begin(); it != rq.flags.end();) {
        if (it->first == "--bindings-source") {
            if (it->second != "gateways" && it->second != "radacct")
                throw usage_error("--bindings-source '" + escape_unprintable(it->second) +
                                  "': gateways (the bindings the gateways shipped) or radacct (FreeRADIUS's table)");
            src.radacct = it->second == "radacct";
        } else if (it->first == "--radacct-table") {
            table = it->second;
            if (!plain_table_name(table))
                throw usage_error("--radacct-table '" + escape_unprintable(table) +
                                  "': a table name, NAME or SCHEMA.NAME of letters, digits and _");
        } else {
            ++it;
            continue;
        }
        src.given = true;
        it = rq.flags.erase(it);
    }
    if (!table.empty() && !src.radacct) throw usage_error("--radacct-table needs --bindings-source radacct");
    if (src.radacct) src.table = table.empty() ? "radacct" : table;
    return src;
}

// The source's rows as one SQL row set with the columns of `bindings`:
// gateway (NULL from radacct), history_id, prefix, account, session_id, nas,
// start, stop, closed_by, and last_update (radacct's last interim; NULL for
// the gateways'). A radacct session holds each address it carries
// (FramedIPAddress, FramedIPv6Address, FramedIPv6Prefix,
// DelegatedIPv6Prefix) from AcctStartTime to AcctStopTime (closed_by: its
// Acct-Terminate-Cause, else "stop"); one whose Stop never came holds it
// until the next session of the same address starts (closed_by
// "superseded", as the gateways' history says), else it is open.
std::string binding_rows(const binding_source& src) {
    if (!src.radacct)
        return "SELECT gateway, history_id, prefix, account, session_id, nas, start, stop, closed_by,"
               " NULL::timestamptz AS last_update FROM bindings";
    std::string sql;
    for (const char* col : {"framedipaddress", "framedipv6address", "framedipv6prefix", "delegatedipv6prefix"}) {
        const std::string c = col;
        if (!sql.empty()) sql += " UNION ALL ";
        sql += "SELECT NULL::text AS gateway, r.radacctid AS history_id, r." + c +
               " AS prefix, coalesce(r.username, '') AS account, r.acctsessionid AS session_id,"
               " host(r.nasipaddress) AS nas, r.acctstarttime AS start, coalesce(r.acctstoptime, s.next_start) AS stop,"
               " CASE WHEN r.acctstoptime IS NOT NULL THEN coalesce(nullif(r.acctterminatecause, ''), 'stop')"
               " WHEN s.next_start IS NOT NULL THEN 'superseded' END AS closed_by, r.acctupdatetime AS last_update"
               " FROM " + src.table + " r LEFT JOIN LATERAL (SELECT min(n.acctstarttime) AS next_start FROM " +
               src.table + " n WHERE n." + c + " = r." + c +
               " AND n.acctstarttime > r.acctstarttime) s ON r.acctstoptime IS NULL"
               " WHERE r." + c + " IS NOT NULL AND r.acctstarttime IS NOT NULL";
    }
    return sql;
}

// Whether the source's table is there. A missing radacct table is an error
// naming it; a missing `bindings` is a fleet where no gateway shipped a
// history yet (false).
bool binding_source_present(fleet_store& db, const binding_source& src, const std::string& what) {
    auto t = query(db, "SELECT to_regclass($1) IS NOT NULL", {src.table}, what);
    const bool present = std::string(PQgetvalue(t.get(), 0, 0)) == "t";
    if (!present && src.radacct)
        throw std::runtime_error("--bindings-source radacct: no table '" + src.table +
                                 "' in the fleet's database (FreeRADIUS's PostgreSQL schema.sql creates radacct; "
                                 "--radacct-table names another)");
    return present;
}

// Who held ADDRESS at TIME, on every gateway: the rows of `bindings`
// (binding_shipper.h) whose prefix contains the address and whose
// [start, stop] holds the second (both ends, as the gateway's own whois:
// in a handover's second both holders are shown). Exit 3 when no row with
// an account does.
int whois(fleet_store& db, const command_request& rq, const binding_source& src) {
    const char* usage = "--fleet FILE whois ADDRESS[/LEN] [--at TIME]";
    if (rq.words.size() != 2) throw usage_error(std::string("usage: sekishoctl ") + usage);
    for (const auto& [k, v] : rq.flags)
        if (k != "--at") throw usage_error("unknown option '" + k + "' for this command");
    const std::string& address = rq.words[1];
    check_address("whois", address);
    const int64_t at = time_flag(rq, "--at", static_cast<int64_t>(std::time(nullptr)));
    binding_source_present(db, src, "whois");
    auto r = query(db,
                   "SELECT gateway, host(prefix) || '/' || masklen(prefix), account, session_id, nas,"
                   " extract(epoch FROM start)::bigint, extract(epoch FROM stop)::bigint, coalesce(closed_by, ''),"
                   " extract(epoch FROM last_update)::bigint"
                   " FROM (" + binding_rows(src) + ") b WHERE prefix >>= $1::inet AND start <= to_timestamp($2::bigint)"
                   " AND (stop IS NULL OR stop >= to_timestamp($2::bigint))"
                   " ORDER BY start, gateway, history_id",
                   {address, std::to_string(at)}, "whois");
    json bindings = json::array(), held_by = json::array();
    for (int i = 0; i < PQntuples(r.get()); ++i) {
        const bool open = PQgetisnull(r.get(), i, 6);
        const int64_t start = number_at(r.get(), i, 5), stop = open ? 0 : number_at(r.get(), i, 6);
        const std::string account = text_at(r.get(), i, 2), gateway = text_at(r.get(), i, 0);
        const json gw = src.radacct ? json(nullptr) : json(gateway);
        json holder = {{"gateway", gw}, {"account", account}};
        if (!account.empty() && std::find(held_by.begin(), held_by.end(), holder) == held_by.end())
            held_by.push_back(holder);
        bindings.push_back({{"gateway", gw},
                            {"address", text_at(r.get(), i, 1)},
                            {"account", account},
                            {"session_id", text_at(r.get(), i, 3)},
                            {"nas", text_at(r.get(), i, 4)},
                            {"start", start},
                            {"start_utc", utc_time_text(start)},
                            {"stop", open ? json(nullptr) : json(stop)},
                            {"stop_utc", open ? json(nullptr) : json(utc_time_text(stop))},
                            {"stop_cause", text_at(r.get(), i, 7)}});
        if (src.radacct)   // the session's last word: its interim, or its Start or Stop
            bindings.back()["last_update"] = PQgetisnull(r.get(), i, 8) ? json(nullptr) : json(number_at(r.get(), i, 8));
    }
    if (rq.as_json) {
        std::cout << json{{"query", {{"address", address}, {"at", at}, {"at_utc", utc_time_text(at)},
                                     {"source", src.radacct ? "radacct" : "gateways"}}},
                          {"bindings", bindings},
                          {"held_by", held_by}}
                         .dump(-1, ' ', false, json::error_handler_t::replace)
                  << "\n";
    } else if (bindings.empty()) {
        std::cout << "no binding for " << escape_unprintable(address) << " at " << both_times(at)
                  << (src.radacct ? " in " + src.table : std::string(" on any gateway of the fleet")) << "\n";
    } else {
        for (const json& b : bindings) {
            const std::string account = b["account"].get<std::string>();
            std::cout << b["address"].get<std::string>() << " held by "
                      << (account.empty() ? std::string("nobody (a session without User-Name)")
                                          : escape_unprintable(account))
                      << (src.radacct ? std::string(" in ") + src.table
                                      : " on gateway " + escape_unprintable(b["gateway"].get<std::string>()))
                      << " (session "
                      << escape_unprintable(b["session_id"].get<std::string>()) << ", NAS "
                      << escape_unprintable(b["nas"].get<std::string>()) << ") from "
                      << both_times(b["start"].get<int64_t>()) << " to "
                      << (b["stop"].is_null() ? std::string("now (open)")
                                              : both_times(b["stop"].get<int64_t>()) + " (" +
                                                    b["stop_cause"].get<std::string>() + ")")
                      << "\n";
        }
    }
    return held_by.empty() ? 3 : 0;
}

// The SQL expression for the account that held event `e`'s address on its
// gateway at the event's own second (the `bindings` row whose prefix
// contains the address and whose [start, stop] holds the second; in a
// handover's second the newer session), else the account the gateway
// stamped on the event (static and API bindings, which no history records),
// else NULL (nobody). report and top attribute by it.
std::string holder_expression(fleet_store& db, const binding_source& src, const std::string& what) {
    // Without a bindings table (no gateway ships a history): the stamped accounts only.
    if (!binding_source_present(db, src, what)) return "e.account";
    return "coalesce((SELECT b.account FROM (" + binding_rows(src) + ") b WHERE " +
           (src.radacct ? "" : "b.gateway = e.gateway AND ") +
           "b.prefix >>= e.address AND b.account <> ''"
           " AND b.start <= date_trunc('second', e.time)"
           " AND (b.stop IS NULL OR b.stop >= date_trunc('second', e.time))"
           " ORDER BY b.start DESC, b.history_id DESC LIMIT 1), e.account)";
}

// The offending addresses and accounts of the period, fleet-wide, with the
// gateway's own report's columns (control/api/event_queries.cpp) and the
// gateway last: each event is counted for the account that held its address
// on its gateway at the event's own second (the `bindings` row whose prefix
// contains the address and whose [start, stop] holds the second; in a
// handover's second the newer session), else the account the gateway
// stamped on the event (static and API bindings, which no history records),
// else nobody. mail_session lines give the messages column only; api_change
// lines and the shipper's stand-in rows are nobody's events.
int report(fleet_store& db, const command_request& rq, const binding_source& src) {
    const char* usage = "--fleet FILE report [--since TIME] [--until TIME] [--format csv|json]";
    if (rq.words.size() != 1) throw usage_error(std::string("usage: sekishoctl ") + usage);
    for (const auto& [k, v] : rq.flags)
        if (k != "--since" && k != "--until" && k != "--format")
            throw usage_error("unknown option '" + k + "' for this command");
    std::string format = rq.as_json ? "json" : "csv";
    if (const std::string* f = flag(rq, "--format")) format = *f;
    if (format != "csv" && format != "json")
        throw usage_error("--format '" + escape_unprintable(format) + "': csv or json");
    const int64_t since = time_flag(rq, "--since", 0);
    const int64_t until = time_flag(rq, "--until", static_cast<int64_t>(std::time(nullptr)));
    const std::string holder = holder_expression(db, src, "report");
    const std::string sql =
        "SELECT gateway, address, holder, type, sum(n)::bigint, sum(msgs)::bigint, min(t)::bigint, max(t)::bigint FROM ("
        " SELECT e.gateway, coalesce(host(e.address), '') AS address, " + holder + " AS holder, e.type,"
        " CASE WHEN jsonb_typeof(e.line->'count') = 'number' THEN (e.line->>'count')::numeric ELSE 1 END AS n,"
        " CASE WHEN jsonb_typeof(e.line->'messages') = 'number' THEN (e.line->>'messages')::numeric ELSE 0 END AS msgs,"
        " floor(extract(epoch FROM e.time)) AS t"
        " FROM events e WHERE e.time >= to_timestamp($1::bigint) AND e.time < to_timestamp($2::bigint + 1)"
        " AND e.type NOT IN ('api_change', 'unparsable', 'refused')"
        ") attributed GROUP BY gateway, address, holder, type";
    auto r = query(db, sql, {std::to_string(since), std::to_string(until)}, "report");
    struct row {
        std::string gateway, address;
        json account;
        std::map<std::string, uint64_t> by_type;
        uint64_t total = 0, messages = 0;
        int64_t first = INT64_MAX, last = 0;
        bool offending = false;
    };
    std::map<std::tuple<std::string, std::string, std::string, bool>, row> rows;
    for (int i = 0; i < PQntuples(r.get()); ++i) {
        const bool nobody = PQgetisnull(r.get(), i, 2);
        row& rw = rows[{text_at(r.get(), i, 1), text_at(r.get(), i, 2), text_at(r.get(), i, 0), nobody}];
        rw.gateway = text_at(r.get(), i, 0);
        rw.address = text_at(r.get(), i, 1);
        rw.account = nobody ? json(nullptr) : json(text_at(r.get(), i, 2));
        const std::string type = text_at(r.get(), i, 3);
        if (type == "mail_session") {
            rw.messages += static_cast<uint64_t>(number_at(r.get(), i, 5));
            continue;
        }
        const auto n = static_cast<uint64_t>(number_at(r.get(), i, 4));
        rw.offending = true;
        rw.by_type[type] += n;
        rw.total += n;
        rw.first = std::min(rw.first, number_at(r.get(), i, 6));
        rw.last = std::max(rw.last, number_at(r.get(), i, 7));
    }
    if (format == "csv") {
        std::cout << "source_address,account,events,op25b_blocks,limit_hits,suspended_refusals,messages,first_seen,"
                     "last_seen,first_seen_utc,last_seen_utc,gateway\n";
        for (const auto& [key, rw] : rows) {
            if (!rw.offending) continue;
            const row& x = rw;
            auto get = [&x](const char* k) { auto it = x.by_type.find(k); return it == x.by_type.end() ? 0 : it->second; };
            std::cout << escape_unprintable(rw.address) << ","
                      << (rw.account.is_string() ? escape_unprintable(rw.account.get<std::string>()) : std::string())
                      << "," << rw.total << "," << get("op25b_block") << "," << get("limit_exceeded") << ","
                      << get("account_suspended") << "," << rw.messages << "," << rw.first << "," << rw.last << ","
                      << utc_time_text(rw.first) << "," << utc_time_text(rw.last) << ","
                      << escape_unprintable(rw.gateway) << "\n";
        }
        return 0;
    }
    json out = json::array();
    for (const auto& [key, rw] : rows)
        if (rw.offending)
            out.push_back({{"source_address", rw.address}, {"account", rw.account}, {"gateway", rw.gateway},
                           {"events", rw.total}, {"by_type", rw.by_type}, {"messages", rw.messages},
                           {"first_seen", rw.first}, {"first_seen_utc", utc_time_text(rw.first)},
                           {"last_seen", rw.last}, {"last_seen_utc", utc_time_text(rw.last)}});
    std::cout << json{{"since", since},
                      {"since_utc", utc_time_text(since)},
                      {"until", until},
                      {"until_utc", utc_time_text(until)},
                      {"sources", out}}
                     .dump(-1, ' ', false, json::error_handler_t::replace)
              << "\n";
    return 0;
}

// The top 20 holders of the window [TIME - WINDOW, TIME] fleet-wide, by what
// the local top counts (docs/api.md, /v1/top): an account's events are
// summed over every gateway and address it used (one row per account, with
// its gateways and addresses); an event nobody held counts for its address
// on its own gateway (the same private address behind two edges is two
// subscribers). Attribution as report's (holder_expression).
int top(fleet_store& db, const command_request& rq, const binding_source& src) {
    const char* usage = "--fleet FILE top [--window 1h] [--until TIME] [--by messages|recipients|rejected_recipients|"
                        "sessions|events|op25b_block|limit_exceeded|account_suspended|score]";
    if (rq.words.size() != 1) throw usage_error(std::string("usage: sekishoctl ") + usage);
    for (const auto& [k, v] : rq.flags)
        if (k != "--window" && k != "--until" && k != "--by")
            throw usage_error("unknown option '" + k + "' for this command");
    const std::string window_text = flag(rq, "--window") ? *flag(rq, "--window") : "1h";
    const int64_t window = parse_duration("--window", window_text).count() / 1000;
    if (window <= 0) throw usage_error("--window '" + escape_unprintable(window_text) + "': at least one second");
    const int64_t until = time_flag(rq, "--until", static_cast<int64_t>(std::time(nullptr)));
    const std::string by = flag(rq, "--by") ? *flag(rq, "--by") : "messages";
    // What one row adds, and which rows count: the local top's rules.
    const std::string count = "CASE WHEN jsonb_typeof(e.line->'count') = 'number' THEN (e.line->>'count')::numeric ELSE 1 END";
    std::string add, which;
    if (by == "messages" || by == "recipients" || by == "rejected_recipients") {
        add = "CASE WHEN jsonb_typeof(e.line->'" + by + "') = 'number' THEN (e.line->>'" + by + "')::numeric ELSE 0 END";
        which = "e.type = 'mail_session'";
    } else if (by == "sessions") {
        add = count;
        which = "e.type = 'mail_session'";
    } else if (by == "score") {
        // the content verdicts' scores; negative scores count as 0
        add = "CASE WHEN jsonb_typeof(e.line->'score') = 'number' THEN greatest((e.line->>'score')::numeric, 0) "
              "ELSE 0 END * " + count;
        which = "e.type = 'content_verdict'";
    } else if (by == "events") {
        add = count;
        which = "e.type NOT IN ('mail_session', 'api_change', 'unparsable', 'refused')";
    } else if (by == "op25b_block" || by == "limit_exceeded" || by == "account_suspended") {
        add = count;
        which = "e.type = '" + by + "'";
    } else {
        throw usage_error("--by '" + escape_unprintable(by) + "': messages, recipients, rejected_recipients, sessions, "
                          "events, op25b_block, limit_exceeded, account_suspended or score");
    }
    const std::string sql =
        "SELECT gateway, address, holder, floor(sum(n))::bigint FROM ("
        " SELECT e.gateway, coalesce(host(e.address), '') AS address, " + holder_expression(db, src, "top") + " AS holder, " +
        add + " AS n FROM events e WHERE " + which +
        " AND e.time >= to_timestamp($1::bigint) AND e.time < to_timestamp($2::bigint + 1)"
        ") attributed GROUP BY gateway, address, holder";
    auto r = query(db, sql, {std::to_string(until - window), std::to_string(until)}, "top");
    struct score_row {
        json account;
        std::set<std::string> gateways, subscribers;
        uint64_t count = 0;
    };
    // An account's row: its name; nobody's: the gateway and the address.
    std::map<std::pair<std::string, std::string>, score_row> rows;
    for (int i = 0; i < PQntuples(r.get()); ++i) {
        const std::string gateway = text_at(r.get(), i, 0), address = text_at(r.get(), i, 1);
        const bool nobody = PQgetisnull(r.get(), i, 2);
        score_row& s = rows[nobody ? std::pair(gateway, address) : std::pair(std::string(), text_at(r.get(), i, 2))];
        s.account = nobody ? json(nullptr) : json(text_at(r.get(), i, 2));
        s.gateways.insert(gateway);
        if (!address.empty()) s.subscribers.insert(address);
        s.count += static_cast<uint64_t>(number_at(r.get(), i, 3));
    }
    std::vector<const score_row*> v;
    for (const auto& [k, s] : rows)
        if (s.count > 0) v.push_back(&s);
    std::stable_sort(v.begin(), v.end(), [](const score_row* a, const score_row* b) { return a->count > b->count; });
    json out = json::array();
    for (size_t i = 0; i < v.size() && i < 20; ++i)
        out.push_back({{"account", v[i]->account},
                       {"subscribers", v[i]->subscribers},
                       {"gateways", v[i]->gateways},
                       {"count", v[i]->count}});
    const json answer = {{"window", window_text}, {"until", until}, {"until_utc", utc_time_text(until)}, {"by", by},
                         {"top", out}};
    if (rq.as_json)
        std::cout << answer.dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
    else
        print_fleet_top(answer);
    return 0;
}

}  // namespace

int run_fleet_events(const std::string& conninfo_file, const command_request& request) {
    const std::string& what = request.words[0];
    if (what != "events" && what != "whois" && what != "report" && what != "top")
        throw usage_error("--fleet: the questions asked of the fleet's PostgreSQL are: events, whois, report, top");
    command_request rq = request;
    const binding_source src = take_binding_source(rq);
    if (what == "events" && src.given) throw usage_error("--bindings-source: for whois, report and top");
    fleet_store db(conninfo_file);
    if (what == "events") return events(db, rq);
    if (what == "whois") return whois(db, rq, src);
    if (what == "report") return report(db, rq, src);
    return top(db, rq, src);
}

}  // namespace sekisho::ctl
