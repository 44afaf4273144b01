// The policy generations a live sekishod keeps under <state_dir>/policy/:
// which policy is in force, where it came from, and the ones before it that
// a rollback walks back to (docs/policy.md, "Which policy is in force").
//
// On disk: one file per generation, "generation-<N>.json", holding the
// policy's text and its origin (file, API or rollback; the file's path or
// the API caller, or the fleet's version and group; generation; time), and "file.json", the policy file's path
// and content as last applied from the file (what SIGHUP and a restart
// compare the file with). Every file is written to a temporary name, fsynced,
// renamed and the directory fsynced: a crash at any moment leaves either the
// state before the write or the state after it, never half an entry. Files
// are 0640 (policies name subscriber ranges and relays).
//
// The newest generation is the one in force. A rollback writes a new
// generation carrying the text of the one before the newest and drops both
// (a second rollback goes one further back, never a toggle). At most
// `depth` generations are kept before the one in force; older ones go.
//
// Reading refuses to guess: an entry that cannot be read or parsed, or whose
// content does not match its name, throws policy_history_error naming the
// file; sekishod then does not start (docs/policy.md says how to recover).
// Temporary files a crash left are removed.
//
// Threading: write_entry() and write_file_record() touch only the directory
// and may run on a policy change's own thread (one change at a time);
// everything else, and what reads the in-memory state, on the control
// thread. A history without a directory (tests that have no state
// directory) keeps the same state in memory only.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace sekisho {

struct policy_origin {
    std::string kind;              // "file", "api", "rollback" or "fleet"
    std::string file;              // kind file: the policy file's path
    std::string caller;            // kind api, rollback: the API caller
    uint64_t generation = 0;
    int64_t time = 0;              // Unix seconds when it was put in force
    uint64_t rolled_back_to = 0;   // kind rollback: the generation whose text came back
    uint64_t fleet_version = 0;    // kind fleet: the fleet's policy version (policy_versions.version)
    std::string group;             // kind fleet: the gateway group it was desired for
};

// "file /etc/sekisho/policy.yaml", "API caller uid 0", "rollback to generation 3 by uid 0",
// "fleet version 7 of group canary".
std::string describe(const policy_origin& origin);
// As the API and the history's files write it: kind, generation, time (and
// time_utc, RFC 3339), description, and file, caller, rolled_back_to,
// fleet_version and group when set.
nlohmann::json origin_json(const policy_origin& origin);

struct policy_generation {
    policy_origin origin;
    std::string text;
};

// The policy file as last applied from it.
struct policy_file_record {
    std::string path;
    std::string text;
    uint64_t generation = 0;   // the generation it was applied as
};

class policy_history_error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

class policy_history {
public:
    static constexpr size_t default_depth = 10;
    static constexpr size_t max_depth = 1000;

    // Opens (creates 0750) `directory` and reads every generation kept in it;
    // `depth` (1..max_depth) is how many generations before the one in force
    // are kept. An empty `directory`: memory only. Throws
    // policy_history_error naming the file that cannot be trusted.
    policy_history(std::string directory, size_t depth);

    const std::string& directory() const { return dir_; }
    size_t depth() const { return depth_; }
    // Oldest first; the last one is in force. Empty before the first start.
    const std::vector<policy_generation>& generations() const { return kept_; }
    const policy_generation* in_force() const { return kept_.empty() ? nullptr : &kept_.back(); }
    // What a rollback would return to; nullptr at the end of the history.
    const policy_generation* rollback_target() const { return kept_.size() < 2 ? nullptr : &kept_[kept_.size() - 2]; }
    size_t rollback_depth() const { return kept_.empty() ? 0 : kept_.size() - 1; }
    const std::optional<policy_file_record>& file_record() const { return file_; }

    // Writes `g` durably, not yet in force (see settle). Throws
    // std::runtime_error naming the file and the reason.
    void write_entry(const policy_generation& g) const;
    // Writes what was applied from the policy file, durably.
    void write_file_record(const policy_file_record& record) const;
    // `g`, written, is now in force: kept in memory, what it supersedes (a
    // rollback: the generation undone and the one it returns to) and what
    // exceeds the depth removed. `from_file`: the file record is now this.
    void settle(const policy_generation& g, const std::optional<policy_file_record>& from_file);
    // `g` was written but could not be put in force: its file goes and the
    // file record on disk is the one in memory again (the control thread, or
    // the change's thread before the control thread learns of it).
    void discard(const policy_generation& g) const;

private:
    std::string entry_path(uint64_t generation) const;
    void drop_superseded();

    std::string dir_;
    size_t depth_;
    std::vector<policy_generation> kept_;
    std::optional<policy_file_record> file_;
};

}  // namespace sekisho
