// Text from outside: the control API's fields and arguments (refused when not
// printable) and the daemon's replies as sekishoctl shows them to an operator
// (escaped). Printable means well-formed UTF-8 (RFC 3629: no overlong forms,
// no surrogates, at most U+10FFFF) without control characters: C0 (0x00-0x1f),
// DEL (0x7f) and C1 (U+0080-U+009F), which terminals may obey as escape
// sequences (ESC [ ..., CSI) instead of showing them.
//
// Pure, no allocation but the escaped copy; used by both sekishod and sekishoctl.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace sekisho {

// The longest name a client may give a policy it sends (POST /v1/policy?name=,
// sekishoctl: the file's name), used only in the daemon's messages
// ("NAME:4: ..."). Here so that sekishoctl bounds it as the daemon does.
constexpr size_t api_max_source_name_bytes = 256;

struct unprintable_byte {
    size_t offset;   // into the text
    uint8_t value;
    bool control;    // a control character; else a byte that is not UTF-8
};

// The first unprintable byte of `text` (of a C1 character: its first byte), or
// nullopt. With `line_breaks`, '\n' and '\t' count as printable (multi-line text).
std::optional<unprintable_byte> find_unprintable(std::string_view text, bool line_breaks = false);

// "control character 0x1b at byte 3", "byte 0xff at byte 2, not UTF-8".
std::string describe(const unprintable_byte& b);

// `text` with every unprintable byte written as \xNN (a C1 character's two
// bytes as \xc2\x9b); everything else, backslashes included, unchanged.
std::string escape_unprintable(std::string_view text, bool line_breaks = false);

}  // namespace sekisho
