#include "control/fleet/binding_shipper.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>

#include "control/fleet/durable_file.h"
#include "control/fleet/pg_connection.h"
#include "control/identity/binding_history.h"
#include "control/policy/policy.h"
#include "control/state/sqlite_store.h"

namespace sekisho {

namespace {

using nlohmann::json;
using statement = sqlite_statement<binding_history_error>;

// The newest history schema this reader knows (binding_history.cpp): change_seq
// since version 2; version 3 changed only indexes.
constexpr int64_t history_schema_version = 3;

int64_t unix_now() { return static_cast<int64_t>(std::time(nullptr)); }

std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

// The history, read-only, on the shipper's thread.
class history_reader {
public:
    explicit history_reader(const std::string& path) : path_(path) {
        db_ = open_sqlite_store<binding_history_error>(path_, true, history_schema_version, "NORMAL", 2000);
        try {
            changed_ = std::make_unique<statement>(
                db_, path_, "read the changed rows (SELECT FROM sessions BY change_seq)",
                "SELECT id, family, prefix, prefix_length, account, session_id, nas, nas_identifier, start_time, "
                "stop_time, stop_cause, change_seq FROM sessions WHERE (change_seq, id) > (?1, ?2) "
                "ORDER BY change_seq, id LIMIT ?3");
            // Counted up to a bound: the count walks the index, and a long outage's backlog is
            // reported as "at least" rather than paid for in full after every batch.
            backlog_ = std::make_unique<statement>(db_, path_, "count the changed rows (SELECT COUNT FROM sessions)",
                                                   "SELECT COUNT(*) FROM (SELECT 1 FROM sessions WHERE (change_seq, id) > "
                                                   "(?1, ?2) LIMIT 1000000)");
            last_ = std::make_unique<statement>(db_, path_, "read the change counter (SELECT FROM history_changes)",
                                                "SELECT MAX(n) FROM history_changes");
        } catch (...) {
            changed_.reset();
            backlog_.reset();
            last_.reset();
            sqlite3_close_v2(db_);
            throw;
        }
    }
    ~history_reader() {
        changed_.reset();
        backlog_.reset();
        last_.reset();
        sqlite3_close_v2(db_);
    }
    history_reader(const history_reader&) = delete;
    history_reader& operator=(const history_reader&) = delete;

    template <typename Row>
    std::vector<Row> changed_after(uint64_t seq, int64_t id, size_t limit) {
        std::vector<Row> out;
        statement& st = *changed_;
        st.bind(1, static_cast<int64_t>(seq)).bind(2, id).bind(3, static_cast<int64_t>(limit));
        try {
            while (st.step()) {
                Row r;
                r.id = st.column_int(0);
                ip_prefix p;
                p.family = static_cast<uint8_t>(st.column_int(1));
                const std::string bytes = st.column_blob(2);
                std::memcpy(p.bytes.data(), bytes.data(), std::min(bytes.size(), p.bytes.size()));
                p.length = static_cast<uint8_t>(st.column_int(3));
                r.prefix = p.to_string();
                r.account = st.column_text(4);
                r.session_id = st.column_text(5);
                r.nas = st.column_text(6);
                r.nas_identifier = st.column_text(7);
                r.start = st.column_int(8);
                if (!st.column_null(9)) r.stop = st.column_int(9);
                r.stop_cause = st.column_text(10);
                r.change_seq = static_cast<uint64_t>(st.column_int(11));
                out.push_back(std::move(r));
            }
        } catch (...) {
            st.reset();
            throw;
        }
        st.reset();
        return out;
    }
    uint64_t backlog(uint64_t seq, int64_t id) { return one(*backlog_, {static_cast<int64_t>(seq), id}); }
    uint64_t last_change() { return one(*last_, {}); }

private:
    uint64_t one(statement& st, std::vector<int64_t> params) {
        for (size_t i = 0; i < params.size(); ++i) st.bind(static_cast<int>(i + 1), params[i]);
        uint64_t v = 0;
        try {
            if (st.step() && !st.column_null(0)) v = static_cast<uint64_t>(st.column_int(0));
        } catch (...) {
            st.reset();
            throw;
        }
        st.reset();
        return v;
    }
    std::string path_;
    sqlite3* db_ = nullptr;
    std::unique_ptr<statement> changed_, backlog_, last_;
};

// The upsert: a row changes only for a higher change number (a replay or an
// older batch changes nothing). $1 the gateway, $2 a JSON array of rows.
const char* const upsert_sql =
    "INSERT INTO bindings (gateway, history_id, prefix, account, session_id, nas, nas_identifier, start, stop, "
    "closed_by, change_seq) "
    "SELECT $1, x.history_id, x.prefix, x.account, x.session_id, x.nas, x.nas_identifier, to_timestamp(x.start), "
    "to_timestamp(x.stop), x.closed_by, x.change_seq "
    "FROM jsonb_to_recordset($2::jsonb) AS x(history_id bigint, prefix cidr, account text, session_id text, "
    "nas text, nas_identifier text, start bigint, stop bigint, closed_by text, change_seq bigint) "
    "ON CONFLICT (gateway, history_id) DO UPDATE SET prefix = EXCLUDED.prefix, account = EXCLUDED.account, "
    "session_id = EXCLUDED.session_id, nas = EXCLUDED.nas, nas_identifier = EXCLUDED.nas_identifier, "
    "start = EXCLUDED.start, stop = EXCLUDED.stop, closed_by = EXCLUDED.closed_by, "
    "change_seq = EXCLUDED.change_seq, shipped_at = now() "
    "WHERE bindings.change_seq < EXCLUDED.change_seq";

}  // namespace

struct binding_shipper::row {
    int64_t id = 0;
    std::string prefix, account, session_id, nas, nas_identifier, stop_cause;
    int64_t start = 0;
    std::optional<int64_t> stop;
    uint64_t change_seq = 0;

    json to_json() const {
        return {{"history_id", id},
                {"prefix", prefix},
                {"account", account},
                {"session_id", session_id},
                {"nas", nas},
                {"nas_identifier", nas_identifier},
                {"start", start},
                {"stop", stop ? json(*stop) : json(nullptr)},
                {"closed_by", stop_cause.empty() ? json(nullptr) : json(stop_cause)},
                {"change_seq", change_seq}};
    }
};

void ensure_binding_tables(pg_connection& pg) {
    // A lock of its own: not the fleet schema's.
    ensure_objects(pg, "SELECT pg_advisory_xact_lock(x'7365736b69736f62'::bigint)", fleet_sql::binding_tables,
                   "bindings");
}

binding_shipper::binding_shipper(binding_shipper_options options) : opt_(std::move(options)) {
    std::ifstream in(opt_.cursor_path);
    if (in) {
        std::string text;
        std::getline(in, text);
        // "SEQ ID": the last history row shipped.
        unsigned long long seq = 0;
        long long id = 0;
        char extra = 0;
        if (std::sscanf(text.c_str(), "%llu %lld %c", &seq, &id, &extra) == 2 && id >= 0) {
            cursor_ = seq;
            cursor_id_ = id;
        } else {
            log("fleet: bindings: " + opt_.cursor_path +
                ": not \"CHANGE ID\"; shipping the history from its start (the rows already in PostgreSQL are not "
                "changed twice)");
        }
    }
    state_.cursor = cursor_;
    state_.cursor_id = cursor_id_;
    thread_ = std::thread([this] { run(); });
}

binding_shipper::~binding_shipper() {
    signals_.stop();
    if (thread_.joinable()) thread_.join();
}

binding_shipper_state binding_shipper::state() const {
    std::lock_guard<std::mutex> l(mu_);
    return state_;
}

nlohmann::json binding_shipper::status() const {
    const binding_shipper_state s = state();
    return {{"store", "postgres"},         {"link_up", s.link_up},       {"shipped", s.shipped},
            {"upserted", s.upserted},      {"batches", s.batches},       {"refused", s.refused},
            {"backlog_rows", s.backlog_rows}, {"reconnects", s.reconnects},
            {"cursor", std::to_string(s.cursor) + " " + std::to_string(s.cursor_id)},
            {"last_sync", s.last_sync},    {"last_error", s.last_error}};
}

std::vector<std::string> binding_shipper::take_log_lines() { return signals_.take_log_lines(); }

void binding_shipper::wake() { signals_.wake(); }

void binding_shipper::save_cursor() {
    const std::string error = replace_file_durably(opt_.cursor_path, std::to_string(cursor_) + " " + std::to_string(cursor_id_) + "\n");
    // Not fatal: the next COMMIT saves it again; a restart meanwhile re-sends rows the upsert makes no-ops.
    if (!error.empty()) log("fleet: bindings: cannot save the cursor: " + error);
}

uint64_t binding_shipper::ship(pg_connection& pg, const std::vector<row>& rows) {
    json batch = json::array();
    for (const row& r : rows) batch.push_back(r.to_json());
    const std::string text = batch.dump(-1, ' ', false, json::error_handler_t::replace);
    return pg.in_transaction("a batch of bindings", [&] {
        pg_result r = pg.exec_params(upsert_sql, {opt_.gateway, text}, "upsert a batch of bindings");
        return static_cast<uint64_t>(std::strtoull(PQcmdTuples(r.get()), nullptr, 10));
    });
}

uint64_t binding_shipper::ship_one_by_one(pg_connection& pg, const std::vector<row>& rows) {
    uint64_t n = 0;
    std::vector<std::string> refusals;   // logged and counted once committed (a lost link retries the batch)
    pg.in_transaction("a batch of bindings row by row", [&] {
        for (const row& r : rows) {
            const std::string one = json::array({r.to_json()}).dump(-1, ' ', false, json::error_handler_t::replace);
            const auto refused = pg.refusal_in_savepoint([&] {
                pg_result res = pg.exec_params(upsert_sql, {opt_.gateway, one},
                                               "upsert history row " + std::to_string(r.id));
                n += std::strtoull(PQcmdTuples(res.get()), nullptr, 10);
            });
            if (refused)
                refusals.push_back("fleet: bindings: " + opt_.history_path + ": history row " + std::to_string(r.id) +
                                   " (change " + std::to_string(r.change_seq) + "): PostgreSQL refused it (" +
                                   first_line(refused->what()) + "): skipped");
        }
    });
    for (const std::string& line : refusals) log(line);
    std::lock_guard<std::mutex> g(mu_);
    state_.refused += refusals.size();
    return n;
}

void binding_shipper::run() {
    std::unique_ptr<pg_connection> pg;
    std::unique_ptr<history_reader> history;
    uint64_t backoff = opt_.backoff_min_ns;
    bool was_up = false, said_down = false, said_history = false;
    int64_t last_probe = 0, last_count = 0;
    // At most once a second while shipping (each count walks the index); at once when asked.
    auto set_backlog = [&](bool force) {
        if (!history) return;
        const int64_t now = unix_now();
        if (!force && now == last_count) return;
        last_count = now;
        try {
            const uint64_t b = history->backlog(cursor_, cursor_id_);
            std::lock_guard<std::mutex> g(mu_);
            state_.backlog_rows = b;
        } catch (const std::exception&) {
            // The next turn reads the history again and reports what fails.
        }
    };
    auto pause = [&]() -> bool {
        if (!wait_for(backoff)) return false;
        backoff = std::min(backoff * 2, opt_.backoff_max_ns);
        return true;
    };
    while (true) {
        if (signals_.stopping()) return;
        if (!history) {
            try {
                history = std::make_unique<history_reader>(opt_.history_path);
                // A history whose counter is behind the cursor was replaced
                // (a new file): its rows are shipped from its start.
                const uint64_t last = history->last_change();
                if (last < cursor_) {
                    log("fleet: bindings: " + opt_.history_path + ": the history's last change (" +
                        std::to_string(last) + ") is before the cursor (" + std::to_string(cursor_) +
                        "): a new history file; shipping it from its start");
                    cursor_ = 0;
                    cursor_id_ = 0;
                    save_cursor();
                }
                said_history = false;
            } catch (const std::exception& e) {
                history.reset();
                if (!said_history) log(std::string("fleet: bindings: ") + e.what() + "; retrying");
                said_history = true;
                {
                    std::lock_guard<std::mutex> g(mu_);
                    state_.last_error = e.what();
                }
                if (!pause()) return;
                continue;
            }
        }
        if (!pg) {
            try {
                pg = std::make_unique<pg_connection>(opt_.conninfo_file);
                pg->exec("SET client_min_messages = warning", "quiet the notices");
                ensure_binding_tables(*pg);
                backoff = opt_.backoff_min_ns;
                {
                    std::lock_guard<std::mutex> g(mu_);
                    state_.link_up = true;
                    state_.last_error.clear();
                    ++state_.reconnects;
                }
                log("fleet: bindings: PostgreSQL link up");
                was_up = true;
                said_down = false;
            } catch (const std::exception& e) {
                pg.reset();
                {
                    std::lock_guard<std::mutex> g(mu_);
                    state_.link_up = false;
                    state_.last_error = e.what();
                }
                if (was_up || !said_down)
                    log("fleet: bindings: PostgreSQL link down (" + first_line(e.what()) +
                        "); retrying, the binding history keeps the rows");
                said_down = true;
                was_up = false;
                set_backlog(true);
                if (!pause()) return;
                continue;
            }
        }
        try {
            std::vector<row> rows;
            try {
                rows = history->changed_after<row>(cursor_, cursor_id_, opt_.batch_rows);
            } catch (const binding_history_error& e) {
                // The history, not the store: reopened at the next turn.
                history.reset();
                log(std::string("fleet: bindings: ") + e.what());
                {
                    std::lock_guard<std::mutex> g(mu_);
                    state_.last_error = e.what();
                }
                if (!pause()) return;
                continue;
            }
            const int64_t now = unix_now();
            if (rows.empty()) {
                if (now != last_probe) {   // an idle link is checked once a second
                    pg->exec("SELECT 1", "check the link");
                    last_probe = now;
                }
                {
                    std::lock_guard<std::mutex> g(mu_);
                    state_.last_sync = now;
                    state_.backlog_rows = 0;   // nothing after the cursor
                }
                if (!wait_for(opt_.sync_interval_ns)) return;
                continue;
            }
            uint64_t changed;
            try {
                changed = ship(*pg, rows);
            } catch (const pg_error& e) {
                if (e.connection_lost() || !pg->ok()) throw;
                changed = ship_one_by_one(*pg, rows);
            }
            backoff = opt_.backoff_min_ns;
            cursor_ = rows.back().change_seq;
            cursor_id_ = rows.back().id;
            save_cursor();
            const bool more = rows.size() >= opt_.batch_rows;
            set_backlog(!more);
            {
                std::lock_guard<std::mutex> g(mu_);
                state_.shipped += rows.size();
                state_.upserted += changed;
                ++state_.batches;
                state_.cursor = cursor_;
                state_.cursor_id = cursor_id_;
                state_.last_sync = unix_now();
                state_.last_error.clear();
            }
            if (!more && !wait_for(opt_.sync_interval_ns)) return;
        } catch (const std::exception& e) {
            const auto* pe = dynamic_cast<const pg_error*>(&e);
            if (pe && (pe->connection_lost() || !pg->ok())) {
                pg.reset();
                {
                    std::lock_guard<std::mutex> g(mu_);
                    state_.link_up = false;
                    state_.last_error = e.what();
                }
                log("fleet: bindings: PostgreSQL link down (" + first_line(e.what()) +
                    "); retrying, the binding history keeps the rows");
                said_down = true;
                was_up = false;
                set_backlog(true);
            } else {
                log(std::string("fleet: bindings: ") + first_line(e.what()));
                std::lock_guard<std::mutex> g(mu_);
                state_.last_error = e.what();
            }
            if (!pause()) return;
        }
    }
}

}  // namespace sekisho
