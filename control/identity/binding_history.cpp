#include "control/identity/binding_history.h"

#include <sqlite3.h>

#include <algorithm>
#include <cstring>

#include "control/state/sqlite_store.h"

namespace sekisho {

namespace {

constexpr int schema_version = 3;

constexpr const char* schema_sql = R"(
CREATE TABLE IF NOT EXISTS sessions (
  id             INTEGER PRIMARY KEY,
  family         INTEGER NOT NULL CHECK (family IN (4, 6)),
  prefix         BLOB    NOT NULL,
  prefix_length  INTEGER NOT NULL,
  account        TEXT    NOT NULL,
  session_id     TEXT    NOT NULL,
  nas            TEXT    NOT NULL,
  nas_identifier TEXT    NOT NULL,
  start_time     INTEGER NOT NULL,
  stop_time      INTEGER,
  stop_cause     TEXT,
  change_seq     INTEGER
);
-- One index by address for its whole history and its open rows: who_held /
-- held_between, the open row of an address (superseding) and open_within()
-- filter stop_time in the index. Version 2 had a second, partial index for
-- the open rows: each RADIUS Start wrote both, each at a random place (the
-- addresses), so a commit dirtied twice the pages. Upgraded here, in the
-- schema's transaction.
DROP INDEX IF EXISTS sessions_open_by_address;
DROP INDEX IF EXISTS sessions_by_address;
CREATE INDEX IF NOT EXISTS sessions_by_address_span ON sessions (prefix, prefix_length, start_time, stop_time);
-- a session's rows (Start/Interim/Stop by Acct-Session-Id, unique per NAS).
CREATE INDEX IF NOT EXISTS sessions_by_session ON sessions (nas, session_id);
-- Accounting-On/Off: every open row of one NAS.
CREATE INDEX IF NOT EXISTS sessions_open_by_nas ON sessions (nas) WHERE stop_time IS NULL;
-- purge: closed rows by age.
CREATE INDEX IF NOT EXISTS sessions_closed_by_stop ON sessions (stop_time) WHERE stop_time IS NOT NULL;
-- The change sequence: each write transaction takes the next number of
-- history_changes, and every row it inserts or updates carries that number
-- in change_seq, so a reader (the fleet's binding shipper) follows the
-- changes by (change_seq, id). The counter lives apart from the rows so that
-- it never goes back when rows are purged.
CREATE TABLE IF NOT EXISTS history_changes (n INTEGER NOT NULL);
INSERT INTO history_changes (n) SELECT COALESCE(MAX(id), 0) FROM sessions
  WHERE NOT EXISTS (SELECT 1 FROM history_changes);
CREATE INDEX IF NOT EXISTS sessions_by_change ON sessions (change_seq, id);
-- The prefix lengths in use per family: who_held probes only these.
CREATE TABLE IF NOT EXISTS prefix_lengths (
  family        INTEGER NOT NULL,
  prefix_length INTEGER NOT NULL,
  PRIMARY KEY (family, prefix_length)
) WITHOUT ROWID;
)";

constexpr const char* row_columns =
    "id, family, prefix, prefix_length, account, session_id, nas, nas_identifier, start_time, stop_time, stop_cause";

ip_prefix masked(const ip_prefix& p, unsigned length) {
    ip_prefix out = p;
    out.length = static_cast<uint8_t>(length);
    out.line = 0;
    for (unsigned bit = length; bit < address_octets(p) * 8; ++bit)
        out.bytes[bit / 8] &= static_cast<uint8_t>(~(0x80 >> (bit % 8)));
    for (unsigned i = address_octets(p); i < out.bytes.size(); ++i) out.bytes[i] = 0;
    return out;
}

int64_t system_now() {
    return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

using statement = sqlite_statement<binding_history_error>;

}  // namespace

struct binding_history::impl {
    impl(const std::string& path, access mode);
    ~impl() {
        stmts.clear();
        sqlite3_close_v2(db);
    }

    void exec(const char* step_name, const char* sql) { sqlite_exec<binding_history_error>(db, path, step_name, sql); }
    statement& prepare(const char* step_name, const char* sql) {
        stmts.push_back(std::make_unique<statement>(db, path, step_name, sql));
        return *stmts.back();
    }
    void prepare_all();
    // A history of schema version 1 gains the change_seq column (each row
    // numbered by its id: every row counts as changed once); the schema then
    // adds the counter, index and triggers.
    void add_change_sequence();

    // The decisions of binding_history::apply, appended to `changes`.
    void apply_one(const binding_update& u, std::vector<binding_change>& changes);
    void open_or_record(const binding_update& u, const ip_prefix& a, int64_t begin, std::vector<binding_change>& changes);
    bool session_has_row(const binding_update& u, const ip_prefix& a);
    void insert_row(const binding_update& u, const ip_prefix& a, int64_t start, std::optional<int64_t> stop,
                    const char* cause);
    // Steps an UPDATE ... RETURNING id, family, prefix, prefix_length,
    // account and appends an unbind per closed row with an account, in row
    // order.
    void closed_rows_to_unbinds(statement& st, std::vector<binding_change>& changes);
    std::vector<binding_record> read_rows(statement& st);

    void check_writable(const char* what) const {
        if (read_only) throw binding_history_error(path + ": " + what + ": the history is open read-only");
    }
    // After a failed statement inside a transaction: SQLite may have rolled
    // the whole transaction back by itself (SQLITE_FULL, SQLITE_IOERR).
    bool in_transaction() const { return sqlite3_get_autocommit(db) == 0; }
    void rollback_quietly() noexcept {
        forget_lengths();
        if (in_transaction()) sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
    }

    const std::string& path;
    bool read_only = false;
    sqlite3* db = nullptr;
    std::vector<std::unique_ptr<statement>> stmts;
    statement* begin = nullptr;
    statement* commit = nullptr;
    statement* savepoint = nullptr;
    statement* release = nullptr;
    statement* rollback_to = nullptr;
    statement* find_session_row = nullptr;
    statement* open_of_address = nullptr;
    statement* supersede_row = nullptr;
    statement* insert = nullptr;
    statement* note_length = nullptr;
    statement* close_session = nullptr;
    statement* close_nas = nullptr;
    statement* lengths = nullptr;
    statement* by_address = nullptr;
    statement* open_rows = nullptr;
    statement* open_inside = nullptr;
    statement* purge = nullptr;
    statement* next_change = nullptr;
    // The (family, prefix length) pairs prefix_lengths holds, as read in this
    // connection's transactions: insert_row() writes a pair only when it is
    // not here. Forgotten whenever anything is rolled back (a rolled-back
    // insert took its pair with it); refilled from the table when needed.
    std::vector<std::pair<int64_t, int64_t>> lengths_known;
    bool lengths_loaded = false;
    statement* all_lengths = nullptr;
    void forget_lengths() {
        lengths_known.clear();
        lengths_loaded = false;
    }
    void note_prefix_length(const ip_prefix& a);
    // The number of the write transaction in progress (begin_changes()).
    int64_t change = 0;
    // After BEGIN: takes the transaction's change number.
    void begin_changes() {
        forget_lengths();   // other writers (the sqlite3 shell) may have changed the table since
        auto& st = *next_change;
        try {
            if (!st.step()) throw binding_history_error(path + ": number the changes: history_changes has no row");
            change = st.column_int(0);
        } catch (...) {
            st.reset();
            throw;
        }
        st.reset();
    }
};

binding_history::impl::impl(const std::string& p, access mode) : path(p), read_only(mode == access::read_only) {
    db = open_sqlite_store<binding_history_error>(path, mode == access::read_only, schema_version, "NORMAL", 2000);
    try {
        if (mode == access::read_write) {
            // A commit of a few hundred bindings dirties ~1000 index pages: with
            // the default checkpoint threshold (1000 pages) nearly every commit
            // checkpointed, halving the throughput. Checkpoint less often and
            // keep more of the index in memory (measured by bench/limits_bench).
            exec("set the checkpoint threshold (PRAGMA wal_autocheckpoint)", "PRAGMA wal_autocheckpoint=20000");
            exec("set the page cache (PRAGMA cache_size)", "PRAGMA cache_size=-131072");
            // Savepoints and multi-row statements keep the pages they change in a
            // statement journal; past 64 KiB SQLite spills it to a temporary file,
            // a write per page (most of the system time of a batch). In memory it
            // is a copy per page, freed when the batch ends.
            exec("keep statement journals in memory (PRAGMA temp_store)", "PRAGMA temp_store=MEMORY");
            add_change_sequence();
            create_sqlite_schema<binding_history_error>(db, path, schema_sql, schema_version);
        }
        prepare_all();
    } catch (...) {
        stmts.clear();
        sqlite3_close_v2(db);
        db = nullptr;
        throw;
    }
}

void binding_history::impl::add_change_sequence() {
    bool has_table = false, has_column = false;
    {
        statement columns(db, path, "read the sessions columns (PRAGMA table_info)", "PRAGMA table_info(sessions)");
        while (columns.step()) {
            has_table = true;
            if (columns.column_text(1) == "change_seq") has_column = true;
        }
    }
    if (!has_table || has_column) return;
    exec("add the change sequence (BEGIN)", "BEGIN IMMEDIATE");
    try {
        exec("add the change sequence (ALTER TABLE sessions)", "ALTER TABLE sessions ADD COLUMN change_seq INTEGER");
        exec("number the rows (UPDATE sessions SET change_seq)", "UPDATE sessions SET change_seq = id");
        exec("add the change sequence (COMMIT)", "COMMIT");
    } catch (...) {
        rollback_quietly();
        throw;
    }
}

void binding_history::impl::prepare_all() {
    begin = &prepare("begin a transaction (BEGIN IMMEDIATE)", "BEGIN IMMEDIATE");
    commit = &prepare("commit (COMMIT)", "COMMIT");
    savepoint = &prepare("open a savepoint (SAVEPOINT binding_update)", "SAVEPOINT binding_update");
    release = &prepare("release the savepoint (RELEASE binding_update)", "RELEASE binding_update");
    rollback_to = &prepare("roll back to the savepoint (ROLLBACK TO binding_update)", "ROLLBACK TO binding_update");
    find_session_row = &prepare("look up the session's row (SELECT FROM sessions BY nas, session_id, prefix)",
                                "SELECT 1 FROM sessions WHERE nas = ?1 AND session_id = ?2 AND prefix = ?3 "
                                "AND prefix_length = ?4 LIMIT 1");
    open_of_address = &prepare("look up the address's open rows (SELECT FROM sessions BY prefix)",
                               "SELECT id, start_time, account FROM sessions WHERE prefix = ?1 AND prefix_length = ?2 "
                               "AND stop_time IS NULL");
    supersede_row = &prepare("close the address's previous session (UPDATE sessions superseded)",
                             "UPDATE sessions SET stop_time = MAX(start_time, ?2), stop_cause = 'superseded', "
                             "change_seq = ?3 WHERE id = ?1");
    insert = &prepare("record a session (INSERT INTO sessions)",
                      "INSERT INTO sessions (family, prefix, prefix_length, account, session_id, nas, nas_identifier, "
                      "start_time, stop_time, stop_cause, change_seq) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)");
    all_lengths = &prepare("read the prefix lengths (SELECT FROM prefix_lengths)",
                           "SELECT family, prefix_length FROM prefix_lengths");
    note_length = &prepare("record the prefix length (INSERT INTO prefix_lengths)",
                           "INSERT OR IGNORE INTO prefix_lengths (family, prefix_length) VALUES (?1, ?2)");
    close_session = &prepare("close the session (UPDATE sessions stop)",
                             "UPDATE sessions SET stop_time = MAX(start_time, ?3), stop_cause = 'stop', change_seq = ?4 "
                             "WHERE nas = ?1 AND session_id = ?2 AND stop_time IS NULL "
                             "RETURNING id, family, prefix, prefix_length, account");
    close_nas = &prepare("close the NAS's sessions (UPDATE sessions accounting-on/off)",
                         "UPDATE sessions SET stop_time = MAX(start_time, ?2), stop_cause = ?3, change_seq = ?4 "
                         "WHERE nas = ?1 AND stop_time IS NULL AND start_time <= ?2 "
                         "RETURNING id, family, prefix, prefix_length, account");
    lengths = &prepare("list prefix lengths (SELECT FROM prefix_lengths)",
                       "SELECT prefix_length FROM prefix_lengths WHERE family = ?1 AND prefix_length <= ?2 "
                       "ORDER BY prefix_length DESC");
    static const std::string by_address_sql = std::string("SELECT ") + row_columns +
                                              " FROM sessions WHERE prefix = ?1 AND prefix_length = ?2 "
                                              "AND start_time <= ?4 AND (stop_time IS NULL OR stop_time >= ?3) "
                                              "ORDER BY start_time, id";
    by_address = &prepare("query an address (SELECT FROM sessions BY prefix, time)", by_address_sql.c_str());
    static const std::string open_sql =
        std::string("SELECT ") + row_columns + " FROM sessions WHERE stop_time IS NULL ORDER BY start_time, id";
    open_rows = &prepare("list open sessions (SELECT FROM sessions WHERE stop_time IS NULL)", open_sql.c_str());
    // BLOBs compare as memcmp: the addresses inside a prefix are the range
    // [first, last] of equal-length blobs, a range of sessions_open_by_address.
    static const std::string inside_sql = std::string("SELECT ") + row_columns +
                                          " FROM sessions WHERE stop_time IS NULL AND prefix >= ?1 AND prefix <= ?2 "
                                          "AND family = ?3 AND prefix_length >= ?4 ORDER BY prefix, prefix_length, id "
                                          "LIMIT ?5";
    open_inside = &prepare("list open sessions inside a prefix (SELECT FROM sessions BY prefix range)",
                           inside_sql.c_str());
    next_change = &prepare("number the changes (UPDATE history_changes)",
                           "UPDATE history_changes SET n = n + 1 RETURNING n");
    purge = &prepare("purge old sessions (DELETE FROM sessions)",
                     "DELETE FROM sessions WHERE stop_time IS NOT NULL AND stop_time < ?1");
}

bool binding_history::impl::session_has_row(const binding_update& u, const ip_prefix& a) {
    auto& st = *find_session_row;
    st.bind(1, u.nas()).bind(2, u.session_id).bind_address(3, a).bind(4, int64_t{a.length});
    const bool found = st.step();
    st.reset();
    return found;
}

void binding_history::impl::insert_row(const binding_update& u, const ip_prefix& a, int64_t start,
                                       std::optional<int64_t> stop, const char* cause) {
    auto& st = *insert;
    st.bind(1, int64_t{a.family}).bind_address(2, a).bind(3, int64_t{a.length});
    st.bind(4, u.account).bind(5, u.session_id).bind(6, u.nas()).bind(7, u.nas_identifier).bind(8, start);
    if (stop) st.bind(9, std::max(*stop, start)).bind(10, cause);
    else st.bind_null(9).bind_null(10);
    st.bind(11, change);
    st.run();
    note_prefix_length(a);
}

void binding_history::impl::note_prefix_length(const ip_prefix& a) {
    const std::pair<int64_t, int64_t> key{a.family, a.length};
    if (!lengths_loaded) {
        auto& st = *all_lengths;
        try {
            while (st.step()) lengths_known.emplace_back(st.column_int(0), st.column_int(1));
        } catch (...) {
            st.reset();
            lengths_known.clear();
            throw;
        }
        st.reset();
        lengths_loaded = true;
    }
    if (std::find(lengths_known.begin(), lengths_known.end(), key) != lengths_known.end()) return;
    note_length->bind(1, key.first).bind(2, key.second).run();
    lengths_known.push_back(key);
}

void binding_history::impl::closed_rows_to_unbinds(statement& st, std::vector<binding_change>& changes) {
    struct closed {
        int64_t id;
        binding_change change;
    };
    std::vector<closed> rows;
    try {
        while (st.step()) {
            closed c{st.column_int(0), {}};
            c.change.what = binding_change::action::unbind;
            c.change.address.family = static_cast<uint8_t>(st.column_int(1));
            const std::string prefix = st.column_blob(2);
            std::memcpy(c.change.address.bytes.data(), prefix.data(),
                        std::min(prefix.size(), c.change.address.bytes.size()));
            c.change.address.length = static_cast<uint8_t>(st.column_int(3));
            c.change.account = st.column_text(4);
            if (!c.change.account.empty()) rows.push_back(std::move(c));
        }
    } catch (...) {
        st.reset();
        throw;
    }
    st.reset();
    // RETURNING gives no order: the rows' own (the order they were opened).
    std::sort(rows.begin(), rows.end(), [](const closed& x, const closed& y) { return x.id < y.id; });
    for (auto& r : rows) changes.push_back(std::move(r.change));
}

void binding_history::impl::open_or_record(const binding_update& u, const ip_prefix& a, int64_t begin,
                                           std::vector<binding_change>& changes) {
    // The address's open rows, read once: what decides between "late" and
    // "supersede", and the rows a supersede closes (the same transaction:
    // nothing else writes in between).
    struct open_row {
        int64_t id, start;
        std::string account;
    };
    std::vector<open_row> open;
    auto& st = *open_of_address;
    st.bind_address(1, a).bind(2, int64_t{a.length});
    try {
        while (st.step()) open.push_back({st.column_int(0), st.column_int(1), st.column_text(2)});
    } catch (...) {
        st.reset();
        throw;
    }
    st.reset();

    // A later session already holds the address (this update arrived late):
    // this one ended when that one began, and the data plane keeps the later.
    std::optional<int64_t> until;
    for (const open_row& r : open)
        if (r.start > begin && (!until || r.start < *until)) until = r.start;
    if (until) return insert_row(u, a, begin, until, "superseded");

    // The previous holder's Stop was lost: it ended when this one began.
    // Unbinds in the rows' own order (the order they were opened).
    std::sort(open.begin(), open.end(), [](const open_row& x, const open_row& y) { return x.id < y.id; });
    for (const open_row& r : open) supersede_row->bind(1, r.id).bind(2, begin).bind(3, change).run();
    insert_row(u, a, begin, std::nullopt, nullptr);
    if (!u.account.empty()) {
        changes.push_back({binding_change::action::bind, a, u.account});
        return;
    }
    for (open_row& r : open)
        if (!r.account.empty()) changes.push_back({binding_change::action::unbind, a, std::move(r.account)});
}

void binding_history::impl::apply_one(const binding_update& u, std::vector<binding_change>& changes) {
    const int64_t t = u.event_time;
    switch (u.kind) {
        case binding_kind::start:
        case binding_kind::interim: {
            int64_t begin = t;
            if (u.kind == binding_kind::interim && u.session_time) begin = t - static_cast<int64_t>(*u.session_time);
            for (const auto& raw : u.addresses()) {
                const ip_prefix a = masked(raw, raw.length);
                if (!session_has_row(u, a)) open_or_record(u, a, begin, changes);
            }
            break;
        }
        case binding_kind::stop: {
            close_session->bind(1, u.nas()).bind(2, u.session_id).bind(3, t).bind(4, change);
            closed_rows_to_unbinds(*close_session, changes);
            const int64_t start = u.session_time ? t - static_cast<int64_t>(*u.session_time) : t;
            for (const auto& raw : u.addresses()) {
                const ip_prefix a = masked(raw, raw.length);
                if (!session_has_row(u, a)) insert_row(u, a, start, t, "stop");
            }
            break;
        }
        case binding_kind::accounting_on:
        case binding_kind::accounting_off:
            close_nas->bind(1, u.nas()).bind(2, t).bind(3, to_string(u.kind)).bind(4, change);
            closed_rows_to_unbinds(*close_nas, changes);
            break;
    }
}

std::vector<binding_record> binding_history::impl::read_rows(statement& st) {
    std::vector<binding_record> out;
    try {
        while (st.step()) {
            binding_record r;
            r.id = st.column_int(0);
            r.address.family = static_cast<uint8_t>(st.column_int(1));
            const std::string prefix = st.column_blob(2);
            std::memcpy(r.address.bytes.data(), prefix.data(), std::min(prefix.size(), r.address.bytes.size()));
            r.address.length = static_cast<uint8_t>(st.column_int(3));
            r.account = st.column_text(4);
            r.session_id = st.column_text(5);
            r.nas = st.column_text(6);
            r.nas_identifier = st.column_text(7);
            r.start = st.column_int(8);
            if (!st.column_null(9)) r.stop = st.column_int(9);
            r.stop_cause = st.column_text(10);
            out.push_back(std::move(r));
        }
    } catch (...) {
        st.reset();
        throw;
    }
    st.reset();
    return out;
}

binding_history::binding_history(const std::string& path, access mode)
    : path_(path), impl_(std::make_unique<impl>(path_, mode)) {}

binding_history::~binding_history() = default;

std::vector<binding_change> binding_history::apply(const binding_update& update) {
    return apply(std::span<const binding_update>(&update, 1));
}

std::vector<binding_change> binding_history::apply(std::span<const binding_update> updates) {
    impl& m = *impl_;
    m.check_writable("apply");
    m.begin->run();
    std::vector<binding_change> changes;
    try {
        m.begin_changes();
        for (const auto& u : updates) m.apply_one(u, changes);
        m.commit->run();
    } catch (...) {
        m.rollback_quietly();   // the first error is the one to report
        throw;
    }
    return changes;
}

void binding_history::begin() {
    impl& m = *impl_;
    m.check_writable("begin");
    m.begin->run();
    try {
        m.begin_changes();
    } catch (...) {
        m.rollback_quietly();
        throw;
    }
}

std::vector<binding_change> binding_history::apply_in_batch(const binding_update& update) {
    impl& m = *impl_;
    m.check_writable("apply");
    if (!m.in_transaction())
        throw binding_history_error(m.path + ": apply in the batch: no batch open (begin() first, or SQLite rolled it back)");
    std::vector<binding_change> changes;
    m.apply_one(update, changes);
    return changes;
}

std::vector<binding_change> binding_history::apply_in_savepoint(const binding_update& update) {
    impl& m = *impl_;
    m.check_writable("apply");
    m.savepoint->run();
    std::vector<binding_change> changes;
    try {
        m.apply_one(update, changes);
    } catch (...) {
        try {
            rollback_to_savepoint();
        } catch (...) {
            // The first error is the one to report.
        }
        throw;
    }
    return changes;
}

void binding_history::release_savepoint() { impl_->release->run(); }

void binding_history::rollback_to_savepoint() {
    impl& m = *impl_;
    // ROLLBACK TO keeps the savepoint open; RELEASE closes it. When SQLite
    // already rolled the whole transaction back there is no savepoint left.
    m.forget_lengths();
    if (!m.in_transaction()) return;
    m.rollback_to->run();
    m.release->run();
}

void binding_history::commit() {
    impl& m = *impl_;
    try {
        m.commit->run();
    } catch (...) {
        m.rollback_quietly();
        throw;
    }
}

void binding_history::rollback() { impl_->rollback_quietly(); }

bool binding_history::in_transaction() const { return impl_->in_transaction(); }

std::vector<binding_record> binding_history::held_between(const ip_prefix& address, int64_t from, int64_t to) const {
    impl& m = *impl_;
    const unsigned max_len = address.family == 4 ? 32 : 128;
    const unsigned len = std::min<unsigned>(address.length, max_len);
    std::vector<int64_t> lengths;
    m.lengths->bind(1, int64_t{address.family}).bind(2, int64_t{len});
    try {
        while (m.lengths->step()) lengths.push_back(m.lengths->column_int(0));
    } catch (...) {
        m.lengths->reset();
        throw;
    }
    m.lengths->reset();

    std::vector<binding_record> out;
    for (const int64_t l : lengths) {
        const ip_prefix key = masked(address, static_cast<unsigned>(l));
        m.by_address->bind_address(1, key).bind(2, l).bind(3, from).bind(4, to);
        auto rows = m.read_rows(*m.by_address);
        out.insert(out.end(), std::make_move_iterator(rows.begin()), std::make_move_iterator(rows.end()));
    }
    std::stable_sort(out.begin(), out.end(), [](const binding_record& a, const binding_record& b) {
        return a.start != b.start ? a.start < b.start : a.id < b.id;
    });
    return out;
}

std::vector<binding_record> binding_history::who_held(const ip_prefix& address, int64_t time) const {
    return held_between(address, time, time);
}

std::vector<binding_record> binding_history::open_within(const ip_prefix& prefix, size_t limit) const {
    impl& m = *impl_;
    const unsigned bits = address_octets(prefix) * 8;
    const unsigned len = std::min<unsigned>(prefix.length, bits);
    const ip_prefix first = masked(prefix, len);
    ip_prefix last = first;
    for (unsigned bit = len; bit < bits; ++bit) last.bytes[bit / 8] |= static_cast<uint8_t>(0x80 >> (bit % 8));
    const auto bounded = static_cast<int64_t>(std::min<size_t>(limit, INT64_MAX));
    m.open_inside->bind_address(1, first).bind_address(2, last).bind(3, int64_t{prefix.family}).bind(4, int64_t{len})
        .bind(5, bounded);
    return m.read_rows(*m.open_inside);
}

std::vector<binding_record> binding_history::open_bindings() const { return impl_->read_rows(*impl_->open_rows); }

size_t binding_history::purge_older_than(std::chrono::seconds retention, std::optional<int64_t> now) {
    impl& m = *impl_;
    m.check_writable("purge");
    const int64_t cutoff = now.value_or(system_now()) - retention.count();
    m.purge->bind(1, cutoff).run();
    return static_cast<size_t>(sqlite3_changes64(m.db));
}

}  // namespace sekisho
