// A small file replaced whole and durably: the fleet shippers' cursors.
// The text goes to PATH.tmp (mode 0640: a cursor names positions in files
// that say who held an address), is fsynced, renamed over PATH, and the
// directory is fsynced, so after a crash PATH holds either the old text or
// the new one, never a mix.
//
// Threading: none of its own; the caller's thread does the I/O (the
// shippers' own threads, never the control thread's poll).
#pragma once

#include <string>

namespace sekisho {

// Returns "" on success, else what failed and why (strerror of the failing
// call), for the caller's log line; PATH is then left as it was.
std::string replace_file_durably(const std::string& path, const std::string& text);

}  // namespace sekisho
