// Counts shared through Redis hashes, one field per gateway process: the
// field naming and the sum over a hash's fields, shared by the concerns that
// write such counts (account_limit_sync, campaign_sync).
//
// A process writes its own count with HSET into its own field,
// `<gateway>/<boot id>`: HSET sets, it does not add, so a resend changes
// nothing; the boot id (random per process) keeps what an earlier process of
// the same gateway counted (a restart, kill -9 included) as a field of its
// own, so the fleet's sum does not lose it when the new process starts from
// zero. Pure functions: no I/O, any thread.
#pragma once

#include <hiredis/hiredis.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace sekisho {

// `<gateway>/<16 hex digits from std::random_device>`: call once per process.
std::string boot_field(const std::string& gateway);

// A hash field's value as these concerns write it (a decimal uint32), else nothing.
std::optional<uint32_t> parse_count_field(const redisReply* r);

// An HGETALL reply (name, value, name, value ...) summed.
struct count_fields {
    uint64_t others = 0;              // the sum of every field but own_field
    std::optional<uint32_t> mine;     // own_field's value, if Redis holds it
    uint64_t bad = 0;                 // fields whose value is not a count (ignored)
};
// A reply that is not an array (nil, an error, an expired key) sums to nothing.
count_fields sum_count_fields(const redisReply* hgetall, std::string_view own_field);

}  // namespace sekisho
