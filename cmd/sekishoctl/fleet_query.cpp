#include "cmd/sekishoctl/fleet_query.h"

#include <arpa/inet.h>
#include <libpq-fe.h>
#include <sys/stat.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <vector>

#include "cmd/sekishoctl/human_output.h"
#include "control/api/untrusted_text.h"
#include "control/observe/event_types.h"
#include "control/utc_time.h"

namespace sekisho::ctl {

namespace {

using nlohmann::json;

// The connection string from a credential file: refused if others may read or write it.
std::string read_conninfo(const std::string& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) throw usage_error("--fleet " + path + ": cannot read the file");
    if (st.st_mode & 007)
        throw usage_error("--fleet " + path + ": readable or writable by others; a credential file must be 0600 or 0640");
    std::string text = read_text_file(path);
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) text.pop_back();
    if (text.empty()) throw usage_error("--fleet " + path + ": empty");
    return text;
}

struct conn_deleter {
    void operator()(PGconn* c) const { PQfinish(c); }
};
struct result_deleter {
    void operator()(PGresult* r) const { PQclear(r); }
};

std::string message(const char* m) {
    std::string s = m ? m : "";
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    return s;
}

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

int events(PGconn* pg, const command_request& rq) {
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
    // shipper's placeholders (unparsable, refused) are types too.
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
    const char* values[7];
    for (int i = 0; i < 7; ++i) values[i] = p[i].c_str();
    std::unique_ptr<PGresult, result_deleter> r(PQexecParams(pg, sql.c_str(), 7, nullptr, values, nullptr, nullptr, 0));
    if (PQresultStatus(r.get()) != PGRES_TUPLES_OK)
        throw std::runtime_error("the fleet's PostgreSQL refused the events query: " +
                                 message(PQresultErrorMessage(r.get())));
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

}  // namespace

int run_fleet_events(const std::string& conninfo_file, const command_request& request) {
    if (request.words[0] != "events")
        throw usage_error("--fleet: the commands asked of the fleet's PostgreSQL are: events");
    const std::string conninfo = read_conninfo(conninfo_file) + " connect_timeout=5";
    std::unique_ptr<PGconn, conn_deleter> pg(PQconnectdb(conninfo.c_str()));
    if (PQstatus(pg.get()) != CONNECTION_OK)
        throw std::runtime_error("cannot reach the fleet's PostgreSQL (" + conninfo_file +
                                 "): " + message(PQerrorMessage(pg.get())));
    PQclear(PQexec(pg.get(), "SET TIME ZONE 'UTC'"));
    return events(pg.get(), request);
}

}  // namespace sekisho::ctl
