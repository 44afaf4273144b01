// follow_log across a rotation caught halfway: the event log renames
// FILE.keep-1 to FILE.keep first and FILE to FILE.1 last, so a reader may find
// FILE.1 missing while older files are there. A position in an older file is
// read on from, with no gap; two names missing in a row end the list.
#include "control/observe/event_log_follow.h"
#include "tests/support/temp_dir.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace sekisho {
namespace {

namespace fs = std::filesystem;

void append(const fs::path& p, const std::string& line) { std::ofstream(p, std::ios::app) << line << "\n"; }

std::vector<std::string> texts(const follow_result& r) {
    std::vector<std::string> out;
    for (const auto& l : r.lines) out.push_back(l.text);
    return out;
}

TEST(EventLogFollow, ReadsOnThroughARotationCaughtHalfway) {
    const test::temp_dir d("follow");
    const fs::path log = d.path / "events.jsonl";
    auto numbered = [&](int i) { return d.path / ("events.jsonl." + std::to_string(i)); };
    append(log, R"({"n":1})");
    const follow_result first = follow_log(log.string(), std::nullopt, 100, 1 << 20);
    ASSERT_EQ(texts(first), std::vector<std::string>{R"({"n":1})"});
    append(log, R"({"n":2})");                 // after the reader's position, in the same file
    fs::rename(log, numbered(1));               // a rotation
    append(log, R"({"n":3})");
    fs::rename(numbered(1), numbered(2));       // the next one, halfway: FILE not yet renamed to FILE.1
    const follow_result halfway = follow_log(log.string(), first.end, 100, 1 << 20);
    EXPECT_FALSE(halfway.gap) << "FILE.1 missing for a moment is not the end of the log";
    EXPECT_EQ(texts(halfway), (std::vector<std::string>{R"({"n":2})", R"({"n":3})"}));

    // Two names missing in a row end the list: a file beyond them is not looked for.
    fs::rename(numbered(2), numbered(5));
    const follow_result beyond = follow_log(log.string(), first.end, 100, 1 << 20);
    EXPECT_TRUE(beyond.gap);
    EXPECT_EQ(texts(beyond), std::vector<std::string>{R"({"n":3})"});
}

}  // namespace
}  // namespace sekisho
