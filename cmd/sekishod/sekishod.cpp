// sekishod: the Sekisho gateway daemon (data plane + control plane).
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "backends/dpdk/dpdk_live.h"
#include "backends/live_options.h"
#include "control/policy/policy.h"
#include "control/policy/policy_files.h"
#include "backends/dpdk/replay.h"
#include "control/identity/whois.h"
#include "backends/xdp/xdp_live.h"

namespace {

constexpr const char* usage_text = R"(usage:
  sekishod --check-policy FILE
  sekishod --whois ADDRESS [--at TIME] (--history DB | --policy FILE) [--json]
  sekishod --replay CAPTURE --policy FILE --out DIR [--workers N] [-- EAL-ARGS...]
  sekishod --policy FILE (--access-if IF --core-if IF [--if-driver D] | [--access-port ID --core-port ID])
           [--workers N] [--events FILE] [--summary FILE] [--metrics ADDR:PORT] [-- EAL-ARGS...]
  sekishod --backend xdp --policy FILE --access-if IF [--core-if IF] [--xdp-mode native|generic]
           [--events FILE] [--summary FILE] [--metrics ADDR:PORT]

  --check-policy FILE  validate a policy; print every error as file:line: message
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
  --access-port ID     DPDK port on the subscriber side (default 0)
  --core-port ID       DPDK port on the Internet side (default 1)
  --events FILE        JSON-lines event log (default: the policy's events.file,
                       /var/log/sekisho/events.jsonl; "-": standard output)
  --summary FILE       write the counters as JSON at exit
  --metrics ADDR:PORT  serve Prometheus metrics on http://ADDR:PORT/metrics
  --api-socket PATH    serve the control API (docs/api.md) on a Unix socket, mode 0660
  --api-group GROUP    group owning the API socket
  --api-tcp ADDR:PORT  also serve the API over TLS; needs --api-cert, --api-key, --api-token-file
  -- EAL-ARGS          DPDK EAL arguments, replacing Sekisho's defaults

exit codes: 0 ok, 1 runtime failure, 2 bad usage or invalid policy, 3 whois found nothing
signals (live): SIGINT/SIGTERM stop cleanly, SIGHUP reloads the policy file
)";

struct usage_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

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

}  // namespace

int main(int argc, char** argv) {
    std::vector<std::string> args(argv + 1, argv + argc);
    std::string check_policy, replay_capture, out_dir;
    sekisho::whois_options whois;
    sekisho::live_options live;
    bool have_workers = false;
    bool have_xdp_mode = false;
    std::vector<std::string> eal_args;
    try {
        for (size_t i = 0; i < args.size(); ++i) {
            const std::string& a = args[i];
            auto value = [&]() -> const std::string& {
                if (i + 1 >= args.size()) throw usage_error(a + " needs a value");
                return args[++i];
            };
            if (a == "--") {
                eal_args.assign(args.begin() + static_cast<long>(i) + 1, args.end());
                break;
            } else if (a == "-h" || a == "--help") {
                std::cout << usage_text;
                return 0;
            } else if (a == "--check-policy") {
                check_policy = value();
            } else if (a == "--whois") {
                whois.address = value();
            } else if (a == "--at") {
                whois.at = value();
            } else if (a == "--history") {
                whois.history_path = value();
            } else if (a == "--json") {
                whois.json = true;
            } else if (a == "--replay") {
                replay_capture = value();
            } else if (a == "--out") {
                out_dir = value();
            } else if (a == "--policy") {
                live.policy_path = value();
            } else if (a == "--workers") {
                live.workers = parse_unsigned(a, value());
                have_workers = true;
            } else if (a == "--backend") {
                live.backend = value();
                if (live.backend != "dpdk" && live.backend != "xdp")
                    throw usage_error("--backend: '" + live.backend + "' is not one of: dpdk, xdp");
            } else if (a == "--xdp-mode") {
                live.xdp_mode = value();
                have_xdp_mode = true;
            } else if (a == "--access-if") {
                live.access_if = value();
            } else if (a == "--core-if") {
                live.core_if = value();
            } else if (a == "--if-driver") {
                live.if_driver = value();
            } else if (a == "--access-port") {
                live.access_port = parse_unsigned(a, value());
            } else if (a == "--core-port") {
                live.core_port = parse_unsigned(a, value());
            } else if (a == "--events") {
                live.events_path = value();
            } else if (a == "--summary") {
                live.summary_path = value();
            } else if (a == "--metrics") {
                live.metrics_address = value();
            } else if (a == "--api-socket") {
                live.api.unix_path = value();
            } else if (a == "--api-group") {
                live.api.unix_group = value();
            } else if (a == "--api-tcp") {
                live.api.tcp_listen = value();
            } else if (a == "--api-cert") {
                live.api.tls_cert_file = value();
            } else if (a == "--api-key") {
                live.api.tls_key_file = value();
            } else if (a == "--api-token-file") {
                live.api.token_file = value();
            } else {
                throw usage_error("unknown argument '" + a + "'");
            }
        }

        if (!check_policy.empty()) {
            const sekisho::policy p = sekisho::load_policy_file(check_policy);
            sekisho::check_policy_files(p);
            std::cout << check_policy << ": ok (" << p.dynamic_ranges.size() << " dynamic, "
                      << p.static_ranges.size() << " static, " << p.relays.size() << " relay prefixes; op25b "
                      << sekisho::to_string(p.mode) << "/" << sekisho::to_string(p.action) << "; "
                      << p.limits.size() << " limits, " << p.bindings.size() << " static bindings"
                      << (p.identity.radius_listen.empty() ? "" : "; RADIUS on " + p.identity.radius_listen)
                      << (p.identity.history_database.empty() ? "" : "; history " + p.identity.history_database)
                      << ")\n";
            return 0;
        }
        if (!whois.address.empty()) {
            if (whois.history_path.empty() && !live.policy_path.empty())
                whois.history_path = sekisho::load_policy_file(live.policy_path).identity.history_database;
            if (whois.history_path.empty())
                throw usage_error("--whois needs --history DB, or a --policy with history.database");
            return sekisho::run_whois(whois);
        }
        if (live.policy_path.empty()) throw usage_error("--policy is required");
        if (!replay_capture.empty()) {
            if (out_dir.empty()) throw usage_error("--replay needs --out DIR");
            sekisho::replay_options r;
            r.capture = replay_capture;
            r.policy_path = live.policy_path;
            r.out_dir = out_dir;
            r.workers = have_workers ? live.workers : 1;
            r.eal_args = eal_args;
            return sekisho::run_replay(r);
        }
        live.eal_args = eal_args;
        if (live.backend == "xdp") {
            if (have_workers) throw usage_error("--workers does not apply to --backend xdp (every CPU that receives runs it)");
            if (live.if_driver != "af_packet") throw usage_error("--if-driver does not apply to --backend xdp");
            try {
                return sekisho::run_xdp_live(live);
            } catch (const std::invalid_argument& e) {
                throw usage_error(e.what());
            }
        }
        if (have_xdp_mode) throw usage_error("--xdp-mode needs --backend xdp");
        return sekisho::run_dpdk_live(live);
    } catch (const usage_error& e) {
        std::cerr << "sekishod: " << e.what() << "\n" << usage_text;
        return 2;
    } catch (const sekisho::policy_error& e) {
        std::cerr << e.what() << "\n";
        return 2;
    } catch (const std::exception& e) {
        std::cerr << "sekishod: " << e.what() << "\n";
        return 1;
    }
}
