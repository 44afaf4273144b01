#include "control/state/state_dir.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <system_error>

namespace sekisho {

std::string prepare_state_dir(const std::string& path) {
    if (path.empty()) throw std::runtime_error("--state-dir: empty path");
    std::error_code ec;
    std::filesystem::create_directories(path, ec);
    if (ec) throw std::runtime_error("state directory " + path + ": cannot create: " + ec.message());
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0)
        throw std::runtime_error("state directory " + path + ": " + std::strerror(errno));
    if (!S_ISDIR(st.st_mode)) throw std::runtime_error("state directory " + path + ": not a directory");
    if ((st.st_mode & 07777) & ~0750u) {
        if (::chmod(path.c_str(), (st.st_mode & 0750)) != 0)
            throw std::runtime_error("state directory " + path + ": cannot narrow mode to 0750: " + std::strerror(errno));
    }
    if (::access(path.c_str(), W_OK | X_OK) != 0)
        throw std::runtime_error("state directory " + path + ": not writable: " + std::strerror(errno));
    return path;
}

}  // namespace sekisho
