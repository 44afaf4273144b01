#include "dataplane/mime/decode_kernels.h"

#include <immintrin.h>

#include <atomic>
#include <cstring>

namespace sekisho {

namespace {

simd_level detect() {
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vbmi") &&
        __builtin_cpu_supports("avx512vbmi2"))
        return simd_level::avx512;
    if (__builtin_cpu_supports("avx2")) return simd_level::avx2;
#endif
    return simd_level::scalar;
}

const simd_level detected_level = detect();
std::atomic<simd_level> active_level{detected_level};

}  // namespace

const char* to_string(simd_level l) {
    switch (l) {
    case simd_level::scalar: return "scalar";
    case simd_level::avx2: return "avx2";
    case simd_level::avx512: return "avx512";
    }
    return "unknown";
}

simd_level simd_detected() { return detected_level; }
simd_level simd_active() { return active_level.load(std::memory_order_relaxed); }
void set_simd_limit(simd_level l) {
    active_level.store(l < detected_level ? l : detected_level, std::memory_order_relaxed);
}

namespace kernels {

#if defined(__x86_64__)
namespace {

// Base64 with AVX2, 32 characters at a time:
// 1. validity by nibbles: hi_class[c >> 4] names c's row of the ASCII table as one bit (rows
//    2, 3, 4|6, 5|7; every other row a bit no low nibble is valid with), lo_bad[c & 15] has
//    that row's bit set where this low nibble is not in the alphabet ('+' 2B and '/' 2F in row
//    2, digits 30-39, A-O 41-4F and a-o 61-6F, P-Z 50-5A and p-z 70-7A): a byte is valid when
//    the two share no bit;
// 2. value = c + offset by row ('/' told from '+' by one compare): + -> 62, / -> 63,
//    0-9 -> 52-61, A-Z -> 0-25, a-z -> 26-51;
// 3. packing: four 6-bit values a b c d become the bytes a<<2|b>>4, b<<4|c>>2, c<<6|d:
//    pairs by a multiply-add of bytes (a*64 + b), then of words ((a<<6|b)*4096 + (c<<6|d)),
//    then the three bytes of each 32-bit word in order and the two lanes' 12 bytes together.
[[gnu::target("avx2,bmi")]] size_t base64_avx2(const uint8_t* in, size_t n, uint8_t* out, size_t& written) {
    const __m256i lo_bad = _mm256_setr_epi8(0x15, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x13, 0x1a,
                                            0x1b, 0x1b, 0x1b, 0x1a, 0x15, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11,
                                            0x11, 0x11, 0x13, 0x1a, 0x1b, 0x1b, 0x1b, 0x1a);
    const __m256i hi_class = _mm256_setr_epi8(0x10, 0x10, 0x01, 0x02, 0x04, 0x08, 0x04, 0x08, 0x10, 0x10, 0x10, 0x10,
                                              0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x01, 0x02, 0x04, 0x08, 0x04, 0x08,
                                              0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10);
    // Offsets by row, index row - ('/' ? 1 : 0): 1 = '/', 2 = '+', 3 = digits, 4-5 = A-Z, 6-7 = a-z.
    const __m256i offset = _mm256_setr_epi8(0, 16, 19, 4, -65, -65, -71, -71, 0, 0, 0, 0, 0, 0, 0, 0, 0, 16, 19, 4,
                                            -65, -65, -71, -71, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m256i nibble = _mm256_set1_epi8(0x0f);
    const __m256i slash = _mm256_set1_epi8('/');
    const __m256i pair_weights = _mm256_set1_epi32(0x01400140);   // bytes 64, 1
    const __m256i quad_weights = _mm256_set1_epi32(0x00011000);   // words 4096, 1
    const __m256i order = _mm256_setr_epi8(2, 1, 0, 6, 5, 4, 10, 9, 8, 14, 13, 12, -1, -1, -1, -1, 2, 1, 0, 6, 5, 4,
                                           10, 9, 8, 14, 13, 12, -1, -1, -1, -1);
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 4, 5, 6, 3, 7);
    uint8_t* const out0 = out;
    size_t i = 0;
    while (i + base64_block <= n) {
        const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(in + i));
        const __m256i hi = _mm256_and_si256(_mm256_srli_epi32(v, 4), nibble);
        const __m256i bad =
            _mm256_and_si256(_mm256_shuffle_epi8(lo_bad, _mm256_and_si256(v, nibble)), _mm256_shuffle_epi8(hi_class, hi));
        const __m256i values =
            _mm256_add_epi8(v, _mm256_shuffle_epi8(offset, _mm256_add_epi8(hi, _mm256_cmpeq_epi8(v, slash))));
        const __m256i words = _mm256_madd_epi16(_mm256_maddubs_epi16(values, pair_weights), quad_weights);
        const __m256i bytes = _mm256_permutevar8x32_epi32(_mm256_shuffle_epi8(words, order), lanes);
        if (_mm256_testz_si256(bad, bad)) {
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), bytes);
            out += 24;
            i += base64_block;
            continue;
        }
        // A line break after whole quads (a MIME line of 76 characters is two blocks and 19
        // quads): the quads before it are decoded (each quad's bytes come from its own four
        // characters only), the break is skipped, and the next block starts after it.
        const auto invalid = ~static_cast<uint32_t>(_mm256_movemask_epi8(_mm256_cmpeq_epi8(bad, _mm256_setzero_si256())));
        const unsigned q = static_cast<unsigned>(__builtin_ctz(invalid));
        if (q % 4 != 0) break;
        const size_t at = i + q;
        const size_t brk = in[at] == '\n' ? 1 : in[at] == '\r' && at + 1 < n && in[at + 1] == '\n' ? 2 : 0;
        if (brk == 0) break;
        if (q != 0) _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), bytes);
        out += q / 4 * 3;
        i = at + brk;
    }
    written = static_cast<size_t>(out - out0);
    return i;
}

// "\r\n." with AVX2: three loads one byte apart, three compares, one mask.
[[gnu::target("avx2,bmi")]] size_t find_line_dot_avx2(const uint8_t* p, size_t n) {
    const __m256i cr = _mm256_set1_epi8('\r'), lf = _mm256_set1_epi8('\n'), dot = _mm256_set1_epi8('.');
    size_t i = 0;
    for (; i + 34 <= n; i += 32) {
        const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i));
        const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 1));
        const __m256i c = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 2));
        const __m256i hit = _mm256_and_si256(_mm256_and_si256(_mm256_cmpeq_epi8(a, cr), _mm256_cmpeq_epi8(b, lf)),
                                             _mm256_cmpeq_epi8(c, dot));
        const auto m = static_cast<uint32_t>(_mm256_movemask_epi8(hit));
        if (m) return i + _tzcnt_u32(m);
    }
    return i;  // the rest: the caller's scalar loop
}

#define SEKISHO_AVX512 gnu::target("avx512f,avx512bw,avx512vl,avx512vbmi,avx512vbmi2,bmi,bmi2,popcnt")

// Hex digit values where the bytes of v are hex digits (is_hex), garbage elsewhere.
[[SEKISHO_AVX512, gnu::always_inline]] inline __m512i hex_nibbles(__m512i v, __mmask64& is_hex) {
    const __m512i digit = _mm512_sub_epi8(v, _mm512_set1_epi8('0'));
    const __mmask64 d = _mm512_cmplt_epu8_mask(digit, _mm512_set1_epi8(10));
    const __m512i lower = _mm512_or_si512(v, _mm512_set1_epi8(0x20));
    const __mmask64 l = _mm512_cmplt_epu8_mask(_mm512_sub_epi8(lower, _mm512_set1_epi8('a')), _mm512_set1_epi8(6));
    is_hex = d | l;
    return _mm512_mask_mov_epi8(_mm512_sub_epi8(lower, _mm512_set1_epi8('a' - 10)), d, digit);
}

// Quoted-printable with AVX-512, 64 bytes at a time, each byte seen with the two after it
// (three loads, one byte apart): masks of '=', of escapes ('=' then two hex digits), of soft
// line breaks and of whitespace that is safe (followed by something else than whitespace or a
// line break); the first byte that is none of the cases ends the work. An escape's value is
// built for every byte at once from the nibbles of the two next bytes; the escapes' second and
// third bytes and the soft breaks are dropped by one compress.
[[SEKISHO_AVX512]] size_t qp_avx512(const uint8_t* in, size_t n, uint8_t* out, size_t& written) {
    const __m512i eq_c = _mm512_set1_epi8('='), sp_c = _mm512_set1_epi8(' '), tab_c = _mm512_set1_epi8('\t'),
                  cr_c = _mm512_set1_epi8('\r'), lf_c = _mm512_set1_epi8('\n'),
                  high_c = _mm512_set1_epi8(static_cast<char>(0xf0)), low_c = _mm512_set1_epi8(0x0f);
    uint8_t* const out0 = out;
    size_t i = 0;
    while (i + qp_lookahead <= n) {
        const __m512i v0 = _mm512_loadu_si512(in + i), v1 = _mm512_loadu_si512(in + i + 1),
                      v2 = _mm512_loadu_si512(in + i + 2);
        const __mmask64 eq = _mm512_cmpeq_epi8_mask(v0, eq_c);
        const __mmask64 ws = _mm512_cmpeq_epi8_mask(v0, sp_c) | _mm512_cmpeq_epi8_mask(v0, tab_c);
        const __mmask64 cr1 = _mm512_cmpeq_epi8_mask(v1, cr_c), lf1 = _mm512_cmpeq_epi8_mask(v1, lf_c);
        const __mmask64 ws1 = _mm512_cmpeq_epi8_mask(v1, sp_c) | _mm512_cmpeq_epi8_mask(v1, tab_c);
        __mmask64 hex1, hex2;
        const __m512i n1 = hex_nibbles(v1, hex1), n2 = hex_nibbles(v2, hex2);
        const __mmask64 esc = eq & hex1 & hex2;
        const __mmask64 soft_crlf = eq & cr1 & _mm512_cmpeq_epi8_mask(v2, lf_c), soft_lf = eq & lf1;
        const __mmask64 stop = (eq & ~(esc | soft_crlf | soft_lf)) | (ws & (ws1 | cr1 | lf1));
        // An escape or soft break whose bytes go past this block is left for the next one.
        const __mmask64 cut = stop | (eq & (uint64_t{3} << 62));
        const unsigned len = cut ? static_cast<unsigned>(_tzcnt_u64(cut)) : 64;
        const __mmask64 within = len == 64 ? ~uint64_t{0} : (uint64_t{1} << len) - 1;
        const __mmask64 drop = esc << 1 | esc << 2 | soft_crlf | soft_crlf << 1 | soft_crlf << 2 | soft_lf | soft_lf << 1;
        const __mmask64 keep = within & ~drop;
        const __m512i value =
            _mm512_or_si512(_mm512_and_si512(_mm512_slli_epi16(n1, 4), high_c), _mm512_and_si512(n2, low_c));
        const __m512i bytes = _mm512_maskz_compress_epi8(keep, _mm512_mask_mov_epi8(v0, esc, value));
        _mm512_storeu_si512(out, bytes);
        out += _mm_popcnt_u64(keep);
        i += len;
        if (len < 64 && (stop >> len & 1)) break;  // else an escape across the block's end: the next block
    }
    written = static_cast<size_t>(out - out0);
    return i;
}

}  // namespace
#endif

size_t find_line_dot(const uint8_t* p, size_t n) {
    size_t i = 0;
#if defined(__x86_64__)
    if (simd_active() >= simd_level::avx2) i = find_line_dot_avx2(p, n);
#endif
    while (i < n) {
        const void* cr = std::memchr(p + i, '\r', n - i);
        if (!cr) return n;
        const size_t k = static_cast<size_t>(static_cast<const uint8_t*>(cr) - p);
        if ((k + 1 >= n || p[k + 1] == '\n') && (k + 2 >= n || p[k + 2] == '.')) return k;
        i = k + 1;
    }
    return n;
}

size_t qp_blocks(const uint8_t* in, size_t n, uint8_t* out, size_t& written) {
    written = 0;
#if defined(__x86_64__)
    if (simd_active() >= simd_level::avx512) return qp_avx512(in, n, out, written);
#endif
    (void)in;
    (void)n;
    (void)out;
    return 0;
}

size_t base64_blocks(const uint8_t* in, size_t n, uint8_t* out, size_t& written) {
    written = 0;
#if defined(__x86_64__)
    if (simd_active() >= simd_level::avx2) return base64_avx2(in, n, out, written);
#endif
    (void)in;
    (void)n;
    (void)out;
    return 0;
}

}  // namespace kernels
}  // namespace sekisho
