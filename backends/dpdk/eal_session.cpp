#include "backends/dpdk/eal_session.h"

#include <rte_eal.h>
#include <rte_errno.h>
#include <unistd.h>

#include <fstream>
#include <stdexcept>

namespace sekisho {

namespace {
bool free_hugepages() {
    std::ifstream meminfo("/proc/meminfo");
    std::string key;
    long value = 0;
    while (meminfo >> key >> value) {
        if (key == "HugePages_Free:") return value > 0;
        meminfo.ignore(256, '\n');
    }
    return false;
}
}  // namespace

std::vector<std::string> default_eal_args(const eal_request& r) {
    std::vector<std::string> args;
    const long cpus = sysconf(_SC_NPROCESSORS_ONLN) > 0 ? sysconf(_SC_NPROCESSORS_ONLN) : 1;
    std::string lcores = "--lcores=";
    for (unsigned l = 0; l <= r.workers; ++l)
        lcores += (l ? "," : "") + std::to_string(l) + "@" + std::to_string(l % cpus);
    args.push_back(lcores);
    args.push_back("--no-shconf");
    args.push_back("--log-level=lib.eal:warning");
    args.push_back("--no-telemetry");
    if (!free_hugepages()) {
        args.push_back("--no-huge");
        args.push_back("-m");
        args.push_back(std::to_string(r.memory_mb));
    }
    if (!r.vdevs.empty()) args.push_back("--no-pci");
    return args;
}

eal_session::eal_session(const std::string& program, const eal_request& r) {
    args_.push_back(program);
    const auto base = r.explicit_args.empty() ? default_eal_args(r) : r.explicit_args;
    args_.insert(args_.end(), base.begin(), base.end());
    for (const auto& v : r.vdevs) {
        args_.push_back("--vdev");
        args_.push_back(v);
    }
    std::vector<char*> argv;
    for (auto& a : args_) argv.push_back(a.data());
    argv.push_back(nullptr);
    if (rte_eal_init(static_cast<int>(argv.size() - 1), argv.data()) < 0) {
        std::string line;
        for (const auto& a : args_) line += " " + a;
        throw std::runtime_error(std::string("DPDK EAL initialisation failed: ") + rte_strerror(rte_errno) +
                                 " (arguments:" + line + ")");
    }
}

eal_session::~eal_session() { rte_eal_cleanup(); }

}  // namespace sekisho
