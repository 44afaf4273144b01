// Times as the operator reads and writes them: Unix seconds, or ISO 8601 in
// UTC ("2026-11-23T12:00:00Z"). Header-only so that sekishoctl, which links no
// project library, prints times exactly as the daemon does.
#pragma once

#include <charconv>
#include <cstdint>
#include <ctime>
#include <optional>
#include <string>

namespace sekisho {

// Parses Unix seconds or "YYYY-MM-DDTHH:MM:SS[Z]" (UTC); nullopt otherwise.
inline std::optional<int64_t> parse_time(const std::string& text) {
    int64_t seconds = 0;
    const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), seconds);
    if (ec == std::errc() && ptr == text.data() + text.size()) return seconds;
    std::tm tm{};
    const char* end = strptime(text.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
    if (end == nullptr || !(*end == '\0' || (end[0] == 'Z' && end[1] == '\0'))) return std::nullopt;
    return static_cast<int64_t>(timegm(&tm));
}

// "2026-11-23T02:13:20Z"; "?" for a time gmtime cannot represent.
inline std::string utc_time_text(int64_t t) {
    const std::time_t tt = static_cast<std::time_t>(t);
    std::tm tm{};
    char buf[40] = "?";
    if (gmtime_r(&tt, &tm)) std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

}  // namespace sekisho
