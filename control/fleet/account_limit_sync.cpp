// Account-scope limits across the fleet through Redis: see account_limit_sync.h.
#include "control/fleet/account_limit_sync.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <ctime>
#include <memory>
#include <unordered_map>
#include <unordered_set>

#include "control/fleet/reconnect_backoff.h"
#include "control/fleet/redis_count_fields.h"
#include "control/identity/account_registry.h"
#include "control/policy/policy.h"
#include "dataplane/compiled_policy.h"
#include "dataplane/limits/limit_cell.h"

namespace sekisho {

namespace {

bool counted_per_window(limit_measure m) {
    return m == limit_measure::messages || m == limit_measure::recipients || m == limit_measure::rejected_recipients;
}

std::string limit_prefix(const std::string& limit, uint64_t window_ns, uint32_t window) {
    return "sekisho:acct:" + duration_text(window_ns) + ":" + std::to_string(window) + ":" + limit;
}

}  // namespace

std::vector<shared_limit> shared_limits(const compiled_policy& policy) {
    std::vector<shared_limit> out;
    for (unsigned i = 0; i < policy.limit_count(); ++i) {
        const compiled_limit& l = policy.limit(i);
        if (l.scope != limit_scope::account || !counted_per_window(l.measure) || l.window_ns == 0) continue;
        out.push_back({std::string(l.name, strnlen(l.name, sizeof l.name)), l.slot, l.max, l.window_ns});
    }
    return out;
}

std::string account_limit_key(const std::string& limit, uint64_t window_ns, uint32_t window,
                              const std::string& account) {
    return limit_prefix(limit, window_ns, window) + ":a:" + account;
}

// The thread's side: the link, what Redis holds of this gateway's counts in
// the windows being sent, and one exchange.
class account_limit_sync::redis_side {
public:
    redis_side(const account_limit_sync_settings& settings, fleet_thread_signals& signals)
        : settings_(settings), signals_(signals), field_(boot_field(settings_.gateway)) {}

    // False while the link is down and its backoff not over.
    bool connect(account_limit_sync_counters& c, std::mutex& mu) {
        if (link_) return true;
        if (!backoff_.due()) return false;
        try {
            link_ = std::make_unique<redis_connection>(settings_.redis);
            link_->command({"PING"});
        } catch (const std::exception& e) {
            lost(e.what(), c, mu);
            return false;
        }
        backoff_.succeeded();
        was_up_ = true;
        signals_.log("fleet: account limits: redis link up (" + settings_.redis.address + ")");
        std::lock_guard lock(mu);
        c.link_up = true;
        return true;
    }

    void lost(const std::string& why, account_limit_sync_counters& c, std::mutex& mu) {
        link_.reset();
        sent_.clear();   // Redis may have lost them: the next exchange sends every count
        backoff_.failed();
        std::lock_guard lock(mu);
        c.link_up = false;
        c.last_error = why;
        if (was_up_ || !tried_) {
            ++c.link_downs;
            signals_.log("fleet: account limits: redis link down (" + why +
                         "); local limits go on, reconnecting with backoff");
        }
        was_up_ = false;
        tried_ = true;
    }

    // Deletes the hashes of reset accounts (pipelined); throws redis_error
    // when the link fails midway (the caller keeps them for the next try).
    void remove(const std::vector<std::string>& keys) {
        for (const std::string& key : keys) link_->append({"DEL", key});
        for (size_t i = 0; i < keys.size(); ++i) link_->reply();
        for (const std::string& key : keys) sent_.erase(key);   // Redis no longer holds them
    }

    struct result {
        std::vector<share> shares;
        uint64_t sent = 0, fetched = 0, bad_fields = 0;
        bool hot_truncated = false;
    };
    // One exchange; throws redis_error when the link fails midway.
    result exchange(const snapshot& s) {
        result out;
        if (s.limits.empty()) {   // no shared limit in the policy: the link is only watched
            link_->command({"PING"});
            return out;
        }
        const std::string ttl =
            std::to_string(std::max<uint64_t>(1, (2 * max_window(s) + 999'999'999) / 1'000'000'000));
        std::vector<std::string> prefixes;
        for (size_t k = 0; k < s.limits.size(); ++k)
            prefixes.push_back(limit_prefix(s.limits[k].name, s.limits[k].window_ns, s.windows[k]));
        // Counts sent in windows that are over are of no more use.
        std::string epoch;
        for (const std::string& p : prefixes) epoch += p + "\n";
        if (epoch != sent_epoch_) {
            sent_.clear();
            sent_epoch_ = epoch;
        }
        // 1. The counts Redis does not hold yet, and the hot sets.
        size_t replies = 0;
        std::vector<std::pair<std::string, uint32_t>> wrote;
        std::vector<std::unordered_map<std::string, uint32_t>> local(s.limits.size());
        for (const count& c : s.counts) {
            local[c.limit][c.account] = c.value;
            const std::string key = prefixes[c.limit] + ":a:" + c.account;
            const auto it = sent_.find(key);
            if (it != sent_.end() && it->second == c.value) continue;
            link_->append({"HSET", key, field_, std::to_string(c.value)});
            link_->append({"EXPIRE", key, ttl});
            replies += 2;
            wrote.emplace_back(key, c.value);
        }
        for (const std::string& p : prefixes) {
            link_->append({"SCARD", p + ":hot"});
            link_->append({"SRANDMEMBER", p + ":hot", std::to_string(settings_.max_hot)});
        }
        for (size_t i = 0; i < replies; ++i) link_->reply();
        out.sent = wrote.size();
        // 2. The hashes of this gateway's accounts and of the hot ones.
        std::vector<std::unordered_set<std::string>> hot(s.limits.size());
        std::vector<std::pair<uint32_t, std::string>> fetch;
        for (size_t k = 0; k < s.limits.size(); ++k) {
            const long long size = link_->reply()->integer;
            out.hot_truncated |= size > static_cast<long long>(settings_.max_hot);
            const redis_reply members = link_->reply();
            for (size_t i = 0; i < members->elements; ++i) {
                const redisReply* m = members->element[i];
                if (m->type != REDIS_REPLY_STRING) continue;
                hot[k].emplace(m->str, m->len);
            }
            for (const auto& [account, value] : local[k]) fetch.emplace_back(static_cast<uint32_t>(k), account);
            for (const std::string& account : hot[k])
                if (!local[k].count(account)) fetch.emplace_back(static_cast<uint32_t>(k), account);
        }
        for (const auto& [k, account] : fetch) link_->append({"HGETALL", prefixes[k] + ":a:" + account});
        std::vector<std::pair<uint32_t, std::string>> now_hot;
        std::vector<std::string> lost;   // keys whose field of this process is not what was written
        for (const auto& [k, account] : fetch) {
            const redis_reply r = link_->reply();
            const count_fields fields = sum_count_fields(r.get(), field_);
            out.bad_fields += fields.bad;
            const uint64_t others = fields.others;
            const std::optional<uint32_t> mine = fields.mine;
            ++out.fetched;
            const shared_limit& l = s.limits[k];
            const auto own = local[k].find(account);
            const uint64_t total = others + (own == local[k].end() ? 0 : own->second);
            // Deleted by a reset (another gateway's DEL) or lost with Redis's
            // data: written again at the next exchange.
            if (own != local[k].end() && mine != own->second) lost.push_back(prefixes[k] + ":a:" + account);
            // 0 included: a hash emptied by a reset takes the share back.
            out.shares.push_back({l.name, l.window_ns, s.windows[k], account,
                                  static_cast<uint32_t>(std::min<uint64_t>(others, UINT32_MAX))});
            if (total != 0 && total * 2 >= l.max && !hot[k].count(account)) now_hot.emplace_back(k, account);
        }
        // 3. Accounts that reached half their max join the window's hot set.
        for (const auto& [k, account] : now_hot) {
            link_->append({"SADD", prefixes[k] + ":hot", account});
            link_->append({"EXPIRE", prefixes[k] + ":hot", ttl});
        }
        for (size_t i = 0; i < 2 * now_hot.size(); ++i) link_->reply();
        for (const auto& [key, value] : wrote) sent_[key] = value;
        for (const std::string& key : lost) sent_.erase(key);
        return out;
    }

private:
    static uint64_t max_window(const snapshot& s) {
        uint64_t w = 0;
        for (const shared_limit& l : s.limits) w = std::max(w, l.window_ns);
        return w;
    }

    const account_limit_sync_settings& settings_;
    fleet_thread_signals& signals_;
    std::string field_;                      // <gateway>/<boot id>
    std::unique_ptr<redis_connection> link_;
    reconnect_backoff backoff_;
    bool was_up_ = false, tried_ = false;
    std::unordered_map<std::string, uint32_t> sent_;   // key -> the count Redis holds from this process
    std::string sent_epoch_;                           // the windows sent_ is about
};

account_limit_sync::account_limit_sync(account_limit_sync_settings settings, account_registry& accounts, log_fn log)
    : settings_(std::move(settings)), accounts_(accounts), log_(std::move(log)) {
    if (settings_.sync_interval_ns == 0) settings_.sync_interval_ns = 200'000'000;
    if (settings_.max_hot == 0) settings_.max_hot = 1;
    thread_ = std::thread([this] { run(); });
}

account_limit_sync::~account_limit_sync() {
    signals_.stop();
    thread_.join();
}

void account_limit_sync::store_shares(const compiled_policy& policy) {
    std::vector<share> in;
    {
        std::lock_guard lock(mu_);
        in.swap(inbox_);
    }
    if (log_)
        for (const std::string& line : signals_.take_log_lines()) log_(line);
    if (in.empty()) return;
    const std::vector<shared_limit> limits = shared_limits(policy);
    uint64_t applied = 0;
    for (const share& s : in) {
        const auto l = std::find_if(limits.begin(), limits.end(), [&](const shared_limit& x) {
            return x.name == s.limit && x.window_ns == s.window_ns;
        });
        // A limit the policy no longer has, or an account this gateway never
        // saw (its first connection here starts from the next interval's share).
        if (l == limits.end() || !accounts_.knows(s.account)) continue;
        const uint32_t id = accounts_.id_of(s.account);
        store_fleet_share(accounts_.records()[id].fleet_share[l->slot], s.window, s.others);
        applied += s.others != 0;
    }
    std::lock_guard lock(mu_);
    counters_.shares_applied += applied;
    counters_.accounts_shared = applied;
}

void account_limit_sync::poll(uint64_t now_ns, const compiled_policy& policy) {
    if (policy.generation() != generation_) {
        // The new policy's limits may use the cells differently: no share
        // stored under the old one may count against them.
        if (generation_ != 0)
            for (uint32_t id = 1; id <= accounts_.size(); ++id)
                for (uint64_t& share : accounts_.records()[id].fleet_share) store_fleet_share(share, 0, 0);
        generation_ = policy.generation();
        std::lock_guard lock(mu_);
        inbox_.clear();   // counted under the old policy
    }
    store_shares(policy);
    if (last_scan_ns_ != 0 && now_ns >= last_scan_ns_ && now_ns - last_scan_ns_ < settings_.sync_interval_ns) return;
    last_scan_ns_ = now_ns;
    // No shared limit: an empty snapshot all the same, so that the link is
    // kept and watched (a policy that adds one finds it up).
    snapshot s;
    s.limits = shared_limits(policy);
    for (const shared_limit& l : s.limits) s.windows.push_back(count_window_index(now_ns, l.window_ns));
    for (uint32_t id = 1; id <= accounts_.size(); ++id) {
        const account_record& rec = accounts_.records()[id];
        for (size_t k = 0; k < s.limits.size(); ++k) {
            const uint32_t value = window_count(rec.cells[s.limits[k].slot], now_ns, s.limits[k].window_ns);
            if (value != 0) s.counts.push_back({static_cast<uint32_t>(k), *accounts_.name_of(id), value});
        }
    }
    {
        std::lock_guard lock(mu_);
        if (outbox_) ++counters_.superseded;
        s.resets = resets_;
        outbox_ = std::move(s);
    }
    signals_.wake();
}

void account_limit_sync::account_reset(uint32_t account, uint32_t slots, uint64_t now_ns,
                                       const compiled_policy& policy) {
    const std::string* name = accounts_.name_of(account);
    if (name == nullptr) return;
    std::vector<std::string> keys;
    for (const shared_limit& l : shared_limits(policy))
        if (l.slot < 32 && (slots >> l.slot & 1u) != 0)
            keys.push_back(account_limit_key(l.name, l.window_ns, count_window_index(now_ns, l.window_ns), *name));
    if (keys.empty()) return;
    uint64_t dropped = 0;
    {
        std::lock_guard lock(mu_);
        // Counted before the reset: neither sent nor stored after it.
        if (outbox_) ++counters_.superseded;
        outbox_.reset();
        inbox_.clear();
        ++resets_;
        ++counters_.resets;
        for (std::string& key : keys) {
            if (deletes_.size() >= max_pending_deletes) {
                ++dropped;
                continue;
            }
            deletes_.push_back(std::move(key));
        }
        counters_.reset_deletes_dropped += dropped;
        counters_.reset_deletes_pending = deletes_.size();
    }
    if (dropped != 0 && log_)
        log_("fleet: account limits: " + std::to_string(dropped) + " reset delete(s) of account " + *name +
             " dropped: " + std::to_string(max_pending_deletes) +
             " wait for the redis link already; the other gateways count its old share until the window ends");
    signals_.wake();
}

account_limit_sync_counters account_limit_sync::counters() const {
    std::lock_guard lock(mu_);
    return counters_;
}

nlohmann::json account_limit_sync::status() const {
    const account_limit_sync_counters c = counters();
    nlohmann::json j = {{"store", "redis"},
                        {"link_up", c.link_up},
                        {"link_downs", c.link_downs},
                        {"syncs", c.syncs},
                        {"counts_sent", c.counts_sent},
                        {"counts_fetched", c.counts_fetched},
                        {"shares_applied", c.shares_applied},
                        {"accounts_shared", c.accounts_shared},
                        {"bad_fields", c.bad_fields},
                        {"hot_truncated", c.hot_truncated},
                        {"superseded", c.superseded},
                        {"resets", c.resets},
                        {"reset_deletes", c.reset_deletes},
                        {"reset_deletes_dropped", c.reset_deletes_dropped},
                        {"reset_deletes_pending", c.reset_deletes_pending},
                        {"last_sync_seconds", c.last_sync_seconds}};
    if (!c.last_error.empty()) j["last_error"] = c.last_error;
    return j;
}

void account_limit_sync::run() {
    block_sigpipe_on_this_thread();
    redis_side side(settings_, signals_);
    uint64_t bad_logged = 0;
    while (signals_.wait_for(settings_.sync_interval_ns)) {
        std::optional<snapshot> s;
        std::vector<std::string> deletes;
        {
            std::lock_guard lock(mu_);
            s.swap(outbox_);
            deletes.swap(deletes_);
        }
        // Deletes wait for the link, in front of those queued since.
        const auto keep = [&] {
            std::lock_guard lock(mu_);
            const size_t room = max_pending_deletes - std::min(max_pending_deletes, deletes_.size());
            if (deletes.size() > room) {
                counters_.reset_deletes_dropped += deletes.size() - room;
                deletes.resize(room);
            }
            deletes_.insert(deletes_.begin(), deletes.begin(), deletes.end());
            counters_.reset_deletes_pending = deletes_.size();
        };
        if (!s && deletes.empty()) continue;
        if (!side.connect(counters_, mu_)) {
            keep();
            continue;
        }
        try {
            if (!deletes.empty()) {
                side.remove(deletes);
                std::lock_guard lock(mu_);
                counters_.reset_deletes += deletes.size();
                counters_.reset_deletes_pending = deletes_.size();
                deletes.clear();
            }
            if (!s) continue;
            redis_side::result r = side.exchange(*s);
            timespec ts{};
            clock_gettime(CLOCK_REALTIME, &ts);
            if (r.bad_fields && bad_logged++ < 8)
                signals_.log("fleet: account limits: " + std::to_string(r.bad_fields) +
                             " field(s) of the sekisho:acct: hashes are not counts; ignored");
            std::lock_guard lock(mu_);
            ++counters_.syncs;
            counters_.counts_sent += r.sent;
            counters_.counts_fetched += r.fetched;
            counters_.bad_fields += r.bad_fields;
            counters_.hot_truncated += r.hot_truncated;
            counters_.last_sync_seconds = static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
            // One sync's shares (bounded by one snapshot's accounts plus
            // max_hot per limit): newer ones replace those not taken yet.
            // Read before a reset the control thread made since: stale.
            if (!inbox_.empty() || s->resets != resets_) ++counters_.superseded;
            if (s->resets == resets_) inbox_ = std::move(r.shares);
        } catch (const std::exception& e) {
            side.lost(e.what(), counters_, mu_);
            keep();
        }
    }
}

}  // namespace sekisho
