// sekishod: the Sekisho daemon's command line. Here only the flags, which
// mode they ask for, and the exit codes; each mode runs elsewhere:
// --check-policy (check_policy.h), --whois (whois.h), --replay (replay.h),
// live mode on DPDK (dpdk_live.h) or XDP (xdp_live.h).
#include <csignal>
#include <iostream>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "backends/dpdk/dpdk_live.h"
#include "backends/dpdk/replay.h"
#include "backends/live_options.h"
#include "backends/xdp/xdp_live.h"
#include "cmd/sekishod/check_policy.h"
#include "control/fleet/fleet_config.h"
#include "control/build_version.h"
#include "control/identity/whois.h"
#include "control/policy/policy.h"

namespace {

constexpr const char* usage_text = R"(usage:
  sekishod --version
  sekishod --check-policy FILE [--fleet FILE]
  sekishod --whois ADDRESS [--at TIME] (--history DB | --policy FILE) [--json]
  sekishod --replay CAPTURE --policy FILE --out DIR [--workers N] [--fleet FILE] [-- EAL-ARGS...]
  sekishod --policy FILE (--access-if IF --core-if IF [--if-driver D] | [--access-port ID --core-port ID])
           [--workers N] [--state-dir DIR] [--policy-history N] [--events FILE] [--summary FILE]
           [--metrics ADDR:PORT] [--fleet FILE] [-- EAL-ARGS...]
  sekishod --backend xdp --policy FILE --access-if IF [--core-if IF] [--xdp-mode native|generic]
           [--xdp-keep-attached] [--xdp-pin-dir DIR] [--state-dir DIR] [--policy-history N] [--events FILE]
           [--summary FILE] [--metrics ADDR:PORT] [--fleet FILE]

  --version            print the version and build (git describe) and exit
  --check-policy FILE  validate a policy (and the --fleet file); print every error as
                       file:line: message
  --whois ADDRESS      who held ADDRESS (or a prefix) at --at TIME (Unix seconds or
                       2026-11-23T12:00:00Z; default now), from the binding history
                       (--history DB, or the policy's history.database); exit 3 if nobody
  --replay CAPTURE     run the pipeline over a pcap (both directions, as from a mirror port)
  --out DIR            replay output: to-core.pcap, to-access.pcap, summary.json, events.jsonl
  --policy FILE        the policy (docs/policy.md)
  --workers N          worker lcores (default 1)
  --access-if IF       Linux interface on the subscriber side (net_af_packet)
  --core-if IF         Linux interface on the Internet side (net_af_packet)
  --if-driver D        PMD for --access-if/--core-if: af_packet (default) or af_xdp
  --backend B          dpdk (default: the DPDK data plane) or xdp (an XDP program on
                       --access-if and --core-if; the kernel forwards; docs/xdp.md)
  --xdp-mode M         xdp: native (in the driver, default) or generic (any interface)
  --xdp-keep-attached  xdp: a stop leaves the program attached and enforcing, its maps
                       pinned, and the next start takes them over without a gap (restart)
  --xdp-pin-dir DIR    xdp: where the maps are pinned, on a BPF file system
                       (default /sys/fs/bpf/sekisho/ACCESS-IF)
  --access-port ID     DPDK port on the subscriber side (default 0)
  --core-port ID       DPDK port on the Internet side (default 1)
  --state-dir DIR      live: operator state kept across restarts (default /var/lib/sekisho)
  --policy-history N   live: policy generations kept for rollback before the one in force,
                       under DIR/policy/ (1-1000, default 10)
  --events FILE        JSON-lines event log (default: the policy's events.file,
                       /var/log/sekisho/events.jsonl; "-": standard output)
  --summary FILE       write the counters as JSON at exit
  --fleet FILE         live: fleet mode, this gateway in a fleet sharing PostgreSQL and
                       Redis (docs/fleet.md); without it the gateway stands alone;
                       replay: campaign counts from the fleet's Redis before, back after
  --metrics ADDR:PORT  serve Prometheus metrics on http://ADDR:PORT/metrics
  --api-socket PATH    serve the control API (docs/api.md) on a Unix socket, mode 0660
  --api-group GROUP    group owning the API socket
  --api-tcp ADDR:PORT  also serve the API over TLS; needs --api-cert, --api-key, --api-token-file
  -- EAL-ARGS          DPDK EAL arguments, replacing Sekisho's defaults

exit codes: 0 ok, 1 runtime failure, 2 bad usage or invalid policy, 3 whois found nothing
signals (live): SIGINT/SIGTERM stop cleanly (xdp: and detach, unless --xdp-keep-attached),
                SIGHUP applies the policy file if it changed
)";

struct usage_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// Everything the flags say, before any of it is checked against the mode.
struct command_line {
    bool help = false;
    bool version = false;
    std::string check_policy, replay_capture, out_dir;
    sekisho::whois_options whois;
    sekisho::live_options live;   // --policy, --workers and the EAL arguments serve replay too
    bool have_workers = false;
    bool have_xdp_mode = false;
};

// Flags without a value, and what each sets.
const std::map<std::string, void (*)(command_line&)>& switch_flags() {
    static const std::map<std::string, void (*)(command_line&)> flags = {
        {"--json", [](command_line& c) { c.whois.json = true; }},
        {"--xdp-keep-attached", [](command_line& c) { c.live.xdp_keep_attached = true; }},
    };
    return flags;
}

unsigned parse_unsigned(const std::string& flag, const std::string& value) {
    try {
        size_t used = 0;
        const unsigned long v = std::stoul(value, &used);
        if (used != value.size() || v > 65535) throw std::invalid_argument(value);
        return static_cast<unsigned>(v);
    } catch (const std::exception&) {
        throw usage_error(flag + ": '" + value + "' is not a number");
    }
}

using flag_setter = void (*)(command_line&, const std::string& value);

// The flags that take a value, and where each goes.
const std::map<std::string, flag_setter>& valued_flags() {
    static const std::map<std::string, flag_setter> flags = {
        {"--check-policy", [](command_line& c, const std::string& v) { c.check_policy = v; }},
        {"--whois", [](command_line& c, const std::string& v) { c.whois.address = v; }},
        {"--at", [](command_line& c, const std::string& v) { c.whois.at = v; }},
        {"--history", [](command_line& c, const std::string& v) { c.whois.history_path = v; }},
        {"--replay", [](command_line& c, const std::string& v) { c.replay_capture = v; }},
        {"--out", [](command_line& c, const std::string& v) { c.out_dir = v; }},
        {"--policy", [](command_line& c, const std::string& v) { c.live.policy_path = v; }},
        {"--workers",
         [](command_line& c, const std::string& v) {
             c.live.workers = parse_unsigned("--workers", v);
             c.have_workers = true;
         }},
        {"--backend",
         [](command_line& c, const std::string& v) {
             if (v != "dpdk" && v != "xdp") throw usage_error("--backend: '" + v + "' is not one of: dpdk, xdp");
             c.live.backend = v;
         }},
        {"--xdp-mode",
         [](command_line& c, const std::string& v) {
             c.live.xdp_mode = v;
             c.have_xdp_mode = true;
         }},
        {"--xdp-pin-dir", [](command_line& c, const std::string& v) { c.live.xdp_pin_dir = v; }},
        {"--access-if", [](command_line& c, const std::string& v) { c.live.access_if = v; }},
        {"--core-if", [](command_line& c, const std::string& v) { c.live.core_if = v; }},
        {"--if-driver", [](command_line& c, const std::string& v) { c.live.if_driver = v; }},
        {"--access-port", [](command_line& c, const std::string& v) { c.live.access_port = parse_unsigned("--access-port", v); }},
        {"--core-port", [](command_line& c, const std::string& v) { c.live.core_port = parse_unsigned("--core-port", v); }},
        {"--state-dir", [](command_line& c, const std::string& v) { c.live.state_dir = v; }},
        {"--policy-history",
         [](command_line& c, const std::string& v) {
             const unsigned n = parse_unsigned("--policy-history", v);
             if (n < 1 || n > sekisho::policy_history::max_depth)
                 throw usage_error("--policy-history: " + v + " is not within 1-" +
                                   std::to_string(sekisho::policy_history::max_depth));
             c.live.policy_history_depth = n;
         }},
        {"--events", [](command_line& c, const std::string& v) { c.live.events_path = v; }},
        {"--summary", [](command_line& c, const std::string& v) { c.live.summary_path = v; }},
        {"--fleet", [](command_line& c, const std::string& v) { c.live.fleet_path = v; }},
        {"--metrics", [](command_line& c, const std::string& v) { c.live.metrics_address = v; }},
        {"--api-socket", [](command_line& c, const std::string& v) { c.live.api.unix_path = v; }},
        {"--api-group", [](command_line& c, const std::string& v) { c.live.api.unix_group = v; }},
        {"--api-tcp", [](command_line& c, const std::string& v) { c.live.api.tcp_listen = v; }},
        {"--api-cert", [](command_line& c, const std::string& v) { c.live.api.tls_cert_file = v; }},
        {"--api-key", [](command_line& c, const std::string& v) { c.live.api.tls_key_file = v; }},
        {"--api-token-file", [](command_line& c, const std::string& v) { c.live.api.token_file = v; }},
    };
    return flags;
}

// Reads the flags in order; -h/--help stops at once, "--" hands the rest to the EAL.
command_line parse_command_line(const std::vector<std::string>& args) {
    command_line c;
    for (size_t i = 0; i < args.size(); ++i) {
        const std::string& a = args[i];
        if (a == "--") {
            c.live.eal_args.assign(args.begin() + static_cast<long>(i) + 1, args.end());
            break;
        }
        if (a == "-h" || a == "--help") {
            c.help = true;
            return c;
        }
        if (a == "--version") {
            c.version = true;
            return c;
        }
        if (const auto sw = switch_flags().find(a); sw != switch_flags().end()) {
            sw->second(c);
            continue;
        }
        const auto flag = valued_flags().find(a);
        if (flag == valued_flags().end()) throw usage_error("unknown argument '" + a + "'");
        if (i + 1 >= args.size()) throw usage_error(a + " needs a value");
        flag->second(c, args[++i]);
    }
    return c;
}

int run_live(const command_line& c) {
    if (c.live.backend == "xdp") {
        if (c.have_workers) throw usage_error("--workers does not apply to --backend xdp (every CPU that receives runs it)");
        if (c.live.if_driver != "af_packet") throw usage_error("--if-driver does not apply to --backend xdp");
        try {
            return sekisho::run_xdp_live(c.live);
        } catch (const std::invalid_argument& e) {
            throw usage_error(e.what());
        }
    }
    if (c.have_xdp_mode) throw usage_error("--xdp-mode needs --backend xdp");
    if (c.live.xdp_keep_attached) throw usage_error("--xdp-keep-attached needs --backend xdp");
    if (!c.live.xdp_pin_dir.empty()) throw usage_error("--xdp-pin-dir needs --backend xdp");
    return sekisho::run_dpdk_live(c.live);
}

// The mode the flags ask for, first match: --check-policy, --whois, --replay, live.
int run(command_line c) {
    if (!c.check_policy.empty()) return sekisho::run_check_policy(c.check_policy, c.live.fleet_path);
    if (!c.whois.address.empty()) {
        if (c.whois.history_path.empty() && !c.live.policy_path.empty())
            c.whois.history_path = sekisho::load_policy_file(c.live.policy_path).identity.history_database;
        if (c.whois.history_path.empty()) throw usage_error("--whois needs --history DB, or a --policy with history.database");
        return sekisho::run_whois(c.whois);
    }
    if (c.live.policy_path.empty()) throw usage_error("--policy is required");
    if (!c.replay_capture.empty()) {
        if (c.out_dir.empty()) throw usage_error("--replay needs --out DIR");
        sekisho::replay_options r;
        r.capture = c.replay_capture;
        r.policy_path = c.live.policy_path;
        r.out_dir = c.out_dir;
        r.workers = c.have_workers ? c.live.workers : 1;
        r.eal_args = c.live.eal_args;
        r.fleet_path = c.live.fleet_path;
        return sekisho::run_replay(r);
    }
    return run_live(c);
}

}  // namespace

int main(int argc, char** argv) {
    // A write to a peer that went away (a fleet store, an API client) is an
    // error for the writer to handle, never the daemon's end.
    std::signal(SIGPIPE, SIG_IGN);
    try {
        const command_line c = parse_command_line(std::vector<std::string>(argv + 1, argv + argc));
        if (c.help) {
            std::cout << usage_text;
            return 0;
        }
        if (c.version) {
            std::cout << "sekishod " << sekisho::sekisho_version << " (build " << sekisho::sekisho_build << ")\n";
            return 0;
        }
        return run(c);
    } catch (const usage_error& e) {
        std::cerr << "sekishod: " << e.what() << "\n" << usage_text;
        return 2;
    } catch (const sekisho::policy_error& e) {
        std::cerr << e.what() << "\n";
        return 2;
    } catch (const sekisho::fleet_config_error& e) {   // like an invalid policy: file:line: field: message
        std::cerr << e.what() << "\n";
        return 2;
    } catch (const std::exception& e) {
        std::cerr << "sekishod: " << e.what() << "\n";
        return 1;
    }
}
