// sekishoctl: the operator CLI, a client of sekishod's control API (docs/api.md).
// Human tables by default, --json everywhere. Exit codes: 0 ok, 1 the daemon
// could not be reached or failed, 2 usage, 3 not found, 4 rejected (bad input,
// invalid policy, conflict), 5 unauthorised.
//
// Over TCP only https:// (the bearer token never travels in clear). Human
// output shows every text the daemon sent through shown() (untrusted_text.h):
// control characters in an account name or an event arrive escaped (\x1b),
// never as bytes an operator's terminal would obey. --json prints the reply
// as it came (JSON escapes control characters).
#include <curl/curl.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "control/api/untrusted_text.h"

namespace {

using nlohmann::json;
using sekisho::escape_unprintable;

// A value from the daemon as the human output shows it: a string's text, anything else as JSON,
// unprintable bytes escaped either way.
std::string shown(const json& j) { return escape_unprintable(j.is_string() ? j.get_ref<const std::string&>() : j.dump()); }
// Multi-line text from the daemon (a policy, a CSV report): line breaks and tabs kept.
std::string shown_lines(const std::string& text) { return escape_unprintable(text, true); }

constexpr const char* usage_text = R"(usage: sekishoctl [--socket PATH | --url https://HOST:PORT --token-file F [--cacert F]] [--json] COMMAND

commands:
  status                                   generation, uptime, workers, ports, drops
  policy show                              the running policy (YAML)
  policy apply FILE [--dry-run]            validate, compile and swap in FILE atomically
  policy diff FILE                         what applying FILE would change (nothing is applied)
  policy rollback                          return to the previous policy
  bindings list [--account A] [--limit N]  address/prefix -> account bindings
  bindings add PREFIX ACCOUNT              bind statically
  bindings del PREFIX                      unbind
  whois ADDRESS [--at TIME]                who held ADDRESS at TIME, its SMTP counters and events around then
  account suspend|resume ACCOUNT           利用停止: refuse every SMTP connection of ACCOUNT
  account list [--suspended]
  events tail [-f] [-n N] [--type T] [--subscriber ADDR] [--account A]
  top [--window 1h] [--by messages|recipients|rejected_recipients|sessions|events|op25b_block|limit_exceeded|account_suspended|score]
  report [--since TIME] [--until TIME] [--format csv|json]
TIME: Unix seconds or 2026-11-23T12:00:00Z. Socket default: $SEKISHO_SOCKET or /run/sekisho/api.sock
exit codes: 0 ok, 1 daemon unreachable or failed, 2 usage, 3 not found, 4 rejected (also: not
            served by this backend), 5 unauthorised
)";

struct usage_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct client {
    std::string socket, url, token, cacert;

    struct reply {
        long status = 0;
        std::string body;
    };

    // timeout_s 0: wait as long as the daemon takes (a policy change: it answers when its
    // compile, bounded by inspection.compile_timeout, and the changes queued before it are done).
    reply call(const std::string& method, const std::string& path, const std::string& body = "",
               const std::string& content_type = "application/json", long timeout_s = 60) const {
        CURL* c = curl_easy_init();
        if (c == nullptr) throw std::runtime_error("cannot initialise libcurl");
        reply r;
        std::string target = (url.empty() ? "http://localhost" : url) + path;
        curl_easy_setopt(c, CURLOPT_URL, target.c_str());
        if (url.empty()) curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, socket.c_str());
        else curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https");   // checked in main() too: never in clear
        if (!cacert.empty()) curl_easy_setopt(c, CURLOPT_CAINFO, cacert.c_str());
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method.c_str());
        curl_easy_setopt(c, CURLOPT_TIMEOUT, timeout_s);
        curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
        curl_slist* headers = nullptr;
        const std::string auth = "Authorization: Bearer " + token;
        if (!token.empty()) headers = curl_slist_append(headers, auth.c_str());
        const std::string ct = "Content-Type: " + content_type;
        if (!body.empty() || method == "POST") {
            headers = curl_slist_append(headers, ct.c_str());
            curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.c_str());
            curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
        }
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, +[](char* p, size_t s, size_t n, void* out) {
            static_cast<std::string*>(out)->append(p, s * n);
            return s * n;
        });
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &r.body);
        const CURLcode rc = curl_easy_perform(c);
        if (rc == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
        curl_slist_free_all(headers);
        curl_easy_cleanup(c);
        if (rc != CURLE_OK)
            throw std::runtime_error(std::string("cannot reach sekishod at ") + (url.empty() ? socket : url) + ": " +
                                     curl_easy_strerror(rc));
        return r;
    }
};

std::string escape(const std::string& s) {
    std::string out;
    char buf[4];
    for (unsigned char ch : s) {
        if (std::isalnum(ch) || ch == '-' || ch == '.' || ch == '_' || ch == '~') {
            out += static_cast<char>(ch);
        } else {
            std::snprintf(buf, sizeof buf, "%%%02X", ch);
            out += buf;
        }
    }
    return out;
}

int exit_code_for(long status) {
    if (status >= 200 && status < 300) return 0;
    if (status == 401) return 5;
    if (status == 404) return 3;
    if (status == 400 || status == 409 || status == 413 || status == 422 || status == 501) return 4;
    return 1;
}

// Prints an error reply; returns the exit code.
int fail(const client::reply& r, bool as_json) {
    if (as_json) {
        std::cout << r.body << "\n";
    } else {
        try {
            const json j = json::parse(r.body);
            std::cerr << "sekishoctl: " << shown(j.contains("error") ? j["error"] : json(r.body)) << "\n";
            if (j.contains("errors"))
                for (const auto& e : j["errors"]) std::cerr << "  " << shown(e) << "\n";
        } catch (const std::exception&) {
            std::cerr << "sekishoctl: HTTP " << r.status << ": " << shown_lines(r.body) << "\n";
        }
    }
    return exit_code_for(r.status);
}

std::string read_file(const std::string& path) {
    std::ifstream in(path);
    if (!in) throw usage_error("cannot read " + path);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

std::string iso(int64_t t) {
    const std::time_t tt = static_cast<std::time_t>(t);
    std::tm tm{};
    gmtime_r(&tt, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

// One event line; every field through shown() (an event log line is the daemon's to write, but
// its fields came from the network and the API).
void print_event(const json& e) {
    auto field = [&](const char* key, const json& fallback) { return shown(e.contains(key) ? e[key] : fallback); };
    const uint64_t ns = e.contains("time_ns") && e["time_ns"].is_number_unsigned() ? e["time_ns"].get<uint64_t>() : 0;
    const std::string time = iso(static_cast<int64_t>(ns / 1'000'000'000ull));
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

}  // namespace

int main(int argc, char** argv) {
    std::vector<std::string> args(argv + 1, argv + argc);
    client cl;
    const char* env_socket = std::getenv("SEKISHO_SOCKET");
    cl.socket = env_socket ? env_socket : "/run/sekisho/api.sock";
    bool as_json = false;
    std::vector<std::string> words;
    std::string token_file;
    // Options anywhere; the rest are the command's words and flags.
    std::vector<std::pair<std::string, std::string>> flags;
    try {
        for (size_t i = 0; i < args.size(); ++i) {
            const std::string& a = args[i];
            auto value = [&]() -> std::string {
                if (i + 1 >= args.size()) throw usage_error(a + " needs a value");
                return args[++i];
            };
            if (a == "-h" || a == "--help") {
                std::cout << usage_text;
                return 0;
            } else if (a == "--json") {
                as_json = true;
            } else if (a == "--socket") {
                cl.socket = value();
            } else if (a == "--url") {
                cl.url = value();
            } else if (a == "--token-file") {
                token_file = value();
            } else if (a == "--cacert") {
                cl.cacert = value();
            } else if (a == "--dry-run" || a == "-f" || a == "--suspended") {
                flags.emplace_back(a, "");
            } else if (a.rfind("--", 0) == 0 || a == "-n") {
                flags.emplace_back(a, value());
            } else {
                words.push_back(a);
            }
        }
        if (!cl.url.empty()) {
            // curl would take http://, or no scheme at all as http: the token would go in clear.
            std::string scheme = cl.url.substr(0, 8);
            for (char& ch : scheme) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
            if (scheme != "https://")
                throw usage_error("--url '" + escape_unprintable(cl.url) +
                                  "': only https:// (the bearer token is never sent in clear)");
        }
        if (!token_file.empty()) {
            cl.token = read_file(token_file);
            while (!cl.token.empty() && std::isspace(static_cast<unsigned char>(cl.token.back()))) cl.token.pop_back();
        }
        auto flag = [&](const std::string& name) -> const std::string* {
            for (const auto& [k, v] : flags)
                if (k == name) return &v;
            return nullptr;
        };
        auto check_flags = [&](std::initializer_list<const char*> allowed) {
            for (const auto& [k, v] : flags) {
                bool ok = false;
                for (const char* a : allowed) ok = ok || k == a;
                if (!ok) throw usage_error("unknown option '" + k + "' for this command");
            }
        };
        auto want = [&](size_t n, const char* what) {
            if (words.size() != n) throw usage_error(std::string("usage: sekishoctl ") + what);
        };
        if (words.empty()) throw usage_error("a command is required");
        curl_global_init(CURL_GLOBAL_DEFAULT);
        const std::string cmd = words[0];
        const std::string sub = words.size() > 1 ? words[1] : "";

        auto show = [&](const client::reply& r, auto human) -> int {
            if (r.status < 200 || r.status >= 300) return fail(r, as_json);
            if (as_json) {
                std::cout << r.body << "\n";
                return 0;
            }
            human(json::parse(r.body));
            return 0;
        };

        if (cmd == "status") {
            want(1, "status");
            check_flags({});
            return show(cl.call("GET", "/v1/status"), [](const json& j) {
                const std::string backend = shown(j.value("backend", json("dpdk")));
                std::cout << "generation " << shown(j["generation"]) << ", up "
                          << static_cast<long>(j["uptime_s"].get<double>()) << " s, backend " << backend << ", "
                          << shown(j["workers"]) << (backend == "xdp" ? " CPU(s), interfaces " : " worker(s), ports ")
                          << shown(j["ports"]["access"]) << " (access) <-> " << shown(j["ports"]["core"]) << " (core)\n"
                          << "policy " << shown(j["policy"]["file"]) << ": op25b " << shown(j["policy"]["op25b_mode"])
                          << "/" << shown(j["policy"]["op25b_action"]) << ", " << shown(j["policy"]["limits"])
                          << " limits\n"
                          << "frames in " << shown(j["frames"]["in"]) << ", forwarded " << shown(j["frames"]["forwarded"])
                          << ", blocked " << shown(j["frames"]["blocked"]) << ", limited " << shown(j["frames"]["limited"])
                          << ", malformed dropped " << shown(j["frames"]["malformed_dropped"]) << ", TX-full drops "
                          << shown(j["frames"]["tx_full_drops"]) << "\n"
                          << "smtp flows " << shown(j["smtp"]["flows"]) << ", messages " << shown(j["smtp"]["messages"])
                          << ", tempfails " << shown(j["smtp"]["tempfails_sent"]) << "\n";
                const json& subs = j["subscribers"];
                if (subs.is_object())
                    std::cout << "bindings " << shown(subs["bindings"]) << ", accounts " << shown(subs["accounts"])
                              << " (" << shown(subs["suspended"]) << " suspended); ";
                else
                    std::cout << "no bindings or accounts (" << backend << "); ";
                std::cout << "events written " << j["events"]["written"] << ", lost "
                          << j["events"]["ring_full"].get<uint64_t>() + j["events"]["write_errors"].get<uint64_t>() << "\n";
            });
        }
        if (cmd == "policy") {
            if (sub == "show") {
                want(2, "policy show");
                check_flags({});
                return show(cl.call("GET", "/v1/policy"), [](const json& j) {
                    std::cout << "# generation " << shown(j["generation"]) << "\n"
                              << shown_lines(j["text"].get<std::string>());
                });
            }
            if (sub == "apply" || sub == "diff") {
                want(3, sub == "apply" ? "policy apply FILE [--dry-run]" : "policy diff FILE");
                check_flags(sub == "apply" ? std::initializer_list<const char*>{"--dry-run"} : std::initializer_list<const char*>{});
                const bool dry = sub == "diff" || flag("--dry-run");
                return show(cl.call("POST", std::string("/v1/policy") + (dry ? "?dry_run=1" : ""), read_file(words[2]),
                                    "application/yaml", 0),
                            [&](const json& j) {
                                if (dry)
                                    std::cout << "valid; would change:\n";
                                else
                                    std::cout << "applied as generation " << shown(j["generation"]) << " in "
                                              << std::fixed << std::setprecision(1) << j["compile_ms"].get<double>()
                                              << " ms; changed:\n";
                                if (j["diff"].empty()) std::cout << "  nothing\n";
                                for (auto it = j["diff"].begin(); it != j["diff"].end(); ++it)
                                    std::cout << "  " << escape_unprintable(it.key()) << ": "
                                              << escape_unprintable(it.value().dump()) << "\n";
                                if (j.contains("not_enforced")) {
                                    std::cout << "accepted but not enforced by this backend:\n";
                                    for (const auto& n : j["not_enforced"]) std::cout << "  " << shown(n) << "\n";
                                }
                            });
            }
            if (sub == "rollback") {
                want(2, "policy rollback");
                check_flags({});
                return show(cl.call("POST", "/v1/policy/rollback", "", "application/json", 0), [](const json& j) {
                    std::cout << "rolled back: generation " << shown(j["generation"]) << "\n";
                });
            }
            throw usage_error("policy show|apply|diff|rollback");
        }
        if (cmd == "bindings") {
            if (sub == "list") {
                want(2, "bindings list [--account A] [--limit N]");
                check_flags({"--account", "--limit"});
                std::string q = "/v1/bindings?limit=" + escape(flag("--limit") ? *flag("--limit") : "1000");
                if (flag("--account")) q += "&account=" + escape(*flag("--account"));
                return show(cl.call("GET", q), [](const json& j) {
                    for (const auto& b : j["bindings"])
                        std::cout << std::left << std::setw(44) << shown(b["prefix"]) << shown(b["account"]) << "\n";
                    std::cout << j["bindings"].size() << " shown, " << shown(j["total"]) << " in the table\n";
                });
            }
            if (sub == "add") {
                want(4, "bindings add PREFIX ACCOUNT");
                check_flags({});
                return show(cl.call("POST", "/v1/bindings", json{{"prefix", words[2]}, {"account", words[3]}}.dump()),
                            [](const json& j) {
                                std::cout << "bound " << shown(j["prefix"]) << " to " << shown(j["account"]) << " ("
                                          << shown(j["bound"]) << " entries)\n";
                            });
            }
            if (sub == "del") {
                want(3, "bindings del PREFIX");
                check_flags({});
                return show(cl.call("DELETE", "/v1/bindings?prefix=" + escape(words[2])), [](const json& j) {
                    std::cout << "unbound " << shown(j["prefix"]) << " (" << shown(j["unbound"]) << " entries)\n";
                });
            }
            throw usage_error("bindings list|add|del");
        }
        if (cmd == "whois") {
            want(2, "whois ADDRESS [--at TIME]");
            check_flags({"--at"});
            std::string q = "/v1/whois?address=" + escape(words[1]);
            if (flag("--at")) q += "&at=" + escape(*flag("--at"));
            const auto r = cl.call("GET", q);
            const int rc = show(r, [](const json& j) {
                if (j["bindings"].empty())
                    std::cout << "no binding in the history for " << shown(j["query"]["address"]) << " at "
                              << iso(j["query"]["at"].get<int64_t>()) << "\n";
                for (const auto& b : j["bindings"])
                    std::cout << shown(b["address"]) << " held by " << shown(b["account"]) << " (session "
                              << shown(b["session_id"]) << ", NAS " << shown(b["nas"]) << ") from "
                              << iso(b["start"].get<int64_t>()) << " to "
                              << (b["stop"].is_null() ? std::string("now") : iso(b["stop"].get<int64_t>())) << "\n";
                if (!j["bound_now"].is_null()) std::cout << "bound now to " << shown(j["bound_now"]) << "\n";
                const json& m = j["smtp_within_1h"];
                std::cout << "SMTP within an hour: " << shown(m["sessions"]) << " sessions (" << shown(m["tls_sessions"])
                          << " TLS), " << shown(m["messages"]) << " messages, " << shown(m["recipients"])
                          << " recipients, " << shown(m["rejected_recipients"]) << " rejected\n";
                std::cout << "events within an hour: " << escape_unprintable(j["events_within_1h"].dump()) << "\n";
                for (const auto& e : j["events"]) print_event(e);
            });
            if (rc == 0 && r.status == 200) {
                const json j = json::parse(r.body);
                if (j["bindings"].empty() && j["bound_now"].is_null()) return 3;
            }
            return rc;
        }
        if (cmd == "account") {
            if (sub == "suspend" || sub == "resume") {
                want(3, "account suspend|resume ACCOUNT");
                check_flags({});
                return show(cl.call("POST", "/v1/accounts/" + sub, json{{"account", words[2]}}.dump()),
                            [&](const json& j) {
                                std::cout << shown(j["account"])
                                          << (j["suspended"].get<bool>() ? " suspended" : " resumed") << "\n";
                            });
            }
            if (sub == "list") {
                want(2, "account list [--suspended]");
                check_flags({"--suspended"});
                return show(cl.call("GET", std::string("/v1/accounts") + (flag("--suspended") ? "?suspended=1" : "")),
                            [](const json& j) {
                                for (const auto& a : j["accounts"])
                                    std::cout << std::left << std::setw(40) << shown(a["account"])
                                              << (a["suspended"].get<bool>() ? "suspended" : "active") << "\n";
                            });
            }
            throw usage_error("account suspend|resume|list");
        }
        if (cmd == "events") {
            if (sub != "tail") throw usage_error("events tail [-f] [-n N] [--type T] [--subscriber ADDR] [--account A]");
            want(2, "events tail [-f] [-n N] [--type T] [--subscriber ADDR] [--account A]");
            check_flags({"-f", "-n", "--type", "--subscriber", "--account"});
            std::string filter;
            if (flag("--type")) filter += "&type=" + escape(*flag("--type"));
            if (flag("--subscriber")) filter += "&subscriber=" + escape(*flag("--subscriber"));
            if (flag("--account")) filter += "&account=" + escape(*flag("--account"));
            uint64_t since = 0;
            std::string n = flag("-n") ? *flag("-n") : "20";
            for (;;) {
                const auto r = cl.call("GET", "/v1/events?n=" + escape(n) + "&since_ns=" + std::to_string(since) + filter);
                if (r.status != 200) return fail(r, as_json);
                const json j = json::parse(r.body);
                for (const auto& e : j["events"]) {
                    if (as_json) std::cout << e.dump() << "\n";
                    else print_event(e);
                    since = std::max(since, e.value("time_ns", uint64_t{0}));
                }
                std::cout.flush();
                if (!flag("-f")) return 0;
                n = "1000";
                std::this_thread::sleep_for(std::chrono::seconds(1));
            }
        }
        if (cmd == "top") {
            want(1, "top [--window 1h] [--by messages|recipients|rejected_recipients|sessions|events|op25b_block|limit_exceeded|account_suspended|score]");
            check_flags({"--window", "--by"});
            const std::string q = "/v1/top?window=" + escape(flag("--window") ? *flag("--window") : "1h") +
                                  "&by=" + escape(flag("--by") ? *flag("--by") : "messages");
            return show(cl.call("GET", q), [](const json& j) {
                std::cout << std::left << std::setw(40) << "SUBSCRIBER" << std::setw(32) << "ACCOUNT" << "COUNT\n";
                for (const auto& t : j["top"])
                    std::cout << std::left << std::setw(40) << shown(t["subscriber"]) << std::setw(32)
                              << shown(t["account"]) << shown(t["count"]) << "\n";
            });
        }
        if (cmd == "report") {
            want(1, "report [--since TIME] [--until TIME] [--format csv|json]");
            check_flags({"--since", "--until", "--format"});
            std::string q = "/v1/report?format=" + escape(flag("--format") ? *flag("--format") : (as_json ? "json" : "csv"));
            if (flag("--since")) q += "&since=" + escape(*flag("--since"));
            if (flag("--until")) q += "&until=" + escape(*flag("--until"));
            const auto r = cl.call("GET", q);
            if (r.status != 200) return fail(r, as_json);
            const std::string text = as_json ? r.body : shown_lines(r.body);   // CSV for people, JSON as it came
            std::cout << text << (text.empty() || text.back() == '\n' ? "" : "\n");
            return 0;
        }
        throw usage_error("unknown command '" + cmd + "'");
    } catch (const usage_error& e) {
        std::cerr << "sekishoctl: " << e.what() << "\n" << usage_text;
        return 2;
    } catch (const std::exception& e) {
        std::cerr << "sekishoctl: " << e.what() << "\n";
        return 1;
    }
}
