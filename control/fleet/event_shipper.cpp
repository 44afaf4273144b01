#include "control/fleet/event_shipper.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "control/fleet/durable_file.h"
#include "control/fleet/fleet_config.h"
#include "control/fleet/pg_connection.h"

namespace sekisho {

namespace {

using nlohmann::json;

constexpr int64_t day_seconds = 86400;

int64_t unix_now() { return static_cast<int64_t>(std::time(nullptr)); }

uint64_t realtime_ns() {
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
}

// "2026-12-07" for the UTC day holding Unix second t.
std::string day_text(int64_t t, const char* format) {
    const time_t s = static_cast<time_t>(t);
    tm u{};
    gmtime_r(&s, &u);
    char buf[32];
    std::strftime(buf, sizeof buf, format, &u);
    return buf;
}

int64_t day_of(int64_t t) { return (t >= 0 ? t : t - (day_seconds - 1)) / day_seconds; }

// The first line of an error: PostgreSQL's DETAIL and CONTEXT may quote
// event data, which a log line does not need.
std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

// COPY's text format: backslash, tab, newline and carriage return escaped.
void copy_field(std::string& out, const std::string& v) {
    if (v.find_first_of("\\\t\n\r") == std::string::npos) {
        out += v;
        return;
    }
    for (const char c : v) {
        switch (c) {
            case '\\': out += "\\\\"; break;
            case '\t': out += "\\t"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            default: out += c;
        }
    }
}

bool valid_address(const std::string& a) {
    unsigned char buf[16];
    return !a.empty() && (inet_pton(AF_INET, a.c_str(), buf) == 1 || inet_pton(AF_INET6, a.c_str(), buf) == 1);
}

// What the shipper takes from a line besides the line itself: the top-level
// fields it puts into columns (the last of a repeated key wins, as in a
// parsed object).
struct line_fields {
    std::optional<std::string> type, subscriber, src, account;
    uint64_t first_ns = 0, time_ns = 0;
};

// Checks that `text` is one JSON object and takes its fields in one pass,
// without building the object (SAX: the shipper's cost per line is this parse).
class line_fields_reader : public nlohmann::json_sax<json> {
public:
    explicit line_fields_reader(line_fields& f) : f_(f) {}
    bool null() override { return value(); }
    bool boolean(bool) override { return value(); }
    bool number_integer(number_integer_t) override { return value(); }
    bool number_unsigned(number_unsigned_t v) override {
        if (!value()) return false;
        if (depth_ == 1 && key_ == "first_ns") f_.first_ns = v;
        else if (depth_ == 1 && key_ == "time_ns") f_.time_ns = v;
        return true;
    }
    bool number_float(number_float_t, const string_t&) override { return value(); }
    bool string(string_t& v) override {
        if (!value()) return false;
        if (depth_ == 1) {
            if (key_ == "type") f_.type = std::move(v);
            else if (key_ == "subscriber") f_.subscriber = std::move(v);
            else if (key_ == "src") f_.src = std::move(v);
            else if (key_ == "account") f_.account = std::move(v);
        }
        return true;
    }
    bool binary(binary_t&) override { return value(); }
    bool start_object(std::size_t) override {
        if (depth_ == 0) {
            if (objects_++ > 0) return false;   // one object, not two
        } else {
            value();
        }
        ++depth_;
        return true;
    }
    bool key(string_t& k) override {
        if (depth_ == 1) key_ = k;
        return true;
    }
    bool end_object() override {
        --depth_;
        return true;
    }
    bool start_array(std::size_t) override {
        if (depth_ == 0) return false;   // an array is not an event
        value();
        ++depth_;
        return true;
    }
    bool end_array() override {
        --depth_;
        return true;
    }
    bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override { return false; }
    bool whole() const { return objects_ == 1 && depth_ == 0; }

private:
    // A value at the top level is not an object: refused. A value of another
    // type under a key the shipper reads clears what that key said before.
    bool value() {
        if (depth_ == 0) return false;
        if (depth_ == 1) {
            if (key_ == "type") f_.type.reset();
            else if (key_ == "subscriber") f_.subscriber.reset();
            else if (key_ == "src") f_.src.reset();
            else if (key_ == "account") f_.account.reset();
            else if (key_ == "first_ns") f_.first_ns = 0;
            else if (key_ == "time_ns") f_.time_ns = 0;
        }
        return true;
    }
    line_fields& f_;
    int depth_ = 0, objects_ = 0;
    std::string key_;
};

bool read_line_fields(const std::string& text, line_fields& f) {
    line_fields_reader r(f);
    return json::sax_parse(text, &r) && r.whole();
}

const char* const insert_columns = "gateway, file_id, line_offset, time, type, address, account, line";

}  // namespace

void ensure_event_tables(pg_connection& pg) {
    ensure_objects(pg, fleet_sql::events_lock, fleet_sql::event_tables, "events");
}

std::string ensure_event_partition(pg_connection& pg, int64_t t) {
    // Through the schema's function (fleet_schema.h): a gateway without CREATE may call it.
    pg_result r = pg.exec_params("SELECT sekisho_event_partition($1::date)",
                                 {day_text(day_of(t) * day_seconds, "%Y-%m-%d")}, "create the partition of a day");
    return PQgetvalue(r.get(), 0, 0);
}

int drop_old_event_partitions(pg_connection& pg, int64_t now, uint32_t days) {
    // Partitions whose day ended before the first day kept, through the schema's function (fleet_schema.h).
    pg_result r = pg.exec_params(
        "SELECT sekisho_drop_event_partitions($1::date)",
        {day_text((day_of(now) - static_cast<int64_t>(days)) * day_seconds, "%Y-%m-%d")}, "drop old partitions");
    return std::stoi(PQgetvalue(r.get(), 0, 0));
}

struct event_shipper::prepared_line {
    int64_t file_id = 0;
    uint64_t offset = 0;
    int64_t time_us = 0;
    std::string type;
    std::string address;            // "" -> NULL
    std::optional<std::string> account;
    std::string line;               // JSON object text for jsonb
    std::string file_name;
    bool unparsable = false;   // not a JSON object: logged and counted once shipped
};

event_shipper::event_shipper(event_shipper_options options) : opt_(std::move(options)) {
    std::ifstream in(opt_.cursor_path);
    if (in) {
        std::string pos;
        uint64_t last = 0;
        in >> pos >> last;
        cursor_.position = parse_event_position(pos);
        if (!cursor_.position) {
            log("fleet: events: " + opt_.cursor_path +
                ": not a cursor (INODE:OFFSET:CHECK LAST_TIME_NS): shipping the event log from its oldest file; "
                "lines already in PostgreSQL are not inserted twice");
        } else {
            cursor_.last_time_ns = last;
        }
    }
    state_.cursor = cursor_.position ? cursor_.position->to_string() : "";
    thread_ = std::thread([this] { run(); });
}

event_shipper::~event_shipper() {
    signals_.stop();
    if (thread_.joinable()) thread_.join();
}

event_shipper_state event_shipper::state() const {
    std::lock_guard<std::mutex> l(mu_);
    return state_;
}

nlohmann::json event_shipper::status() const {
    const event_shipper_state s = state();
    return {{"store", "postgres"},        {"link_up", s.link_up},       {"shipped", s.shipped},
            {"inserted", s.inserted},     {"batches", s.batches},       {"unparsable", s.unparsable},
            {"refused", s.refused},       {"gaps", s.gaps},             {"backlog_bytes", s.backlog_bytes},
            {"reconnects", s.reconnects}, {"last_sync", s.last_sync},   {"lag_seconds", s.lag_seconds},
            {"cursor", s.cursor},         {"last_error", s.last_error}};
}

std::vector<std::string> event_shipper::take_log_lines() { return signals_.take_log_lines(); }

void event_shipper::wake() { signals_.wake(); }

void event_shipper::save_cursor(const cursor_state& c) {
    const std::string error = replace_file_durably(opt_.cursor_path, (c.position ? c.position->to_string() : std::string("0:0:0")) + " " +
                             std::to_string(c.last_time_ns) + "\n");
    // Not fatal: the next COMMIT saves it again; a restart meanwhile re-sends lines the keys make no-ops.
    if (!error.empty()) log("fleet: events: cannot save the cursor: " + error);
}

std::vector<event_shipper::prepared_line> event_shipper::prepare(const follow_result& batch, uint64_t last_time_ns) {
    std::vector<prepared_line> out;
    out.reserve(batch.lines.size());
    std::vector<bool> timeless;
    for (const followed_line& l : batch.lines) {
        prepared_line p;
        p.file_id = l.file_id;
        p.offset = l.offset;
        p.file_name = l.file_name;
        uint64_t t = 0;
        line_fields f;
        if (read_line_fields(l.text, f)) {
            p.type = f.type ? *f.type : "unknown";
            t = f.first_ns ? f.first_ns : f.time_ns;
            if (f.subscriber && valid_address(*f.subscriber)) p.address = *f.subscriber;
            else if (f.src && valid_address(*f.src)) p.address = *f.src;
            p.account = f.account;
            p.line = l.text;
        } else {
            p.type = "unparsable";
            p.line = json{{"unparsable", l.text}, {"file", l.file_name}, {"offset", l.offset}}.dump(
                -1, ' ', false, json::error_handler_t::replace);
            p.unparsable = true;
        }
        timeless.push_back(t == 0);
        p.time_us = static_cast<int64_t>(t / 1000);
        out.push_back(std::move(p));
    }
    // A line without a time takes the previous line's (the cursor's last
    // shipped line for the first), else the next line's, else now: the same
    // batch read again from the same cursor gets the same times, so its keys
    // repeat.
    int64_t previous = static_cast<int64_t>(last_time_ns / 1000);
    for (size_t i = 0; i < out.size(); ++i) {
        if (!timeless[i]) {
            previous = out[i].time_us;
            continue;
        }
        if (previous) {
            out[i].time_us = previous;
            continue;
        }
        for (size_t j = i + 1; j < out.size() && !out[i].time_us; ++j)
            if (!timeless[j]) out[i].time_us = out[j].time_us;
        if (!out[i].time_us) out[i].time_us = static_cast<int64_t>(realtime_ns() / 1000);
        previous = out[i].time_us;
    }
    return out;
}

void event_shipper::ensure_partitions(pg_connection& pg, const std::vector<prepared_line>& lines) {
    std::set<int64_t> days;
    for (const prepared_line& l : lines) days.insert(day_of(l.time_us / 1'000'000));
    for (const int64_t d : days) {
        if (std::find(partitions_.begin(), partitions_.end(), d) != partitions_.end()) continue;
        ensure_event_partition(pg, d * day_seconds);
        partitions_.push_back(d);
    }
}

void event_shipper::ship(pg_connection& pg, const std::vector<prepared_line>& lines,
                         const std::function<void()>& while_inserting) {
    const uint64_t inserted = pg.in_transaction("a batch", [&] {
        pg_result started(PQexec(pg.raw(), "COPY events_stage FROM STDIN"));
        pg.check(started.get(), "copy a batch");
        std::string buf;
        buf.reserve(1 << 20);
        auto flush = [&] {
            if (PQputCopyData(pg.raw(), buf.data(), static_cast<int>(buf.size())) != 1)
                throw pg_error(std::string("postgres: copy a batch: ") + PQerrorMessage(pg.raw()), !pg.ok());
            buf.clear();
        };
        for (const prepared_line& l : lines) {
            buf += std::to_string(l.file_id);
            buf += '\t';
            buf += std::to_string(l.offset);
            buf += '\t';
            buf += std::to_string(l.time_us);
            buf += '\t';
            copy_field(buf, l.type);
            buf += '\t';
            if (l.address.empty()) buf += "\\N";
            else buf += l.address;
            buf += '\t';
            if (l.account) copy_field(buf, *l.account);
            else buf += "\\N";
            buf += '\t';
            copy_field(buf, l.line);
            buf += '\n';
            if (buf.size() >= (1u << 20)) flush();
        }
        if (!buf.empty()) flush();
        if (PQputCopyEnd(pg.raw(), nullptr) != 1)
            throw pg_error(std::string("postgres: end a copy: ") + PQerrorMessage(pg.raw()), !pg.ok());
        for (PGresult* r; (r = PQgetResult(pg.raw())) != nullptr;) {
            pg_result owned(r);
            pg.check(r, "copy a batch");
        }
        // Sent without waiting: the caller reads the next batch while PostgreSQL inserts this one.
        const std::string insert = std::string("INSERT INTO events (") + insert_columns +
                                   ") SELECT $1, file_id, line_offset, "
                                   "timestamptz 'epoch' + time_us * interval '1 microsecond', type, address, "
                                   "account, line FROM events_stage ON CONFLICT DO NOTHING";
        const char* gateway = opt_.gateway.c_str();
        if (PQsendQueryParams(pg.raw(), insert.c_str(), 1, nullptr, &gateway, nullptr, nullptr, 0) != 1)
            throw pg_error(std::string("postgres: insert a batch: ") + PQerrorMessage(pg.raw()), !pg.ok());
        if (while_inserting) while_inserting();
        uint64_t n = 0;
        for (PGresult* r; (r = PQgetResult(pg.raw())) != nullptr;) {
            pg_result owned(r);
            pg.check(r, "insert a batch");
            n += std::strtoull(PQcmdTuples(r), nullptr, 10);
        }
        return n;
    });
    std::lock_guard<std::mutex> g(mu_);
    state_.inserted += inserted;
}

void event_shipper::ship_one_by_one(pg_connection& pg, std::vector<prepared_line>& lines) {
    const std::string sql = std::string("INSERT INTO events (") + insert_columns +
                            ") VALUES ($1, $2, $3, timestamptz 'epoch' + $4::bigint * interval '1 microsecond', $5, "
                            "$6::inet, $7, $8::jsonb) ON CONFLICT DO NOTHING";
    uint64_t inserted = 0;
    std::vector<std::string> refusals;   // logged and counted once committed (a lost link retries the batch)
    pg.in_transaction("a batch line by line", [&] {
        for (prepared_line& l : lines) {
            auto insert = [&](const prepared_line& p) {
                const std::string id = std::to_string(p.file_id), off = std::to_string(p.offset),
                                  t = std::to_string(p.time_us);
                const char* values[8] = {opt_.gateway.c_str(), id.c_str(), off.c_str(), t.c_str(), p.type.c_str(),
                                         p.address.empty() ? nullptr : p.address.c_str(),
                                         p.account ? p.account->c_str() : nullptr, p.line.c_str()};
                pg_result r(PQexecParams(pg.raw(), sql.c_str(), 8, nullptr, values, nullptr, nullptr, 0));
                pg.check(r.get(), "insert " + p.file_name + " at offset " + std::to_string(p.offset));
                inserted += std::strtoull(PQcmdTuples(r.get()), nullptr, 10);
            };
            const auto refused = pg.refusal_in_savepoint([&] { insert(l); });
            if (!refused) continue;
            l.type = "refused";
            l.address.clear();
            l.account.reset();
            l.line = json{{"refused", first_line(refused->what())}, {"file", l.file_name}, {"offset", l.offset}}.dump(
                -1, ' ', false, json::error_handler_t::replace);
            refusals.push_back("fleet: events: " + l.file_name + " at offset " + std::to_string(l.offset) +
                               ": PostgreSQL refused the line (" + first_line(refused->what()) +
                               "): shipped as type \"refused\"");
            if (const auto again = pg.refusal_in_savepoint([&] { insert(l); }))
                refusals.back() = "fleet: events: " + l.file_name + " at offset " + std::to_string(l.offset) +
                                  ": PostgreSQL refused the line and its stand-in row (" + first_line(again->what()) +
                                  "): skipped";
        }
    });
    for (const std::string& r : refusals) log(r);
    std::lock_guard<std::mutex> g(mu_);
    state_.inserted += inserted;
    state_.refused += refusals.size();
}

void event_shipper::run() {
    std::unique_ptr<pg_connection> pg;
    uint64_t backoff = opt_.backoff_min_ns;
    bool was_up = false, said_down = false;
    int64_t last_probe = 0;
    std::optional<std::pair<follow_result, std::vector<prepared_line>>> ahead;
    auto link_down = [&](const std::string& why) {
        pg.reset();
        partitions_.clear();
        {
            std::lock_guard<std::mutex> g(mu_);
            state_.link_up = false;
            state_.last_error = why;
        }
        if (was_up || !said_down) {
            log("fleet: events: PostgreSQL link down (" + first_line(why) + "); retrying, the event log keeps the lines");
            said_down = true;
        }
        was_up = false;
    };
    while (true) {
        if (signals_.stopping()) return;
        if (!pg) {
            try {
                pg = std::make_unique<pg_connection>(opt_.conninfo_file);
                // "already exists, skipping" notices would go to standard error from this thread.
                pg->exec("SET client_min_messages = warning", "quiet the notices");
                ensure_event_tables(*pg);
                pg->exec("CREATE TEMP TABLE IF NOT EXISTS events_stage (file_id bigint, line_offset bigint, "
                         "time_us bigint, type text, address inet, account text, line jsonb) ON COMMIT DELETE ROWS",
                         "create the staging table");
                maintained_day_ = 0;
                backoff = opt_.backoff_min_ns;
                {
                    std::lock_guard<std::mutex> g(mu_);
                    state_.link_up = true;
                    ++state_.reconnects;
                }
                log("fleet: events: PostgreSQL link up");
                was_up = true;
                said_down = false;
            } catch (const std::exception& e) {
                link_down(e.what());
                measure_backlog();
                if (!wait_for(backoff)) return;
                backoff = std::min(backoff * 2, opt_.backoff_max_ns);
                continue;
            }
        }
        try {
            // Once a day (and at each connect): today's and tomorrow's
            // partitions, and retention.
            const int64_t now = unix_now();
            if (day_of(now) != maintained_day_) {
                ensure_event_partition(*pg, now);
                ensure_event_partition(*pg, now + day_seconds);
                const int dropped = drop_old_event_partitions(*pg, now, opt_.retention_days);
                if (dropped)
                    log("fleet: events: dropped " + std::to_string(dropped) + " partitions older than " +
                        std::to_string(opt_.retention_days) + " days");
                partitions_.clear();
                maintained_day_ = day_of(now);
            }
            follow_result batch;
            std::vector<prepared_line> lines;
            if (ahead) {   // read while PostgreSQL inserted the batch before
                batch = std::move(ahead->first);
                lines = std::move(ahead->second);
                ahead.reset();
            } else {
                batch = follow_log(opt_.events_path, cursor_.position, opt_.batch_lines, opt_.batch_bytes);
            }
            if (batch.gap) {
                log("fleet: events: the event log rotated past the cursor " +
                    (cursor_.position ? cursor_.position->to_string() : std::string()) +
                    " while PostgreSQL was behind: lines between were not shipped; going on from the oldest file");
                std::lock_guard<std::mutex> g(mu_);
                ++state_.gaps;
            }
            uint64_t pending_bytes = batch.backlog_bytes;
            for (const followed_line& l : batch.lines) pending_bytes += l.text.size() + 1;
            if (batch.lines.empty()) {
                if (!(batch.end == cursor_.position.value_or(event_position{})) && (cursor_.position || batch.end.file)) {
                    cursor_.position = batch.end;   // moved on to a newer file, or past a gap
                    save_cursor(cursor_);
                }
                if (now != last_probe) {   // an idle link is checked once a second
                    pg->exec("SELECT 1", "check the link");
                    last_probe = now;
                }
                {
                    std::lock_guard<std::mutex> g(mu_);
                    state_.backlog_bytes = pending_bytes;
                    state_.lag_seconds = 0;
                    state_.last_sync = now;
                    state_.cursor = cursor_.position ? cursor_.position->to_string() : "";
                }
                if (!wait_for(opt_.sync_interval_ns)) return;
                continue;
            }
            if (lines.empty()) lines = prepare(batch, cursor_.last_time_ns);
            int64_t oldest = INT64_MAX;
            for (const prepared_line& l : lines) oldest = std::min(oldest, l.time_us);
            {
                std::lock_guard<std::mutex> g(mu_);
                state_.backlog_bytes = pending_bytes;
                state_.lag_seconds = std::max(0.0, static_cast<double>(realtime_ns() / 1000) / 1e6 -
                                                       static_cast<double>(oldest) / 1e6);
            }
            // A full batch: the next one is read and prepared while PostgreSQL inserts this one,
            // from where this one ends (a read that finds a gap or nothing is left to the next turn).
            auto read_ahead = [&] {
                if (!batch.full) return;
                follow_result next = follow_log(opt_.events_path, batch.end, opt_.batch_lines, opt_.batch_bytes);
                if (next.gap || next.lines.empty()) return;
                std::vector<prepared_line> p = prepare(next, static_cast<uint64_t>(lines.back().time_us) * 1000);
                ahead.emplace(std::move(next), std::move(p));
            };
            ensure_partitions(*pg, lines);
            try {
                ship(*pg, lines, read_ahead);
            } catch (const pg_error& e) {
                if (e.connection_lost()) throw;
                partitions_.clear();   // a partition dropped by another gateway's retention
                ensure_partitions(*pg, lines);
                ship_one_by_one(*pg, lines);
            }
            backoff = opt_.backoff_min_ns;
            uint64_t unparsable = 0;
            for (const prepared_line& l : lines)
                if (l.unparsable) {
                    ++unparsable;
                    log("fleet: events: " + l.file_name + " at offset " + std::to_string(l.offset) +
                        ": not a JSON object: shipped as type \"unparsable\"");
                }
            cursor_.position = batch.end;
            cursor_.last_time_ns = static_cast<uint64_t>(lines.back().time_us) * 1000;
            save_cursor(cursor_);
            const bool more = batch.full;
            {
                std::lock_guard<std::mutex> g(mu_);
                state_.shipped += lines.size();
                state_.unparsable += unparsable;
                ++state_.batches;
                state_.backlog_bytes = batch.backlog_bytes;
                state_.last_sync = unix_now();
                if (!more) state_.lag_seconds = 0;
                state_.cursor = cursor_.position->to_string();
                state_.last_error.clear();
            }
            if (!more && !wait_for(opt_.sync_interval_ns)) return;
        } catch (const std::exception& e) {
            ahead.reset();
            const auto* pe = dynamic_cast<const pg_error*>(&e);
            if (!pe) {
                // Not the store's (memory, the file system): logged, retried after a pause; the thread lives on.
                log(std::string("fleet: events: ") + e.what());
            } else if (pe->connection_lost() || !pg->ok()) {
                link_down(e.what());
            } else {
                // A statement refused outside a batch (the schema, a partition): logged, retried after a pause.
                log("fleet: events: " + first_line(e.what()));
                std::lock_guard<std::mutex> g(mu_);
                state_.last_error = e.what();
            }
            measure_backlog();
            if (!wait_for(backoff)) return;
            backoff = std::min(backoff * 2, opt_.backoff_max_ns);
        }
    }
}

void event_shipper::measure_backlog() {
    // The first line after the cursor gives the lag; the bytes after it the rest.
    const follow_result next = follow_log(opt_.events_path, cursor_.position, 1, 1);
    uint64_t bytes = next.backlog_bytes;
    double lag = 0;
    if (!next.lines.empty()) {
        bytes += next.lines[0].text.size() + 1;
        const std::vector<prepared_line> p = prepare(next, cursor_.last_time_ns);
        lag = std::max(0.0, static_cast<double>(realtime_ns() / 1000) / 1e6 - static_cast<double>(p[0].time_us) / 1e6);
    }
    std::lock_guard<std::mutex> g(mu_);
    state_.backlog_bytes = bytes;
    state_.lag_seconds = lag;
}

}  // namespace sekisho
