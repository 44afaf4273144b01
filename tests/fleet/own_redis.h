// A Redis server of a fleet test's own (redis-server on a Unix socket in a
// directory of its own, with a password file), to kill -9 and start again
// mid-test; the shared one of with_fleet_stores.sh cannot be killed. The
// destructor kills it and removes the directory.
#pragma once

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "control/fleet/redis_connection.h"

namespace sekisho {

class own_redis {
public:
    // `password_prefix` starts its password (tests look for it in logs).
    own_redis(std::string dir, const std::string& password_prefix) : dir_(std::move(dir)) {
        std::filesystem::create_directories(dir_);
        std::ofstream(dir_ + "/password") << password_prefix << "-" << getpid() << "\n";
        chmod((dir_ + "/password").c_str(), 0600);
    }
    ~own_redis() { kill9(); std::filesystem::remove_all(dir_); }
    std::string address() const { return "unix:" + dir_ + "/redis.sock"; }
    std::string password_file() const { return dir_ + "/password"; }
    bool start() {
        std::string password;
        std::ifstream(password_file()) >> password;
        pid_ = fork();
        if (pid_ == 0) {
            const std::string sock = dir_ + "/redis.sock", log = dir_ + "/redis.log";
            execlp("redis-server", "redis-server", "--port", "0", "--unixsocket", sock.c_str(), "--unixsocketperm",
                   "700", "--requirepass", password.c_str(), "--dir", dir_.c_str(), "--save", "", "--appendonly", "no",
                   "--logfile", log.c_str(), static_cast<char*>(nullptr));
            _exit(127);
        }
        for (int i = 0; i < 200; ++i) {
            try {
                redis_connection r(address(), password_file());
                if (std::string(r.command({"PING"})->str) == "PONG") return true;
            } catch (const std::exception&) {
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(25));
        }
        return false;
    }
    void kill9() {
        if (pid_ <= 0) return;
        ::kill(pid_, SIGKILL);
        waitpid(pid_, nullptr, 0);
        pid_ = -1;
    }

private:
    std::string dir_;
    pid_t pid_ = -1;
};

}  // namespace sekisho
