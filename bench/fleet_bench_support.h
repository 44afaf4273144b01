// What the fleet benches share (they run without the EAL): wall-clock timing,
// percentiles, the self-check that turns a bench's exit status to 1, and a
// redis-server of the bench's own.
//
// bench_redis: a redis-server child on a Unix socket in a fresh /tmp
// directory (0700), its password only in 0600 files there (the clients' password
// file and the server's config file: never on a command line), no persistence, killed with the bench's process however that ends
// (PR_SET_PDEATHSIG). The constructor waits until it answers PING
// (throws std::runtime_error after 5 s: not installed or not starting); the
// destructor kills it (SIGKILL) and removes the directory. One instance per
// bench; not copyable.
#pragma once

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "control/fleet/redis_connection.h"

namespace sekisho::bench {

using wall_clock = std::chrono::steady_clock;

inline double seconds_since(wall_clock::time_point t0) {
    return std::chrono::duration<double>(wall_clock::now() - t0).count();
}

// The p-th percentile (0..100, nearest rank) of `v`; 0 for an empty vector.
inline double percentile(std::vector<double> v, double p) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    const size_t rank = static_cast<size_t>(p / 100 * static_cast<double>(v.size()) + 0.999999);
    return v[std::clamp<size_t>(rank, 1, v.size()) - 1];
}

// Self-checks: each failure printed as "FAIL what" on stderr; failed() tells main to exit 1.
class self_checks {
public:
    void check(bool ok, const std::string& what) {
        if (!ok) {
            std::fprintf(stderr, "FAIL %s\n", what.c_str());
            failed_ = true;
        }
    }
    bool failed() const { return failed_; }

private:
    bool failed_ = false;
};

class bench_redis {
public:
    bench_redis() {
        char tmpl[] = "/tmp/sekisho-fleet-bench.XXXXXX";
        if (mkdtemp(tmpl) == nullptr) throw std::runtime_error("bench_redis: cannot create a directory in /tmp");
        dir_ = tmpl;
        const std::string password = "bench-" + std::to_string(getpid());
        std::ofstream(dir_ + "/password") << password << "\n";
        std::ofstream(dir_ + "/redis.conf") << "port 0\nunixsocket " << dir_ << "/redis.sock\nunixsocketperm 700\n"
                                            << "requirepass " << password << "\ndir " << dir_ << "\nsave \"\"\n"
                                            << "appendonly no\nlogfile " << dir_ << "/redis.log\n";
        for (const char* f : {"/password", "/redis.conf"})
            std::filesystem::permissions(dir_ + f, std::filesystem::perms(0600));
        const std::string conf = dir_ + "/redis.conf";
        pid_ = fork();
        if (pid_ == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);   // a bench killed before its destructor takes it along
            execlp("redis-server", "redis-server", conf.c_str(), static_cast<char*>(nullptr));
            _exit(127);
        }
        for (int i = 0; i < 200; ++i) {
            try {
                redis_connection r(address(), password_file());
                r.command({"PING"});
                return;
            } catch (const std::exception&) {
                std::this_thread::sleep_for(std::chrono::milliseconds(25));
            }
        }
        stop();
        throw std::runtime_error("redis-server did not start (is it installed?)");
    }
    ~bench_redis() { stop(); }
    bench_redis(const bench_redis&) = delete;
    bench_redis& operator=(const bench_redis&) = delete;

    std::string address() const { return "unix:" + dir_ + "/redis.sock"; }
    std::string password_file() const { return dir_ + "/password"; }

private:
    void stop() {
        if (pid_ > 0) {
            kill(pid_, SIGKILL);
            waitpid(pid_, nullptr, 0);
            pid_ = -1;
        }
        std::error_code ec;
        std::filesystem::remove_all(dir_, ec);
    }

    std::string dir_;
    pid_t pid_ = -1;
};

}  // namespace sekisho::bench
