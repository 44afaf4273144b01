#include "cmd/sekishoctl/commands.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <initializer_list>
#include <iostream>
#include <sstream>
#include <thread>

#include "cmd/sekishoctl/human_output.h"
#include "control/api/untrusted_text.h"
#include "control/observe/event_types.h"

namespace sekisho::ctl {

namespace {

using nlohmann::json;

// One command's request with the checks and the answer every command shares.
class command {
public:
    command(const api_client& client, const command_request& request) : client_(client), rq_(request) {}

    const api_client& client() const { return client_; }
    const std::string& word(size_t i) const { return rq_.words[i]; }
    bool as_json() const { return rq_.as_json; }
    // The value of flag `name`, or nullptr when not given.
    const std::string* flag(const std::string& name) const {
        for (const auto& [k, v] : rq_.flags)
            if (k == name) return &v;
        return nullptr;
    }
    std::string flag_or(const std::string& name, const std::string& fallback) const {
        const std::string* v = flag(name);
        return v ? *v : fallback;
    }
    // Refuses any flag not in `allowed`.
    void check_flags(std::initializer_list<const char*> allowed) const {
        for (const auto& [k, v] : rq_.flags) {
            bool ok = false;
            for (const char* a : allowed) ok = ok || k == a;
            if (!ok) throw usage_error("unknown option '" + k + "' for this command");
        }
    }
    // Refuses a command of other than `n` words, naming its usage.
    void want(size_t n, const std::string& usage) const {
        if (rq_.words.size() != n) throw usage_error("usage: sekishoctl " + usage);
    }
    // Prints an error reply (as it came with --json); returns the exit code.
    int fail(const api_client::reply& r) const {
        if (rq_.as_json) std::cout << r.body << "\n";
        else print_error(r.status, r.body);
        return exit_code_for(r.status);
    }
    // A 2xx reply as it came (--json) or through `human`; else fail().
    template <typename Human>
    int show(const api_client::reply& r, Human human) const {
        if (r.status < 200 || r.status >= 300) return fail(r);
        if (rq_.as_json) {
            std::cout << r.body << "\n";
            return 0;
        }
        human(json::parse(r.body));
        return 0;
    }

private:
    const api_client& client_;
    const command_request& rq_;
};

int status(const command& c) {
    c.want(1, "status");
    c.check_flags({});
    return c.show(c.client().call("GET", "/v1/status"), print_status);
}

int policy(const command& c, const std::string& sub) {
    if (sub == "show") {
        c.want(2, "policy show");
        c.check_flags({});
        return c.show(c.client().call("GET", "/v1/policy"), print_policy);
    }
    if (sub == "apply" || sub == "diff") {
        c.want(3, sub == "apply" ? "policy apply FILE [--dry-run]" : "policy diff FILE");
        c.check_flags(sub == "apply" ? std::initializer_list<const char*>{"--dry-run"}
                                     : std::initializer_list<const char*>{});
        const bool dry = sub == "diff" || c.flag("--dry-run");
        // The file's name, for the daemon's messages ("FILE:4: ..."): printable and bounded as the API wants.
        std::string name = escape_unprintable(c.word(2));
        if (name.size() > api_max_source_name_bytes) {
            size_t from = name.size() - api_max_source_name_bytes + 3;
            while (from < name.size() && (static_cast<unsigned char>(name[from]) & 0xc0) == 0x80) ++from;   // whole characters
            name = "..." + name.substr(from);
        }
        return c.show(c.client().call("POST", std::string("/v1/policy?name=") + url_escape(name) + (dry ? "&dry_run=1" : ""),
                                      read_text_file(c.word(2)), "application/yaml", 0),
                      [&](const json& j) { print_policy_change(j, dry); });
    }
    if (sub == "rollback") {
        c.want(2, "policy rollback");
        c.check_flags({});
        return c.show(c.client().call("POST", "/v1/policy/rollback", "", "application/json", 0), print_rollback);
    }
    throw usage_error("policy show|apply|diff|rollback");
}

int bindings(const command& c, const std::string& sub) {
    if (sub == "list") {
        c.want(2, "bindings list [--account A] [--limit N]");
        c.check_flags({"--account", "--limit"});
        std::string q = "/v1/bindings?limit=" + url_escape(c.flag_or("--limit", "1000"));
        if (c.flag("--account")) q += "&account=" + url_escape(*c.flag("--account"));
        return c.show(c.client().call("GET", q), print_bindings);
    }
    if (sub == "add") {
        c.want(4, "bindings add PREFIX ACCOUNT [--force]");
        c.check_flags({"--force"});
        json body = {{"prefix", c.word(2)}, {"account", c.word(3)}};
        if (c.flag("--force")) body["force"] = true;
        return c.show(c.client().call("POST", "/v1/bindings", body.dump()), print_bound);
    }
    if (sub == "del") {
        c.want(3, "bindings del PREFIX");
        c.check_flags({});
        return c.show(c.client().call("DELETE", "/v1/bindings?prefix=" + url_escape(c.word(2))), print_unbound);
    }
    throw usage_error("bindings list|add|del");
}

// Exit 3 when nobody held the address at the time asked (the history; for
// now also the data plane's current binding).
int whois(const command& c) {
    c.want(2, "whois ADDRESS [--at TIME]");
    c.check_flags({"--at"});
    std::string q = "/v1/whois?address=" + url_escape(c.word(1));
    if (c.flag("--at")) q += "&at=" + url_escape(*c.flag("--at"));
    const auto r = c.client().call("GET", q);
    const int rc = c.show(r, print_whois);
    if (rc == 0 && r.status == 200) {
        const json j = json::parse(r.body);
        if (j.contains("held_by") ? j["held_by"].empty() : j["bindings"].empty() && j["bound_now"].is_null()) return 3;
    }
    return rc;
}

int account(const command& c, const std::string& sub) {
    if (sub == "suspend" || sub == "resume") {
        c.want(3, "account suspend ACCOUNT [--create] | account resume ACCOUNT");
        if (sub == "suspend") c.check_flags({"--create"});
        else c.check_flags({});
        json body = {{"account", c.word(2)}};
        if (c.flag("--create")) body["create"] = true;
        return c.show(c.client().call("POST", "/v1/accounts/" + sub, body.dump()), print_account);
    }
    if (sub == "list") {
        c.want(2, "account list [--suspended]");
        c.check_flags({"--suspended"});
        const bool only_suspended = c.flag("--suspended") != nullptr;
        return c.show(c.client().call("GET", std::string("/v1/accounts") + (only_suspended ? "?suspended=1" : "")),
                      [&](const json& j) { print_accounts(j, only_suspended); });
    }
    throw usage_error("account suspend|resume|list");
}

// --type and --subscriber as the API takes them, refused before anything is
// sent (usage errors): a filter that matches nothing would look like a quiet log.
void check_event_filters(const command& c) {
    if (const std::string* t = c.flag("--type"); t && !is_event_type(*t))
        throw usage_error("--type '" + escape_unprintable(*t) + "' is not an event type (" + event_type_list() + ")");
    if (const std::string* s = c.flag("--subscriber")) {
        // An address, as the event log writes it, or a prefix (ADDRESS/LENGTH, host bits zero).
        const std::string shown = "--subscriber '" + escape_unprintable(*s) + "'";
        std::string address = *s;
        const size_t slash = address.find('/');
        std::string length_text;
        if (slash != std::string::npos) {
            length_text = address.substr(slash + 1);
            address.resize(slash);
        }
        unsigned char bytes[sizeof(in6_addr)] = {};
        const bool v4 = inet_pton(AF_INET, address.c_str(), bytes) == 1;
        const bool v6 = !v4 && inet_pton(AF_INET6, address.c_str(), bytes) == 1;
        if (!v4 && !v6) throw usage_error(shown + " is not an IPv4 or IPv6 address or prefix");
        if (slash != std::string::npos) {
            const unsigned max = v4 ? 32 : 128;
            if (length_text.empty() || length_text.size() > 3 ||
                length_text.find_first_not_of("0123456789") != std::string::npos || std::stoul(length_text) > max)
                throw usage_error(shown + ": the prefix length must be 0 to " + std::to_string(max));
            const unsigned length = static_cast<unsigned>(std::stoul(length_text));
            for (unsigned bit = length; bit < max; ++bit)
                if (bytes[bit / 8] & (0x80 >> (bit % 8)))
                    throw usage_error(shown + " has bits set after the prefix length (host bits)");
        }
    }
}

// The last N events (exactly N: -n 0 none), then with -f every line written
// after them, followed by position in the log (INODE:OFFSET from the answer),
// not by time: lines are not in time order (a `repeated` line is written when
// its window closes), and a rotation is followed into the new file.
int events(const command& c, const std::string& sub) {
    const char* usage = "events tail [-f] [-n N] [--type T] [--subscriber ADDR] [--account A]";
    if (sub != "tail") throw usage_error(usage);
    c.want(2, usage);
    c.check_flags({"-f", "-n", "--type", "--subscriber", "--account"});
    check_event_filters(c);
    std::string filter;
    if (c.flag("--type")) filter += "&type=" + url_escape(*c.flag("--type"));
    if (c.flag("--subscriber")) filter += "&subscriber=" + url_escape(*c.flag("--subscriber"));
    if (c.flag("--account")) filter += "&account=" + url_escape(*c.flag("--account"));
    constexpr size_t page = 1000;   // lines per request while following
    std::string query = "/v1/events?n=" + url_escape(c.flag_or("-n", "20")) + filter;
    for (;;) {
        const auto r = c.client().call("GET", query);
        if (r.status != 200) return c.fail(r);
        const json j = json::parse(r.body);
        for (const auto& e : j["events"]) {
            if (c.as_json()) std::cout << e.dump() << "\n";
            else print_event(e);
        }
        std::cout.flush();
        if (!c.flag("-f")) return 0;
        if (j.value("gap", false))
            std::cerr << "sekishoctl: the event log was rotated or replaced more than once since the last read; "
                         "lines may have been missed\n";
        if (!j.contains("position") || !j["position"].is_string())
            throw std::runtime_error("the daemon's events answer has no position to follow from (an older sekishod?)");
        query = "/v1/events?n=" + std::to_string(page) + "&after=" + url_escape(j["position"].get<std::string>()) + filter;
        if (j["events"].size() < page) std::this_thread::sleep_for(std::chrono::seconds(1));
    }
}

// A subscriber named by address (IPv4 or IPv6, as inet_pton reads it) or else by account. A
// prefix ("198.51.100.0/24") goes as an address too, for the daemon to refuse by name.
bool is_address(const std::string& text) {
    const std::string address = text.substr(0, text.find('/'));
    unsigned char buf[16];
    return inet_pton(AF_INET, address.c_str(), buf) == 1 || inet_pton(AF_INET6, address.c_str(), buf) == 1;
}

int limits(const command& c, const std::string& sub) {
    if (sub == "show") {
        c.want(3, "limits show ADDRESS|ACCOUNT");
        c.check_flags({});
        const std::string& who = c.word(2);
        const std::string q = std::string("/v1/limits?") + (is_address(who) ? "address=" : "account=") + url_escape(who);
        return c.show(c.client().call("GET", q), print_limits);
    }
    if (sub == "reset") {
        c.want(3, "limits reset ADDRESS|ACCOUNT [--limit NAME]");
        c.check_flags({"--limit"});
        const std::string& who = c.word(2);
        json body = {{is_address(who) ? "address" : "account", who}};
        if (c.flag("--limit")) body["limit"] = *c.flag("--limit");
        return c.show(c.client().call("POST", "/v1/limits/reset", body.dump()), print_limits_reset);
    }
    throw usage_error("limits show|reset");
}

int top(const command& c) {
    c.want(1, "top [--window 1h] [--by messages|recipients|rejected_recipients|sessions|events|op25b_block|limit_exceeded|account_suspended|score]");
    c.check_flags({"--window", "--by"});
    const std::string q = "/v1/top?window=" + url_escape(c.flag_or("--window", "1h")) +
                          "&by=" + url_escape(c.flag_or("--by", "messages"));
    return c.show(c.client().call("GET", q), print_top);
}

int campaigns(const command& c) {
    c.want(1, "campaigns [--min-subscribers N] [-n N]");
    c.check_flags({"--min-subscribers", "-n"});
    const std::string q = "/v1/campaigns?n=" + url_escape(c.flag_or("-n", "20")) +
                          "&min_subscribers=" + url_escape(c.flag_or("--min-subscribers", "0"));
    return c.show(c.client().call("GET", q), print_campaigns);
}

// CSV for people (escaped, line breaks kept); with --json the JSON as it came.
int report(const command& c) {
    c.want(1, "report [--since TIME] [--until TIME] [--format csv|json]");
    c.check_flags({"--since", "--until", "--format"});
    std::string q = "/v1/report?format=" + url_escape(c.flag_or("--format", c.as_json() ? "json" : "csv"));
    if (c.flag("--since")) q += "&since=" + url_escape(*c.flag("--since"));
    if (c.flag("--until")) q += "&until=" + url_escape(*c.flag("--until"));
    const auto r = c.client().call("GET", q);
    if (r.status != 200) return c.fail(r);
    const std::string text = c.as_json() ? r.body : shown_lines(r.body);
    std::cout << text << (text.empty() || text.back() == '\n' ? "" : "\n");
    return 0;
}

}  // namespace

int run_command(const api_client& client, const command_request& request) {
    const command c(client, request);
    const std::string& cmd = request.words[0];
    const std::string sub = request.words.size() > 1 ? request.words[1] : "";
    if (cmd == "status") return status(c);
    if (cmd == "policy") return policy(c, sub);
    if (cmd == "bindings") return bindings(c, sub);
    if (cmd == "whois") return whois(c);
    if (cmd == "account") return account(c, sub);
    if (cmd == "events") return events(c, sub);
    if (cmd == "top") return top(c);
    if (cmd == "limits") return limits(c, sub);
    if (cmd == "report") return report(c);
    if (cmd == "campaigns") return campaigns(c);
    throw usage_error("unknown command '" + cmd + "'");
}

std::string read_text_file(const std::string& path) {
    std::ifstream in(path);
    if (!in) throw usage_error("cannot read " + path);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

}  // namespace sekisho::ctl
