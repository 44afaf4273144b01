// A directory of a test's own under the system's temporary directory, removed
// with everything in it when the test's scope ends (also when it failed).
#pragma once

#include <stdlib.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <system_error>

namespace sekisho::test {

struct temp_dir {
    std::filesystem::path path;
    // `prefix` names the directory (sekisho-PREFIX-XXXXXX) so that a leftover says whose it was.
    explicit temp_dir(const std::string& prefix) {
        std::string t = (std::filesystem::temp_directory_path() / ("sekisho-" + prefix + "-XXXXXX")).string();
        if (::mkdtemp(t.data()) == nullptr)
            throw std::runtime_error("mkdtemp " + t + ": " + std::strerror(errno));
        path = t;
    }
    ~temp_dir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
    temp_dir(const temp_dir&) = delete;
    temp_dir& operator=(const temp_dir&) = delete;
};

}  // namespace sekisho::test
