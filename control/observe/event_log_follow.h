// Following the event log by position (event_log.h writes it): the one
// reader that `events tail -f` (control/api/event_queries.cpp) and the fleet's
// event shipper (control/fleet/event_shipper.h) share.
//
// The log is append-only whole lines, rotated by renaming FILE to FILE.1,
// FILE.1 to FILE.2 ... up to FILE.keep (the oldest deleted). A position names
// a file by its inode, so it survives the renames; the check of the bytes
// before the offset tells a reused inode (a deleted file's number given to a
// new file) from the file that was read.
//
// Threading: pure functions of the files, any thread; each call opens what it
// reads and closes it before returning. Memory: one line at a time, plus what
// the caller keeps.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace sekisho {

// A place in the event log: the file (its inode), the byte offset after the
// last whole line read, and a check of the bytes just before it (an inode
// number is reused once a rotated file is deleted: the check tells a new
// file from the one read). Following the log by position, not by time_ns,
// sees every line once even though lines are not in time order (a
// `repeated` line is written when its window closes, after later events).
// Text form "INODE:OFFSET:CHECK" (the API's `position` and `after`).
struct event_position {
    uint64_t file = 0, offset = 0, check = 0;
    std::string to_string() const {
        return std::to_string(file) + ":" + std::to_string(offset) + ":" + std::to_string(check);
    }
    bool operator==(const event_position&) const = default;
};

// "INODE:OFFSET:CHECK" back into a position; nullopt for anything else.
std::optional<event_position> parse_event_position(const std::string& text);

// A file of the event log opened for reading: its inode and size at open.
struct log_file {
    int fd = -1;
    uint64_t inode = 0, size = 0;
    std::string path;   // the name it was opened by
    explicit log_file(const std::string& path);
    ~log_file();
    log_file(const log_file&) = delete;
    log_file& operator=(const log_file&) = delete;
    bool open() const { return fd >= 0; }
};

// Hands each whole line of `f` from `offset` on to `take` until it returns
// false (that line is not taken), and returns the offset after the last line
// taken. A last line without its newline is being written: not handed over,
// not passed. Empty lines are passed without being handed over.
uint64_t read_lines(const log_file& f, uint64_t offset, const std::function<bool(const std::string&)>& take);
// The same, handing over each line's own offset too.
uint64_t read_lines_at(const log_file& f, uint64_t offset,
                       const std::function<bool(const std::string&, uint64_t)>& take);

// FNV-1a of the (at most) 64 bytes before `offset`: the check of a position.
uint64_t bytes_before(const log_file& f, uint64_t offset);

// `f` is the file `p` was taken in, and still holds what was read up to it.
bool holds(const log_file& f, const event_position& p);

event_position position_in(const log_file& f, uint64_t offset);

// The file's identity for as long as it exists under any name, or as a
// copy: a 63-bit hash (FNV-1a) of its first line, at most its first 64 KiB
// (complete once any line of the file is; the file is append-only, so it
// never changes). Not the inode: a number is reused once a rotated file is
// deleted, and a copy (logrotate's copytruncate) has a new one. Two files of
// the log do not share a first line: it carries the time of their first
// event in nanoseconds. 0 while the file has no whole line.
int64_t log_file_identity(const log_file& f);

// The event log's files as they are now, newest first: FILE, FILE.1, FILE.2
// ... up to two names missing in a row (at most `max_files`). A rotation
// while they are opened shows one file under two names: it is listed once, at
// its first (newer) place, so the order stays newest first; and it leaves one
// name missing for a moment (FILE.1 between its renames to FILE.2 and from
// FILE): the files after it are listed all the same, so a reader whose
// position is in an older file does not take it for lost.
std::vector<std::unique_ptr<log_file>> open_log_files(const std::string& path, size_t max_files = 1024);

// One line read by follow_log: where it starts and what it says.
struct followed_line {
    int64_t file_id = 0;      // log_file_identity of its file
    uint64_t offset = 0;      // of its first byte in that file
    std::string text;         // without the newline
    std::string file_name;    // the name its file had when read (for messages)
};

struct follow_result {
    std::vector<followed_line> lines;   // oldest first
    event_position end;                 // after the last line handed over: the next call's `from`
    bool full = false;         // stopped at max_lines or max_bytes: more whole lines wait
    bool gap = false;          // `from` names no file left: lines written after it were not seen
    uint64_t backlog_bytes = 0;   // bytes of whole or partial lines after `end` in the files now
};

// The lines after `from` (nullopt: from the start of the oldest file),
// oldest first, at most `max_lines` and about `max_bytes` (one line more
// than max_bytes is still taken alone), across rotations: the rest of the
// file `from` is in, then each newer file from its start. `from` in no file
// (rotated past the last kept file, or deleted): the oldest file from its
// start, and gap. Without any file: nothing, `end` unchanged.
follow_result follow_log(const std::string& path, const std::optional<event_position>& from, size_t max_lines,
                         uint64_t max_bytes);

}  // namespace sekisho
