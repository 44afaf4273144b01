#include "control/state/policy_history.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <sstream>

#include "control/state/state_dir.h"
#include "control/utc_time.h"

namespace sekisho {

namespace {

using nlohmann::json;

constexpr const char* entry_prefix = "generation-";
constexpr const char* entry_suffix = ".json";
constexpr const char* temp_suffix = ".tmp";
constexpr const char* file_record_name = "file.json";

std::string errno_text() { return std::strerror(errno); }

void sync_directory(const std::string& dir) {
    const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) throw std::runtime_error(dir + ": cannot open to sync: " + errno_text());
    const int rc = ::fsync(fd);
    const std::string why = errno_text();
    ::close(fd);
    if (rc != 0) throw std::runtime_error(dir + ": fsync: " + why);
}

// temp + fsync + rename + fsync of the directory: `path` holds the old
// content or all of `content`, whenever the machine stops.
void write_durably(const std::string& dir, const std::string& path, const std::string& content) {
    const std::string temp = path + temp_suffix;
    const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0) throw std::runtime_error(temp + ": cannot create: " + errno_text());
    ::fchmod(fd, 0640);   // whatever the umask
    size_t done = 0;
    while (done < content.size()) {
        const ssize_t n = ::write(fd, content.data() + done, content.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            const std::string why = errno_text();
            ::close(fd);
            ::unlink(temp.c_str());
            throw std::runtime_error(temp + ": write: " + why);
        }
        done += static_cast<size_t>(n);
    }
    if (::fsync(fd) != 0) {
        const std::string why = errno_text();
        ::close(fd);
        ::unlink(temp.c_str());
        throw std::runtime_error(temp + ": fsync: " + why);
    }
    ::close(fd);
    if (::rename(temp.c_str(), path.c_str()) != 0) {
        const std::string why = errno_text();
        ::unlink(temp.c_str());
        throw std::runtime_error(path + ": rename: " + why);
    }
    sync_directory(dir);
}

std::string read_whole(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw policy_history_error("policy history entry " + path + ": cannot read: " + errno_text());
    std::ostringstream s;
    s << in.rdbuf();
    if (in.bad()) throw policy_history_error("policy history entry " + path + ": read error");
    return s.str();
}

bool ends_with(const std::string& s, const std::string& tail) {
    return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// The generation a file name stands for, or nullopt when it is not an entry's name.
std::optional<uint64_t> generation_of_name(const std::string& name) {
    const std::string prefix = entry_prefix, suffix = entry_suffix;
    if (name.size() <= prefix.size() + suffix.size() || name.compare(0, prefix.size(), prefix) != 0 ||
        !ends_with(name, suffix))
        return std::nullopt;
    const char* first = name.data() + prefix.size();
    const char* last = name.data() + name.size() - suffix.size();
    uint64_t g = 0;
    const auto [ptr, ec] = std::from_chars(first, last, g);
    if (ec != std::errc() || ptr != last || g == 0) return std::nullopt;
    return g;
}

policy_generation parse_entry(const std::string& path, uint64_t named) {
    const std::string raw = read_whole(path);
    const std::string where = "policy history entry " + path + ": ";
    const json j = json::parse(raw, nullptr, false);
    if (j.is_discarded() || !j.is_object()) throw policy_history_error(where + "not a JSON object (damaged)");
    policy_generation g;
    try {
        g.text = j.at("text").get<std::string>();
        g.origin.kind = j.at("kind").get<std::string>();
        g.origin.generation = j.at("generation").get<uint64_t>();
        g.origin.time = j.at("time").get<int64_t>();
        g.origin.file = j.value("file", "");
        g.origin.caller = j.value("caller", "");
        g.origin.rolled_back_to = j.value("rolled_back_to", uint64_t{0});
        g.origin.fleet_version = j.value("fleet_version", uint64_t{0});
        g.origin.group = j.value("group", "");
    } catch (const json::exception& e) {
        throw policy_history_error(where + "missing or wrong field (" + e.what() + ")");
    }
    if (g.origin.kind != "file" && g.origin.kind != "api" && g.origin.kind != "rollback" && g.origin.kind != "fleet")
        throw policy_history_error(where + "unknown kind '" + g.origin.kind + "'");
    if (g.origin.generation != named)
        throw policy_history_error(where + "holds generation " + std::to_string(g.origin.generation) +
                                   ", its name says " + std::to_string(named));
    if (g.origin.kind == "rollback" && (g.origin.rolled_back_to == 0 || g.origin.rolled_back_to >= named))
        throw policy_history_error(where + "a rollback to generation " + std::to_string(g.origin.rolled_back_to));
    if (g.origin.kind == "fleet" && g.origin.fleet_version == 0)
        throw policy_history_error(where + "a fleet generation without its fleet version");
    return g;
}

policy_file_record parse_file_record(const std::string& path) {
    const json j = json::parse(read_whole(path), nullptr, false);
    const std::string where = "policy history file record " + path + ": ";
    if (j.is_discarded() || !j.is_object()) throw policy_history_error(where + "not a JSON object (damaged)");
    policy_file_record r;
    try {
        r.path = j.at("path").get<std::string>();
        r.text = j.at("text").get<std::string>();
        r.generation = j.at("generation").get<uint64_t>();
    } catch (const json::exception& e) {
        throw policy_history_error(where + "missing or wrong field (" + e.what() + ")");
    }
    return r;
}

}  // namespace

std::string describe(const policy_origin& o) {
    if (o.kind == "file") return "file " + o.file;
    if (o.kind == "rollback")
        return "rollback to generation " + std::to_string(o.rolled_back_to) + " by " + o.caller;
    if (o.kind == "fleet") return "fleet version " + std::to_string(o.fleet_version) + " of group " + o.group;
    return "API caller " + o.caller;
}

json origin_json(const policy_origin& o) {
    json j = {{"kind", o.kind},         {"generation", o.generation}, {"time", o.time},
              {"time_utc", utc_time_text(o.time)}, {"description", describe(o)}};
    if (!o.file.empty()) j["file"] = o.file;
    if (!o.caller.empty()) j["caller"] = o.caller;
    if (o.rolled_back_to != 0) j["rolled_back_to"] = o.rolled_back_to;
    if (o.fleet_version != 0) j["fleet_version"] = o.fleet_version;
    if (!o.group.empty()) j["group"] = o.group;
    return j;
}

policy_history::policy_history(std::string directory, size_t depth) : dir_(std::move(directory)), depth_(depth) {
    if (depth_ < 1 || depth_ > max_depth)
        throw std::invalid_argument("--policy-history: " + std::to_string(depth_) + " is not within 1.." +
                                    std::to_string(max_depth));
    if (dir_.empty()) return;
    try {
        prepare_state_dir(dir_);
    } catch (const std::runtime_error& e) {
        throw policy_history_error(std::string("policy history: ") + e.what());
    }
    DIR* d = ::opendir(dir_.c_str());
    if (d == nullptr) throw policy_history_error("policy history " + dir_ + ": cannot list: " + errno_text());
    std::vector<std::pair<uint64_t, std::string>> names;
    std::vector<std::string> temps;
    bool have_file_record = false;
    while (const dirent* e = ::readdir(d)) {
        const std::string name = e->d_name;
        if (ends_with(name, temp_suffix)) temps.push_back(name);
        else if (name == file_record_name) have_file_record = true;
        else if (const auto g = generation_of_name(name)) names.emplace_back(*g, name);
    }
    ::closedir(d);
    // A write the machine stopped in the middle of: the state before it stands.
    for (const auto& t : temps) ::unlink((dir_ + "/" + t).c_str());
    std::sort(names.begin(), names.end());
    for (const auto& [g, name] : names) kept_.push_back(parse_entry(dir_ + "/" + name, g));
    if (have_file_record) file_ = parse_file_record(dir_ + "/" + file_record_name);
    // A generation from the file written, the record after it not yet.
    for (auto it = kept_.rbegin(); it != kept_.rend(); ++it) {
        if (it->origin.kind != "file") continue;
        if (!file_ || file_->generation < it->origin.generation) {
            file_ = policy_file_record{it->origin.file, it->text, it->origin.generation};
            write_file_record(*file_);
        }
        break;
    }
    drop_superseded();
}

std::string policy_history::entry_path(uint64_t generation) const {
    return dir_ + "/" + entry_prefix + std::to_string(generation) + entry_suffix;
}

void policy_history::write_entry(const policy_generation& g) const {
    if (dir_.empty()) return;
    json j = origin_json(g.origin);
    j["text"] = g.text;
    write_durably(dir_, entry_path(g.origin.generation), j.dump());
}

void policy_history::write_file_record(const policy_file_record& r) const {
    if (dir_.empty()) return;
    const json j = {{"path", r.path}, {"text", r.text}, {"generation", r.generation}};
    write_durably(dir_, dir_ + "/" + file_record_name, j.dump());
}

// Rollbacks drop what they superseded (also when a crash came between the
// rollback's write and the removals), then the oldest beyond the depth go.
void policy_history::drop_superseded() {
    std::vector<policy_generation> out;
    for (auto& g : kept_) {
        if (g.origin.kind == "rollback") {
            const uint64_t from = g.origin.rolled_back_to;
            std::erase_if(out, [&](const policy_generation& o) {
                const bool gone = o.origin.generation >= from;
                if (gone && !dir_.empty()) ::unlink(entry_path(o.origin.generation).c_str());
                return gone;
            });
        }
        out.push_back(std::move(g));
    }
    while (out.size() > depth_ + 1) {
        if (!dir_.empty()) ::unlink(entry_path(out.front().origin.generation).c_str());
        out.erase(out.begin());
    }
    kept_ = std::move(out);
}

void policy_history::settle(const policy_generation& g, const std::optional<policy_file_record>& from_file) {
    kept_.push_back(g);
    if (from_file) file_ = from_file;
    drop_superseded();
}

void policy_history::discard(const policy_generation& g) const {
    if (dir_.empty()) return;
    ::unlink(entry_path(g.origin.generation).c_str());
    if (file_) write_file_record(*file_);
    else ::unlink((dir_ + "/" + file_record_name).c_str());
}

}  // namespace sekisho
