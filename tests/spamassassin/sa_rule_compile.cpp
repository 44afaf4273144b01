// Driver for spamassassin_rules_test.py: compiles rules through Sekisho's own
// content rule compiler (dataplane/inspect/content_rules.h), never a separate path.
//
// stdin, one rule a line:  NAME <TAB> WHERE <TAB> FLAGS <TAB> HEX(PATTERN)
//   WHERE: body | headers | envelope | header:NAME
//   FLAGS: any of i (caseless) s (dotall) m (multiline) u (utf8), or '-'
// stdout, one line per input line, in order:  OK <TAB> ms | ERR <TAB> ms <TAB> <compiler message>
// (ms: the compile's CPU time)
// then one JSON line: the accepted rules compiled together, per target class
// (one database each), with compile time, database, stream state and scratch sizes.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "dataplane/inspect/content_rules.h"

using namespace sekisho;

namespace {

std::vector<std::string> split_tabs(const std::string& line) {
    std::vector<std::string> out;
    size_t start = 0;
    for (;;) {
        const size_t tab = line.find('\t', start);
        out.push_back(line.substr(start, tab == std::string::npos ? std::string::npos : tab - start));
        if (tab == std::string::npos) return out;
        start = tab + 1;
    }
}

bool unhex(const std::string& hex, std::string& out) {
    auto nibble = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
    };
    if (hex.size() % 2) return false;
    out.clear();
    for (size_t i = 0; i < hex.size(); i += 2) {
        const int hi = nibble(hex[i]), lo = nibble(hex[i + 1]);
        if (hi < 0 || lo < 0) return false;
        out.push_back(static_cast<char>(hi << 4 | lo));
    }
    return true;
}

std::string json_escape(const std::string& s) {
    std::string o;
    for (unsigned char c : s) {
        if (c == '"' || c == '\\') o += '\\', o += static_cast<char>(c);
        else if (c < 0x20 || c >= 0x7f) {
            char b[8];
            std::snprintf(b, sizeof b, "\\u%04x", c);
            o += b;
        } else o += static_cast<char>(c);
    }
    return o;
}

double ms_since(std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
}

// CPU time of the calling thread: compile figures that do not depend on the machine's load.
double thread_cpu_ms() {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
}

// One set of the accepted rules of some classes compiled together: its figures as JSON.
std::string compile_together(const std::vector<content_rule>& rules, const char* label) {
    std::vector<std::string> errors;
    const auto t = std::chrono::steady_clock::now();
    const double cpu = thread_cpu_ms();
    auto set = compile_content_rules(rules, label, errors);
    const double ms = ms_since(t), cpu_ms = thread_cpu_ms() - cpu;
    std::string j = std::string("\"") + label + "\":{\"rules\":" + std::to_string(rules.size()) +
                    ",\"compile_ms\":" + std::to_string(ms) + ",\"compile_cpu_ms\":" + std::to_string(cpu_ms);
    if (!set) {
        j += ",\"errors\":[";
        for (size_t i = 0; i < errors.size(); ++i) j += (i ? ",\"" : "\"") + json_escape(errors[i]) + "\"";
        return j + "]}";
    }
    const char* names[] = {"envelope", "headers", "body"};
    for (auto d : {content_db::envelope, content_db::headers, content_db::body})
        if (set->database(d))
            j += std::string(",\"") + names[static_cast<int>(d)] + "\":{\"rules\":" +
                 std::to_string(set->rule_count(d)) + ",\"database_bytes\":" + std::to_string(set->database_size(d)) +
                 ",\"stream_state_bytes\":" + std::to_string(set->stream_size(d)) + "}";
    size_t header_db_bytes = 0;
    for (unsigned i = 0; i < set->header_count(); ++i) {
        size_t b = 0;
        hs_database_size(set->header_database(i), &b);
        header_db_bytes += b;
    }
    j += ",\"header_field_databases\":" + std::to_string(set->header_count()) +
         ",\"header_field_database_bytes\":" + std::to_string(header_db_bytes) +
         ",\"max_header_field_stream_state_bytes\":" + std::to_string(set->max_header_stream_size()) +
         ",\"flow_stream_state_bytes\":" + std::to_string(set->flow_stream_bytes()) +
         ",\"scratch_bytes\":" + std::to_string(set->scratch_size()) + "}";
    return j;
}

}  // namespace

int main() {
    std::ios::sync_with_stdio(false);
    // Read every rule first; compile them one at a time on every core (Hyperscan's
    // compiler is thread-safe, and a few SpamAssassin rules take seconds each).
    struct job {
        content_rule rule;
        std::string bad;      // driver-level problem with the input line
        bool ok = false;
        double ms = 0;
        std::string message;
    };
    std::vector<job> jobs;
    std::string line;
    while (std::getline(std::cin, line)) {
        job j;
        const auto f = split_tabs(line);
        content_rule& r = j.rule;
        r.score = 1;
        r.line = static_cast<int>(jobs.size() + 1);
        if (f.size() != 4 || !unhex(f[3], r.pattern)) {
            j.bad = "driver: malformed input line " + std::to_string(jobs.size() + 1);
        } else {
            r.id = f[0];
            if (f[1] == "body") r.where = content_target::body;
            else if (f[1] == "headers") r.where = content_target::headers;
            else if (f[1] == "envelope") r.where = content_target::envelope;
            else if (f[1].rfind("header:", 0) == 0) {
                r.where = content_target::header;
                r.header = f[1].substr(7);
            } else {
                j.bad = "driver: unknown target '" + f[1] + "'";
            }
            for (char c : f[2]) {
                if (c == 'i') r.caseless = true;
                else if (c == 's') r.dotall = true;
                else if (c == 'm') r.multiline = true;
                else if (c == 'u') r.utf8 = true;
            }
        }
        jobs.push_back(std::move(j));
    }

    const auto start = std::chrono::steady_clock::now();
    std::atomic<size_t> next{0};
    auto work = [&] {
        for (size_t i; (i = next.fetch_add(1)) < jobs.size();) {
            job& j = jobs[i];
            if (!j.bad.empty()) {
                j.message = j.bad;
                continue;
            }
            std::vector<std::string> errors;
            const double cpu = thread_cpu_ms();
            j.ok = compile_content_rules({j.rule}, "sa", errors) != nullptr;
            j.ms = thread_cpu_ms() - cpu;
            for (const auto& e : errors) j.message += (j.message.empty() ? "" : " | ") + e;
            for (char& c : j.message)
                if (c == '\n' || c == '\t') c = ' ';
        }
    };
    std::vector<std::thread> threads;
    for (unsigned t = 0; t < std::max(1u, std::thread::hardware_concurrency()); ++t) threads.emplace_back(work);
    for (auto& t : threads) t.join();
    const double one_by_one_ms = ms_since(start);

    unsigned ok = 0, failed = 0;
    std::vector<content_rule> body, header_rules;
    for (const job& j : jobs) {
        if (j.ok) {
            std::cout << "OK\t" << j.ms << "\n";
            ++ok;
            (j.rule.where == content_target::body ? body : header_rules).push_back(j.rule);
        } else {
            std::cout << "ERR\t" << j.ms << "\t" << j.message << "\n";
            ++failed;
        }
    }
    // Together, as a policy would: one database per class (the header rules make
    // the headers database and the header:NAME ones).
    std::cout << "{\"accepted\":" << ok << ",\"rejected\":" << failed
              << ",\"threads\":" << threads.size() << ",\"one_by_one_compile_ms\":" << one_by_one_ms << ","
              << compile_together(body, "body_rules") << "," << compile_together(header_rules, "header_rules")
              << "}\n";
    return 0;
}
