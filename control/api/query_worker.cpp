#include "control/api/query_worker.h"

namespace sekisho {

query_worker::query_worker(size_t max_waiting) : max_waiting_(max_waiting), thread_([this] { run(); }) {}

query_worker::~query_worker() {
    std::deque<std::function<void()>> dropped;
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
        dropped.swap(jobs_);
    }
    wake_.notify_all();
    thread_.join();
    dropped.clear();   // outside the lock: a job's captures may answer requests as they go
}

bool query_worker::post(std::function<void()> job) {
    {
        std::lock_guard lock(mutex_);
        if (stopping_ || jobs_.size() >= max_waiting_) return false;
        jobs_.push_back(std::move(job));
    }
    wake_.notify_one();
    return true;
}

size_t query_worker::waiting() const {
    std::lock_guard lock(mutex_);
    return jobs_.size();
}

void query_worker::run() {
    for (;;) {
        std::function<void()> job;
        {
            std::unique_lock lock(mutex_);
            wake_.wait(lock, [&] { return stopping_ || !jobs_.empty(); });
            if (stopping_) return;
            job = std::move(jobs_.front());
            jobs_.pop_front();
        }
        try {
            job();
        } catch (...) {
            // a job answers its own request, errors included; nothing may end this thread
        }
    }
}

}  // namespace sekisho
