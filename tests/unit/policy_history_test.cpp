// policy_history (control/state/policy_history.h) on a real directory: the
// sequence of generations and rollbacks, a restart (a second object reading
// the same directory), depth trimming, a damaged entry (refused, named), and
// a crash in the middle of a write (the temporary file left behind: the state
// before the write stands) or between a rollback's write and its removals.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "control/state/policy_history.h"

namespace sekisho {
namespace {

namespace fs = std::filesystem;

class policy_history_test : public ::testing::Test {
protected:
    void SetUp() override {
        char tmpl[] = "/tmp/policy_history_test.XXXXXX";
        root = mkdtemp(tmpl);
        dir = root + "/policy";
    }
    void TearDown() override { fs::remove_all(root); }

    // What a change does: write, then settle once in force.
    static policy_generation put(policy_history& h, const std::string& kind, uint64_t generation,
                                 const std::string& text, uint64_t rolled_back_to = 0) {
        policy_generation g;
        g.origin.kind = kind;
        g.origin.generation = generation;
        g.origin.time = 1'800'000'000 + static_cast<int64_t>(generation);
        g.origin.file = kind == "file" ? "/etc/sekisho/policy.yaml" : "";
        g.origin.caller = kind == "file" ? "" : "uid 0";
        g.origin.rolled_back_to = rolled_back_to;
        g.text = text;
        h.write_entry(g);
        std::optional<policy_file_record> record;
        if (kind == "file") {
            record = policy_file_record{g.origin.file, text, generation};
            h.write_file_record(*record);
        }
        h.settle(g, record);
        return g;
    }

    static std::vector<uint64_t> numbers(const policy_history& h) {
        std::vector<uint64_t> out;
        for (const auto& g : h.generations()) out.push_back(g.origin.generation);
        return out;
    }

    std::string root, dir;
};

TEST_F(policy_history_test, generations_rollbacks_walk_back_and_a_reopen_sees_the_same) {
    {
        policy_history h(dir, 10);
        EXPECT_EQ(h.in_force(), nullptr);
        EXPECT_EQ(h.rollback_target(), nullptr);
        put(h, "file", 1, "A");
        put(h, "api", 2, "B");
        put(h, "api", 3, "C");
        EXPECT_EQ(h.rollback_depth(), 2u);
        ASSERT_NE(h.rollback_target(), nullptr);
        EXPECT_EQ(h.rollback_target()->text, "B");

        // Rollback to 2 as generation 4; the undone 3 and the replaced 2 go.
        put(h, "rollback", 4, h.rollback_target()->text, h.rollback_target()->origin.generation);
        EXPECT_EQ(numbers(h), (std::vector<uint64_t>{1, 4}));
        EXPECT_EQ(h.in_force()->text, "B");
        // A second rollback goes one further back, not back to C.
        ASSERT_NE(h.rollback_target(), nullptr);
        EXPECT_EQ(h.rollback_target()->text, "A");
        put(h, "rollback", 5, "A", 1);
        EXPECT_EQ(numbers(h), (std::vector<uint64_t>{5}));
        EXPECT_EQ(h.rollback_target(), nullptr) << "the end of the history: nothing to roll back";
        put(h, "api", 6, "D");
    }
    // Restart: the same generations, texts and origins from the directory.
    policy_history again(dir, 10);
    EXPECT_EQ(numbers(again), (std::vector<uint64_t>{5, 6}));
    EXPECT_EQ(again.in_force()->text, "D");
    EXPECT_EQ(again.in_force()->origin.kind, "api");
    EXPECT_EQ(again.in_force()->origin.caller, "uid 0");
    EXPECT_EQ(again.in_force()->origin.time, 1'800'000'006);
    EXPECT_EQ(again.generations()[0].origin.kind, "rollback");
    EXPECT_EQ(again.generations()[0].origin.rolled_back_to, 1u);
    EXPECT_EQ(describe(again.generations()[0].origin), "rollback to generation 1 by uid 0");
    ASSERT_TRUE(again.file_record());
    EXPECT_EQ(again.file_record()->text, "A");
    EXPECT_EQ(again.file_record()->generation, 1u);
    // Only the kept generations are on disk, each 0640.
    size_t entries = 0;
    for (const auto& e : fs::directory_iterator(dir)) {
        struct stat st {};
        ASSERT_EQ(stat(e.path().c_str(), &st), 0);
        EXPECT_EQ(st.st_mode & 0777, 0640u) << e.path();
        entries += e.path().filename().string().rfind("generation-", 0) == 0;
    }
    EXPECT_EQ(entries, 2u);
}

TEST_F(policy_history_test, keeps_depth_generations_before_the_one_in_force) {
    {
        policy_history h(dir, 3);
        for (uint64_t g = 1; g <= 7; ++g) put(h, "api", g, "P" + std::to_string(g));
        EXPECT_EQ(numbers(h), (std::vector<uint64_t>{4, 5, 6, 7}));
        EXPECT_EQ(h.rollback_depth(), 3u);
    }
    EXPECT_FALSE(fs::exists(dir + "/generation-3.json"));
    // Reopened with a smaller depth: trimmed at once.
    policy_history smaller(dir, 1);
    EXPECT_EQ(numbers(smaller), (std::vector<uint64_t>{6, 7}));
    EXPECT_FALSE(fs::exists(dir + "/generation-5.json"));
    EXPECT_THROW(policy_history(dir, 0), std::invalid_argument);
    EXPECT_THROW(policy_history(dir, policy_history::max_depth + 1), std::invalid_argument);
}

TEST_F(policy_history_test, a_damaged_entry_is_refused_naming_its_file) {
    {
        policy_history h(dir, 10);
        put(h, "file", 1, "A");
        put(h, "api", 2, "B");
    }
    const std::string entry = dir + "/generation-2.json";
    const std::string whole = [&] {
        std::ifstream in(entry);
        return std::string(std::istreambuf_iterator<char>(in), {});
    }();
    // Cut short, as a disk that lied about a write would leave it.
    std::ofstream(entry, std::ios::trunc) << whole.substr(0, whole.size() / 2);
    try {
        policy_history h(dir, 10);
        ADD_FAILURE() << "a damaged entry was read";
    } catch (const policy_history_error& e) {
        EXPECT_NE(std::string(e.what()).find(entry), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("damaged"), std::string::npos) << e.what();
    }
    // Content that does not match its name.
    std::ofstream(entry, std::ios::trunc) << whole;
    fs::rename(entry, dir + "/generation-9.json");
    try {
        policy_history h(dir, 10);
        ADD_FAILURE() << "a renamed entry was read";
    } catch (const policy_history_error& e) {
        EXPECT_NE(std::string(e.what()).find("generation-9.json: holds generation 2"), std::string::npos) << e.what();
    }
    // An entry that cannot be read.
    fs::rename(dir + "/generation-9.json", entry);
    chmod(entry.c_str(), 0);
    if (geteuid() != 0) {   // root reads whatever the mode
        EXPECT_THROW(policy_history(dir, 10), policy_history_error);
    }
    chmod(entry.c_str(), 0640);
    EXPECT_EQ(numbers(policy_history(dir, 10)), (std::vector<uint64_t>{1, 2}));
}

// A generation from the fleet keeps its version and group across a reopen;
// an entry of kind fleet without its version is refused (the gateway would
// not know which fleet versions it handled).
TEST_F(policy_history_test, a_fleet_generation_keeps_its_version_and_group) {
    {
        policy_history h(dir, 10);
        put(h, "file", 1, "A");
        policy_generation g;
        g.origin.kind = "fleet";
        g.origin.generation = 2;
        g.origin.time = 1'800'000'002;
        g.origin.caller = "fleet";
        g.origin.fleet_version = 41;
        g.origin.group = "canary";
        g.text = "B";
        h.write_entry(g);
        h.settle(g, std::nullopt);
    }
    policy_history h(dir, 10);
    ASSERT_NE(h.in_force(), nullptr);
    EXPECT_EQ(h.in_force()->origin.kind, "fleet");
    EXPECT_EQ(h.in_force()->origin.fleet_version, 41u);
    EXPECT_EQ(h.in_force()->origin.group, "canary");
    EXPECT_EQ(describe(h.in_force()->origin), "fleet version 41 of group canary");
    ASSERT_TRUE(h.file_record().has_value());
    EXPECT_EQ(h.file_record()->generation, 1u);   // the file record stays the file's

    const std::string entry = dir + "/generation-2.json";
    std::string whole = [&] {
        std::ifstream in(entry);
        return std::string(std::istreambuf_iterator<char>(in), {});
    }();
    const size_t at = whole.find("\"fleet_version\":41");
    ASSERT_NE(at, std::string::npos) << whole;
    whole.replace(at, std::string("\"fleet_version\":41").size(), "\"fleet_version\":0");
    std::ofstream(entry, std::ios::trunc) << whole;
    try {
        policy_history reopened(dir, 10);
        ADD_FAILURE() << "a fleet generation without its version was read";
    } catch (const policy_history_error& e) {
        EXPECT_NE(std::string(e.what()).find("a fleet generation without its fleet version"), std::string::npos)
            << e.what();
    }
}

TEST_F(policy_history_test, a_crash_mid_write_leaves_the_state_before_it) {
    {
        policy_history h(dir, 10);
        put(h, "file", 1, "A");
        put(h, "api", 2, "B");
    }
    // The temporary file of a write the machine stopped in: half of generation 3.
    std::ofstream(dir + "/generation-3.json.tmp") << "{\"kind\":\"api\",\"generation\":3,\"te";
    std::ofstream(dir + "/file.json.tmp") << "{\"pa";
    {
        policy_history h(dir, 10);
        EXPECT_EQ(numbers(h), (std::vector<uint64_t>{1, 2}));
        EXPECT_EQ(h.in_force()->text, "B");
        EXPECT_EQ(h.file_record()->text, "A");
        EXPECT_FALSE(fs::exists(dir + "/generation-3.json.tmp")) << "left-overs go";

        // A rollback written, the crash before it removed what it superseded.
        policy_generation g;
        g.origin = {"rollback", "", "uid 0", 3, 1'800'000'003, 1};
        g.text = "A";
        h.write_entry(g);
    }
    policy_history h(dir, 10);
    EXPECT_EQ(numbers(h), (std::vector<uint64_t>{3})) << "the rollback stands, what it undid is gone";
    EXPECT_EQ(h.in_force()->text, "A");
    EXPECT_EQ(h.rollback_target(), nullptr);

    // A generation from the file written, the crash before its file record.
    policy_generation f;
    f.origin = {"file", "/etc/sekisho/policy.yaml", "", 4, 1'800'000'004, 0};
    f.text = "E";
    h.write_entry(f);
    policy_history after(dir, 10);
    ASSERT_TRUE(after.file_record());
    EXPECT_EQ(after.file_record()->text, "E");
    EXPECT_EQ(after.file_record()->generation, 4u);
}

TEST_F(policy_history_test, a_discarded_write_leaves_no_trace) {
    policy_history h(dir, 10);
    put(h, "file", 1, "A");
    policy_generation f;
    f.origin = {"file", "/etc/sekisho/policy.yaml", "", 2, 1'800'000'002, 0};
    f.text = "B";
    h.write_entry(f);
    h.write_file_record({f.origin.file, "B", 2});
    h.discard(f);   // the swap failed
    policy_history again(dir, 10);
    EXPECT_EQ(numbers(again), (std::vector<uint64_t>{1}));
    EXPECT_EQ(again.file_record()->text, "A");
}

TEST_F(policy_history_test, memory_only_keeps_the_same_model) {
    policy_history h("", 2);
    put(h, "file", 1, "A");
    put(h, "api", 2, "B");
    put(h, "api", 3, "C");
    put(h, "api", 4, "D");
    EXPECT_EQ(numbers(h), (std::vector<uint64_t>{2, 3, 4}));
    EXPECT_FALSE(fs::exists(dir));
}

}  // namespace
}  // namespace sekisho
