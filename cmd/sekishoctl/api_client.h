// sekishoctl's HTTP client of the control API (docs/api.md): over the Unix
// socket, or over TCP with https:// only (the bearer token never travels in
// clear; parse_command_line() refuses any other scheme and the client tells
// libcurl so too). One request at a time, synchronous.
#pragma once

#include <string>

namespace sekisho::ctl {

struct api_client {
    std::string socket;   // the Unix socket, used when url is empty
    std::string url;      // https://HOST:PORT
    std::string token;    // bearer token (TCP)
    std::string cacert;   // CA file for the daemon's certificate; empty: the system's

    struct reply {
        long status = 0;
        std::string body;
    };

    // Sends one request; `body` (when not empty, or for POST) with `content_type`.
    // timeout_s 0: wait as long as the daemon takes (a policy change: it answers
    // when its compile, bounded by inspection.compile_timeout, and the changes
    // queued before it are done). Throws std::runtime_error "cannot reach
    // sekishod at ..." when no HTTP answer came.
    reply call(const std::string& method, const std::string& path, const std::string& body = "",
               const std::string& content_type = "application/json", long timeout_s = 60) const;
};

// `s` percent-encoded for a query value or path segment (RFC 3986 unreserved kept).
std::string url_escape(const std::string& s);

// The exit code for an HTTP status: 0 ok (2xx), 5 unauthorised (401), 3 not
// found (404), 4 rejected (400, 409, 413, 422, 501: bad input, invalid
// policy, conflict, not served by this backend), 1 anything else.
int exit_code_for(long status);

}  // namespace sekisho::ctl
