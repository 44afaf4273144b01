// Fuzz target: the body fingerprint (dataplane/inspect/message_fingerprint.cpp), fed
// decoded body text, which the sender controls (any bytes: the decoder passes
// invalid UTF-8 on as it is).
//
// Input: byte 0 seeds the segmentation, the rest is the text. The text is
// fingerprinted whole, in pieces, and whole again with the SIMD kernels off
// (the AVX2 word kernel against the byte loop): tokens, fingerprint and
// signature must be the same all three ways (message_fingerprint.h promises
// that the result does not depend on the split). Also: tokens within the
// sample bound; a fingerprint exactly when there are enough tokens; a
// signature, once there is a token, with every bin filled (densified).
#include <string_view>

#include "dataplane/mime/decode_kernels.h"
#include "fuzz_target.h"
#include "dataplane/inspect/message_fingerprint.h"

using namespace sekisho;

namespace {

message_fingerprint in_pieces(const uint8_t* text, size_t len, uint8_t seed) {
    message_fingerprint f;
    uint32_t state = seed;
    const uint32_t most = seed % 97 + 1;
    for (size_t at = 0; at < len;) {
        state = state * 1103515245u + 12345u;
        const size_t n = std::min<size_t>(len - at, 1 + (state >> 16) % most);
        f.feed(text + at, n);
        at += n;
    }
    return f;
}

void check_same(const message_fingerprint& a, const message_fingerprint& b) {
    fuzz_check(a.tokens() == b.tokens());
    fuzz_check(a.fingerprint() == b.fingerprint());
    const message_signature sa = a.signature(), sb = b.signature();
    for (unsigned i = 0; i < fingerprint_bins; ++i) fuzz_check(sa.bin[i] == sb.bin[i]);
}

}  // namespace

SEKISHO_FUZZ_TARGET(message_fingerprint)(const uint8_t* data, size_t size) {
    if (size < 1) return 0;
    const uint8_t seed = data[0];
    const uint8_t* text = data + 1;
    const size_t len = size - 1;

    message_fingerprint whole;
    whole.feed(text, len);
    const uint32_t tokens = whole.tokens();
    fuzz_check(tokens <= fingerprint_max_tokens);
    fuzz_check((whole.fingerprint() != 0) == (tokens >= fingerprint_min_tokens));
    const message_signature sig = whole.signature();
    for (unsigned i = 0; i < fingerprint_bins; ++i) fuzz_check((sig.bin[i] != 0) == (tokens > 0));

    check_same(whole, in_pieces(text, len, seed));

    const simd_level level = simd_active();
    set_simd_limit(simd_level::scalar);
    message_fingerprint scalar;
    scalar.feed(text, len);
    set_simd_limit(level);
    check_same(whole, scalar);
    return 0;
}
