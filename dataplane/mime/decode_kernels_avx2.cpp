// The AVX2 kernels (decode_kernels_isa.h): base64 blocks and the SMTP DATA line-dot search.
// Built on x86-64 only; each function compiled for AVX2 (and BMI) alone.
#include <immintrin.h>

#include "dataplane/mime/decode_kernels.h"
#include "dataplane/mime/decode_kernels_isa.h"

namespace sekisho::kernels::isa {

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
[[gnu::target("avx2,bmi")]] size_t base64_blocks_avx2(const uint8_t* in, size_t n, uint8_t* out, size_t& written) {
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

}  // namespace sekisho::kernels::isa
