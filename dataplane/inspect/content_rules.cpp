#include "dataplane/inspect/content_rules.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <map>
#include <stdexcept>

namespace sekisho {

const char* to_string(content_target t) {
    switch (t) {
    case content_target::envelope: return "envelope";
    case content_target::headers: return "headers";
    case content_target::header: return "header";
    case content_target::body: return "body";
    }
    return "unknown";
}

const char* to_string(content_action a) {
    switch (a) {
    case content_action::none: return "none";
    case content_action::event: return "event";
    case content_action::tighten: return "tighten";
    case content_action::tempfail: return "tempfail";
    case content_action::reset: return "reset";
    case content_action::quarantine: return "quarantine";
    }
    return "unknown";
}

unsigned content_rule::hs_flags() const {
    unsigned f = HS_FLAG_SINGLEMATCH;
    if (caseless) f |= HS_FLAG_CASELESS;
    if (utf8) f |= HS_FLAG_UTF8;
    if (dotall) f |= HS_FLAG_DOTALL;
    if (multiline) f |= HS_FLAG_MULTILINE;
    return f;
}

std::string content_rule::where_string() const {
    return where == content_target::header ? "header:" + header : to_string(where);
}

bool content_rule_id_valid(std::string_view id) {
    if (id.empty() || id.size() > content_rule_id_max) return false;
    for (char c : id)
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
              c == '-' || c == '.'))
            return false;
    return true;
}

bool content_header_name_valid(std::string_view name) {
    if (name.empty() || name.size() > content_header_name_max) return false;
    for (char c : name)
        if (c < 33 || c > 126 || c == ':') return false;
    return true;
}

namespace {

char lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i)
        if (lower(a[i]) != lower(b[i])) return false;
    return true;
}

struct compile_context {
    const std::vector<content_rule>& rules;
    const std::string& source;
    const std::string& list_path;
    std::vector<std::string>& errors;

    void rule_error(unsigned i, const std::string& msg) {
        const content_rule& r = rules[i];
        errors.push_back(source + ":" + std::to_string(r.line) + ": " + list_path + "[" + std::to_string(i) +
                         "]" + (r.id.empty() ? "" : " (id " + r.id + ")") + ": " + msg);
    }
    void set_error(const std::string& what, const std::string& msg) {
        const int line = rules.empty() ? 0 : rules.front().line;
        errors.push_back(source + ":" + std::to_string(line) + ": " + list_path + " (" + what + "): " + msg);
    }
};

// Compiles the rules `members` (indices into ctx.rules) into one stream
// database. A rule Hyperscan refuses here (past the per-rule check: limits,
// empty matches) is reported, dropped and the rest retried, so one apply
// reports every such rule, up to a bound.
hs_database_ptr compile_group(compile_context& ctx, std::vector<unsigned> members, const std::string& what) {
    constexpr int max_retries = 16;
    for (int attempt = 0; attempt <= max_retries; ++attempt) {
        std::vector<const char*> expressions;
        std::vector<unsigned> flags, ids;
        for (unsigned i : members) {
            expressions.push_back(ctx.rules[i].pattern.c_str());
            flags.push_back(ctx.rules[i].hs_flags());
            ids.push_back(i);
        }
        hs_database_t* db = nullptr;
        hs_compile_error_t* err = nullptr;
        const hs_error_t rc = hs_compile_multi(expressions.data(), flags.data(), ids.data(),
                                               static_cast<unsigned>(members.size()), HS_MODE_STREAM, nullptr,
                                               &db, &err);
        if (rc == HS_SUCCESS) {
            if (attempt != 0) {   // rules were dropped: the set is refused anyway
                hs_free_database(db);
                return nullptr;
            }
            return hs_database_ptr(db);
        }
        const std::string msg = err ? err->message : "error " + std::to_string(rc);
        const int expr = err ? err->expression : -1;
        if (err) hs_free_compile_error(err);
        if (expr < 0 || static_cast<size_t>(expr) >= members.size()) {
            ctx.set_error(what + ", " + std::to_string(members.size()) + " rules", "Hyperscan: " + msg);
            return nullptr;
        }
        ctx.rule_error(members[static_cast<size_t>(expr)], "Hyperscan: " + msg);
        members.erase(members.begin() + expr);
        if (members.empty()) return nullptr;
    }
    ctx.set_error(what, "more rules Hyperscan refuses; not all reported");
    return nullptr;
}

}  // namespace

bool check_content_pattern(const content_rule& rule, std::string& message) {
    hs_expr_info_t* info = nullptr;
    hs_compile_error_t* err = nullptr;
    if (hs_expression_info(rule.pattern.c_str(), rule.hs_flags(), &info, &err) == HS_SUCCESS) {
        // Hyperscan allocates with malloc unless hs_set_misc_allocator says otherwise.
        std::free(info);
        return true;
    }
    message = err ? err->message : "unknown error";
    if (err) hs_free_compile_error(err);
    return false;
}

template <typename F>
void content_rule_set::for_each_db(F&& f) const {
    for (const auto& d : dbs_)
        if (d.db) f(d);
    for (const auto& d : headers_) f(d);
}

int content_rule_set::header_index(std::string_view field_name) const {
    for (size_t i = 0; i < headers_.size(); ++i)
        if (iequals(headers_[i].name, field_name)) return static_cast<int>(i);
    return -1;
}

size_t content_rule_set::flow_stream_bytes() const {
    size_t total = max_header_stream_size_;
    for (const auto& d : dbs_) total += d.stream_size;
    return total;
}

hs_scratch_ptr content_rule_set::alloc_scratch() const {
    hs_scratch_t* s = nullptr;
    fit_scratch(s);
    return hs_scratch_ptr(s);
}

void content_rule_set::fit_scratch(hs_scratch_t*& scratch) const {
    for_each_db([&](const compiled_db& d) {
        if (hs_alloc_scratch(d.db.get(), &scratch) != HS_SUCCESS)
            throw std::runtime_error("content rules: hs_alloc_scratch failed");
    });
}

std::shared_ptr<const content_rule_set> compile_content_rules(std::vector<content_rule> rules,
                                                              const std::string& source,
                                                              std::vector<std::string>& errors,
                                                              const std::string& list_path) {
    const auto start = std::chrono::steady_clock::now();
    const size_t errors_before = errors.size();
    compile_context ctx{rules, source, list_path, errors};

    if (rules.size() > content_rules_max) {
        ctx.set_error(std::to_string(rules.size()) + " rules",
                      "at most " + std::to_string(content_rules_max));
        return nullptr;
    }
    std::map<std::string, std::vector<unsigned>> by_header;   // sorted: stable database order
    std::vector<unsigned> members[content_db_count];
    std::map<std::string, unsigned> ids;
    for (unsigned i = 0; i < rules.size(); ++i) {
        content_rule& r = rules[i];
        if (!content_rule_id_valid(r.id)) {
            ctx.rule_error(i, "id '" + r.id + "': 1 to " + std::to_string(content_rule_id_max) +
                                  " letters, digits, '_', '-' or '.'");
            continue;
        }
        if (auto [it, fresh] = ids.emplace(r.id, i); !fresh) {
            ctx.rule_error(i, "id '" + r.id + "' is already the id of the rule at line " +
                                  std::to_string(rules[it->second].line));
            continue;
        }
        if (r.pattern.empty() || r.pattern.size() > content_pattern_max) {
            ctx.rule_error(i, r.pattern.empty() ? std::string("pattern: empty")
                                                : "pattern: " + std::to_string(r.pattern.size()) +
                                                      " bytes; at most " + std::to_string(content_pattern_max));
            continue;
        }
        if (r.pattern.find('\0') != std::string::npos) {
            ctx.rule_error(i, "pattern: contains a NUL byte (write \\x00)");
            continue;
        }
        if (r.score < content_score_min || r.score > content_score_max) {
            ctx.rule_error(i, "score " + std::to_string(r.score) + " is out of range (" +
                                  std::to_string(content_score_min) + " to " + std::to_string(content_score_max) +
                                  ")");
            continue;
        }
        if (r.where == content_target::header) {
            if (!content_header_name_valid(r.header)) {
                ctx.rule_error(i, "where: 'header:" + r.header + "' is not a header field name");
                continue;
            }
            std::transform(r.header.begin(), r.header.end(), r.header.begin(), lower);
        }
        std::string why;
        if (!check_content_pattern(r, why)) {
            ctx.rule_error(i, "Hyperscan: " + why);
            continue;
        }
        if (r.where == content_target::header)
            by_header[r.header].push_back(i);
        else
            members[static_cast<unsigned>(r.where == content_target::envelope ? content_db::envelope
                                          : r.where == content_target::headers ? content_db::headers
                                                                               : content_db::body)]
                .push_back(i);
    }
    if (by_header.size() > content_header_fields_max)
        ctx.set_error(std::to_string(by_header.size()) + " header:NAME fields",
                      "at most " + std::to_string(content_header_fields_max) + " distinct names");
    if (errors.size() != errors_before) return nullptr;

    std::shared_ptr<content_rule_set> set(new content_rule_set());
    auto fill = [&](content_rule_set::compiled_db& d, const std::vector<unsigned>& m, const std::string& what) {
        if (m.empty()) return;
        d.db = compile_group(ctx, m, what);
        if (!d.db) return;
        d.rule_count = static_cast<unsigned>(m.size());
        for (unsigned i : m) d.utf8 = d.utf8 || rules[i].utf8;
        hs_stream_size(d.db.get(), &d.stream_size);
        hs_database_size(d.db.get(), &d.database_size);
    };
    fill(set->dbs_[0], members[0], "envelope database");
    fill(set->dbs_[1], members[1], "headers database");
    fill(set->dbs_[2], members[2], "body database");
    for (const auto& [name, m] : by_header) {
        content_rule_set::compiled_db d;
        d.name = name;
        fill(d, m, "header:" + name + " database");
        set->max_header_stream_size_ = std::max(set->max_header_stream_size_, d.stream_size);
        set->headers_.push_back(std::move(d));
    }
    if (errors.size() != errors_before) return nullptr;

    // A scratch now: proves it can be allocated, and sizes the per-worker ones.
    {
        hs_scratch_t* s = nullptr;
        try {
            set->fit_scratch(s);
        } catch (const std::runtime_error& e) {
            if (s) hs_free_scratch(s);
            ctx.set_error("scratch", e.what());
            return nullptr;
        }
        if (s) {
            hs_scratch_size(s, &set->scratch_size_);
            hs_free_scratch(s);
        }
    }
    set->rules_ = std::move(rules);
    set->source_ = source;
    set->compile_ns_ = static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start).count());
    return set;
}

}  // namespace sekisho
