#include "control/fleet/fleet_config.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "control/policy/policy.h"
#include "control/policy/yaml_tree.h"

namespace sekisho {

namespace {

std::string read_whole(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw fleet_config_error(path + ": cannot read: " + std::strerror(errno));
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}

bool name_ok(const std::string& s) {
    if (s.empty() || s.size() > 63) return false;
    for (char c : s)
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-')) return false;
    return true;
}

}  // namespace

fleet_config read_fleet_config(const std::string& path) {
    const std::string text = read_whole(path);
    yaml::document doc = [&] {
        try {
            return yaml::document::parse(text);
        } catch (const yaml::syntax_error& e) {
            throw fleet_config_error(path + ":" + std::to_string(e.line()) + ": " + e.what());
        }
    }();
    const yaml::node root = doc.root();
    if (!root.is_map()) throw fleet_config_error(path + ": not a YAML mapping (docs/fleet.md)");
    auto fail = [&](const yaml::node& n, const std::string& field, const std::string& message) {
        throw fleet_config_error(path + ":" + std::to_string(n.line()) + ": " + field + ": " + message);
    };
    auto scalar = [&](const yaml::node& n, const std::string& field) -> std::string {
        if (!n.is_scalar()) fail(n, field, "must be a text");
        return n.scalar();
    };
    fleet_config c;
    c.path = path;
    for (size_t i = 0; i < root.size(); ++i) {
        const yaml::node k = root.key_at(i), v = root.value_at(i);
        const std::string key = k.scalar();
        if (key == "gateway") {
            c.gateway = scalar(v, key);
            if (!name_ok(c.gateway)) fail(v, key, "1 to 63 of A-Z a-z 0-9 . _ -, not '" + c.gateway + "'");
        } else if (key == "group") {
            c.group = scalar(v, key);
            if (!name_ok(c.group)) fail(v, key, "1 to 63 of A-Z a-z 0-9 . _ -, not '" + c.group + "'");
        } else if (key == "postgres") {
            if (!v.is_map()) fail(v, key, "must be a mapping with conninfo_file");
            for (size_t j = 0; j < v.size(); ++j) {
                const yaml::node pk = v.key_at(j), pv = v.value_at(j);
                if (pk.scalar() == "conninfo_file")
                    c.postgres_conninfo_file = scalar(pv, "postgres.conninfo_file");
                else
                    fail(pk, "postgres." + pk.scalar(), "unknown key (conninfo_file)");
            }
            if (c.postgres_conninfo_file.empty()) fail(v, "postgres.conninfo_file", "missing");
        } else if (key == "redis") {
            if (!v.is_map()) fail(v, key, "must be a mapping with address");
            for (size_t j = 0; j < v.size(); ++j) {
                const yaml::node rk = v.key_at(j), rv = v.value_at(j);
                if (rk.scalar() == "address")
                    c.redis_address = scalar(rv, "redis.address");
                else if (rk.scalar() == "password_file")
                    c.redis_password_file = scalar(rv, "redis.password_file");
                else if (rk.scalar() == "tls_ca_file")
                    c.redis_tls_ca_file = scalar(rv, "redis.tls_ca_file");
                else
                    fail(rk, "redis." + rk.scalar(), "unknown key (address, password_file, tls_ca_file)");
            }
            if (c.redis_address.empty()) fail(v, "redis.address", "missing (unix:/PATH or HOST:PORT)");
            if (!c.redis_tls_ca_file.empty() && c.redis_address.rfind("unix:", 0) == 0)
                fail(v, "redis.tls_ca_file", "TLS is for a HOST:PORT address; a Unix socket is local");
        } else if (key == "sync_interval") {
            const std::optional<uint64_t> ns = parse_duration(scalar(v, key));
            if (!ns || *ns < 10'000'000 || *ns > 60'000'000'000)
                fail(v, key, "a duration from 10ms to 60s, not '" + v.scalar() + "'");
            c.sync_interval_ns = *ns;
        } else {
            fail(k, key, "unknown key (gateway, group, postgres, redis, sync_interval)");
        }
    }
    if (c.gateway.empty()) throw fleet_config_error(path + ": gateway: missing (this gateway's name in the fleet)");
    if (c.postgres_conninfo_file.empty() && c.redis_address.empty())
        throw fleet_config_error(path + ": neither postgres nor redis: a fleet needs at least one store");
    if (!c.postgres_conninfo_file.empty()) read_credential_file(c.postgres_conninfo_file, "postgres.conninfo_file");
    if (!c.redis_password_file.empty()) read_credential_file(c.redis_password_file, "redis.password_file");
    return c;
}

std::string read_credential_file(const std::string& path, const std::string& what) {
    struct stat st {};
    if (stat(path.c_str(), &st) != 0)
        throw fleet_config_error(path + ": " + what + ": cannot stat: " + std::strerror(errno));
    if ((st.st_mode & 007) != 0)
        throw fleet_config_error(path + ": " + what + ": readable or writable by others (mode " +
                                 [&] {
                                     char m[8];
                                     std::snprintf(m, sizeof m, "%04o", st.st_mode & 07777);
                                     return std::string(m);
                                 }() +
                                 "): it holds credentials; chmod o-rwx");
    std::string text = read_whole(path);
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
    if (text.empty()) throw fleet_config_error(path + ": " + what + ": empty");
    return text;
}

}  // namespace sekisho
