#include "control/fleet/durable_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace sekisho {

std::string replace_file_durably(const std::string& path, const std::string& text) {
    const std::string temp = path + ".tmp";
    const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0) return "open " + temp + ": " + std::strerror(errno);
    const bool written = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
    const int write_errno = errno;
    const bool synced = written && ::fsync(fd) == 0;
    const int sync_errno = errno;
    ::close(fd);
    if (!written) return "write " + temp + ": " + std::strerror(write_errno);
    if (!synced) return "fsync " + temp + ": " + std::strerror(sync_errno);
    if (::rename(temp.c_str(), path.c_str()) != 0) return "rename " + temp + ": " + std::strerror(errno);
    const std::string dir = path.substr(0, path.rfind('/') + 1);
    const int d = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (d >= 0) {
        ::fsync(d);
        ::close(d);
    }
    return "";
}

}  // namespace sekisho
