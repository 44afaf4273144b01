// One fuzz target body, two builds (docs/reliability.md):
// - with -Dfuzzing=true (clang), each tests/fuzz/<name>_fuzz.cpp is its own
//   libFuzzer executable: SEKISHO_FUZZ_TARGET(name) defines LLVMFuzzerTestOneInput;
// - in every build (gcc or clang, with or without sanitizers) all of them are
//   compiled into the `fuzz_regressions` GoogleTest (SEKISHO_FUZZ_REPLAY defined),
//   which feeds each file of tests/fuzz/regressions/<name>/ and
//   tests/fuzz/corpus/<name>/ to the same body, so a crash the fuzzer once found
//   stays tested.
// A target returns 0; a broken invariant is a crash (fuzz_check aborts), so
// libFuzzer records the input and the regression test fails.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

namespace sekisho::fuzz {
using entry_fn = int (*)(const uint8_t* data, size_t size);
// Replay build: remembers `fn` under `name` (tests/fuzz/regression_test.cpp).
bool register_target(const char* name, entry_fn fn);

[[noreturn]] inline void check_failed(const char* file, int line, const char* what) {
    std::fprintf(stderr, "%s:%d: fuzz check failed: %s\n", file, line, what);
    std::abort();
}
}  // namespace sekisho::fuzz

#define fuzz_check(cond) \
    ((cond) ? (void)0 : ::sekisho::fuzz::check_failed(__FILE__, __LINE__, #cond))

#ifdef SEKISHO_FUZZ_REPLAY
#define SEKISHO_FUZZ_TARGET(name)                                                                 \
    static int sekisho_fuzz_##name(const uint8_t*, size_t);                                       \
    [[maybe_unused]] static const bool sekisho_fuzz_registered_##name =                           \
        ::sekisho::fuzz::register_target(#name, sekisho_fuzz_##name);                             \
    static int sekisho_fuzz_##name
#else
#define SEKISHO_FUZZ_TARGET(name) extern "C" int LLVMFuzzerTestOneInput
#endif
