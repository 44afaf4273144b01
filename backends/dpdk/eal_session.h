// Starts and stops the DPDK EAL with the arguments Sekisho needs.
//
// With no explicit EAL arguments Sekisho picks: one lcore for control plus
// one per worker (wrapped over the machine's CPUs), --no-shconf, and, when the
// machine has no free hugepages, --no-huge -m 1024. Explicit arguments (after
// `--` on the command line) replace these defaults, vdevs are always added.
#pragma once

#include <string>
#include <vector>

namespace sekisho {

struct eal_request {
    unsigned workers = 1;
    std::vector<std::string> vdevs;        // --vdev arguments
    std::vector<std::string> explicit_args;
    unsigned memory_mb = 1024;             // for --no-huge
};

class eal_session {
public:
    eal_session(const std::string& program, const eal_request& request);  // throws
    ~eal_session();
    eal_session(const eal_session&) = delete;
    eal_session& operator=(const eal_session&) = delete;
    const std::vector<std::string>& args() const { return args_; }

private:
    std::vector<std::string> args_;
};

std::vector<std::string> default_eal_args(const eal_request& request);

}  // namespace sekisho
