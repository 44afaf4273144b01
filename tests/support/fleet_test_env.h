// What the fleet integration tests (tests/fleet/*_test.cpp, one binary run by
// with_fleet_stores.sh) share: the environment that script sets, waiting for
// a condition a store thread brings about, and running a command (the real
// sekishoctl) for its output and exit code.
#pragma once

#include <sys/wait.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <thread>
#include <utility>

namespace sekisho::test {

// The variable's value, "" when unset.
inline std::string env(const char* name) {
    const char* v = std::getenv(name);
    return v ? v : "";
}

// Polls `f` every 20 ms until it holds or `seconds` have passed; its last answer.
inline bool eventually(const std::function<bool()>& f, int seconds = 30) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
    while (std::chrono::steady_clock::now() < end) {
        if (f()) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return f();
}

// Runs `command` with sh, standard error joined to standard output: the
// output and the exit code (-1: it did not exit).
inline std::pair<std::string, int> run_command(const std::string& command) {
    FILE* p = ::popen((command + " 2>&1").c_str(), "r");
    std::string out;
    std::array<char, 4096> buf{};
    for (size_t n; p && (n = std::fread(buf.data(), 1, buf.size(), p)) > 0;) out.append(buf.data(), n);
    const int status = p ? ::pclose(p) : -1;
    return {out, WIFEXITED(status) ? WEXITSTATUS(status) : -1};
}

}  // namespace sekisho::test
