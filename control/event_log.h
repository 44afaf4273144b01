// Drains the workers' event rings into a JSON-lines log (control thread).
// One line per event; the schema is in docs/events.md.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "event_ring.h"

namespace sekisho {

class account_registry;
struct policy;

// What turns ids in an event into names: the policy's limit names and the
// account registry. Either may be null (ids are printed then).
struct event_names {
    const policy* pol = nullptr;
    const account_registry* accounts = nullptr;
};

std::string event_to_json(const event_record& e, const event_names& names = {});

class event_log {
public:
    // Opens `path` for appending; "-" is standard output. Throws on failure.
    explicit event_log(const std::string& path);
    ~event_log();
    event_log(const event_log&) = delete;
    event_log& operator=(const event_log&) = delete;

    // Moves whatever the rings hold into the log; returns events written.
    size_t drain(const std::vector<event_ring*>& rings, const event_names& names = {});
    uint64_t written() const { return written_; }
    uint64_t write_errors() const { return write_errors_; }

private:
    FILE* out_;
    bool owned_;
    uint64_t written_ = 0;
    uint64_t write_errors_ = 0;
};

}  // namespace sekisho
