// The mail decoder's SIMD kernels against byte-at-a-time models written here,
// at every instruction-set level this CPU has (a level without a kernel must
// use nothing): what a kernel reads is decoded exactly as the model decodes
// it, it stops where the model says it must, it never writes past its
// documented slack, and it reads nothing outside its input (each input ends
// at a guard page).
#include "dataplane/mime/decode_kernels.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "../support/base64.h"
#include "../support/guarded_buffer.h"

namespace sekisho {
namespace {

test::guarded_buffer& guard() {
    static test::guarded_buffer b(1 << 20);
    return b;
}

// Runs body at each level up to the detected one, then restores the detected level.
template <class F>
void at_every_level(F&& body) {
    for (simd_level l : {simd_level::scalar, simd_level::avx2, simd_level::avx512}) {
        if (l > simd_detected()) break;
        set_simd_limit(l);
        SCOPED_TRACE(to_string(l));
        body(l);
    }
    set_simd_limit(simd_level::avx512);
}

constexpr uint8_t canary = 0xa5;

// An output buffer of `room` bytes followed by canaries: check_canaries() says whether
// anything was written beyond the first `limit` bytes.
struct output {
    std::vector<uint8_t> buf;
    explicit output(size_t room) : buf(room + 256, canary) {}
    uint8_t* data() { return buf.data(); }
    bool untouched_from(size_t limit) const {
        for (size_t k = limit; k < buf.size(); ++k)
            if (buf[k] != canary) return false;
        return true;
    }
};

// --- SMTP DATA: "\r\n." -------------------------------------------------------------------------

size_t find_line_dot_model(std::string_view s) {
    for (size_t k = 0; k < s.size(); ++k)
        if (s[k] == '\r' && (k + 1 >= s.size() || s[k + 1] == '\n') && (k + 2 >= s.size() || s[k + 2] == '.'))
            return k;
    return s.size();
}

TEST(decode_kernels, find_line_dot) {
    const std::vector<std::string> tokens = {"a", "xyz ", "\r", "\n", "\r\n", ".", "..", "\r\n.", "\r\r\n.", "\n.",
                                             "\r.", "\r\nx", "\x80"};
    at_every_level([&](simd_level) {
        std::mt19937 rng(3);
        for (int iter = 0; iter < 20000; ++iter) {
            std::string in;
            const int n = static_cast<int>(rng() % 100);
            for (int k = 0; k < n; ++k) in += tokens[rng() % 8 == 0 ? rng() % tokens.size() : rng() % 2];
            const uint8_t* p = guard().place(reinterpret_cast<const uint8_t*>(in.data()), in.size());
            ASSERT_EQ(kernels::find_line_dot(p, in.size()), find_line_dot_model(in)) << testing::PrintToString(in);
        }
        // The marker at every position around the 32-byte blocks, and each partial form at the end.
        for (size_t pos = 0; pos < 100; ++pos)
            for (const std::string tail : {"\r\n.", "\r\n", "\r", "\r\nX"}) {
                const std::string in = std::string(pos, 'a') + tail + std::string(rng() % 2 ? 0 : 40, 'b');
                const uint8_t* p = guard().place(reinterpret_cast<const uint8_t*>(in.data()), in.size());
                ASSERT_EQ(kernels::find_line_dot(p, in.size()), find_line_dot_model(in)) << testing::PrintToString(in);
            }
    });
}

// --- base64 ------------------------------------------------------------------------------------

int b64_value(uint8_t c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

std::string b64_decode_model(std::string_view s) {  // s: alphabet characters only, a multiple of 4
    std::string out;
    for (size_t i = 0; i + 4 <= s.size(); i += 4) {
        uint32_t v = 0;
        for (size_t k = 0; k < 4; ++k) v = v << 6 | static_cast<uint32_t>(b64_value(static_cast<uint8_t>(s[i + k])));
        out += {static_cast<char>(v >> 16), static_cast<char>(v >> 8), static_cast<char>(v)};
    }
    return out;
}

// What the kernel must take (decode_kernels.h): block by block of 32 bytes, a block of alphabet
// characters, or whole quads and then a line break (skipped), until any other block or fewer
// than 32 bytes are left. Returns the input used and appends the characters decoded to chars.
size_t base64_blocks_model(const std::string& in, std::string& chars) {
    size_t i = 0;
    while (i + kernels::base64_block <= in.size()) {
        size_t q = 0;
        while (q < kernels::base64_block && b64_value(static_cast<uint8_t>(in[i + q])) >= 0) ++q;
        if (q == kernels::base64_block) {
            chars += in.substr(i, q);
            i += q;
            continue;
        }
        const size_t at = i + q;
        const size_t brk = in[at] == '\n' ? 1 : in[at] == '\r' && at + 1 < in.size() && in[at + 1] == '\n' ? 2 : 0;
        if (q % 4 != 0 || brk == 0) break;
        chars += in.substr(i, q);
        i = at + brk;
    }
    return i;
}

void check_base64(const std::string& in, simd_level l) {
    const uint8_t* p = guard().place(reinterpret_cast<const uint8_t*>(in.data()), in.size());
    output out(in.size());
    size_t written = 0;
    const size_t used = kernels::base64_blocks(p, in.size(), out.data(), written);
    std::string chars;
    const size_t want = l >= simd_level::avx2 ? base64_blocks_model(in, chars) : 0;
    ASSERT_EQ(used, want) << testing::PrintToString(in);
    ASSERT_EQ(written, chars.size() / 4 * 3) << testing::PrintToString(in);
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(out.data()), written), b64_decode_model(chars));
    EXPECT_TRUE(out.untouched_from(written + kernels::base64_slack));
}

TEST(decode_kernels, base64_every_character_at_every_position) {
    at_every_level([](simd_level l) {
        std::string alphabet;
        for (int c = 0; c < 256; ++c)
            if (b64_value(static_cast<uint8_t>(c)) >= 0) alphabet += static_cast<char>(c);
        ASSERT_EQ(alphabet.size(), 64u);
        // Every byte value in every position of a two-block run: only the 64 are taken.
        const std::string base = alphabet;  // 64 valid characters
        for (int c = 0; c < 256; ++c)
            for (size_t pos = 0; pos < base.size(); ++pos) {
                std::string in = base;
                in[pos] = static_cast<char>(c);
                check_base64(in, l);
                if (HasFatalFailure()) return;
            }
    });
}

// The base64 of fewer than `most` random bytes.
std::string random_base64(std::mt19937& rng, size_t most) {
    std::string raw(rng() % most, '\0');
    for (char& c : raw) c = static_cast<char>(rng());
    return test::base64(raw);
}

// MIME bodies: lines of 76 (the usual), 64, 72 or 60 characters and CR LF or LF, lines of other
// lengths (the kernel stops at their break), a last short line, padding, a boundary after.
TEST(decode_kernels, base64_lines) {
    at_every_level([](simd_level l) {
        std::mt19937 rng(9);
        for (int iter = 0; iter < 3000; ++iter) {
            const std::string flat = random_base64(rng, 2000);
            const size_t widths[] = {76, 64, 72, 60, 4, 32, 33, 75, 1 + rng() % 100};
            const size_t width = widths[rng() % std::size(widths)];
            const std::string brk = rng() % 4 ? "\r\n" : "\n";
            std::string in;
            for (size_t k = 0; k < flat.size(); k += width) in += flat.substr(k, width) + brk;
            if (rng() % 2) in += "--boundary\r\n";
            if (rng() % 8 == 0 && !in.empty()) in[rng() % in.size()] = static_cast<char>(rng());
            check_base64(in, l);
            if (HasFatalFailure()) return;
        }
    });
}

TEST(decode_kernels, base64_random_runs_and_lengths) {
    at_every_level([](simd_level l) {
        std::mt19937 rng(42);
        for (int iter = 0; iter < 3000; ++iter) {
            std::string in = random_base64(rng, 400);
            if (rng() % 2 && !in.empty()) in.insert(rng() % in.size(), rng() % 2 ? "\r\n" : "=");
            check_base64(in, l);
            if (HasFatalFailure()) return;
        }
    });
}

// --- quoted-printable ----------------------------------------------------------------------------

bool is_ws(uint8_t c) { return c == ' ' || c == '\t'; }
int hex(uint8_t c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

// The kernel's cases, one unit at a time: returns the unit's length at in[i] (0: not a case
// the kernel takes) and appends its output.
size_t qp_unit(std::string_view in, size_t i, std::string& out) {
    const uint8_t c = static_cast<uint8_t>(in[i]);
    if (c == '=') {
        if (i + 2 < in.size() && hex(static_cast<uint8_t>(in[i + 1])) >= 0 && hex(static_cast<uint8_t>(in[i + 2])) >= 0) {
            out += static_cast<char>(hex(static_cast<uint8_t>(in[i + 1])) << 4 | hex(static_cast<uint8_t>(in[i + 2])));
            return 3;
        }
        if (i + 1 < in.size() && in[i + 1] == '\n') return 2;
        if (i + 2 < in.size() && in[i + 1] == '\r' && in[i + 2] == '\n') return 3;
        return 0;
    }
    if (is_ws(c)) {
        if (i + 1 >= in.size()) return 0;
        const uint8_t d = static_cast<uint8_t>(in[i + 1]);
        if (is_ws(d) || d == '\r' || d == '\n') return 0;
    }
    out += static_cast<char>(c);
    return 1;
}

void check_qp(const std::string& in, simd_level l) {
    const uint8_t* p = guard().place(reinterpret_cast<const uint8_t*>(in.data()), in.size());
    output out(in.size());
    size_t written = 12345;
    const size_t used = kernels::qp_blocks(p, in.size(), out.data(), written);
    if (l < simd_level::avx512) {
        ASSERT_EQ(used, 0u);
        ASSERT_EQ(written, 0u);
        return;
    }
    // The model's units up to the first the kernel must not take: where each ends, and how
    // much output there is by then.
    std::string model;
    std::vector<size_t> ends{0}, produced{0};
    size_t at = 0;
    while (at < in.size()) {
        const size_t k = qp_unit(in, at, model);
        if (k == 0) break;
        at += k;
        ends.push_back(at);
        produced.push_back(model.size());
    }
    const size_t stop = at;
    const auto it = std::find(ends.begin(), ends.end(), used);
    ASSERT_NE(it, ends.end()) << "used " << used << ": inside a unit or past a stop at " << stop << ": "
                              << testing::PrintToString(in);
    // It goes on until the stop, or until it lacks the lookahead.
    ASSERT_TRUE(used == stop || used + kernels::qp_lookahead > in.size())
        << "used " << used << ", stop " << stop << ": " << testing::PrintToString(in);
    const size_t want = produced[static_cast<size_t>(it - ends.begin())];
    ASSERT_EQ(written, want);
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(out.data()), written), model.substr(0, want))
        << testing::PrintToString(in);
    EXPECT_TRUE(out.untouched_from(written + kernels::qp_slack));
}

TEST(decode_kernels, quoted_printable_random_texts) {
    const std::vector<std::string> tokens = {
        "a", "Z", "0", "~", "=", "==", "=3D", "=E3=81=82", "=e3=81=82", "=Ef", "=ZZ", "=4", "=4x", "=\r\n",
        "=\n", "=\r", "=\rx", " ", "  ", "\t", " \r\n", "\t\n", " x", "\tx", "\r\n", "\n", "\r", "\x80", "\xff",
        "\xe6\x97\xa5", "hello world ", "=20", "=0D=0A", "=\r\n=\r\n", "= \r\n"};
    at_every_level([&](simd_level l) {
        std::mt19937 rng(7);
        for (int iter = 0; iter < 4000; ++iter) {
            std::string in;
            // Mostly text the kernel takes, with rarer tokens it must stop at.
            const int n = static_cast<int>(rng() % 120);
            for (int k = 0; k < n; ++k) in += tokens[rng() % 4 == 0 ? rng() % tokens.size() : rng() % 9];
            check_qp(in, l);
            if (HasFatalFailure()) return;
        }
    });
}

// Escapes and soft breaks at every position around the 64-byte block boundary.
TEST(decode_kernels, quoted_printable_escapes_across_blocks) {
    at_every_level([](simd_level l) {
        for (const std::string unit : {"=41", "=\r\n", "=\n", " x", "=4", "  ", " \r\n", "=\r"})
            for (size_t pos = 0; pos < 200; ++pos)
                for (const char filler : {'a', '\n'}) {
                    std::string in(pos, filler);
                    in += unit;
                    in += std::string(140, 'b');
                    check_qp(in, l);
                    if (HasFatalFailure()) return;
                }
    });
}

}  // namespace
}  // namespace sekisho
