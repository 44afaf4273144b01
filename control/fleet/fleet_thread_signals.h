// What a fleet concern's own thread shares with the control thread besides
// its state: a wake-up and stop signal, and a bounded queue of log lines the
// control thread prints (the fleet threads never write to standard error).
//
// Bounds: at most 100 lines wait; beyond that lines are counted and the next
// take_log_lines() says how many were dropped. Threading: every call from any
// thread; one mutex of its own, held briefly.
#pragma once

#include <pthread.h>
#include <signal.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace sekisho {

// A write to a store that died raises SIGPIPE, whose default kills the
// daemon: a fleet thread blocks it for itself when it starts, so the write
// fails with EPIPE and the link is counted down instead.
inline void block_sigpipe_on_this_thread() {
    sigset_t pipe;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe, nullptr);
}

class fleet_thread_signals {
public:
    // `prefix` begins the dropped-lines note, e.g. "fleet: events: ".
    explicit fleet_thread_signals(std::string prefix) : prefix_(std::move(prefix)) {}

    void log(const std::string& line) {
        std::lock_guard<std::mutex> l(mu_);
        if (lines_.size() < max_lines) lines_.push_back(line);
        else ++dropped_;
    }
    std::vector<std::string> take_log_lines() {
        std::lock_guard<std::mutex> l(mu_);
        std::vector<std::string> out;
        out.swap(lines_);
        if (dropped_) {
            out.push_back(prefix_ + std::to_string(dropped_) + " more log lines dropped");
            dropped_ = 0;
        }
        return out;
    }

    // Ends the current or next wait_for() early.
    void wake() {
        {
            std::lock_guard<std::mutex> l(mu_);
            woken_ = true;
        }
        cv_.notify_all();
    }
    // From here on every wait_for() returns false at once.
    void stop() {
        {
            std::lock_guard<std::mutex> l(mu_);
            stop_ = true;
        }
        cv_.notify_all();
    }
    bool stopping() const {
        std::lock_guard<std::mutex> l(mu_);
        return stop_;
    }
    // Waits up to `ns` or until woken or stopped; false when stopping.
    bool wait_for(uint64_t ns) {
        std::unique_lock<std::mutex> l(mu_);
        cv_.wait_for(l, std::chrono::nanoseconds(ns), [this] { return stop_ || woken_; });
        woken_ = false;
        return !stop_;
    }

private:
    static constexpr size_t max_lines = 100;
    const std::string prefix_;
    mutable std::mutex mu_;
    std::condition_variable cv_;
    bool stop_ = false, woken_ = false;
    std::vector<std::string> lines_;
    uint64_t dropped_ = 0;
};

}  // namespace sekisho
