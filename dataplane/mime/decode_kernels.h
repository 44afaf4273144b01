// SIMD kernels of the mail text path's fast paths (smtp_session.cpp's DATA
// scanner, mail_decoder.cpp's decoders), and the choice of instruction set
// they run with.
//
// Each kernel does the common case of one step, many bytes at a time, and
// stops where anything else begins; the decoder's byte-at-a-time code goes on
// from there. So a kernel never changes what is decoded, only how fast:
// tests compare every kernel with the scalar path (decode_kernels_test.cpp,
// and mail_decoder_test.cpp at every simd_level).
//
// The instruction set is chosen at run time (CPUID, once per process): the
// build targets a baseline x86-64 CPU, the kernels are compiled for AVX2 or
// AVX-512 in functions of their own, one file per instruction set
// (decode_kernels_avx2.cpp, decode_kernels_avx512.cpp), and decode_kernels.cpp
// alone chooses which runs. Without them (another CPU, another architecture, or
// set_simd_limit(simd_level::scalar)) the decoder uses its scalar code only.
#pragma once

#include <cstddef>
#include <cstdint>

namespace sekisho {

enum class simd_level : uint8_t {
    scalar = 0,
    avx2 = 1,    // AVX2
    avx512 = 2,  // AVX-512 F, BW, VL, VBMI and VBMI2 (Ice Lake, Sapphire Rapids, Zen 4 and later)
};
const char* to_string(simd_level l);

simd_level simd_detected();  // what this CPU has
simd_level simd_active();    // what the kernels use: the detected level, or less if limited
// Lowers (or restores, up to what was detected) the level the kernels use, for the whole
// process. Tests and benches compare levels with it; call it while no worker decodes.
void set_simd_limit(simd_level l);

namespace kernels {

// SMTP DATA: the first CR in p[0, n) that may begin a line's leading dot ("\r\n." or, at
// the end of p, "\r\n" or "\r"): where dot-stuffing or the end-of-data marker can be.
// Returns n if there is none. (Scalar: memchr; AVX2: 32 bytes at a time.)
size_t find_line_dot(const uint8_t* p, size_t n);

// Base64: decodes from in[0, n), block by block of 32 bytes: a block of 32 alphabet characters
// (A-Z a-z 0-9 + /) into 24 bytes; a block whose first byte outside the alphabet ends a
// multiple of 4 characters and is a line break (CR LF, or LF) into the bytes of the characters
// before it, the line break skipped (the next block starts after it). It stops before any other
// block (padding, junk, a line of another length) and when fewer than 32 bytes are left.
// Returns the input bytes used; writes `written` bytes at out (3/4 of the characters used),
// and may write up to base64_slack bytes beyond them. AVX2 (0 used otherwise).
constexpr size_t base64_block = 32;
constexpr size_t base64_slack = 32;
size_t base64_blocks(const uint8_t* in, size_t n, uint8_t* out, size_t& written);

// Quoted-printable: decodes from in[0, n) what needs no state: bytes other than '=', SP and
// TAB as they are (line breaks too), "=XX" with two hex digits as the byte, soft line breaks
// ("=" CRLF, "=" LF) as nothing, and SP / TAB followed by a byte that is none of SP, TAB, CR,
// LF as they are. Stops before anything else ('=' otherwise, whitespace that may be trailing
// or a run of it) and when fewer than qp_lookahead bytes are left, so that every escape it
// reads is whole. Returns the input bytes used; writes `written` bytes at out (never more than
// it used), and may write up to qp_slack bytes beyond them. AVX-512 only (0 otherwise).
constexpr size_t qp_lookahead = 66;
constexpr size_t qp_slack = 64;
size_t qp_blocks(const uint8_t* in, size_t n, uint8_t* out, size_t& written);

}  // namespace kernels
}  // namespace sekisho
