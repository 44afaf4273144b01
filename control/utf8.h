// UTF-8 well-formedness (RFC 3629: no overlong forms, no surrogates, nothing
// beyond U+10FFFF), for code that shows untrusted bytes to people and must
// tell text from bytes to escape. Header-only: sekishoctl uses it too.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace sekisho {

// The length (2 to 4) of the well-formed multi-byte sequence at text[i], or 0
// if text[i] does not start one (an ASCII byte, a stray continuation byte, a
// sequence cut short by the end of text, or ill-formed).
inline size_t utf8_sequence_length(std::string_view text, size_t i) {
    const auto c = static_cast<uint8_t>(text[i]);
    size_t n = 0;                   // continuation bytes
    uint8_t lo = 0x80, hi = 0xbf;   // the allowed range of the first continuation byte
    if (c >= 0xc2 && c <= 0xdf) n = 1;
    else if (c == 0xe0) n = 2, lo = 0xa0;
    else if (c >= 0xe1 && c <= 0xec) n = 2;
    else if (c == 0xed) n = 2, hi = 0x9f;
    else if (c >= 0xee && c <= 0xef) n = 2;
    else if (c == 0xf0) n = 3, lo = 0x90;
    else if (c >= 0xf1 && c <= 0xf3) n = 3;
    else if (c == 0xf4) n = 3, hi = 0x8f;
    if (n == 0 || i + n >= text.size()) return 0;
    for (size_t k = 1; k <= n; ++k) {
        const auto b = static_cast<uint8_t>(text[i + k]);
        if (b < (k == 1 ? lo : 0x80) || b > (k == 1 ? hi : 0xbf)) return 0;
    }
    return n + 1;
}

}  // namespace sekisho
