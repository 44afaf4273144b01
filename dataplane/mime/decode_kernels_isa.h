// The kernels of decode_kernels.h for one instruction set each, as the dispatch
// (decode_kernels.cpp) calls them. Each is defined in the file of its ISA:
// decode_kernels_avx2.cpp, decode_kernels_avx512.cpp (x86-64 builds only, listed in
// dataplane/meson.build).
//
// Contract: the same as the kernel of the same name in decode_kernels.h, for its part of
// the work (find_line_dot_avx2 stops before the last 33 bytes and leaves them to the
// caller's scalar loop). They execute their ISA's instructions unconditionally, so they
// may be called only when simd_active() is at least their level: the dispatch is the one
// place that checks it. Each file compiles its kernels for their ISA alone (function
// target attributes, not per-file -m flags: an inline function of a header instantiated
// in a file built with -mavx2 could be kept by the linker for baseline callers too).
#pragma once

#include <cstddef>
#include <cstdint>

namespace sekisho::kernels::isa {

#if defined(__x86_64__)
// decode_kernels_avx2.cpp
size_t find_line_dot_avx2(const uint8_t* p, size_t n);
size_t base64_blocks_avx2(const uint8_t* in, size_t n, uint8_t* out, size_t& written);
// decode_kernels_avx512.cpp (AVX-512 F, BW, VL, VBMI, VBMI2)
size_t qp_blocks_avx512(const uint8_t* in, size_t n, uint8_t* out, size_t& written);
#endif

}  // namespace sekisho::kernels::isa
