// sekishoctl: the operator CLI, a client of sekishod's control API (docs/api.md)
// and, for `fleet`, of the fleet's PostgreSQL (fleet_commands.h, docs/fleet.md).
// Human tables by default, --json everywhere. Exit codes: 0 ok, 1 the daemon
// could not be reached or failed, 2 usage, 3 not found, 4 rejected (bad input,
// invalid policy, conflict), 5 unauthorised.
//
// Here the command line; the HTTP client is api_client.h, the commands
// commands.h and fleet_commands.h, what people read human_output.h (every
// text from the daemon escaped there).
#include <curl/curl.h>

#include <cctype>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "cmd/sekishoctl/api_client.h"
#include "cmd/sekishoctl/commands.h"
#include "cmd/sekishoctl/fleet_commands.h"
#include "cmd/sekishoctl/fleet_query.h"
#include "control/api/untrusted_text.h"
#include "control/build_version.h"

namespace {

using namespace sekisho::ctl;

constexpr const char* usage_text = R"(usage: sekishoctl [--socket PATH | --url https://HOST:PORT --token-file F [--cacert F]] [--json] COMMAND
       sekishoctl --version                     this client's version and build; `status` shows the daemon's

commands:
  status                                   generation and its origin, uptime, workers, ports, drops
  policy show                              the policy in force (YAML), its generation and origin
  policy apply FILE [--dry-run]            validate, compile and swap in FILE atomically
  policy diff FILE                         what applying FILE would change (nothing is applied)
  policy rollback                          return to the generation before the one in force
                                           (again: one further back; exit 4 at the end)
  bindings list [--account A] [--limit N]  address/prefix -> account bindings
  bindings add PREFIX ACCOUNT [--force]    bind (kept across restarts; wins over RADIUS);
                                           --force: also outside the subscriber ranges
  bindings del PREFIX                      unbind (exit 3 when not bound)
  whois ADDRESS [--at TIME]                who held ADDRESS at TIME, its SMTP counters and events around then
  account suspend|resume ACCOUNT           利用停止: refuse every SMTP connection of ACCOUNT
                                           (kept across restarts; exit 3 for an account never seen)
  account suspend ACCOUNT --create         suspend an account before it is first seen
  account list [--suspended]
  limits show ADDRESS|ACCOUNT              each limit's count against its maximum, cool-down, tripped or not
  limits reset ADDRESS|ACCOUNT [--limit NAME]  clear a tripped limit (every limit without --limit; audited)
  events tail [-f] [-n N] [--type T] [--subscriber ADDR] [--account A]
  top [--window 1h] [--by messages|recipients|rejected_recipients|sessions|events|op25b_block|limit_exceeded|account_suspended|score]
  report [--since TIME] [--until TIME] [--format csv|json]
  campaigns [--min-subscribers N] [-n N]   the current window's message fingerprints, most subscribers
                                           first (N: 20, at most 1000); counts only, never addresses;
                                           a gateway in fleet mode adds the fleet's figures
fleet (the fleet's PostgreSQL; --fleet CONNINFO_FILE: desk role to read, controller role to push):
  fleet status [--stale 10s]               every gateway: group, generation, fleet version, lag, health
  fleet policy push FILE --group G         a new policy version desired for group G
  fleet rollout FILE --canary G --then G2 [--watch 30s] [--timeout 60s] [--max-increase 10]
                [--max-blocked-increase N] push to G, wait for its gateways, watch their errors
                and drops; halt (exit 4) when they jump, else push to G2
  fleet schema [--apply]                   the DBA's setup (an owner's conninfo): print, or create, every
                                           fleet table and grant the three roles what they need
  events [--type T] [--address A[/LEN]] [--account A] [--gateway G] [--since TIME] [--until TIME] [-n N]
                                           every gateway's events, newest N (50)
  whois ADDRESS [--at TIME]                who held ADDRESS at TIME on every gateway (exit 3: nobody)
  report [--since TIME] [--until TIME] [--format csv|json]
                                           offending addresses and accounts, fleet-wide, each event
                                           attributed to its address's holder at its own time
  top [--window 1h] [--until TIME] [--by ...]  as top, fleet-wide: one row per account (summed over its
                                           gateways and addresses), its gateways listed
  whois, report, top: --bindings-source radacct [--radacct-table T]  who held what from the ISP's
                                           FreeRADIUS accounting table instead of the gateways' bindings
TIME: Unix seconds or 2026-11-23T12:00:00Z. Socket default: $SEKISHO_SOCKET or /run/sekisho/api.sock
exit codes: 0 ok, 1 daemon unreachable or failed, 2 usage, 3 not found, 4 rejected (also: not
            served by this backend), 5 unauthorised
)";

struct command_line {
    bool help = false;
    bool version = false;
    api_client client;
    std::string fleet;   // --fleet CONNINFO_FILE: ask the fleet's PostgreSQL instead
    command_request request;
};

// Options anywhere; the other words are the command's. Then the connection:
// --url only https:// (curl would take http://, or no scheme at all as
// http: the token would go in clear), the token read from --token-file.
command_line parse_command_line(const std::vector<std::string>& args) {
    command_line c;
    const char* env_socket = std::getenv("SEKISHO_SOCKET");
    c.client.socket = env_socket ? env_socket : "/run/sekisho/api.sock";
    std::string token_file;
    for (size_t i = 0; i < args.size(); ++i) {
        const std::string& a = args[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= args.size()) throw usage_error(a + " needs a value");
            return args[++i];
        };
        if (a == "-h" || a == "--help") {
            c.help = true;
            return c;
        } else if (a == "--version") {
            c.version = true;
            return c;
        } else if (a == "--json") {
            c.request.as_json = true;
        } else if (a == "--socket") {
            c.client.socket = value();
        } else if (a == "--url") {
            c.client.url = value();
        } else if (a == "--token-file") {
            token_file = value();
        } else if (a == "--fleet") {
            c.fleet = value();
        } else if (a == "--cacert") {
            c.client.cacert = value();
        } else if (a == "--dry-run" || a == "-f" || a == "--suspended" || a == "--force" || a == "--create" ||
                   a == "--apply") {
            c.request.flags.emplace_back(a, "");
        } else if (a.rfind("--", 0) == 0 || a == "-n") {
            c.request.flags.emplace_back(a, value());
        } else {
            c.request.words.push_back(a);
        }
    }
    if (!c.client.url.empty()) {
        std::string scheme = c.client.url.substr(0, 8);
        for (char& ch : scheme) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        if (scheme != "https://")
            throw usage_error("--url '" + sekisho::escape_unprintable(c.client.url) +
                              "': only https:// (the bearer token is never sent in clear)");
    }
    if (!token_file.empty()) {
        c.client.token = read_text_file(token_file);
        while (!c.client.token.empty() && std::isspace(static_cast<unsigned char>(c.client.token.back())))
            c.client.token.pop_back();
    }
    return c;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        const command_line c = parse_command_line(std::vector<std::string>(argv + 1, argv + argc));
        if (c.help) {
            std::cout << usage_text;
            return 0;
        }
        if (c.version) {
            std::cout << "sekishoctl " << sekisho::sekisho_version << " (build " << sekisho::sekisho_build << ")\n";
            return 0;
        }
        if (c.request.words.empty()) throw usage_error("a command is required");
        if (!c.fleet.empty()) return run_fleet_command(c.fleet, c.request);
        if (c.request.words[0] == "fleet") throw usage_error("fleet commands need --fleet CONNINFO_FILE (docs/fleet.md)");
        curl_global_init(CURL_GLOBAL_DEFAULT);
        return run_command(c.client, c.request);
    } catch (const usage_error& e) {
        std::cerr << "sekishoctl: " << e.what() << "\n" << usage_text;
        return 2;
    } catch (const std::exception& e) {
        std::cerr << "sekishoctl: " << e.what() << "\n";
        return 1;
    }
}
