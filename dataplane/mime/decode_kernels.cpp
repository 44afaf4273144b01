// The dispatch of decode_kernels.h: the CPU's level, found once per process, the limit tests
// and benches set, and each kernel's choice between its ISA version (decode_kernels_isa.h) and
// the scalar code. The one place that checks a level before an ISA kernel runs.
#include "dataplane/mime/decode_kernels.h"

#include <atomic>
#include <cstring>

#include "dataplane/mime/decode_kernels_isa.h"

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

size_t find_line_dot(const uint8_t* p, size_t n) {
    size_t i = 0;
#if defined(__x86_64__)
    if (simd_active() >= simd_level::avx2) i = isa::find_line_dot_avx2(p, n);
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
    if (simd_active() >= simd_level::avx512) return isa::qp_blocks_avx512(in, n, out, written);
#endif
    (void)in;
    (void)n;
    (void)out;
    return 0;
}

size_t base64_blocks(const uint8_t* in, size_t n, uint8_t* out, size_t& written) {
    written = 0;
#if defined(__x86_64__)
    if (simd_active() >= simd_level::avx2) return isa::base64_blocks_avx2(in, n, out, written);
#endif
    (void)in;
    (void)n;
    (void)out;
    return 0;
}

}  // namespace kernels
}  // namespace sekisho
