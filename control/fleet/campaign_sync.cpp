// Fleet-wide campaign bitmaps through Redis: see campaign_sync.h.
#include "control/fleet/campaign_sync.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <bit>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <memory>
#include <unordered_map>
#include <unordered_set>

#include "control/fleet/fleet_thread_signals.h"
#include "control/fleet/reconnect_backoff.h"
#include "control/fleet/redis_count_fields.h"
#include "control/fleet/redis_connection.h"

namespace sekisho {

namespace {

using bits_t = campaign_table::subscriber_bits;
constexpr unsigned word_bits = campaign_table::bits_per_word;
constexpr size_t max_log_lines = 64;

double unix_now() {
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

bool parse_fingerprint_hex(const char* s, size_t len, uint64_t& out) {
    if (len != 16) return false;
    uint64_t v = 0;
    for (size_t i = 0; i < len; ++i) {
        const char c = s[i];
        unsigned d;
        if (c >= '0' && c <= '9')
            d = static_cast<unsigned>(c - '0');
        else if (c >= 'a' && c <= 'f')
            d = static_cast<unsigned>(c - 'a' + 10);
        else
            return false;
        v = v << 4 | d;
    }
    out = v;
    return v != 0;
}

bits_t and_not(const bits_t& a, const bits_t& b) {
    bits_t r{};
    for (unsigned i = 0; i < r.size(); ++i) r[i] = a[i] & ~b[i];
    return r;
}

void or_into(bits_t& a, const bits_t& b) {
    for (unsigned i = 0; i < a.size(); ++i) a[i] |= b[i];
}

bool any(const bits_t& a) {
    return std::any_of(a.begin(), a.end(), [](uint64_t w) { return w != 0; });
}

unsigned popcount(const bits_t& a) {
    unsigned n = 0;
    for (const uint64_t w : a) n += static_cast<unsigned>(std::popcount(w));
    return n;
}

// Two windows, in whole seconds (at least one).
std::string ttl_seconds(uint64_t window_ns) {
    return std::to_string(std::max<uint64_t>(1, (2 * window_ns + 999'999'999) / 1'000'000'000));
}

}  // namespace

std::string fingerprint_hex(uint64_t fingerprint) {
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(fingerprint));
    return buf;
}

std::string campaign_key_prefix(uint64_t window_ns, uint32_t window) {
    const std::string length = window_ns % 1'000'000'000 == 0 ? std::to_string(window_ns / 1'000'000'000) + "s"
                                                               : std::to_string(window_ns / 1'000'000) + "ms";
    return "sekisho:campaign:" + length + ":" + std::to_string(window & 0xffffff);
}

std::string campaign_key(uint64_t window_ns, uint32_t window, uint64_t fingerprint) {
    return campaign_key_prefix(window_ns, window) + ":" + fingerprint_hex(fingerprint);
}

std::string bits_to_redis(const bits_t& bits) {
    std::string out(campaign_table::bitmap_bits / 8, '\0');
    for (unsigned i = 0; i < campaign_table::bitmap_bits; ++i)
        if (bits[i / word_bits] >> (i % word_bits) & 1) out[i / 8] = static_cast<char>(out[i / 8] | (0x80 >> (i % 8)));
    return out;
}

bits_t bits_from_redis(const char* data, size_t len) {
    bits_t bits{};
    const size_t n = std::min<size_t>(len * 8, campaign_table::bitmap_bits);
    for (size_t i = 0; i < n; ++i)
        if (static_cast<unsigned char>(data[i / 8]) & (0x80 >> (i % 8))) bits[i / word_bits] |= 1ull << (i % word_bits);
    return bits;
}

campaign_sync::campaign_sync(campaign_sync_settings settings, campaign_table& table, log_fn log)
    : settings_(std::move(settings)), table_(table), log_(std::move(log)) {
    if (settings_.sync_interval_ns == 0) settings_.sync_interval_ns = 200'000'000;
    if (settings_.max_hot == 0) settings_.max_hot = 1;
    thread_ = std::thread([this] { run(); });
}

campaign_sync::~campaign_sync() {
    {
        std::lock_guard lock(mu_);
        stop_ = true;
    }
    wake_.notify_all();
    thread_.join();
}

void campaign_sync::note(const std::string& line) {
    std::lock_guard lock(mu_);
    if (log_lines_.size() < max_log_lines) log_lines_.push_back(line);
}

void campaign_sync::merge_inbox() {
    std::vector<campaign_bits> in;
    std::vector<std::string> lines;
    {
        std::lock_guard lock(mu_);
        in.swap(inbox_);
        lines.swap(log_lines_);
    }
    if (log_)
        for (const std::string& l : lines) log_(l);
    if (!in.empty()) {
        uint64_t merged = 0, full = 0;
        for (const campaign_bits& b : in) {
            const auto r = table_.merge_subscriber_bits(b.fingerprint, b.window, b.bits);
            merged += r == campaign_table::merge_result::merged;
            full += r == campaign_table::merge_result::full;
        }
        std::lock_guard lock(mu_);
        counters_.merges += merged;
        counters_.merge_overflows += full;
    }
}

void campaign_sync::poll(uint64_t now_ns, uint64_t window_ns) {
    merge_inbox();
    if (last_scan_ns_ != 0 && now_ns - last_scan_ns_ < settings_.sync_interval_ns && now_ns >= last_scan_ns_) return;
    last_scan_ns_ = now_ns;
    // window_ns 0: an empty snapshot all the same, so that the link is kept
    // and watched (a policy that starts counting finds it up).
    snapshot s;
    s.window_ns = window_ns;
    s.window = campaign_table::window_index(now_ns, window_ns);
    if (window_ns != 0)
        table_.for_each_active(s.window, [&](uint64_t fp, uint32_t w, uint32_t recipients, const bits_t& bits) {
            s.cells.push_back({fp, w, bits, recipients});
        });
    {
        std::lock_guard lock(mu_);
        if (outbox_) ++counters_.superseded;
        outbox_ = std::move(s);
    }
    wake_.notify_all();
}

bool campaign_sync::flush(uint64_t now_ns, uint64_t window_ns, std::chrono::milliseconds timeout) {
    if (window_ns == 0) return true;
    const uint64_t base = counters().syncs;
    const auto end = std::chrono::steady_clock::now() + timeout;
    auto next_scan = std::chrono::steady_clock::now();
    for (;;) {
        if (counters().syncs > base) {
            merge_inbox();   // what that sync brought back
            return true;
        }
        const auto now = std::chrono::steady_clock::now();
        if (now >= end) return false;
        if (now >= next_scan) {
            // A new snapshot: the thread drops one it cannot send (link down).
            last_scan_ns_ = 0;
            next_scan = now + std::chrono::milliseconds(100);
        }
        poll(now_ns, window_ns);
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
}

campaign_sync_counters campaign_sync::counters() const {
    std::lock_guard lock(mu_);
    return counters_;
}

nlohmann::json campaign_sync::status() const {
    const campaign_sync_counters c = counters();
    nlohmann::json j = {{"store", "redis"},
                        {"link_up", c.link_up},
                        {"link_downs", c.link_downs},
                        {"syncs", c.syncs},
                        {"fingerprints_sent", c.fingerprints_sent},
                        {"bits_sent", c.bits_sent},
                        {"fingerprints_fetched", c.fingerprints_fetched},
                        {"merges", c.merges},
                        {"merge_overflows", c.merge_overflows},
                        {"hot_truncated", c.hot_truncated},
                        {"superseded", c.superseded},
                        {"recipients_sent", c.recipients_sent},
                        {"bad_fields", c.bad_fields},
                        {"last_sync_seconds", c.last_sync_seconds}};
    if (!c.last_error.empty()) j["last_error"] = c.last_error;
    return j;
}

std::vector<campaign_fleet_figure> campaign_sync::fleet_figures() const {
    std::lock_guard lock(mu_);
    std::vector<campaign_fleet_figure> out;
    out.reserve(figures_.size());
    for (const auto& [fp, f] : figures_) out.push_back(f);
    return out;
}

void campaign_sync::run() {
    block_sigpipe_on_this_thread();
    // This process's field of the recipients hashes (a restart gets a new one).
    const std::string field =
        settings_.recipients_field.empty() ? boot_field(settings_.gateway) : settings_.recipients_field;
    const size_t max_figures = size_t{table_.fingerprint_capacity()} + settings_.max_hot;
    unsigned bad_logged = 0;   // the first few hashes with fields that are not counts are named in the log
    std::unique_ptr<redis_connection> link;
    reconnect_backoff backoff;
    bool was_up = false, ever_tried = false;
    // What Redis holds already, for the window being sent: bits this gateway
    // sent and fleet bits read back. Dropped with the link or the window.
    std::unordered_map<uint64_t, bits_t> known;
    uint64_t known_window_ns = 0;
    uint32_t known_window = 0;
    // The recipients counts Redis holds of this process, by fingerprint, for
    // the window being sent: written again when they change or Redis lost them.
    std::unordered_map<uint64_t, uint32_t> rcpt_sent;

    // Also schedules the next connect.
    auto link_lost = [&](const std::string& why) {
        link.reset();
        backoff.failed();
        known.clear();
        rcpt_sent.clear();
        std::lock_guard lock(mu_);
        counters_.link_up = false;
        counters_.last_error = why;
        if (was_up || !ever_tried) {
            ++counters_.link_downs;
            if (log_lines_.size() < max_log_lines)
                log_lines_.push_back("fleet: campaign: redis link down (" + why +
                                     "); local detection goes on, reconnecting with backoff");
        }
        was_up = false;
        ever_tried = true;
    };

    for (;;) {
        snapshot s;
        {
            std::unique_lock lock(mu_);
            wake_.wait(lock, [&] { return stop_ || outbox_.has_value(); });
            if (stop_) return;
            s = std::move(*outbox_);
            outbox_.reset();
        }
        if (!link) {
            if (!backoff.due()) continue;
            try {
                link = std::make_unique<redis_connection>(redis_endpoint{
                    settings_.redis_address, settings_.redis_password_file, settings_.redis_tls_ca_file});
                link->command({"PING"});
            } catch (const std::exception& e) {
                link_lost(e.what());
                continue;
            }
            backoff.succeeded();
            was_up = ever_tried = true;
            note("fleet: campaign: redis link up (" + settings_.redis_address + ")");
            std::lock_guard lock(mu_);
            counters_.link_up = true;
        }
        if (s.window_ns == 0) {   // nothing to count: the link is only watched
            try {
                link->command({"PING"});
                std::lock_guard lock(mu_);
                counters_.last_sync_seconds = unix_now();
            } catch (const std::exception& e) {
                link_lost(e.what());
            }
            continue;
        }
        if (s.window_ns != known_window_ns || s.window != known_window) {
            known.clear();
            rcpt_sent.clear();
            known_window_ns = s.window_ns;
            known_window = s.window;
            std::lock_guard lock(mu_);
            figures_.clear();
        }
        try {
            const std::string prefix = campaign_key_prefix(s.window_ns, s.window);
            const std::string hot_key = prefix + ":hot";
            const std::string ttl = ttl_seconds(s.window_ns);
            // 1. The bits Redis does not hold yet, one SETBIT each, and the hot set.
            std::vector<uint64_t> sent, rcpt_changed;
            std::unordered_map<uint64_t, bits_t> local;
            std::unordered_map<uint64_t, uint32_t> local_rcpt;
            uint64_t bits_sent = 0;
            size_t replies = 0;
            for (const campaign_bits& c : s.cells) {
                local[c.fingerprint] = c.bits;
                local_rcpt[c.fingerprint] = c.recipients;
                const auto was = rcpt_sent.find(c.fingerprint);
                if (c.recipients != 0 && (was == rcpt_sent.end() || was->second != c.recipients)) {
                    const std::string rcpt_key = prefix + ":" + fingerprint_hex(c.fingerprint) + ":rcpt";
                    link->append({"HSET", rcpt_key, field, std::to_string(c.recipients)});
                    link->append({"EXPIRE", rcpt_key, ttl});
                    replies += 2;
                    rcpt_changed.push_back(c.fingerprint);
                }
                const bits_t fresh = and_not(c.bits, known[c.fingerprint]);
                if (!any(fresh)) continue;
                const std::string key = prefix + ":" + fingerprint_hex(c.fingerprint);
                for (unsigned i = 0; i < campaign_table::bitmap_bits; ++i)
                    if (fresh[i / word_bits] >> (i % word_bits) & 1) {
                        link->append({"SETBIT", key, std::to_string(i), "1"});
                        ++replies;
                        ++bits_sent;
                    }
                link->append({"EXPIRE", key, ttl});
                ++replies;
                sent.push_back(c.fingerprint);
            }
            link->append({"SCARD", hot_key});
            link->append({"SRANDMEMBER", hot_key, std::to_string(settings_.max_hot)});
            for (size_t i = 0; i < replies; ++i) link->reply();
            for (const uint64_t fp : rcpt_changed) rcpt_sent[fp] = local_rcpt[fp];
            const long long hot_size = link->reply()->integer;
            std::vector<uint64_t> fetch = sent;
            std::unordered_set<uint64_t> hot, fetching(sent.begin(), sent.end());
            for (const uint64_t fp : rcpt_changed)
                if (fetching.insert(fp).second) fetch.push_back(fp);
            {
                const redis_reply members = link->reply();
                for (size_t i = 0; i < members->elements; ++i) {
                    uint64_t fp = 0;
                    const redisReply* m = members->element[i];
                    if (m->type != REDIS_REPLY_STRING || !parse_fingerprint_hex(m->str, m->len, fp)) continue;
                    hot.insert(fp);
                    if (fetching.insert(fp).second) fetch.push_back(fp);
                }
            }
            // 2. The fleet's bitmaps and recipients of those.
            for (const uint64_t fp : fetch) {
                link->append({"GET", prefix + ":" + fingerprint_hex(fp)});
                link->append({"HGETALL", prefix + ":" + fingerprint_hex(fp) + ":rcpt"});
            }
            std::vector<campaign_bits> back;
            std::vector<campaign_fleet_figure> figures;
            std::vector<uint64_t> now_hot;
            uint64_t bad_fields = 0;
            std::string bad_key;
            for (const uint64_t fp : fetch) {
                const redis_reply r = link->reply();
                const redis_reply h = link->reply();
                const count_fields rcpt = sum_count_fields(h.get(), field);
                bad_fields += rcpt.bad;
                if (rcpt.bad && bad_key.empty()) bad_key = prefix + ":" + fingerprint_hex(fp) + ":rcpt";
                const auto own = local_rcpt.find(fp);
                const uint32_t own_rcpt = own != local_rcpt.end() ? own->second : rcpt.mine.value_or(0);
                // Lost with Redis's data (a restart without persistence): written again next time.
                if (own != local_rcpt.end() && own_rcpt != 0 && rcpt.mine != own_rcpt) rcpt_sent.erase(fp);
                if (r->type != REDIS_REPLY_STRING) continue;   // expired meanwhile
                const bits_t fleet = bits_from_redis(r->str, r->len);
                figures.push_back({fp, s.window, fleet, rcpt.others + own_rcpt, and_not(fleet, local[fp])});
                or_into(known[fp], fleet);
                if (popcount(fleet) >= 2 && !hot.count(fp)) now_hot.push_back(fp);
                if (any(and_not(fleet, local[fp]))) back.push_back({fp, s.window, fleet});
            }
            // 3. Fingerprints that became fleet-hot.
            if (!now_hot.empty()) {
                std::vector<std::string> sadd{"SADD", hot_key};
                for (const uint64_t fp : now_hot) sadd.push_back(fingerprint_hex(fp));
                link->append(sadd);
                link->append({"EXPIRE", hot_key, ttl});
                link->reply();
                link->reply();
            }
            for (const uint64_t fp : sent) or_into(known[fp], local[fp]);
            std::lock_guard lock(mu_);
            for (const campaign_fleet_figure& f : figures) {
                const auto it = figures_.find(f.fingerprint);
                if (it == figures_.end()) {
                    if (figures_.size() < max_figures) figures_.emplace(f.fingerprint, f);
                    continue;
                }
                const bits_t merged = it->second.merged;
                it->second = f;
                or_into(it->second.merged, merged);
            }
            counters_.recipients_sent += rcpt_changed.size();
            counters_.bad_fields += bad_fields;
            if (bad_fields && bad_logged < 8 && log_lines_.size() < max_log_lines) {
                ++bad_logged;
                log_lines_.push_back("fleet: campaign: " + std::to_string(bad_fields) +
                                     " field(s) of recipients hashes are not counts (first: " + bad_key +
                                     "); ignored");
            }
            ++counters_.syncs;
            counters_.fingerprints_sent += sent.size();
            counters_.bits_sent += bits_sent;
            counters_.fingerprints_fetched += fetch.size();
            if (hot_size > static_cast<long long>(settings_.max_hot)) ++counters_.hot_truncated;
            counters_.last_sync_seconds = unix_now();
            // Bounded by one snapshot's fingerprints plus max_hot: bits the
            // control thread has not taken yet are replaced by these (Redis
            // holds the union: what they lack comes back next interval).
            if (!inbox_.empty()) ++counters_.superseded;
            inbox_ = std::move(back);
        } catch (const std::exception& e) {   // redis_error, or a reply not as expected
            link_lost(e.what());
        }
    }
}

}  // namespace sekisho
