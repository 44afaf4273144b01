// The AVX-512 kernel (decode_kernels_isa.h): quoted-printable blocks. Built on x86-64 only;
// compiled for AVX-512 F, BW, VL, VBMI, VBMI2 (with BMI, BMI2, POPCNT) alone.
#include <immintrin.h>

#include "dataplane/mime/decode_kernels.h"
#include "dataplane/mime/decode_kernels_isa.h"

namespace sekisho::kernels::isa {

#define SEKISHO_AVX512 gnu::target("avx512f,avx512bw,avx512vl,avx512vbmi,avx512vbmi2,bmi,bmi2,popcnt")

namespace {

// Hex digit values where the bytes of v are hex digits (is_hex), garbage elsewhere.
[[SEKISHO_AVX512, gnu::always_inline]] inline __m512i hex_nibbles(__m512i v, __mmask64& is_hex) {
    const __m512i digit = _mm512_sub_epi8(v, _mm512_set1_epi8('0'));
    const __mmask64 d = _mm512_cmplt_epu8_mask(digit, _mm512_set1_epi8(10));
    const __m512i lower = _mm512_or_si512(v, _mm512_set1_epi8(0x20));
    const __mmask64 l = _mm512_cmplt_epu8_mask(_mm512_sub_epi8(lower, _mm512_set1_epi8('a')), _mm512_set1_epi8(6));
    is_hex = d | l;
    return _mm512_mask_mov_epi8(_mm512_sub_epi8(lower, _mm512_set1_epi8('a' - 10)), d, digit);
}

}  // namespace

// Quoted-printable with AVX-512, 64 bytes at a time, each byte seen with the two after it
// (three loads, one byte apart): masks of '=', of escapes ('=' then two hex digits), of soft
// line breaks and of whitespace that is safe (followed by something else than whitespace or a
// line break); the first byte that is none of the cases ends the work. An escape's value is
// built for every byte at once from the nibbles of the two next bytes; the escapes' second and
// third bytes and the soft breaks are dropped by one compress.
[[SEKISHO_AVX512]] size_t qp_blocks_avx512(const uint8_t* in, size_t n, uint8_t* out, size_t& written) {
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

}  // namespace sekisho::kernels::isa
