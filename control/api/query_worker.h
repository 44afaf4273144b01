// Read-only queries (the event log: events, top, report, whois' events) on a
// thread of their own, so that scanning a large log never delays the control
// thread, which serves RADIUS, the API and the event drain.
//
// One query runs at a time, in the order posted; at most `max_waiting` wait
// (the caller answers 503 beyond that). A job owns everything it reads (a
// path, copied arguments) and answers its request itself.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

namespace sekisho {

class query_worker {
public:
    explicit query_worker(size_t max_waiting = 16);
    // Lets the running job finish; jobs still waiting are dropped unrun.
    ~query_worker();
    query_worker(const query_worker&) = delete;
    query_worker& operator=(const query_worker&) = delete;

    // Any thread. False (and `job` dropped) when max_waiting jobs wait already.
    bool post(std::function<void()> job);
    size_t waiting() const;

private:
    void run();

    const size_t max_waiting_;
    mutable std::mutex mutex_;
    std::condition_variable wake_;
    std::deque<std::function<void()>> jobs_;
    bool stopping_ = false;
    std::thread thread_;
};

}  // namespace sekisho
