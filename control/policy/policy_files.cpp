#include "control/policy/policy_files.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <fstream>

#include <nlohmann/json.hpp>

#include "control/identity/radius_accounting.h"

namespace sekisho {

namespace {

constexpr off_t max_clients_file_bytes = 1 << 20;

class file_checker {
public:
    explicit file_checker(const policy& pol) : pol_(pol) {}

    void error(const char* key, const std::string& message) {
        errors_.push_back(pol_.source + ":" + std::to_string(pol_.line_of(key)) + ": " + key + ": " + message);
    }
    void add(std::vector<std::string> more) {
        for (auto& e : more) errors_.push_back(std::move(e));
    }
    // The directory a new file would be created in exists.
    bool parent_exists(const char* key, const std::string& path) {
        const size_t slash = path.rfind('/');
        const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
        struct stat st {};
        if (::stat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) return true;
        error(key, "'" + path + "': the directory " + dir + " does not exist");
        return false;
    }
    // stat() of `path`; nullopt when it does not exist (reported when it
    // must, or when its directory does not either) or cannot be examined.
    std::optional<struct stat> existing(const char* key, const std::string& path, bool must_exist) {
        struct stat st {};
        if (::stat(path.c_str(), &st) == 0) return st;
        if (errno != ENOENT) error(key, "'" + path + "': " + std::strerror(errno));
        else if (must_exist) error(key, "'" + path + "' does not exist");
        else parent_exists(key, path);
        return std::nullopt;
    }
    bool regular(const char* key, const std::string& path, const struct stat& st, const char* what) {
        if (S_ISREG(st.st_mode)) return true;
        error(key, "'" + path + "' is not a regular file (" + what + ")");
        return false;
    }
    std::vector<std::string> take() { return std::move(errors_); }

private:
    const policy& pol_;
    std::vector<std::string> errors_;
};

std::string first_bytes(const std::string& path, size_t n) {
    std::ifstream in(path, std::ios::binary);
    std::string out(n, '\0');
    in.read(out.data(), static_cast<std::streamsize>(n));
    out.resize(static_cast<size_t>(in.gcount()));
    return out;
}

}  // namespace

void check_policy_files(const policy& pol, bool events_file_used) {
    file_checker c(pol);
    const identity_config& id = pol.identity;
    if (!id.radius_listen.empty()) {
        try {
            radius::parse_listen(id.radius_listen);
        } catch (const std::invalid_argument& e) {
            c.error("radius.listen", e.what());
        }
    }
    if (!id.radius_clients_file.empty()) {
        const char* key = "radius.clients_file";
        if (auto st = c.existing(key, id.radius_clients_file, true);
            st && c.regular(key, id.radius_clients_file, *st, "the RADIUS clients file")) {
            if (st->st_size > max_clients_file_bytes)
                c.error(key, "'" + id.radius_clients_file + "' is " + std::to_string(st->st_size) +
                                 " bytes; a clients file is at most 1 MiB");
            else
                try {
                    radius::load_clients_file(id.radius_clients_file);
                } catch (const policy_error& e) {
                    c.add(e.errors());
                }
        }
    }
    if (!id.history_database.empty()) {
        const char* key = "history.database";
        if (auto st = c.existing(key, id.history_database, false);
            st && c.regular(key, id.history_database, *st, "the binding history, an SQLite database") &&
            st->st_size > 0 && first_bytes(id.history_database, 16) != std::string("SQLite format 3\0", 16))
            c.error(key, "'" + id.history_database + "' exists and is not an SQLite database");
    }
    if (events_file_used && pol.events.file != "-" && pol.line_of("events.file") != 0) {
        const char* key = "events.file";
        const std::string& path = pol.events.file;
        if (auto st = c.existing(key, path, false); st && c.regular(key, path, *st, "the event log") && st->st_size > 0) {
            std::string line = first_bytes(path, 65536);
            line = line.substr(0, line.find('\n'));
            bool json_object = false;
            try {
                json_object = nlohmann::json::parse(line).is_object();
            } catch (const nlohmann::json::exception&) {
            }
            if (!json_object)
                c.error(key, "'" + path + "' exists and is not an event log (its first line is not a JSON object)");
        }
    }
    auto errors = c.take();
    if (!errors.empty()) throw policy_error(std::move(errors));
}

}  // namespace sekisho
