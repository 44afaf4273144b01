// Replays every file of tests/fuzz/regressions/<target>/ (inputs that once
// crashed a fuzz target, kept after the fix) and tests/fuzz/corpus/<target>/
// (the seeds) through the fuzz targets' own bodies, in whatever build this is:
// the default gcc build, the ASan/UBSan build and the fuzzing build. A target
// that crashes or breaks one of its checks aborts this test.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <vector>

#include "fuzz_target.h"

namespace sekisho::fuzz {

namespace {
std::map<std::string, entry_fn>& targets() {
    static std::map<std::string, entry_fn> t;
    return t;
}
}  // namespace

bool register_target(const char* name, entry_fn fn) {
    targets()[name] = fn;
    return true;
}

namespace {

namespace fs = std::filesystem;

std::vector<fs::path> files_in(const fs::path& dir) {
    std::vector<fs::path> out;
    if (!fs::is_directory(dir)) return out;
    for (const auto& e : fs::directory_iterator(dir))
        if (e.is_regular_file() && e.path().filename().string()[0] != '.') out.push_back(e.path());
    std::sort(out.begin(), out.end());
    return out;
}

size_t replay(entry_fn fn, const std::vector<fs::path>& files) {
    for (const fs::path& f : files) {
        std::ifstream in(f, std::ios::binary);
        const std::vector<uint8_t> bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
        // The exact size on the heap: ASan sees any read past the end.
        std::unique_ptr<uint8_t[]> exact(new uint8_t[bytes.size() ? bytes.size() : 1]);
        std::copy(bytes.begin(), bytes.end(), exact.get());
        std::fprintf(stderr, "replaying %s (%zu bytes)\n", f.c_str(), bytes.size());
        EXPECT_EQ(fn(exact.get(), bytes.size()), 0) << f;
    }
    return files.size();
}

class fuzz_inputs : public ::testing::TestWithParam<const char*> {};

TEST_P(fuzz_inputs, replay_without_crash) {
    const std::string name = GetParam();
    const auto it = targets().find(name);
    ASSERT_NE(it, targets().end()) << "target " << name << " is not compiled into this test";
    const fs::path root = SEKISHO_FUZZ_DIR;
    const size_t seeds = replay(it->second, files_in(root / "corpus" / name));
    const size_t regressions = replay(it->second, files_in(root / "regressions" / name));
    // A target without seeds would make this test vacuous.
    EXPECT_GT(seeds, 0u) << "no seed corpus in " << (root / "corpus" / name);
    std::fprintf(stderr, "%s: %zu seeds, %zu regression inputs\n", name.c_str(), seeds, regressions);
}

INSTANTIATE_TEST_SUITE_P(all, fuzz_inputs,
                         ::testing::Values("packet_parser", "smtp_session", "mail_decoder", "message_fingerprint",
                                           "radius", "policy", "control_api"),
                         [](const auto& info) { return std::string(info.param); });

TEST(fuzz_inputs, every_compiled_target_is_replayed) {
    EXPECT_EQ(targets().size(), 7u);
}

}  // namespace
}  // namespace sekisho::fuzz
