#include "control/api/untrusted_text.h"

#include "control/utf8.h"

namespace sekisho {

namespace {

// A C1 control character (U+0080-U+009F) at text[i].
bool is_c1(std::string_view text, size_t i) {
    return static_cast<uint8_t>(text[i]) == 0xc2 && i + 1 < text.size() &&
           static_cast<uint8_t>(text[i + 1]) >= 0x80 && static_cast<uint8_t>(text[i + 1]) <= 0x9f;
}

// The length of the well-formed UTF-8 sequence at text[i] that is not a
// control character (1 to 4), or 0: a control character or not UTF-8.
size_t printable_length(std::string_view text, size_t i, bool line_breaks) {
    const auto c = static_cast<uint8_t>(text[i]);
    if (c < 0x80) return (c >= 0x20 && c != 0x7f) || (line_breaks && (c == '\n' || c == '\t')) ? 1 : 0;
    return is_c1(text, i) ? 0 : utf8_sequence_length(text, i);
}

}  // namespace

std::optional<unprintable_byte> find_unprintable(std::string_view text, bool line_breaks) {
    for (size_t i = 0; i < text.size();) {
        const size_t n = printable_length(text, i, line_breaks);
        if (n == 0) {
            const auto c = static_cast<uint8_t>(text[i]);
            return unprintable_byte{i, c, c < 0x80 || is_c1(text, i)};
        }
        i += n;
    }
    return std::nullopt;
}

std::string describe(const unprintable_byte& b) {
    static constexpr char hex[] = "0123456789abcdef";
    const std::string value = {'0', 'x', hex[b.value >> 4], hex[b.value & 15]};
    if (b.control) return "control character " + value + " at byte " + std::to_string(b.offset);
    return "byte " + value + " at byte " + std::to_string(b.offset) + ", not UTF-8";
}

std::string escape_unprintable(std::string_view text, bool line_breaks) {
    static constexpr char hex[] = "0123456789abcdef";
    std::string out;
    out.reserve(text.size());
    for (size_t i = 0; i < text.size();) {
        size_t n = printable_length(text, i, line_breaks);
        if (n > 0) {
            out.append(text.substr(i, n));
            i += n;
            continue;
        }
        n = is_c1(text, i) ? 2 : 1;
        for (size_t k = 0; k < n; ++k, ++i) {
            const auto c = static_cast<uint8_t>(text[i]);
            out += "\\x";
            out += hex[c >> 4];
            out += hex[c & 15];
        }
    }
    return out;
}

}  // namespace sekisho
