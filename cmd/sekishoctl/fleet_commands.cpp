#include "cmd/sekishoctl/fleet_commands.h"
#include "cmd/sekishoctl/fleet_query.h"
#include "cmd/sekishoctl/fleet_store.h"

#include <libpq-fe.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <thread>

#include "control/api/untrusted_text.h"
#include "control/fleet/fleet_schema.h"
#include "control/fleet/policy_schema.h"

namespace sekisho::ctl {

namespace {

using nlohmann::json;
using clock_type = std::chrono::steady_clock;

// A rollout that stopped by itself: exit 4.
struct halted : std::runtime_error {
    using std::runtime_error::runtime_error;
};

constexpr size_t max_policy_bytes = 4 << 20;

std::string flag_value(const command_request& r, const std::string& name, const std::string& fallback = "") {
    for (const auto& [k, v] : r.flags)
        if (k == name) return v;
    return fallback;
}

bool has_flag(const command_request& r, const std::string& name) {
    for (const auto& [k, v] : r.flags)
        if (k == name) return true;
    return false;
}

void check_flags(const command_request& r, std::initializer_list<const char*> allowed) {
    for (const auto& [k, v] : r.flags) {
        bool ok = k == "--fleet";
        for (const char* a : allowed) ok = ok || k == a;
        if (!ok) throw usage_error("unknown option '" + k + "' for this fleet command");
    }
}

uint64_t parse_count(const std::string& flag, const std::string& text) {
    uint64_t n = 0;
    const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
    if (ec != std::errc() || ptr != text.data() + text.size() || text.empty())
        throw usage_error(flag + " '" + escape_unprintable(text) + "': not a count");
    return n;
}

// As the fleet file's names: [A-Za-z0-9._-], 1..63.
void check_group(const std::string& flag, const std::string& g) {
    bool ok = !g.empty() && g.size() <= 63;
    for (char c : g) ok = ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-');
    if (!ok) throw usage_error(flag + " '" + escape_unprintable(g) + "': a group is 1..63 of [A-Za-z0-9._-]");
}

// ------------------------------------------------------------------ reading the gateways

struct gateway_row {
    std::string gateway, group, build, last_error;
    uint64_t generation = 0, fleet_version = 0, desired = 0;
    double lag_seconds = 0;
    json health = json::object();
    bool stale = false;
};

uint64_t health_value(const json& h, const char* key) {
    return h.is_object() && h.contains(key) && h[key].is_number_unsigned() ? h[key].get<uint64_t>() : 0;
}

// Every gateway (of `group` when not empty), ordered by group and name.
std::vector<gateway_row> read_gateways(fleet_store& db, const std::string& group, std::chrono::milliseconds stale) {
    std::vector<gateway_row> rows;
    if (!db.has_table("gateways")) return rows;
    const bool desired = db.has_table("group_desired");
    const std::string sql =
        std::string("SELECT g.gateway, g.grp, g.version, g.generation_in_force, g.fleet_version_in_force,"
                    " g.health::text, g.last_error, extract(epoch FROM now() - g.last_seen)::float8, ") +
        (desired ? "coalesce(d.version, 0) FROM gateways g LEFT JOIN group_desired d ON d.grp = g.grp"
                 : "0 FROM gateways g") +
        " WHERE $1 = '' OR g.grp = $1 ORDER BY g.grp, g.gateway";
    fleet_store::result r = db.exec(sql, {group}, "read the gateways");
    for (int i = 0; i < PQntuples(r.get()); ++i) {
        gateway_row g;
        g.gateway = PQgetvalue(r.get(), i, 0);
        g.group = PQgetvalue(r.get(), i, 1);
        g.build = PQgetvalue(r.get(), i, 2);
        g.generation = std::stoull(PQgetvalue(r.get(), i, 3));
        g.fleet_version = std::stoull(PQgetvalue(r.get(), i, 4));
        g.health = json::parse(PQgetvalue(r.get(), i, 5), nullptr, false);
        g.last_error = PQgetvalue(r.get(), i, 6);
        g.lag_seconds = std::stod(PQgetvalue(r.get(), i, 7));
        g.desired = std::stoull(PQgetvalue(r.get(), i, 8));
        g.stale = g.lag_seconds * 1000 > static_cast<double>(stale.count());
        rows.push_back(std::move(g));
    }
    return rows;
}

json row_json(const gateway_row& g) {
    return {{"gateway", g.gateway},           {"group", g.group},
            {"version", g.build},             {"generation", g.generation},
            {"fleet_version", g.fleet_version}, {"desired_version", g.desired},
            {"lag_seconds", g.lag_seconds},   {"stale", g.stale},
            {"health", g.health},             {"last_error", g.last_error}};
}

std::string health_text(const json& h) {
    char b[160];
    std::snprintf(b, sizeof b, "blocked=%llu malformed=%llu ring=%llu reload_fail=%llu fleet_fail=%llu",
                  static_cast<unsigned long long>(health_value(h, "blocked")),
                  static_cast<unsigned long long>(health_value(h, "malformed_dropped")),
                  static_cast<unsigned long long>(health_value(h, "ring_drops")),
                  static_cast<unsigned long long>(health_value(h, "reload_failures")),
                  static_cast<unsigned long long>(health_value(h, "fleet_apply_failures")));
    return b;
}

int fleet_status(const std::string& conninfo, const command_request& r) {
    check_flags(r, {"--stale"});
    if (r.words.size() != 2) throw usage_error("usage: sekishoctl --fleet FILE fleet status [--stale 10s]");
    const auto stale = parse_duration("--stale", flag_value(r, "--stale", "10s"));
    fleet_store db(conninfo);
    const std::vector<gateway_row> rows = read_gateways(db, "", stale);
    if (r.as_json) {
        json out = json::array();
        for (const auto& g : rows) out.push_back(row_json(g));
        std::cout << json{{"gateways", out}}.dump() << "\n";
        return 0;
    }
    if (rows.empty()) {
        std::cout << "no gateway has reported to this fleet yet\n";
        return 0;
    }
    std::printf("%-20s %-10s %10s %8s %8s %9s %-6s %s\n", "GATEWAY", "GROUP", "GENERATION", "FLEET_V", "DESIRED",
                "LAG", "STATE", "HEALTH");
    size_t stale_count = 0;
    for (const auto& g : rows) {
        char lag[32];
        std::snprintf(lag, sizeof lag, "%.1fs", g.lag_seconds);
        const char* state = g.stale ? "STALE" : (g.desired != 0 && g.fleet_version != g.desired ? "behind" : "ok");
        stale_count += g.stale;
        std::printf("%-20s %-10s %10llu %8llu %8llu %9s %-6s %s\n", escape_unprintable(g.gateway).c_str(),
                    escape_unprintable(g.group).c_str(), static_cast<unsigned long long>(g.generation),
                    static_cast<unsigned long long>(g.fleet_version), static_cast<unsigned long long>(g.desired), lag,
                    state, health_text(g.health).c_str());
        if (!g.last_error.empty())
            std::printf("  %s: %s\n", escape_unprintable(g.gateway).c_str(), escape_unprintable(g.last_error).c_str());
        if (const uint64_t older = health_value(g.health, "desired_older"))
            std::printf("  %s: its group desires version %llu, older than the one it handled: not rolled back\n",
                        escape_unprintable(g.gateway).c_str(), static_cast<unsigned long long>(older));
    }
    std::cout << rows.size() << " gateways, " << stale_count << " stale (no heartbeat for more than "
              << stale.count() / 1000.0 << "s); FLEET_V 0: the generation in force is not the fleet's\n";
    return 0;
}

// ------------------------------------------------------------------ pushing

std::string author_of(const command_request& r) {
    std::string a = flag_value(r, "--author");
    if (a.empty()) {
        const passwd* pw = getpwuid(getuid());
        a = pw ? pw->pw_name : "uid " + std::to_string(getuid());
    }
    if (find_unprintable(a) || a.size() > 200) throw usage_error("--author: printable text of at most 200 bytes");
    return a;
}

std::string read_policy(const std::string& path) {
    const std::string text = read_text_file(path);
    if (text.empty()) throw usage_error(path + ": empty");
    if (text.size() > max_policy_bytes) throw usage_error(path + ": larger than 4 MiB");
    if (const auto b = find_unprintable(text, true)) throw usage_error(path + ": " + describe(*b));
    return text;
}

// Creates the policy tables when missing (the controller owns them), then
// records `text` as a new version desired for `group`, in one transaction.
uint64_t push(fleet_store& db, const std::string& text, const std::string& group, const std::string& author) {
    db.exec_script("BEGIN", "begin");
    try {
        db.exec_script(fleet_sql::schema_lock, "lock the schema");
        // Created here unless there (a DBA's `fleet schema` made them: no CREATE needed then).
        fleet_store::result have = db.exec(fleet_sql::objects_present, {"policy_versions,group_desired"},
                                     "look for the policy tables");
        if (std::string(PQgetvalue(have.get(), 0, 0)) != "2")
            db.exec_script(fleet_sql::create_policy_tables, "create the policy tables");
        fleet_store::result v = db.exec(
            "INSERT INTO policy_versions (grp, text, author) VALUES ($1, $2, $3 || ' as ' || session_user)"
            " RETURNING version",
            {group, text, author}, "record the policy version");
        const std::string version = PQgetvalue(v.get(), 0, 0);
        db.exec("INSERT INTO group_desired (grp, version) VALUES ($1, $2)"
                " ON CONFLICT (grp) DO UPDATE SET version = EXCLUDED.version",
                {group, version}, "set the group's desired version");
        db.exec_script("COMMIT", "commit");
        return std::stoull(version);
    } catch (...) {
        try {
            db.exec_script("ROLLBACK", "rollback");
        } catch (const std::exception&) {
        }
        throw;
    }
}

// The whole fleet schema as one script, in the order its objects need each
// other (fleet_schema.h, policy_schema.h): what `fleet schema` prints and,
// with --apply, runs in one transaction.
std::vector<std::pair<std::string, const char*>> schema_script() {
    static const std::string record_version = "INSERT INTO fleet_meta VALUES ('schema_version', '" +
                                              std::to_string(fleet_sql::schema_version) +
                                              "') ON CONFLICT (key) DO NOTHING";
    return {{"lock the schema", fleet_sql::schema_lock},
            {"create fleet_meta and gateways", fleet_sql::create_meta_tables},
            {"add the gateways table's policy columns", fleet_sql::add_gateway_policy_columns},
            {"record the schema version", record_version.c_str()},
            {"create the operator tables", fleet_sql::create_operator_tables},
            {"create the events table and its partition functions", fleet_sql::create_event_tables},
            {"create the bindings table", fleet_sql::create_binding_tables},
            {"create the policy tables", fleet_sql::create_policy_tables},
            {"grant the roles", fleet_sql::grant_roles}};
}

// fleet schema [--apply]: the DBA's least-privilege setup. Without --apply
// the SQL is printed (for review, or psql); with it, it runs as the
// connecting role (the tables' owner to be), in one transaction, and says
// which of the three roles are missing (they get nothing until they exist
// and the command runs again).
int fleet_schema(const std::string& conninfo, const command_request& r) {
    check_flags(r, {"--apply"});
    if (r.words.size() != 2) throw usage_error("usage: sekishoctl --fleet ADMIN_CONNINFO_FILE fleet schema [--apply]");
    if (!has_flag(r, "--apply")) {
        std::cout << "BEGIN;\n";
        for (const auto& [what, sql] : schema_script()) {
            // One statement a line: the texts join theirs with ';' and a keyword, never ';' and a space.
            std::string text = sql;
            for (size_t i = text.find(';'); i != std::string::npos; i = text.find(';', i + 1))
                if (i + 1 < text.size() && text[i + 1] >= 'A' && text[i + 1] <= 'Z') text.insert(i + 1, "\n");
            std::cout << "-- " << what << "\n" << text << ";\n";
        }
        std::cout << "COMMIT;\n";
        return 0;
    }
    fleet_store db(conninfo);
    db.exec_script("BEGIN", "begin");
    try {
        for (const auto& [what, sql] : schema_script()) db.exec_script(sql, what);
        db.exec_script("COMMIT", "commit");
    } catch (...) {
        try {
            db.exec_script("ROLLBACK", "rollback");
        } catch (const std::exception&) {
        }
        throw;
    }
    fleet_store::result missing = db.exec("SELECT string_agg(r, ', ' ORDER BY r) FROM unnest(string_to_array($1, ',')) r"
                                    " WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r)",
                                    {fleet_sql::fleet_roles}, "look for the roles");
    std::cout << "fleet schema version " << fleet_sql::schema_version << " in place; roles granted";
    if (!PQgetisnull(missing.get(), 0, 0))
        std::cout << "; missing, granted nothing: " << PQgetvalue(missing.get(), 0, 0)
                  << " (CREATE ROLE ... LOGIN, then run this again)";
    std::cout << "\n";
    return 0;
}

int fleet_push(const std::string& conninfo, const command_request& r) {
    check_flags(r, {"--group", "--author"});
    if (r.words.size() != 4 || !has_flag(r, "--group"))
        throw usage_error("usage: sekishoctl --fleet FILE fleet policy push FILE --group GROUP [--author NAME]");
    const std::string group = flag_value(r, "--group");
    check_group("--group", group);
    const std::string text = read_policy(r.words[3]);
    const std::string author = author_of(r);
    fleet_store db(conninfo);
    const uint64_t v = push(db, text, group, author);
    if (r.as_json) std::cout << json{{"version", v}, {"group", group}}.dump() << "\n";
    else std::cout << "version " << v << " desired for group " << group
                   << "; its gateways apply it within their heartbeat (fleet status shows it)\n";
    return 0;
}

// ------------------------------------------------------------------ rollout

struct rollout_options {
    std::string canary, rest;
    std::chrono::milliseconds watch{30'000}, timeout{60'000}, stale{10'000};
    uint64_t max_increase = 10;
    std::optional<uint64_t> max_blocked_increase;
};

// Errors and drops: what a policy that breaks a gateway makes grow.
uint64_t trouble(const json& h) {
    return health_value(h, "malformed_dropped") + health_value(h, "ring_drops") + health_value(h, "reload_failures") +
           health_value(h, "fleet_apply_failures");
}

void say(const std::string& line) { std::cerr << "sekishoctl: rollout: " << line << std::endl; }

// Waits until every live canary gateway reports `version` in force; halts on
// a refusal or at the timeout. Returns each gateway's health then.
std::map<std::string, json> await_canary(fleet_store& db, const rollout_options& o, uint64_t version) {
    const auto deadline = clock_type::now() + o.timeout;
    std::vector<std::string> live;
    for (const auto& g : read_gateways(db, o.canary, o.stale)) {
        if (!g.stale) live.push_back(g.gateway);
        else say("canary gateway " + g.gateway + " is stale (last heartbeat " +
                 std::to_string(static_cast<int64_t>(g.lag_seconds)) + "s ago): not waited for");
    }
    if (live.empty())
        throw halted("no gateway of group " + o.canary + " has reported in the last " +
                     std::to_string(o.stale.count() / 1000) + "s: nothing to try version " + std::to_string(version) +
                     " on");
    for (;;) {
        std::map<std::string, json> reached;
        std::string waiting;
        for (const auto& g : read_gateways(db, o.canary, o.stale)) {
            if (std::find(live.begin(), live.end(), g.gateway) == live.end()) continue;
            if (health_value(g.health, "refused_version") == version)
                throw halted("canary gateway " + g.gateway + " refused version " + std::to_string(version) + ": " +
                             escape_unprintable(g.last_error));
            if (g.fleet_version == version) reached[g.gateway] = g.health;
            else waiting += (waiting.empty() ? "" : ", ") + g.gateway;
        }
        if (reached.size() == live.size()) return reached;
        if (clock_type::now() >= deadline)
            throw halted("canary gateways " + waiting + " did not report version " + std::to_string(version) +
                         " in force within " + std::to_string(o.timeout.count() / 1000) + "s");
        std::this_thread::sleep_for(std::chrono::milliseconds(250));
    }
}

// Watches the canary for `o.watch`; halts when a gateway's errors and drops
// (or its blocks, when bounded) grow beyond the bound, when it stops
// reporting, restarts or leaves the version.
void watch_canary(fleet_store& db, const rollout_options& o, uint64_t version, const std::map<std::string, json>& base) {
    const auto end = clock_type::now() + o.watch;
    for (;;) {
        std::map<std::string, bool> seen;
        for (const auto& g : read_gateways(db, o.canary, o.stale)) {
            auto b = base.find(g.gateway);
            if (b == base.end()) continue;
            seen[g.gateway] = true;
            if (g.stale)
                throw halted("canary gateway " + g.gateway + " stopped reporting (last heartbeat " +
                             std::to_string(static_cast<int>(g.lag_seconds)) + "s ago) after version " +
                             std::to_string(version));
            if (g.fleet_version != version)
                throw halted("canary gateway " + g.gateway + " no longer runs version " + std::to_string(version) +
                             " (fleet version in force: " + std::to_string(g.fleet_version) + ")");
            const uint64_t before = trouble(b->second), now = trouble(g.health);
            const uint64_t blocked_before = health_value(b->second, "blocked"), blocked = health_value(g.health, "blocked");
            if (now < before || blocked < blocked_before)
                throw halted("canary gateway " + g.gateway + " restarted during the watch (its counters went back)");
            if (now - before > o.max_increase)
                throw halted("canary gateway " + g.gateway + ": errors and drops grew by " + std::to_string(now - before) +
                             " (malformed_dropped, ring_drops, reload_failures, fleet_apply_failures: " +
                             health_text(g.health) + ") within the watch, more than --max-increase " +
                             std::to_string(o.max_increase));
            if (o.max_blocked_increase && blocked - blocked_before > *o.max_blocked_increase)
                throw halted("canary gateway " + g.gateway + ": blocked grew by " +
                             std::to_string(blocked - blocked_before) + " within the watch, more than " +
                             "--max-blocked-increase " + std::to_string(*o.max_blocked_increase));
        }
        for (const auto& [name, h] : base)
            if (!seen.count(name)) throw halted("canary gateway " + name + " is gone from the gateways table");
        if (clock_type::now() >= end) return;
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
}

int fleet_rollout(const std::string& conninfo, const command_request& r) {
    check_flags(r, {"--canary", "--then", "--watch", "--timeout", "--stale", "--max-increase", "--max-blocked-increase",
                    "--author"});
    if (r.words.size() != 3 || !has_flag(r, "--canary") || !has_flag(r, "--then"))
        throw usage_error(
            "usage: sekishoctl --fleet FILE fleet rollout FILE --canary GROUP --then GROUP [--watch 30s] "
            "[--timeout 60s] [--max-increase 10] [--max-blocked-increase N]");
    rollout_options o;
    o.canary = flag_value(r, "--canary");
    o.rest = flag_value(r, "--then");
    check_group("--canary", o.canary);
    check_group("--then", o.rest);
    if (o.canary == o.rest) throw usage_error("--canary and --then name the same group");
    o.watch = parse_duration("--watch", flag_value(r, "--watch", "30s"));
    o.timeout = parse_duration("--timeout", flag_value(r, "--timeout", "60s"));
    o.stale = parse_duration("--stale", flag_value(r, "--stale", "10s"));
    o.max_increase = parse_count("--max-increase", flag_value(r, "--max-increase", "10"));
    if (has_flag(r, "--max-blocked-increase"))
        o.max_blocked_increase = parse_count("--max-blocked-increase", flag_value(r, "--max-blocked-increase"));
    const std::string text = read_policy(r.words[2]);
    const std::string author = author_of(r);
    fleet_store db(conninfo);
    const uint64_t canary_version = push(db, text, o.canary, author);
    say("version " + std::to_string(canary_version) + " desired for canary group " + o.canary);
    try {
        const auto base = await_canary(db, o, canary_version);
        say("every canary gateway (" + std::to_string(base.size()) + ") runs version " +
            std::to_string(canary_version) + "; watching for " + std::to_string(o.watch.count() / 1000.0) + "s");
        watch_canary(db, o, canary_version, base);
    } catch (const halted& h) {
        say(std::string("HALTED: ") + h.what());
        say("group " + o.rest + " keeps its version; the canary keeps version " + std::to_string(canary_version) +
            " until a new version is pushed to it (a rollback is a push of the old text)");
        if (r.as_json)
            std::cout << json{{"halted", true}, {"reason", h.what()}, {"canary_version", canary_version}}.dump() << "\n";
        return 4;
    }
    const uint64_t rest_version = push(db, text, o.rest, author);
    say("canary healthy; version " + std::to_string(rest_version) + " (same text) desired for group " + o.rest);
    if (r.as_json)
        std::cout << json{{"halted", false}, {"canary_version", canary_version}, {"version", rest_version}}.dump()
                  << "\n";
    else
        std::cout << "rolled out: group " << o.canary << " version " << canary_version << ", group " << o.rest
                  << " version " << rest_version << "\n";
    return 0;
}

}  // namespace

std::chrono::milliseconds parse_duration(const std::string& flag, const std::string& text) {
    uint64_t n = 0;
    const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
    const std::string unit(ptr, text.data() + text.size());
    if (ec != std::errc() || ptr == text.data()) throw usage_error(flag + " '" + escape_unprintable(text) + "': not a duration (30s, 500ms, 2m)");
    if (unit == "ms") return std::chrono::milliseconds(n);
    if (unit.empty() || unit == "s") return std::chrono::seconds(n);
    if (unit == "m") return std::chrono::minutes(n);
    if (unit == "h") return std::chrono::hours(n);
    throw usage_error(flag + " '" + escape_unprintable(text) + "': unknown unit '" + escape_unprintable(unit) +
                      "' (ms, s, m, h)");
}

int run_fleet_command(const std::string& conninfo, const command_request& r) {
    if (r.words[0] == "events" || r.words[0] == "whois" || r.words[0] == "report" || r.words[0] == "top")
        return run_fleet_events(conninfo, r);
    if (r.words[0] != "fleet")
        throw usage_error("--fleet: the commands asked of the fleet's PostgreSQL are fleet, events, whois, report and top");
    try {
        if (r.words.size() >= 2 && r.words[1] == "status") return fleet_status(conninfo, r);
        if (r.words.size() >= 3 && r.words[1] == "policy" && r.words[2] == "push") return fleet_push(conninfo, r);
        if (r.words.size() >= 2 && r.words[1] == "rollout") return fleet_rollout(conninfo, r);
        if (r.words.size() >= 2 && r.words[1] == "schema") return fleet_schema(conninfo, r);
    } catch (const store_error& e) {
        std::cerr << "sekishoctl: " << e.what() << "\n";
        return 1;
    }
    throw usage_error("fleet commands: status, policy push, rollout, schema");
}

}  // namespace sekisho::ctl
