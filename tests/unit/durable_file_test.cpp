// replace_file_durably: the whole text or the old one, mode 0640, and a
// failure that names the call and the path and leaves the old file alone.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "control/fleet/durable_file.h"

namespace {

std::string read_all(const std::string& path) {
    std::ifstream in(path);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

class DurableFile : public ::testing::Test {
protected:
    void SetUp() override {
        char tmpl[] = "/tmp/sekisho-durable-XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
    }
    void TearDown() override { std::filesystem::remove_all(dir_); }
    std::string dir_;
};

TEST_F(DurableFile, ReplacesTheWholeTextWithOwnerAndGroupOnly) {
    const std::string path = dir_ + "/cursor";
    ASSERT_EQ(sekisho::replace_file_durably(path, "1 2\n"), "");
    ASSERT_EQ(sekisho::replace_file_durably(path, "30 4\n"), "");
    EXPECT_EQ(read_all(path), "30 4\n");
    EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
    struct stat st {};
    ASSERT_EQ(::stat(path.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0640u);
}

TEST_F(DurableFile, AFailureNamesTheCallAndPathAndKeepsTheOldText) {
    const std::string path = dir_ + "/cursor";
    ASSERT_EQ(sekisho::replace_file_durably(path, "old\n"), "");
    // A directory where the temporary file must go: open fails.
    std::filesystem::create_directory(path + ".tmp");
    const std::string error = sekisho::replace_file_durably(path, "new\n");
    EXPECT_NE(error.find("open " + path + ".tmp: "), std::string::npos) << error;
    EXPECT_EQ(read_all(path), "old\n");
    std::filesystem::remove(path + ".tmp");
    // The target is a non-empty directory: rename fails, the temporary file names it.
    const std::string blocked = dir_ + "/blocked";
    std::filesystem::create_directories(blocked + "/inside");
    const std::string rename_error = sekisho::replace_file_durably(blocked, "new\n");
    EXPECT_NE(rename_error.find("rename " + blocked + ".tmp: "), std::string::npos) << rename_error;
    EXPECT_TRUE(std::filesystem::is_directory(blocked + "/inside"));
}

TEST_F(DurableFile, AFullDiskIsAnErrorNotASuccess) {
    if (::access("/dev/full", W_OK) != 0) GTEST_SKIP() << "no /dev/full";
    // /dev/full as the temporary file: the write fails with ENOSPC.
    const std::string path = dir_ + "/cursor";
    std::filesystem::create_symlink("/dev/full", path + ".tmp");
    const std::string error = sekisho::replace_file_durably(path, "text\n");
    EXPECT_NE(error.find("write " + path + ".tmp: "), std::string::npos) << error;
    EXPECT_FALSE(std::filesystem::exists(path));
}

}  // namespace
