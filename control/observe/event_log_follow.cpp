#include "control/observe/event_log_follow.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

namespace sekisho {

std::optional<event_position> parse_event_position(const std::string& text) {
    const size_t a = text.find(':');
    const size_t b = a == std::string::npos ? a : text.find(':', a + 1);
    if (b == std::string::npos) return std::nullopt;
    auto number = [](const std::string& s) -> std::optional<uint64_t> {
        if (s.empty() || s.size() > 20 || s.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
        try {
            return std::stoull(s);
        } catch (const std::exception&) {
            return std::nullopt;
        }
    };
    const auto file = number(text.substr(0, a));
    const auto offset = number(text.substr(a + 1, b - a - 1));
    const auto check = number(text.substr(b + 1));
    if (!file || !offset || !check) return std::nullopt;
    return event_position{*file, *offset, *check};
}

log_file::log_file(const std::string& p) : path(p) {
    fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
    struct stat st {};
    if (fd >= 0 && ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
        inode = static_cast<uint64_t>(st.st_ino);
        size = static_cast<uint64_t>(st.st_size);
    } else if (fd >= 0) {
        ::close(fd);
        fd = -1;
    }
}

log_file::~log_file() {
    if (fd >= 0) ::close(fd);
}

uint64_t read_lines_at(const log_file& f, uint64_t offset,
                       const std::function<bool(const std::string&, uint64_t)>& take) {
    std::string pending;
    char buf[65536];
    uint64_t consumed = offset;   // up to the end of the last line handed over
    uint64_t at = offset;
    for (;;) {
        const ssize_t n = ::pread(f.fd, buf, sizeof buf, static_cast<off_t>(at));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return consumed;
        at += static_cast<uint64_t>(n);
        size_t from = 0;
        for (size_t i = 0; i < static_cast<size_t>(n); ++i) {
            if (buf[i] != '\n') continue;
            pending.append(buf + from, i - from);
            from = i + 1;
            if (!pending.empty() && !take(pending, consumed)) return consumed;   // left for the next reader
            consumed += pending.size() + 1;
            pending.clear();
        }
        pending.append(buf + from, static_cast<size_t>(n) - from);
    }
}

uint64_t read_lines(const log_file& f, uint64_t offset, const std::function<bool(const std::string&)>& take) {
    return read_lines_at(f, offset, [&take](const std::string& line, uint64_t) { return take(line); });
}

uint64_t bytes_before(const log_file& f, uint64_t offset) {
    char buf[64];
    const uint64_t from = offset > sizeof buf ? offset - sizeof buf : 0;
    const ssize_t n = f.open() ? ::pread(f.fd, buf, offset - from, static_cast<off_t>(from)) : -1;
    uint64_t h = 0xcbf29ce484222325ull;
    for (ssize_t i = 0; i < n; ++i) h = (h ^ static_cast<unsigned char>(buf[i])) * 0x100000001b3ull;
    return n == static_cast<ssize_t>(offset - from) ? h : 0;
}

bool holds(const log_file& f, const event_position& p) {
    return f.open() && f.inode == p.file && p.offset <= f.size && bytes_before(f, p.offset) == p.check;
}

event_position position_in(const log_file& f, uint64_t offset) { return {f.inode, offset, bytes_before(f, offset)}; }

int64_t log_file_identity(const log_file& f) {
    if (!f.open()) return 0;
    uint64_t h = 0xcbf29ce484222325ull;
    auto mix = [&h](unsigned char c) { h = (h ^ c) * 0x100000001b3ull; };
    // The first line, at most its first 64 KiB (fixed once the line is whole).
    char buf[65536];
    ssize_t n;
    do n = ::pread(f.fd, buf, sizeof buf, 0);
    while (n < 0 && errno == EINTR);
    if (n <= 0) return 0;
    bool whole = false;
    for (ssize_t i = 0; i < n; ++i) {
        if (buf[i] == '\n') {
            whole = true;
            break;
        }
        mix(static_cast<unsigned char>(buf[i]));
    }
    if (!whole && n < static_cast<ssize_t>(sizeof buf)) return 0;
    const int64_t id = static_cast<int64_t>(h & 0x7fffffffffffffffull);
    return id == 0 ? 1 : id;
}

std::vector<std::unique_ptr<log_file>> open_log_files(const std::string& path, size_t max_files) {
    std::vector<std::unique_ptr<log_file>> files;
    unsigned missing_in_a_row = 0;
    for (size_t i = 0; i < max_files; ++i) {
        auto f = std::make_unique<log_file>(i == 0 ? path : path + "." + std::to_string(i));
        if (!f->open()) {
            // A rotation renames FILE.keep-1 to FILE.keep first and FILE to FILE.1
            // last, so while it runs one name at a time is missing (the hole moves
            // towards FILE): look past one missing name; two in a row are the end.
            missing_in_a_row++;
            if (missing_in_a_row == 2) break;
            continue;
        }
        missing_in_a_row = 0;
        bool seen = false;
        for (const auto& g : files) seen = seen || g->inode == f->inode;
        if (!seen) files.push_back(std::move(f));
    }
    return files;
}

follow_result follow_log(const std::string& path, const std::optional<event_position>& from, size_t max_lines,
                         uint64_t max_bytes) {
    follow_result r;
    if (from) r.end = *from;
    const auto files = open_log_files(path);   // newest first
    if (files.empty()) return r;
    size_t at = files.size() - 1;   // the oldest
    uint64_t offset = 0;
    if (from) {
        bool found = false;
        for (size_t i = 0; i < files.size() && !found; ++i)
            if (holds(*files[i], *from)) {
                at = i;
                offset = from->offset;
                found = true;
            }
        r.gap = !found;
    }
    uint64_t bytes = 0;
    bool full = false;
    for (;;) {
        const log_file& f = *files[at];
        int64_t id = 0;
        const uint64_t stop = read_lines_at(f, offset, [&](const std::string& line, uint64_t line_offset) {
            if (r.lines.size() >= max_lines || (bytes > 0 && bytes + line.size() + 1 > max_bytes)) {
                full = true;
                return false;
            }
            if (id == 0) id = log_file_identity(f);
            r.lines.push_back({id, line_offset, line, f.path});
            bytes += line.size() + 1;
            return true;
        });
        r.end = position_in(f, stop);
        // The rest of this file (a line still being written) and of every newer one.
        r.backlog_bytes = (f.size > stop ? f.size - stop : 0);
        for (size_t i = 0; i < at; ++i) r.backlog_bytes += files[i]->size;
        // A rotated file (not the newest) is complete: go on with the next newer one.
        if (full || at == 0) break;
        --at;
        offset = 0;
    }
    r.full = full;
    return r;
}

}  // namespace sekisho
