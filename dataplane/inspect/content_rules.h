// Content rules as the data plane scans with them: the compiled, immutable
// Hyperscan databases of one policy generation.
//
// Compiled off the data path (compile_content_rules, when a policy is applied);
// immutable once built; shared by every worker. No YAML here: the policy
// reader (control/policy/content_rules_yaml.h) builds the `content_rule` list.
//
// Databases: one Hyperscan STREAM-mode database per scan target class,
//  - envelope: the SMTP command lines of a message (EHLO, MAIL FROM, RCPT TO
//    arguments), one stream per message;
//  - headers:  every header field of a message as "Name: value\n" lines
//    (unfolded, RFC 2047 words decoded to UTF-8), one stream per message;
//  - body:     the decoded body text (UTF-8), one stream per message;
//  - header:NAME: ONE DATABASE PER DISTINCT FIELD NAME (at most
//    content_header_fields_max), scanned with one stream per field instance:
//    the stream sees that field's unfolded, decoded value only, so `^` and `$`
//    anchor to the value. Why not the headers database with the match filtered
//    by field in the caller: every rule is HS_FLAG_SINGLEMATCH, so a
//    header:subject rule whose pattern first matched in From: would fire there,
//    be filtered out, and never fire again in Subject:. Per-name databases are
//    exact; only one field is open at a time, so a flow holds at most one
//    field stream (max_header_stream_size()).
//
// Every rule is compiled with HS_FLAG_SINGLEMATCH: a rule fires at most once
// per stream (per message part, per header field), which is what scoring wants
// (a blackword repeated 500 times scores once) and lets Hyperscan stop
// tracking a rule once it has matched. HS_FLAG_SOM_LEFTMOST is off: a match
// reports its end offset only (start-of-match tracking costs stream state and
// speed, and events never carry message text). The Hyperscan id of a pattern
// is its index in rules(), in every database.
//
// Scanning contract for the caller:
//  - utf8 rules: Hyperscan's results on invalid UTF-8 input are undefined, so
//    the decoder must hand every database that holds a utf8 rule valid UTF-8
//    (replace bad sequences); has_utf8(db) says which.
//  - scratch and streams: one working set per worker and per generation
//    (content_scan_states in content_scan_state.h: a scratch from
//    alloc_scratch() and streams opened off the data path, owned by the
//    generation's compiled_policy). A stream references its database: the
//    working sets keep their rule set alive until their streams are closed.
//    A message never carries a stream or a rule hit across a policy swap:
//    the inspector restarts both under the new generation
//    (content_inspector::adopt).
#pragma once

#include <hs.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace sekisho {

// Where a rule looks.
enum class content_target : uint8_t { envelope, headers, header, body };

// What a match does on its own, besides adding its score.
enum class content_action : uint8_t { none, event, tighten, tempfail, reset, quarantine };

const char* to_string(content_target t);
const char* to_string(content_action a);

constexpr size_t content_rule_id_max = 63;        // fits a char[64] in events
constexpr size_t content_pattern_max = 16384;     // bytes
constexpr size_t content_header_name_max = 64;
constexpr size_t content_header_fields_max = 64;  // distinct header:NAME databases
constexpr size_t content_rules_max = 8192;
constexpr int32_t content_score_min = -1000, content_score_max = 1000;

struct content_rule {
    std::string id;        // [A-Za-z0-9_.-], 1..content_rule_id_max
    std::string pattern;   // the Hyperscan PCRE subset; no NUL byte (write \x00)
    bool caseless = false; // HS_FLAG_CASELESS
    bool utf8 = false;     // HS_FLAG_UTF8 (pattern and input are UTF-8 text)
    bool dotall = false;   // HS_FLAG_DOTALL
    bool multiline = false;// HS_FLAG_MULTILINE
    content_target where = content_target::body;
    std::string header;    // lowercase field name when where == header
    int32_t score = 0;
    content_action action = content_action::none;
    int line = 0;          // where the policy declared the rule (0: unknown)

    unsigned hs_flags() const;   // the Hyperscan compile flags of this rule
    std::string where_string() const;   // "body", "header:subject", ...
};

// A rule id: 1 to content_rule_id_max letters, digits, '_', '-' and '.'.
bool content_rule_id_valid(std::string_view id);
// A header:NAME field name (RFC 5322 field-name): 1 to content_header_name_max bytes of
// printable US-ASCII but ':'.
bool content_header_name_valid(std::string_view name);

// The per-message databases (header:NAME databases are indexed separately).
enum class content_db : uint8_t { envelope = 0, headers = 1, body = 2 };
constexpr unsigned content_db_count = 3;

struct hs_database_deleter {
    void operator()(hs_database_t* d) const { hs_free_database(d); }
};
struct hs_scratch_deleter {
    void operator()(hs_scratch_t* s) const { hs_free_scratch(s); }
};
using hs_database_ptr = std::unique_ptr<hs_database_t, hs_database_deleter>;
using hs_scratch_ptr = std::unique_ptr<hs_scratch_t, hs_scratch_deleter>;

class content_rule_set;

// Compiles `rules` (ids = indices). On failure returns nullptr and appends to
// `errors`, each as "<source>:<line>: <list_path>[i] (id X): <message>", Hyperscan's
// own messages as "...: Hyperscan: <message>". Every rule is pre-checked, so
// all unsupported patterns are reported together. Validates what the YAML
// reader validates too (ids, header names, limits), so callers that build
// rules in code get the same guarantees. Slow (milliseconds to seconds): call
// off the data path.
std::shared_ptr<const content_rule_set> compile_content_rules(std::vector<content_rule> rules,
                                                              const std::string& source,
                                                              std::vector<std::string>& errors,
                                                              const std::string& list_path = "rules");

class content_rule_set {
public:
    content_rule_set(const content_rule_set&) = delete;
    content_rule_set& operator=(const content_rule_set&) = delete;

    // Rules, indexed by Hyperscan id.
    const std::vector<content_rule>& rules() const { return rules_; }
    const content_rule& rule(unsigned id) const { return rules_[id]; }
    bool empty() const { return rules_.empty(); }

    // nullptr when no rule targets that class (nothing to scan).
    const hs_database_t* database(content_db d) const { return dbs_[index(d)].db.get(); }
    size_t stream_size(content_db d) const { return dbs_[index(d)].stream_size; }
    size_t database_size(content_db d) const { return dbs_[index(d)].database_size; }
    unsigned rule_count(content_db d) const { return dbs_[index(d)].rule_count; }
    bool has_utf8(content_db d) const { return dbs_[index(d)].utf8; }

    // header:NAME databases. Lookup is case-insensitive, allocation-free, a
    // linear scan over at most content_header_fields_max names; -1 if none.
    int header_index(std::string_view field_name) const;
    unsigned header_count() const { return static_cast<unsigned>(headers_.size()); }
    const std::string& header_name(unsigned i) const { return headers_[i].name; }
    const hs_database_t* header_database(unsigned i) const { return headers_[i].db.get(); }
    size_t header_stream_size(unsigned i) const { return headers_[i].stream_size; }
    bool header_has_utf8(unsigned i) const { return headers_[i].utf8; }
    size_t max_header_stream_size() const { return max_header_stream_size_; }

    // Hyperscan stream state of one flow with every stream open at once:
    // envelope + headers + body + one header field.
    size_t flow_stream_bytes() const;

    // Scratch: a new one fitting every database (hs_alloc_scratch on each
    // database with the same pointer), or grow an existing one (a worker's,
    // fitted to a previous generation: hs_alloc_scratch may replace the
    // pointer, so never while that scratch is scanning). Throw
    // std::runtime_error on failure. Control thread only.
    hs_scratch_ptr alloc_scratch() const;
    void fit_scratch(hs_scratch_t*& scratch) const;
    // The size of a scratch fitting every database (0 when there is none).
    size_t scratch_size() const { return scratch_size_; }

    uint64_t compile_ns() const { return compile_ns_; }   // wall time of the compile
    const std::string& source() const { return source_; }

private:
    friend std::shared_ptr<const content_rule_set> compile_content_rules(
        std::vector<content_rule>, const std::string&, std::vector<std::string>&, const std::string&);
    content_rule_set() = default;

    struct compiled_db {
        std::string name;            // header field name (header databases)
        hs_database_ptr db;
        size_t stream_size = 0;
        size_t database_size = 0;
        unsigned rule_count = 0;
        bool utf8 = false;
    };
    static unsigned index(content_db d) { return static_cast<unsigned>(d); }
    template <typename F> void for_each_db(F&& f) const;

    std::vector<content_rule> rules_;
    compiled_db dbs_[content_db_count];
    std::vector<compiled_db> headers_;
    size_t max_header_stream_size_ = 0;
    size_t scratch_size_ = 0;
    uint64_t compile_ns_ = 0;
    std::string source_;
};

// Checks one rule's pattern the way the compiler will (hs_expression_info with
// its flags: syntax and supported constructs; a few limits only show at
// compile). Returns true, or false with Hyperscan's message.
bool check_content_pattern(const content_rule& rule, std::string& message);

}  // namespace sekisho
