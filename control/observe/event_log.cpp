#include "control/observe/event_log.h"

#include <arpa/inet.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "control/identity/account_registry.h"
#include "dataplane/compiled_policy.h"
#include "dataplane/inspect/sender_signals.h"
#include "control/policy/policy.h"
#include "dataplane/net/packet_parser.h"
#include "dataplane/op25b_classifier.h"

namespace sekisho {

namespace {
std::string address(uint8_t version, const uint8_t* bytes) {
    char buf[INET6_ADDRSTRLEN] = {};
    inet_ntop(version == 4 ? AF_INET : AF_INET6, bytes, buf, sizeof buf);
    return buf;
}

// The fields of the mail tracker's events (limit, suspension, content): the
// subscriber first, the server second, and the account by name. An unknown
// account is null, or its id where `account_id_fallback`.
nlohmann::json mail_event(const event_record& e, const char* type, const event_names& names,
                          bool account_id_fallback = false) {
    const uint8_t v = e.ip_version == 4 ? 4 : 6;
    const std::string* account = names.accounts ? names.accounts->name_of(e.account) : nullptr;
    return {{"time_ns", e.time_ns},
            {"type", type},
            {"subscriber", address(v, e.src)},
            {"server", address(v, e.dst)},
            {"subscriber_port", e.src_port},
            {"server_port", e.dst_port},
            {"account", account                ? nlohmann::json(*account)
                        : account_id_fallback ? nlohmann::json(e.account)
                                              : nlohmann::json(nullptr)},
            {"generation", e.generation},
            {"worker", e.worker}};
}
}  // namespace

std::string event_to_json(const event_record& e, const event_names& names) {
    const bool v4 = e.ip_version == 4;
    if (e.type == event_type::content_verdict) {
        nlohmann::json rules = nlohmann::json::array();
        for (unsigned i = 0; i < e.rule_count && i < 8; ++i) {
            if (names.pol && e.rules[i] < names.pol->content_rules.size())
                rules.push_back(names.pol->content_rules[e.rules[i]].id);
            else
                rules.push_back(e.rules[i]);
        }
        nlohmann::json signals = nlohmann::json::array();
        for (unsigned b = 0; b < sender_signal_count; ++b)
            if (e.signals >> b & 1) signals.push_back(to_string(static_cast<sender_signal>(b)));
        char fp[17];
        std::snprintf(fp, sizeof fp, "%016llx", static_cast<unsigned long long>(e.fingerprint));
        nlohmann::json j = mail_event(e, "content_verdict", names);
        j["action"] = to_string(static_cast<score_action>(e.action));
        j["score"] = e.score;
        j["rules"] = rules;
        j["signals"] = signals;
        j["fingerprint"] = fp;
        j["recipients"] = e.count;
        return j.dump();
    }
    if (e.type == event_type::mail_session) {
        // One subscriber's SMTP sessions; the log adds the summed counts
        // (messages, recipients, rejected_recipients) after merging.
        nlohmann::json j = {{"time_ns", e.time_ns},
                            {"type", "mail_session"},
                            {"subscriber", address(e.ip_version == 4 ? 4 : 6, e.src)},
                            {"account", names.accounts && names.accounts->name_of(e.account)
                                            ? nlohmann::json(*names.accounts->name_of(e.account))
                                            : nlohmann::json(nullptr)},
                            {"tls", (e.action & session_bits::tls) != 0},
                            {"generation", e.generation},
                            {"worker", e.worker}};
        return j.dump();
    }
    if (e.type == event_type::account_suspended) {
        nlohmann::json j = mail_event(e, "account_suspended", names, true);
        j["action"] = "reset";
        return j.dump();
    }
    if (e.type == event_type::limit_exceeded) {
        const limit_rule* rule = names.pol && e.reason < names.pol->limits.size() ? &names.pol->limits[e.reason] : nullptr;
        nlohmann::json j = mail_event(e, "limit_exceeded", names);
        j["limit"] = rule ? nlohmann::json(rule->name) : nlohmann::json(e.reason);
        j["action"] = to_string(static_cast<limit_action>(e.action));
        j["measured"] = e.count;
        if (rule) {
            j["measure"] = to_string(rule->measure);
            j["scope"] = to_string(rule->scope);
            j["max"] = rule->max;
            if (rule->window_ns) j["window_s"] = static_cast<double>(rule->window_ns) / 1e9;
        }
        return j.dump();
    }
    nlohmann::json j = {
        {"time_ns", e.time_ns},
        {"type", e.type == event_type::op25b_block ? "op25b_block" : "op25b_monitor"},
        {"reason", to_string(static_cast<block_reason>(e.reason))},
        {"action", e.type == event_type::op25b_block ? to_string(static_cast<op25b_action>(e.action)) : "forward"},
        {"ingress", to_string(static_cast<ingress>(e.ingress))},
        {"src", address(v4 ? 4 : 6, e.src)},
        {"dst", address(v4 ? 4 : 6, e.dst)},
        {"src_port", e.src_port},
        {"dst_port", e.dst_port},
        {"tcp_flags", e.tcp_flags},
        {"generation", e.generation},
        {"worker", e.worker},
    };
    return j.dump();
}

namespace {

uint64_t monotonic_ns() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
}

events_config plain(const std::string& path) {
    events_config c;
    c.file = path;
    c.rotate_bytes = 0;
    c.rotate_interval_ns = 0;
    c.fsync = events_fsync::never;
    c.aggregate_window_ns = 0;
    return c;
}

}  // namespace

bool event_log::agg_key::operator==(const agg_key& o) const {
    return generation == o.generation && type == o.type && reason == o.reason && action == o.action &&
           ip_version == o.ip_version && std::memcmp(src, o.src, sizeof src) == 0;
}

size_t event_log::agg_key_hash::operator()(const agg_key& k) const {
    uint64_t h = k.generation * 0x9e3779b97f4a7c15ull;
    h ^= (static_cast<uint64_t>(k.type) << 24 | static_cast<uint64_t>(k.reason) << 16 |
          static_cast<uint64_t>(k.action) << 8 | k.ip_version) * 0xff51afd7ed558ccdull;
    for (size_t i = 0; i < sizeof k.src; i += 8) {
        uint64_t w;
        std::memcpy(&w, k.src + i, 8);
        h = (h ^ w) * 0xc4ceb9fe1a85ec53ull;
        h ^= h >> 29;
    }
    return static_cast<size_t>(h);
}

event_log::event_log(const std::string& path) : event_log(plain(path)) {}

event_log::event_log(const events_config& config, clock_fn event_now, clock_fn file_now)
    : config_(config), event_now_fn_(std::move(event_now)), file_now_fn_(std::move(file_now)) {
    if (config_.max_pending == 0) config_.max_pending = 1;
    if (config_.file == "-") {
        fd_ = STDOUT_FILENO;
        regular_ = false;
    } else if (!open_file()) {
        throw std::runtime_error("cannot open event log " + config_.file + ": " + std::strerror(errno));
    }
    synced_ns_ = opened_ns_;
}

event_log::~event_log() {
    flush_all();
    if (fd_ >= 0 && fd_ != STDOUT_FILENO) ::close(fd_);
}

uint64_t event_log::file_now() const { return file_now_fn_ ? file_now_fn_() : monotonic_ns(); }

bool event_log::open_file() {
    // After start (rotation, following the path) the open must not wait: a
    // FIFO put at the path would block the control thread until a reader came.
    const int nonblocking = fd_opened_once_ ? O_NONBLOCK : 0;
    fd_ = ::open(config_.file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | nonblocking, 0640);
    opened_ns_ = file_now();
    if (fd_ < 0) return false;
    fd_opened_once_ = true;
    if (nonblocking) ::fcntl(fd_, F_SETFL, ::fcntl(fd_, F_GETFL) & ~O_NONBLOCK);
    struct stat st {};
    if (::fstat(fd_, &st) == 0) {
        regular_ = S_ISREG(st.st_mode);
        size_ = regular_ ? static_cast<uint64_t>(st.st_size) : 0;
        dev_ = st.st_dev;
        ino_ = st.st_ino;
    }
    return true;
}

void event_log::follow_path() {
    if (!regular_ || fd_ < 0) return;
    struct stat st {};
    if (::stat(config_.file.c_str(), &st) == 0) {
        if (st.st_dev == dev_ && st.st_ino == ino_) return;
    } else if (errno != ENOENT && errno != ENOTDIR) {
        return;   // cannot tell (EACCES, EIO...): keep writing to the open file
    }
    // Deleted, or moved away (and maybe replaced): what was written stays in
    // the old file, synced as before a rotation; new lines go to the path.
    if (config_.fsync != events_fsync::never && dirty_) sync();
    ::close(fd_);
    fd_ = -1;
    dirty_ = false;
    size_ = 0;
    ++c_.reopened;
    if (!open_file()) ++c_.io_errors;   // retried by the next write, its lines counted lost meanwhile
}

size_t event_log::drain(const std::vector<event_ring*>& rings, const event_names& names) {
    event_record batch[64];
    size_t total = 0;
    for (event_ring* ring : rings) {
        unsigned n;
        while ((n = ring->pop(batch, 64)) > 0) {
            for (unsigned i = 0; i < n; ++i) ingest(batch[i], names);
            total += n;
        }
    }
    poll();
    return total;
}

void event_log::add(const event_record* events, size_t n, const event_names& names) {
    for (size_t i = 0; i < n; ++i) ingest(events[i], names);
    poll();
}

void event_log::add_record(std::string json_object) {
    ++c_.received;
    queue_line(std::move(json_object), 1, 0, 0, nullptr, nullptr, false);
    poll();
}

void event_log::session_totals::add(const event_record& e) {
    messages += e.count;
    recipients += e.recipients;
    rejected_recipients += e.rejected_recipients;
}

namespace {
// Events that can stand for a connection (a blocked or monitored one) carry a "connections"
// field: how many of the merged events began one. OP25B: the client's SYN (a flag test, so the
// XDP program's events count too); limit_exceeded: a monitor-action limit's first hit on a
// connection (event_flags).
bool counts_connections(event_type t) {
    return t == event_type::op25b_block || t == event_type::op25b_monitor || t == event_type::limit_exceeded;
}
uint64_t connections_of(const event_record& e) {
    if (e.type == event_type::limit_exceeded) return (e.flags & event_flags::first_monitored_hit) ? 1 : 0;
    return (e.tcp_flags & (tcp_flag::syn | tcp_flag::ack)) == tcp_flag::syn ? 1 : 0;
}
}  // namespace

void event_log::ingest(const event_record& e, const event_names& names) {
    ++c_.received;
    const bool session = e.type == event_type::mail_session;
    const bool connections = counts_connections(e.type);
    session_totals one;
    if (session) one.add(e);
    const uint64_t one_connection = connections_of(e);
    if (config_.aggregate_window_ns == 0) {
        queue_line(event_to_json(e, names), 1, e.time_ns, e.time_ns, session ? &one : nullptr,
                   connections ? &one_connection : nullptr, false);
        return;
    }
    if (e.time_ns > event_now_) event_now_ = e.time_ns;
    close_due();
    agg_key k{};
    k.generation = e.generation;
    k.type = static_cast<uint8_t>(e.type);
    k.reason = e.reason;
    k.action = e.action;
    k.ip_version = e.ip_version;
    std::memcpy(k.src, e.src, sizeof k.src);
    if (auto it = windows_.find(k); it != windows_.end()) {
        // A repeat: held until the window closes. The first repeat's fields
        // head the line (its time, its account as the data plane had it).
        open_window& w = it->second;
        if (w.count == 0) {
            w.json = event_to_json(e, names);
            w.first_ns = w.last_ns = e.time_ns;
        }
        ++w.count;
        if (connections) w.connections += connections_of(e);
        if (session) w.sessions.add(e);
        w.first_ns = std::min(w.first_ns, e.time_ns);
        w.last_ns = std::max(w.last_ns, e.time_ns);
        ++c_.aggregated;
        ++c_.pending;
        return;
    }
    // The first event of a key is written at once (an operator sees a
    // block or a suspension when it happens); the window only collects the
    // repeats that follow it.
    queue_line(event_to_json(e, names), 1, e.time_ns, e.time_ns, session ? &one : nullptr,
               connections ? &one_connection : nullptr, false);
    if (windows_.size() >= config_.max_pending) {  // bounded: close the oldest window early
        close_window(windows_.find(order_.begin()->second));
        ++c_.aggregation_overflow;
    }
    const uint64_t end = e.time_ns + config_.aggregate_window_ns;
    const std::pair<uint64_t, uint64_t> order{end < e.time_ns ? UINT64_MAX : end, ++sequence_};
    order_.emplace(order, k);
    windows_.emplace(k, open_window{std::string(), e.time_ns, e.time_ns, 0, 0, {}, order});
}

void event_log::close_due() {
    while (!order_.empty() && order_.begin()->first.first <= event_now_)
        close_window(windows_.find(order_.begin()->second));
}

void event_log::close_window(std::unordered_map<agg_key, open_window, agg_key_hash>::iterator it) {
    open_window& w = it->second;
    c_.pending -= w.count;
    const bool session = it->first.type == static_cast<uint8_t>(event_type::mail_session);
    const bool connections = counts_connections(static_cast<event_type>(it->first.type));
    if (w.count > 0)
        queue_line(std::move(w.json), w.count, w.first_ns, w.last_ns, session ? &w.sessions : nullptr,
                   connections ? &w.connections : nullptr, true);
    order_.erase(w.order);
    windows_.erase(it);
}

void event_log::queue_line(std::string json, uint64_t count, uint64_t first_ns, uint64_t last_ns,
                           const session_totals* sessions, const uint64_t* connections, bool repeated) {
    // The object's closing brace, then the aggregation fields.
    json.pop_back();
    queue_ += json;
    if (sessions)
        queue_ += ",\"messages\":" + std::to_string(sessions->messages) +
                  ",\"recipients\":" + std::to_string(sessions->recipients) +
                  ",\"rejected_recipients\":" + std::to_string(sessions->rejected_recipients);
    if (connections) queue_ += ",\"connections\":" + std::to_string(*connections);
    queue_ += ",\"count\":" + std::to_string(count);
    if (repeated) queue_ += ",\"repeated\":true";
    if (repeated || count > 1)
        queue_ += ",\"first_ns\":" + std::to_string(first_ns) + ",\"last_ns\":" + std::to_string(last_ns);
    queue_ += "}\n";
    queued_lines_.emplace_back(queue_.size(), count);
}

void event_log::poll() {
    if (config_.aggregate_window_ns && event_now_fn_) {
        const uint64_t now = event_now_fn_();
        if (now > event_now_) event_now_ = now;
    }
    if (config_.aggregate_window_ns) close_due();
    follow_path();
    const uint64_t now = file_now();
    if (regular_ && config_.rotate_interval_ns && now - opened_ns_ >= config_.rotate_interval_ns) {
        if (size_ > 0) rotate();
        else opened_ns_ = now;
    }
    write_queued();
    if (dirty_ && (config_.fsync == events_fsync::every ||
                   (config_.fsync == events_fsync::interval && file_now() - synced_ns_ >= config_.fsync_interval_ns)))
        sync();
}

void event_log::flush_all() {
    if (config_.aggregate_window_ns) {
        while (!order_.empty()) close_window(windows_.find(order_.begin()->second));
    }
    if (!queued_lines_.empty()) follow_path();
    write_queued();
    if (dirty_ && config_.fsync != events_fsync::never) sync();
}

void event_log::write_queued() {
    if (queued_lines_.empty()) return;
    // Writes in chunks that keep the file within rotate_bytes (a single line
    // longer than that still goes into a file of its own).
    size_t from = 0;
    uint64_t chunk_start = 0;
    for (size_t i = 0; i < queued_lines_.size(); ++i) {
        const uint64_t end = queued_lines_[i].first;
        const uint64_t line_start = i ? queued_lines_[i - 1].first : 0;
        if (regular_ && config_.rotate_bytes && size_ + (line_start - chunk_start) > 0 &&
            size_ + (end - chunk_start) > config_.rotate_bytes) {
            write_chunk(from, i);
            rotate();
            from = i;
            chunk_start = line_start;
        }
    }
    write_chunk(from, queued_lines_.size());
    queue_.clear();
    queued_lines_.clear();
}

void event_log::write_chunk(size_t from_line, size_t to_line) {
    if (from_line >= to_line) return;
    const size_t begin = from_line ? queued_lines_[from_line - 1].first : 0;
    const size_t end = queued_lines_[to_line - 1].first;
    auto lose = [&](size_t from) {
        for (size_t i = from; i < to_line; ++i) c_.write_errors += queued_lines_[i].second;
    };
    if (fd_ < 0 && !open_file()) {  // the last rotation could not reopen: try again
        ++c_.io_errors;
        lose(from_line);
        return;
    }
    size_t done = 0;
    while (begin + done < end) {
        const ssize_t n = ::write(fd_, queue_.data() + begin + done, end - begin - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        done += static_cast<size_t>(n);
    }
    size_t complete = to_line;
    if (begin + done < end) {
        ++c_.io_errors;
        complete = from_line;
        while (complete < to_line && queued_lines_[complete].first <= begin + done) ++complete;
        // Cut a partly written line off (a full disk): the file stays whole lines.
        const size_t whole = (complete > from_line ? queued_lines_[complete - 1].first : begin) - begin;
        if (regular_ && whole < done && ::ftruncate(fd_, static_cast<off_t>(size_ + whole)) == 0) done = whole;
        lose(complete);
    }
    for (size_t i = from_line; i < complete; ++i) {
        c_.written += queued_lines_[i].second;
        ++c_.lines;
    }
    size_ += done;
    if (done) dirty_ = true;
}

void event_log::sync() {
    dirty_ = false;
    synced_ns_ = file_now();
    if (!regular_ || fd_ < 0) return;
    if (::fdatasync(fd_) != 0) ++c_.io_errors;
}

void event_log::rotate() {
    if (config_.fsync != events_fsync::never && dirty_) sync();
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    const std::string& p = config_.file;
    auto numbered = [&](uint32_t i) { return p + "." + std::to_string(i); };
    if (config_.keep == 0) {
        if (::unlink(p.c_str()) != 0 && errno != ENOENT) ++c_.io_errors;
    } else {
        for (uint32_t i = config_.keep - 1; i >= 1; --i)
            if (::rename(numbered(i).c_str(), numbered(i + 1).c_str()) != 0 && errno != ENOENT) ++c_.io_errors;
        if (::rename(p.c_str(), numbered(1).c_str()) != 0) ++c_.io_errors;
    }
    // Files beyond `keep` (FILE.keep+1, and more left by a larger keep before).
    for (uint32_t i = config_.keep + 1; ::unlink(numbered(i).c_str()) == 0; ++i) {
    }
    ++c_.rotations;
    dirty_ = false;
    size_ = 0;
    if (!open_file()) ++c_.io_errors;  // retried by the next write
}

}  // namespace sekisho
