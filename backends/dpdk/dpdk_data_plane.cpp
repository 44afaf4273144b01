#include "backends/dpdk/dpdk_data_plane.h"

#include <rte_errno.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

#include <algorithm>
#include <array>
#include <ctime>
#include <stdexcept>

#include "control/policy/policy_compiler.h"

namespace sekisho {

dpdk_data_plane::dpdk_data_plane(const policy& pol, const dpdk_data_plane_config& config)
    : config_(config), policy_(std::make_shared<const policy>(pol)) {
    if (config.instance.size() > 4)
        throw std::runtime_error("data plane instance name '" + config.instance + "' is longer than 4 characters");
    pool_ = rte_pktmbuf_pool_create(("sk_mbufs" + config.instance).c_str(), config.mbufs, 256, 0,
                                    RTE_MBUF_DEFAULT_BUF_SIZE, SOCKET_ID_ANY);
    if (pool_ == nullptr)
        throw std::runtime_error(std::string("cannot create the mbuf pool (") + std::to_string(config.mbufs) +
                                 " mbufs): " + rte_strerror(rte_errno) + "; give EAL more memory (-m)");
    store_ = std::make_unique<policy_store>(config.workers);
    store_->publish(compile_policy(pol, config.first_generation, config.workers));

    // Subscriber identity and limit state. Their sizes come from the policy
    // the daemon starts with (tracking.*); changing them needs a restart.
    accounts_ = std::make_unique<account_registry>(pol.tracking.max_accounts);
    subscribers_ = std::make_unique<subscriber_table>(("sk_subscribers" + config.instance).c_str(),
                                                      pol.tracking.max_bindings, store_->qsbr());
    accounts_->apply_groups(pol);
    for (const static_binding& b : pol.bindings) bind(b.prefix, b.account);

    // Bulk-campaign counts are shared by the workers (lock-free).
    campaigns_ = std::make_unique<campaign_table>(1u << 16, 1u << 18);

    mail_state mail;
    mail.subscribers = subscribers_.get();
    mail.accounts = accounts_->records();
    mail.max_accounts = accounts_->capacity() + 1;
    mail.flows = pol.tracking.flows_per_worker;
    mail.subscriber_records = pol.tracking.subscribers_per_worker;
    mail.flow_idle_timeout_ns = pol.tracking.flow_idle_timeout_ns;
    mail.instance = config.instance;

    const packet_clock clock = config.packet_clock ? packet_clock::from_packet_timestamps() : packet_clock::live();
    for (unsigned w = 0; w <= config.workers; ++w) counters_.push_back(std::make_unique<worker_counters>());
    for (unsigned w = 0; w < config.workers; ++w) {
        const std::string name = "sk_events" + config.instance + "_" + std::to_string(w);
        rings_.push_back(std::make_unique<event_ring>(name.c_str(), config.event_ring_capacity));
        rings_raw_.push_back(rings_.back().get());
        inspectors_.push_back(std::make_unique<content_inspector>(w, pol.inspection.flows_per_worker, campaigns_.get(),
                                                                  *counters_[w], config.instance));
        trackers_.push_back(std::make_unique<mail_tracker>(w, mail, pool_, *counters_[w], rings_.back().get(),
                                                           inspectors_.back().get()));
        pipelines_.push_back(std::make_unique<pipeline>(w, pool_, *counters_[w], rings_.back().get(), clock,
                                                        trackers_.back().get()));
        limit_boxes_.push_back(std::make_unique<limit_request_box>());
    }
    // The event log: the policy's events section; --events overrides the file.
    // Replay writes one line per event into its output directory: no
    // aggregation, no rotation (docs/events.md). Live, an aggregation window
    // also closes by the wall clock when no later event arrives.
    events_config ev = pol.events;
    if (!config.events_path.empty()) ev.file = config.events_path;
    if (config.packet_clock) {
        ev.aggregate_window_ns = 0;
        ev.rotate_bytes = 0;
        ev.rotate_interval_ns = 0;
        log_ = std::make_unique<event_log>(ev);
    } else {
        log_ = std::make_unique<event_log>(ev, [] {
            timespec ts{};
            clock_gettime(CLOCK_REALTIME, &ts);
            return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
        });
    }
}

dpdk_data_plane::~dpdk_data_plane() {
    pipelines_.clear();
    trackers_.clear();
    inspectors_.clear();
    campaigns_.reset();
    subscribers_.reset();
    accounts_.reset();
    rings_.clear();
    store_.reset();
    rte_mempool_free(pool_);
}

namespace {
// How many table keys `p` stands for, as a power of two: /32s for IPv4,
// subscriber prefixes (ipv6_prefix_length) for IPv6; a longer prefix maps to
// the one holding it. Throws when that is more than 2^max_binding_host_bits.
unsigned key_bits(const ip_prefix& p, uint8_t ipv6_prefix_length) {
    const unsigned unit = p.family == 4 ? 32 : ipv6_prefix_length;
    const unsigned len = std::min<unsigned>(p.length, unit);
    const unsigned bits = unit - len;
    if (bits > max_binding_host_bits)
        throw std::runtime_error(p.to_string() + " is too wide to bind (2^" + std::to_string(bits) + " " +
                                 (p.family == 4 ? "addresses" : "/" + std::to_string(unit) + " subscriber prefixes") +
                                 "); bind at most " + std::to_string(1u << max_binding_host_bits) + " at a time");
    return bits;
}

// Calls f(key) for each table key `p` stands for.
template <typename F>
uint32_t for_each_key(const ip_prefix& p, uint8_t ipv6_prefix_length, F f) {
    const unsigned unit = p.family == 4 ? 32 : ipv6_prefix_length;
    const unsigned bits = key_bits(p, ipv6_prefix_length);
    const uint32_t count = 1u << bits;
    for (uint32_t i = 0; i < count; ++i) {
        std::array<uint8_t, 16> a = p.bytes;
        for (unsigned bit = 0; bit < bits; ++bit)  // fill the host bits from i
            if ((i >> bit) & 1) a[(unit - 1 - bit) / 8] |= static_cast<uint8_t>(0x80u >> ((unit - 1 - bit) % 8));
        if (p.family == 4)
            f(subscriber_key::v4(static_cast<uint32_t>(a[0]) << 24 | static_cast<uint32_t>(a[1]) << 16 |
                                 static_cast<uint32_t>(a[2]) << 8 | a[3]));
        else
            f(subscriber_key::v6(a.data(), static_cast<uint8_t>(unit)));
    }
    return count;
}
}  // namespace

namespace {
struct dpdk_prepared_policy final : prepared_policy {
    std::unique_ptr<compiled_policy> snapshot;
};
}  // namespace

std::unique_ptr<prepared_policy> dpdk_data_plane::prepare(std::shared_ptr<const policy> pol, uint64_t generation,
                                                  bool dry_run) {
    auto rules = pol->inspection.enabled
                     ? rule_compiler_.compile(pol->content_rules, pol->source, pol->content_compile_timeout_ns)
                     : nullptr;
    auto out = std::make_unique<dpdk_prepared_policy>();
    // Table names carry the generation and DPDK bounds names to 32 bytes:
    // dry runs count from 2^30, far above any real generation.
    const uint64_t table_generation = dry_run ? (uint64_t{1} << 30) + ++dry_runs_ : generation;
    out->snapshot = compile_policy(*pol, table_generation, dry_run ? 1 : config_.workers, std::move(rules));
    out->generation = generation;
    out->pol = std::move(pol);
    return out;
}

uint64_t dpdk_data_plane::commit(std::unique_ptr<prepared_policy> base) {
    auto& p = static_cast<dpdk_prepared_policy&>(*base);
    const policy& next = *p.pol;
    // Everything that can still fail, before the swap: the new static
    // bindings go in first (overwriting what they replace), remembered so
    // that a full table or registry puts every entry back as it was.
    undo_log undo;
    uint32_t new_names = 0;
    for (const static_binding& b : next.bindings) new_names += accounts_->knows(b.account) ? 0 : 1;
    for (const auto& [group, members] : next.account_groups)
        for (const auto& m : members) new_names += accounts_->knows(m) ? 0 : 1;
    if (accounts_->size() + new_names > accounts_->capacity())
        throw std::runtime_error("the account registry is full (" + std::to_string(accounts_->capacity()) +
                                 " accounts): the policy's bindings and groups name " + std::to_string(new_names) +
                                 " new accounts");
    // (ipv6_prefix_length is read at start only: the running one keys the new bindings too.)
    for (const static_binding& b : next.bindings) {
        try {
            bind(b.prefix, b.account, undo);
        } catch (const std::exception& e) {
            undo_bindings(undo);   // the entries overwritten had their slots: they go back
            throw std::runtime_error(std::string(e.what()) + " (" + next.source + ":" + std::to_string(b.line) + ")");
        }
    }
    // The swap. From here on nothing fails.
    store_->publish(std::move(p.snapshot));   // returns the old snapshot, freed here
    const std::shared_ptr<const policy> previous = std::move(policy_);
    policy_ = p.pol;
    for (const static_binding& b : previous->bindings) {
        const bool kept = std::any_of(next.bindings.begin(), next.bindings.end(), [&](const static_binding& n) {
            return n.prefix == b.prefix && n.account == b.account;
        });
        if (!kept) unbind(b.prefix, b.account, undo);   // only what is still this binding's
    }
    accounts_->apply_groups(next);
    return p.generation;
}


void dpdk_data_plane::check_bindable(const ip_prefix& prefix) const { key_bits(prefix, policy_->ipv6_prefix_length); }

uint32_t dpdk_data_plane::bind(const ip_prefix& prefix, const std::string& account) { return bind_keys(prefix, account, nullptr); }

uint32_t dpdk_data_plane::bind(const ip_prefix& prefix, const std::string& account, undo_log& undo) {
    return bind_keys(prefix, account, &undo);
}

uint32_t dpdk_data_plane::bind_keys(const ip_prefix& prefix, const std::string& account, undo_log* undo) {
    key_bits(prefix, policy_->ipv6_prefix_length);   // too wide: refused before the account is registered
    const uint32_t id = accounts_->id_of(account);
    if (id == 0)
        throw std::runtime_error("account registry full (" + std::to_string(accounts_->capacity()) +
                                 " accounts): cannot bind " + prefix.to_string());
    return for_each_key(prefix, policy_->ipv6_prefix_length, [&](const subscriber_key& k) {
        const uint32_t before = undo ? subscribers_->lookup(k) : 0;
        if (!subscribers_->bind(k, id))
            throw std::runtime_error("subscriber table full (" + std::to_string(subscribers_->capacity()) +
                                     " bindings): cannot bind " + prefix.to_string());
        if (undo) undo->entries.push_back({k, before});
    });
}

uint32_t dpdk_data_plane::unbind(const ip_prefix& prefix) {
    return for_each_key(prefix, policy_->ipv6_prefix_length, [&](const subscriber_key& k) { subscribers_->unbind(k); });
}

uint32_t dpdk_data_plane::unbind(const ip_prefix& prefix, const std::string& account, undo_log& undo) {
    const uint32_t id = accounts_->id_of(account);
    uint32_t n = 0;
    if (id == 0) return 0;   // an account the registry never held holds no entry
    for_each_key(prefix, policy_->ipv6_prefix_length, [&](const subscriber_key& k) {
        if (subscribers_->lookup(k) == id && subscribers_->unbind(k)) {
            undo.entries.push_back({k, id});
            ++n;
        }
    });
    return n;
}

size_t dpdk_data_plane::undo_bindings(undo_log& undo) noexcept {
    size_t failed = 0;
    for (auto it = undo.entries.rbegin(); it != undo.entries.rend(); ++it) {
        if (it->account_id == 0) subscribers_->unbind(it->key);
        else if (!subscribers_->bind(it->key, it->account_id)) ++failed;
    }
    undo.entries.clear();
    return failed;
}

std::vector<uint32_t> dpdk_data_plane::holders(const ip_prefix& prefix) const {
    std::vector<uint32_t> out;
    for_each_key(prefix, policy_->ipv6_prefix_length, [&](const subscriber_key& k) {
        const uint32_t id = subscribers_->lookup(k);
        if (id != 0 && std::find(out.begin(), out.end(), id) == out.end()) out.push_back(id);
    });
    return out;
}

uint64_t dpdk_data_plane::tracked_flows() const {
    uint64_t n = 0;
    for (const auto& t : trackers_) n += t->flows();
    return n;
}

bool dpdk_data_plane::post_limit_request(const limit_record_request& r) {
    for (const auto& box : limit_boxes_)
        if (!box->idle()) return false;
    for (const auto& box : limit_boxes_) box->post(r);
    return true;
}

std::optional<std::vector<limit_record_answer>> dpdk_data_plane::limit_answers() {
    std::vector<limit_record_answer> answers;
    for (const auto& box : limit_boxes_) {
        if (!box->answered()) return std::nullopt;
        answers.push_back(box->answer());
    }
    return answers;
}

account_record* dpdk_data_plane::account_limits(uint32_t account_id) {
    if (account_id == 0 || account_id > accounts_->capacity()) return nullptr;
    return &accounts_->records()[account_id];
}

std::vector<const worker_counters*> dpdk_data_plane::all_counters() const {
    std::vector<const worker_counters*> out;
    for (const auto& c : counters_) out.push_back(c.get());
    return out;
}

}  // namespace sekisho
