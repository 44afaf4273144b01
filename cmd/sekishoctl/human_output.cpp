#include "cmd/sekishoctl/human_output.h"

#include <algorithm>
#include <iomanip>
#include <iostream>
#include <vector>

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
        if (j.contains("restart_required") && j["restart_required"].is_array()) {
            std::cerr << "sekishoctl: nothing was applied; these keys change only with a restart of sekishod:\n";
            for (const auto& k : j["restart_required"])
                std::cerr << "  " << shown(k["key"]) << ": running " << shown(k["running"]) << ", this policy "
                          << shown(k["wanted"]) << "\n";
        }
    } catch (const std::exception&) {
        std::cerr << "sekishoctl: HTTP " << status << ": " << shown_lines(body) << "\n";
    }
}

// "generation 6 from API caller uid 0 at 2026-12-07T09:30:00Z": the origin of a
// generation as status and policy show give it.
std::string origin_text(const json& origin) {
    if (!origin.is_object()) return "generation ?";
    return "generation " + shown(origin["generation"]) + " from " + shown(origin["description"]) + " at " +
           shown(origin["time_utc"]);
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
    const json& pol = j["policy"];
    if (j.contains("version"))
        std::cout << "sekishod " << shown(j["version"]) << " (build " << shown(j.value("build", json("?"))) << ")\n";
    std::cout << "generation " << shown(j["generation"]) << ", up " << static_cast<long>(j["uptime_s"].get<double>())
              << " s, backend " << backend << ", " << shown(j["workers"])
              << (backend == "xdp" ? " CPU(s), interfaces " : " worker(s), ports ") << side_text(j, "access")
              << " <-> " << side_text(j, "core") << "\n"
              << "policy in force: " << origin_text(pol["in_force"]) << "; op25b " << shown(pol["op25b_mode"]) << "/"
              << shown(pol["op25b_action"]) << ", " << shown(pol["limits"]) << " limits; rollback depth "
              << shown(pol["rollback_depth"]) << "; policy file " << shown(pol["file"]) << "\n"
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
    // Fleet mode: the gateway's name and group, and each shared concern's link.
    const json fleet = j.value("fleet", json(nullptr));
    if (fleet.is_object()) {
        std::cout << "fleet: gateway " << shown(fleet["gateway"]) << ", group " << shown(fleet["group"]);
        for (const auto& [concern, state] : fleet.items()) {
            if (!state.is_object() || !state.contains("link_up")) continue;
            std::cout << "; " << concern << " link " << (state["link_up"].get<bool>() ? "up" : "DOWN");
        }
        std::cout << "\n";
    }
}

void print_policy(const json& j) {
    std::cout << "# " << origin_text(j["in_force"]) << "; rollback depth " << shown(j["rollback_depth"]) << "\n"
              << shown_lines(j["text"].get<std::string>());
}

namespace {

struct diff_row {
    std::string key, before, after;
};

std::string listed(const json& v) {
    if (!v.is_array()) return shown(v);
    std::string out;
    for (const auto& e : v) out += (out.empty() ? "" : ", ") + shown(e);
    return out.empty() ? "none" : out;
}

// One row per changed setting: a value's before and after, a limit's
// settings, a prefix removed (before) or added (after).
std::vector<diff_row> diff_rows(const json& diff) {
    std::vector<diff_row> rows;
    for (auto it = diff.begin(); it != diff.end(); ++it) {
        const std::string key = escape_unprintable(it.key());
        const json& d = it.value();
        if (key == "limits") {
            std::vector<std::string> names;
            for (const char* part : {"removed", "changed", "added"})
                for (const auto& n : d.value(part, json::array())) names.push_back(n.get<std::string>());
            std::sort(names.begin(), names.end());
            const json none = json::object();
            const json& before = d.contains("before") ? d["before"] : none;
            const json& after = d.contains("after") ? d["after"] : none;
            for (const auto& n : names)
                rows.push_back({"limits." + escape_unprintable(n), before.contains(n) ? shown(before[n]) : "-",
                                after.contains(n) ? shown(after[n]) : "-"});
        } else if (d.is_object() && d.contains("added") && d.contains("removed")) {   // prefix lists
            for (const auto& p : d["removed"]) rows.push_back({key, shown(p), "-"});
            for (const auto& p : d["added"]) rows.push_back({key, "-", shown(p)});
            if (d.contains("added_count"))
                rows.push_back({key, "(" + shown(d["removed_count"]) + " removed in all)",
                                "(" + shown(d["added_count"]) + " added in all)"});
        } else if (d.is_object() && d.contains("before") && d.contains("after")) {
            rows.push_back({key, listed(d["before"]), listed(d["after"])});
        } else {
            rows.push_back({key, "", shown(d)});
        }
    }
    return rows;
}

}  // namespace

void print_diff(const json& diff) {
    const std::vector<diff_row> rows = diff_rows(diff);
    if (rows.empty()) {
        std::cout << "  nothing\n";
        return;
    }
    size_t key_width = 3, before_width = 6;
    for (const auto& r : rows) {
        key_width = std::max(key_width, r.key.size());
        before_width = std::max(before_width, r.before.size());
    }
    std::cout << "  " << std::left << std::setw(static_cast<int>(key_width)) << "KEY" << "  "
              << std::setw(static_cast<int>(before_width)) << "BEFORE" << "  AFTER\n";
    for (const auto& r : rows)
        std::cout << "  " << std::left << std::setw(static_cast<int>(key_width)) << r.key << "  "
                  << std::setw(static_cast<int>(before_width)) << r.before << "  " << r.after << "\n";
}

void print_policy_change(const json& j, bool dry_run) {
    if (dry_run)
        std::cout << "valid; would change:\n";
    else
        std::cout << "applied as generation " << shown(j["generation"]) << " in " << std::fixed
                  << std::setprecision(1) << j["compile_ms"].get<double>() << " ms; changed:\n";
    print_diff(j["diff"]);
    if (j.contains("not_enforced")) {
        std::cout << "accepted but not enforced by this backend:\n";
        for (const auto& n : j["not_enforced"]) std::cout << "  " << shown(n) << "\n";
    }
}

void print_rollback(const json& j) {
    std::cout << "rolled back to the policy of generation " << shown(j.value("rolled_back_to", json("?")))
              << ", now in force as generation " << shown(j["generation"]) << "; rollback depth left "
              << shown(j.value("rollback_depth", json("?"))) << "; changed:\n";
    print_diff(j["diff"]);
    if (j.contains("not_enforced")) {
        std::cout << "accepted but not enforced by this backend:\n";
        for (const auto& n : j["not_enforced"]) std::cout << "  " << shown(n) << "\n";
    }
}

void print_bindings(const json& j) {
    for (const auto& b : j["bindings"])
        std::cout << std::left << std::setw(44) << shown(b["prefix"]) << shown(b["account"]) << "\n";
    std::cout << j["bindings"].size() << " shown, " << shown(j["total"]) << " in the table\n";
}

void print_bound(const json& j) {
    std::cout << "bound " << shown(j["prefix"]) << " to " << shown(j["account"]) << " (" << shown(j["bound"])
              << " entries)" << (j.value("forced", false) ? ", outside the subscriber ranges (--force)" : "") << "\n";
    if (!j.contains("overrode")) return;
    for (const auto& o : j["overrode"]) {
        const std::string source = o.value("source", "");
        std::cout << "  overrode " << shown(o["account"]);
        if (source == "radius") {
            std::cout << "'s RADIUS session";
            if (o.contains("session_id"))
                std::cout << " " << shown(o["session_id"]) << " (NAS " << shown(o["nas"]) << ", "
                          << shown(o["prefix"]) << ", since " << utc_time_text(o["since"].get<int64_t>()) << ")";
            std::cout << ": RADIUS no longer moves this binding until it is deleted\n";
        } else if (source == "static") {
            std::cout << "'s static binding " << shown(o["prefix"]) << " of the policy\n";
        } else {
            std::cout << "'s API binding " << shown(o["prefix"]) << "\n";
        }
    }
}

void print_unbound(const json& j) {
    std::cout << "unbound " << shown(j["prefix"]) << " (" << shown(j["unbound"]) << " entries)"
              << (j.value("api_binding", true) ? "" : "; it was not an API binding, nothing stored changed") << "\n";
    if (!j.contains("restored")) return;
    for (const auto& r : j["restored"])
        std::cout << "  " << shown(r["prefix"]) << " back to " << shown(r["account"]) << " (" << shown(r["source"])
                  << ")\n";
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
    std::string holders;
    if (j.contains("held_by"))
        for (const auto& h : j["held_by"]) holders += (holders.empty() ? "" : ", ") + shown(h);
    if (j.contains("held_by"))
        std::cout << "held at " << utc_time_text(j["query"]["at"].get<int64_t>()) << " by "
                  << (holders.empty() ? std::string("nobody") : holders) << "; the counts below are "
                  << (holders.empty() ? std::string("nobody's") : holders + "'s")
                  << " (each event is its holder's at its own time)\n";
    const json& m = j["smtp_within_1h"];
    std::cout << "SMTP within an hour: " << shown(m["sessions"]) << " sessions (" << shown(m["tls_sessions"])
              << " TLS), " << shown(m["messages"]) << " messages, " << shown(m["recipients"]) << " recipients, "
              << shown(m["rejected_recipients"]) << " rejected\n";
    std::cout << "events within an hour: " << escape_unprintable(j["events_within_1h"].dump()) << "\n";
    for (const auto& e : j["events"]) print_event(e);
}

void print_account(const json& j) {
    std::cout << shown(j["account"]) << (j["suspended"].get<bool>() ? " suspended" : " resumed")
              << (j.value("created", false) ? " (a new account: --create)" : "") << "\n";
}

void print_accounts(const json& j, bool only_suspended) {
    if (j["accounts"].empty()) std::cout << (only_suspended ? "none suspended\n" : "none\n");
    for (const auto& a : j["accounts"]) {
        std::cout << std::left << std::setw(40) << shown(a["account"])
                  << (a["suspended"].get<bool>() ? "suspended" : "active");
        if (a.contains("since")) {
            std::cout << " since " << shown(a.value("since_utc", json("?"))) << " (" << shown(a["since"]) << ") by "
                      << shown(a.value("caller", json("?")));
            if (!a.value("reason", std::string()).empty()) std::cout << ": " << shown(a["reason"]);
        }
        std::cout << "\n";
    }
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
    if (e.contains("held_by")) std::cout << "held_by=" << (e["held_by"].is_null() ? "nobody" : shown(e["held_by"])) << " ";
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
              << std::setw(12) << "COUNT/MAX" << std::setw(8) << "FLEET" << std::setw(34) << "COOLDOWN" << "STATE\n";
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
                  << shown(l["count"]) + "/" + shown(l["max"]) << std::setw(8)
                  << (l.contains("fleet_share") ? "+" + shown(l["fleet_share"]) : std::string("-")) << std::setw(34)
                  << cooldown << state << "\n";
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
        std::cout << std::left << std::setw(40) << shown(t["subscriber"]) << std::setw(32) << (t["account"].is_null() ? std::string("-") : shown(t["account"]))
                  << shown(t["count"]) << "\n";
}

void print_campaigns(const json& j) {
    if (!j.value("counting", false)) {
        std::cout << "the policy counts no campaigns (inspection.campaign.subscribers / .recipients, docs/inspection.md)\n";
        return;
    }
    const bool fleet = j.value("fleet", false);
    const json& max = j["thresholds"]["subscribers"];
    std::cout << "window " << shown(j["window_s"]) << " s; subscribers threshold "
              << (max.is_null() ? std::string("off") : shown(max["max"])) << "; " << shown(j["campaigns"].size()) << " of "
              << shown(j["matching"]) << " fingerprints\n";
    std::cout << std::left << std::setw(18) << "FINGERPRINT" << std::setw(13) << "SUBSCRIBERS" << std::setw(12)
              << "RECIPIENTS";
    if (fleet) std::cout << std::setw(19) << "FLEET_SUBSCRIBERS" << std::setw(18) << "FLEET_RECIPIENTS";
    std::cout << "OVER\n";
    auto or_dash = [](const json& v) { return v.is_null() ? std::string("-") : shown(v); };
    for (const auto& c : j["campaigns"]) {
        std::cout << std::left << std::setw(18) << shown(c["fingerprint"]) << std::setw(13) << shown(c["subscribers"])
                  << std::setw(12) << shown(c["recipients"]);
        if (fleet) std::cout << std::setw(19) << or_dash(c["fleet_subscribers"]) << std::setw(18) << or_dash(c["fleet_recipients"]);
        std::cout << (c.value("over_subscribers", false) ? "yes" : "no") << "\n";
    }
}

void print_fleet_top(const json& j) {
    std::cout << std::left << std::setw(32) << "ACCOUNT" << std::setw(12) << "COUNT" << std::setw(40) << "SUBSCRIBERS"
              << "GATEWAYS\n";
    auto joined = [](const json& list) {
        std::string s;
        for (const auto& x : list) s += (s.empty() ? "" : ",") + shown(x);
        return s;
    };
    for (const auto& t : j["top"])
        std::cout << std::left << std::setw(32) << (t["account"].is_null() ? std::string("-") : shown(t["account"]))
                  << std::setw(12) << shown(t["count"]) << std::setw(40) << joined(t["subscribers"])
                  << joined(t["gateways"]) << "\n";
}

}  // namespace sekisho::ctl
