#include "control/identity/account_registry.h"

#include <rte_malloc.h>

#include <atomic>
#include <stdexcept>

namespace sekisho {

account_registry::account_registry(uint32_t capacity) : capacity_(capacity) {
    records_ = static_cast<account_record*>(
        rte_zmalloc("sk_accounts", sizeof(account_record) * (static_cast<size_t>(capacity) + 1), RTE_CACHE_LINE_SIZE));
    if (records_ == nullptr)
        throw std::runtime_error("cannot allocate " + std::to_string(capacity) +
                                 " account records; lower tracking.max_accounts or give EAL more memory");
}

account_registry::~account_registry() { rte_free(records_); }

uint32_t account_registry::id_of(const std::string& name) {
    if (auto it = ids_.find(name); it != ids_.end()) return it->second;
    if (names_.size() > capacity_) return 0;
    const auto id = static_cast<uint32_t>(names_.size());
    names_.push_back(name);
    ids_.emplace(name, id);
    return id;
}

const std::string* account_registry::name_of(uint32_t id) const {
    return id == 0 || id >= names_.size() ? nullptr : &names_[id];
}

void account_registry::set_suspended(uint32_t id, bool suspended) {
    if (id == 0 || id > capacity_) return;
    std::atomic_ref<uint32_t>(records_[id].suspended).store(suspended ? 1 : 0, std::memory_order_relaxed);
}

bool account_registry::suspended(uint32_t id) const {
    if (id == 0 || id > capacity_) return false;
    return std::atomic_ref<uint32_t>(records_[id].suspended).load(std::memory_order_relaxed) != 0;
}

std::vector<uint32_t> account_registry::suspended_ids() const {
    std::vector<uint32_t> out;
    for (uint32_t id = 1; id < names_.size(); ++id)
        if (suspended(id)) out.push_back(id);
    return out;
}

void account_registry::apply_groups(const policy& pol) {
    std::vector<uint32_t> masks(names_.size(), 0);
    for (size_t g = 0; g < pol.account_groups.size(); ++g)
        for (const auto& member : pol.account_groups[g].second) {
            const uint32_t id = id_of(member);
            if (id == 0) continue;
            if (masks.size() <= id) masks.resize(id + 1, 0);
            masks[id] |= uint32_t{1} << g;
        }
    for (uint32_t id = 1; id < masks.size(); ++id)
        std::atomic_ref<uint32_t>(records_[id].groups).store(masks[id], std::memory_order_relaxed);
}

}  // namespace sekisho
