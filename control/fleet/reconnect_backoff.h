// When a fleet concern's thread may try its store again after a failure:
// 100 ms after the first, doubling to 5 s, back to 100 ms once a link is up.
// One per concern thread; not thread-safe (the thread's own state).
#pragma once

#include <algorithm>
#include <chrono>

namespace sekisho {

class reconnect_backoff {
public:
    static constexpr std::chrono::milliseconds first{100}, last{5000};

    // Whether the wait after the last failure is over (true before any).
    bool due() const { return std::chrono::steady_clock::now() >= next_attempt_; }
    // A connect or a link failed: the next attempt waits, longer each time.
    void failed() {
        next_attempt_ = std::chrono::steady_clock::now() + delay_;
        delay_ = std::min(delay_ * 2, last);
    }
    // A link came up: the next failure waits the shortest time again.
    void succeeded() { delay_ = first; }

private:
    std::chrono::milliseconds delay_ = first;
    std::chrono::steady_clock::time_point next_attempt_{};
};

}  // namespace sekisho
