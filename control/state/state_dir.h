// The state directory of a live sekishod (--state-dir, default
// /var/lib/sekisho; systemd's StateDirectory=): where what an operator
// decided lives across restarts and kill -9.
//
// It holds who-held-what and operator decisions, personal and contractual
// data: the directory is created 0750 and narrowed to 0750 if wider; files
// in it are created 0640 by their owners.
//
// Threading: called once at start, on the control thread, before any
// backend forwards.
#pragma once

#include <string>

namespace sekisho {

// Creates `path` (and missing parents) mode 0750, or checks an existing one
// is a directory, writable, and narrows a wider mode to 0750. Returns the
// path. Throws std::runtime_error naming the path and the reason.
std::string prepare_state_dir(const std::string& path);

}  // namespace sekisho
