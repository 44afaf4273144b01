#include "cmd/sekishoctl/human_output.h"

#include <iomanip>
#include <iostream>

#include "control/api/untrusted_text.h"
#include "control/utc_time.h"

namespace sekisho::ctl {

using nlohmann::json;

std::string shown(const json& j) { return escape_unprintable(j.is_string() ? j.get_ref<const std::string&>() : j.dump()); }

std::string shown_lines(const std::string& text) { return escape_unprintable(text, true); }

void print_error(long status, const std::string& body) {
    try {
        const json j = json::parse(body);
        std::cerr << "sekishoctl: " << shown(j.contains("error") ? j["error"] : json(body)) << "\n";
        if (j.contains("errors"))
            for (const auto& e : j["errors"]) std::cerr << "  " << shown(e) << "\n";
    } catch (const std::exception&) {
        std::cerr << "sekishoctl: HTTP " << status << ": " << shown_lines(body) << "\n";
    }
}

namespace {
// "net_af_packet_access (interface acc0, access)": the port and, where it differs, the Linux
// interface behind it.
std::string side_text(const json& j, const char* side) {
    const std::string port = shown(j["ports"][side]);
    const json interface = j.contains("interfaces") ? j["interfaces"][side] : json(nullptr);
    if (interface.is_null() || shown(interface) == port) return port + " (" + side + ")";
    return port + " (interface " + shown(interface) + ", " + side + ")";
}
}  // namespace

void print_status(const json& j) {
    const std::string backend = shown(j.value("backend", json("dpdk")));
    if (j.contains("version"))
        std::cout << "sekishod " << shown(j["version"]) << " (build " << shown(j.value("build", json("?"))) << ")\n";
    std::cout << "generation " << shown(j["generation"]) << ", up " << static_cast<long>(j["uptime_s"].get<double>())
              << " s, backend " << backend << ", " << shown(j["workers"])
              << (backend == "xdp" ? " CPU(s), interfaces " : " worker(s), ports ") << side_text(j, "access")
              << " <-> " << side_text(j, "core") << "\n"
              << "policy " << shown(j["policy"]["file"]) << ": op25b " << shown(j["policy"]["op25b_mode"]) << "/"
              << shown(j["policy"]["op25b_action"]) << ", " << shown(j["policy"]["limits"]) << " limits\n"
              << "frames in " << shown(j["frames"]["in"]) << ", forwarded " << shown(j["frames"]["forwarded"])
              << ", blocked " << shown(j["frames"]["blocked"]) << ", limited " << shown(j["frames"]["limited"])
              << ", malformed dropped " << shown(j["frames"]["malformed_dropped"]) << ", TX-full drops "
              << shown(j["frames"]["tx_full_drops"]) << "\n"
              << "smtp flows " << shown(j["smtp"]["flows"]) << ", messages " << shown(j["smtp"]["messages"])
              << ", tempfails " << shown(j["smtp"]["tempfails_sent"]) << "\n";
    const json& subs = j["subscribers"];
    if (subs.is_object())
        std::cout << "bindings " << shown(subs["bindings"]) << ", accounts " << shown(subs["accounts"]) << " ("
                  << shown(subs["suspended"]) << " suspended); ";
    else
        std::cout << "no bindings or accounts (" << backend << "); ";
    std::cout << "events written " << j["events"]["written"] << ", lost "
              << j["events"]["ring_full"].get<uint64_t>() + j["events"]["write_errors"].get<uint64_t>() << "\n";
}

void print_policy(const json& j) {
    std::cout << "# generation " << shown(j["generation"]) << "\n" << shown_lines(j["text"].get<std::string>());
}

void print_policy_change(const json& j, bool dry_run) {
    if (dry_run)
        std::cout << "valid; would change:\n";
    else
        std::cout << "applied as generation " << shown(j["generation"]) << " in " << std::fixed
                  << std::setprecision(1) << j["compile_ms"].get<double>() << " ms; changed:\n";
    if (j["diff"].empty()) std::cout << "  nothing\n";
    for (auto it = j["diff"].begin(); it != j["diff"].end(); ++it)
        std::cout << "  " << escape_unprintable(it.key()) << ": " << escape_unprintable(it.value().dump()) << "\n";
    if (j.contains("not_enforced")) {
        std::cout << "accepted but not enforced by this backend:\n";
        for (const auto& n : j["not_enforced"]) std::cout << "  " << shown(n) << "\n";
    }
}

void print_rollback(const json& j) { std::cout << "rolled back: generation " << shown(j["generation"]) << "\n"; }

void print_bindings(const json& j) {
    for (const auto& b : j["bindings"])
        std::cout << std::left << std::setw(44) << shown(b["prefix"]) << shown(b["account"]) << "\n";
    std::cout << j["bindings"].size() << " shown, " << shown(j["total"]) << " in the table\n";
}

void print_bound(const json& j) {
    std::cout << "bound " << shown(j["prefix"]) << " to " << shown(j["account"]) << " (" << shown(j["bound"])
              << " entries)\n";
}

void print_unbound(const json& j) {
    std::cout << "unbound " << shown(j["prefix"]) << " (" << shown(j["unbound"]) << " entries)\n";
}

void print_whois(const json& j) {
    if (j["bindings"].empty())
        std::cout << "no binding in the history for " << shown(j["query"]["address"]) << " at "
                  << utc_time_text(j["query"]["at"].get<int64_t>()) << "\n";
    for (const auto& b : j["bindings"])
        std::cout << shown(b["address"]) << " held by " << shown(b["account"]) << " (session " << shown(b["session_id"])
                  << ", NAS " << shown(b["nas"]) << ") from " << utc_time_text(b["start"].get<int64_t>()) << " to "
                  << (b["stop"].is_null() ? std::string("now") : utc_time_text(b["stop"].get<int64_t>())) << "\n";
    if (!j["bound_now"].is_null()) std::cout << "bound now to " << shown(j["bound_now"]) << "\n";
    const json& m = j["smtp_within_1h"];
    std::cout << "SMTP within an hour: " << shown(m["sessions"]) << " sessions (" << shown(m["tls_sessions"])
              << " TLS), " << shown(m["messages"]) << " messages, " << shown(m["recipients"]) << " recipients, "
              << shown(m["rejected_recipients"]) << " rejected\n";
    std::cout << "events within an hour: " << escape_unprintable(j["events_within_1h"].dump()) << "\n";
    for (const auto& e : j["events"]) print_event(e);
}

void print_account(const json& j) {
    std::cout << shown(j["account"]) << (j["suspended"].get<bool>() ? " suspended" : " resumed") << "\n";
}

void print_accounts(const json& j, bool only_suspended) {
    if (j["accounts"].empty()) std::cout << (only_suspended ? "none suspended\n" : "none\n");
    for (const auto& a : j["accounts"])
        std::cout << std::left << std::setw(40) << shown(a["account"])
                  << (a["suspended"].get<bool>() ? "suspended" : "active") << "\n";
}

void print_event(const json& e) {
    auto field = [&](const char* key, const json& fallback) { return shown(e.contains(key) ? e[key] : fallback); };
    const uint64_t ns = e.contains("time_ns") && e["time_ns"].is_number_unsigned() ? e["time_ns"].get<uint64_t>() : 0;
    const std::string time = utc_time_text(static_cast<int64_t>(ns / 1'000'000'000ull));
    if (e.value("type", json("")) == "api_change") {   // the audit trail: who changed what, with what outcome
        std::cout << time << "  api_change        " << field("endpoint", "?") << " by " << field("caller", "?") << ": "
                  << field("status", 0) << ", generation " << field("generation", 0);
        if (e.contains("account")) std::cout << " account=" << escape_unprintable(e["account"].dump());
        if (e.contains("prefix")) std::cout << " prefix=" << escape_unprintable(e["prefix"].dump());
        if (e.contains("error")) std::cout << " error=" << escape_unprintable(e["error"].dump());
        std::cout << "\n";
        return;
    }
    std::cout << time << "  " << std::left << std::setw(17) << field("type", "?") << " " << std::setw(28)
              << (e.contains("subscriber") ? field("subscriber", "") : field("src", "")) << " ";
    if (e.contains("limit")) std::cout << "limit=" << escape_unprintable(e["limit"].dump()) << " ";
    if (e.contains("reason")) std::cout << "reason=" << field("reason", "") << " ";
    if (e.contains("account") && !e["account"].is_null())
        std::cout << "account=" << escape_unprintable(e["account"].dump()) << " ";
    if (e.contains("count")) std::cout << "count=" << field("count", 0) << " ";
    std::cout << "action=" << field("action", "") << "\n";
}

namespace {
// "198.51.100.7 (account alice)", "account alice", "198.51.100.9 (no account)".
std::string limits_subject(const json& j) {
    if (!j.contains("address")) return "account " + shown(j["account"]);
    return shown(j["address"]) + (j["account"].is_null() ? " (no account)" : " (account " + shown(j["account"]) + ")");
}
void print_limit_table(const json& limits) {
    std::cout << std::left << std::setw(24) << "LIMIT" << std::setw(9) << "SCOPE" << std::setw(24) << "MEASURE"
              << std::setw(12) << "COUNT/MAX" << std::setw(34) << "COOLDOWN" << "STATE\n";
    for (const auto& l : limits) {
        const std::string cooldown =
            l["cooldown_until"].is_null()
                ? "-"
                : std::to_string(static_cast<long>(l["cooldown_s"].get<double>() + 0.5)) + " s, until " +
                      shown(l["cooldown_until"]);
        const std::string state = l["tripped"].get<bool>() ? "TRIPPED"
                                  : l.value("applies", true) ? "ok"
                                                             : "ok (does not apply)";
        std::cout << std::left << std::setw(24) << shown(l["limit"]) << std::setw(9) << shown(l["scope"])
                  << std::setw(24) << shown(l["measure"]) + (l.contains("rate") ? " (burst)" : "") << std::setw(12)
                  << shown(l["count"]) + "/" + shown(l["max"]) << std::setw(34) << cooldown << state << "\n";
    }
}
}  // namespace

void print_limits(const json& j) {
    std::cout << "limits of " << limits_subject(j) << " at " << shown(j["time"]) << "\n";
    if (j["limits"].empty()) {
        std::cout << "  none" << (j.contains("address") ? "" : " with account scope (per-address limits: ask by address)")
                  << "\n";
        return;
    }
    print_limit_table(j["limits"]);
}

void print_limits_reset(const json& j) {
    if (j["reset"].empty()) {
        std::cout << "nothing to reset for " << limits_subject(j) << "\n";
        return;
    }
    std::cout << "reset for " << limits_subject(j) << ":";
    for (const auto& name : j["reset"]) std::cout << " " << shown(name);
    std::cout << " (audited); before the reset:\n";
    json before = json::array();
    for (const auto& l : j["limits"])
        for (const auto& name : j["reset"])
            if (l["limit"] == name) before.push_back(l);
    print_limit_table(before);
}

void print_top(const json& j) {
    std::cout << std::left << std::setw(40) << "SUBSCRIBER" << std::setw(32) << "ACCOUNT" << "COUNT\n";
    for (const auto& t : j["top"])
        std::cout << std::left << std::setw(40) << shown(t["subscriber"]) << std::setw(32) << shown(t["account"])
                  << shown(t["count"]) << "\n";
}

}  // namespace sekisho::ctl
