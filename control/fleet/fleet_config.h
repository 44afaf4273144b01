// Fleet mode's configuration (sekishod --fleet FILE): which gateway this is,
// its policy group, and how to reach the fleet's stores. Without --fleet a
// gateway is a fleet of one: the embedded default (SQLite, in-process tables)
// and nothing here runs.
//
// The file (YAML, docs/fleet.md):
//
//   gateway: edge-tokyo-1          # unique in the fleet: [A-Za-z0-9._-], 1..63
//   group: default                 # policy group (canary, default, ...): same charset
//   postgres:
//     conninfo_file: /etc/sekisho/fleet-postgres.conninfo   # a libpq connection string
//   redis:
//     address: unix:/run/redis/redis-server.sock           # or HOST:PORT
//     password_file: /etc/sekisho/fleet-redis.password     # optional
//     tls_ca_file: /etc/sekisho/fleet-ca.pem               # optional: TLS to HOST:PORT
//   sync_interval: 200ms           # how often deltas go out and fleet state comes back
//
// Credentials live only in the files named here, never on the command line,
// in the environment of child processes or in events: a credential file
// readable by others (mode & 007) is refused, naming it. The connection string
// carries TLS (sslmode=verify-full sslrootcert=...), the user and the password
// (or a passfile); docs/security.md lists the roles.
//
// Threading: read once at start (and by --check-policy); immutable afterwards.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>

namespace sekisho {

// "FILE:LINE: FIELD: message", or "FILE: message" for the file as a whole.
class fleet_config_error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

struct fleet_config {
    std::string path;                    // the file it came from
    std::string gateway;
    std::string group = "default";
    std::string postgres_conninfo_file;  // empty: no PostgreSQL
    std::string redis_address;           // empty: no Redis
    std::string redis_password_file;     // empty: no AUTH
    std::string redis_tls_ca_file;       // empty: plain TCP or a Unix socket; else TLS verified against it
    uint64_t sync_interval_ns = 200'000'000;
};

// Reads and checks `path`. Throws fleet_config_error.
fleet_config read_fleet_config(const std::string& path);

// The contents of a credential file, without a trailing newline. Refuses
// (fleet_config_error naming the file and `what` it is for) a file that
// cannot be read, is empty, or is readable or writable by others.
std::string read_credential_file(const std::string& path, const std::string& what);

}  // namespace sekisho
