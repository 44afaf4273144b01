// Counts shared through Redis hashes: see redis_count_fields.h.
#include "control/fleet/redis_count_fields.h"

#include <charconv>
#include <cstdio>
#include <random>

namespace sekisho {

std::string boot_field(const std::string& gateway) {
    std::random_device rd;
    char boot[17];
    std::snprintf(boot, sizeof boot, "%08x%08x", rd(), rd());
    return gateway + "/" + boot;
}

std::optional<uint32_t> parse_count_field(const redisReply* r) {
    if (r == nullptr || r->type != REDIS_REPLY_STRING) return std::nullopt;
    uint32_t v = 0;
    const auto [end, ec] = std::from_chars(r->str, r->str + r->len, v);
    if (ec != std::errc() || end != r->str + r->len) return std::nullopt;
    return v;
}

count_fields sum_count_fields(const redisReply* hgetall, std::string_view own_field) {
    count_fields out;
    if (hgetall == nullptr || (hgetall->type != REDIS_REPLY_ARRAY)) return out;
    for (size_t i = 0; i + 1 < hgetall->elements; i += 2) {
        const redisReply* name = hgetall->element[i];
        const std::optional<uint32_t> v = parse_count_field(hgetall->element[i + 1]);
        if (!v) {
            ++out.bad;
            continue;
        }
        if (name->type == REDIS_REPLY_STRING && own_field == std::string_view(name->str, name->len)) {
            out.mine = v;
            continue;
        }
        out.others += *v;
    }
    return out;
}

}  // namespace sekisho
