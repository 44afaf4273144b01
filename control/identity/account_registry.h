// Subscriber accounts as the data plane knows them: dense ids (1..capacity)
// for names (RADIUS User-Name, static bindings, account groups), and the
// shared per-account records (group membership, account-scope limit cells)
// the workers update by compare-and-swap. Control thread only, except the
// records, which the workers read and write lock-free.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "dataplane/limits/mail_limits.h"
#include "control/policy/policy.h"

namespace sekisho {

class account_registry {
public:
    explicit account_registry(uint32_t capacity);   // throws if the records cannot be allocated
    ~account_registry();
    account_registry(const account_registry&) = delete;
    account_registry& operator=(const account_registry&) = delete;

    // The id of `name`, created on first use; 0 when the registry is full.
    uint32_t id_of(const std::string& name);
    // Whether `name` has an id already (id_of would not create one).
    bool knows(const std::string& name) const { return ids_.count(name) != 0; }
    // nullptr for 0 or an unknown id.
    const std::string* name_of(uint32_t id) const;
    uint32_t size() const { return static_cast<uint32_t>(names_.size()) - 1; }
    uint32_t capacity() const { return capacity_; }
    account_record* records() { return records_; }

    // 利用停止: every SMTP connection from a suspended account is refused.
    // Takes effect at the workers' next connection or segment of that account.
    void set_suspended(uint32_t id, bool suspended);
    bool suspended(uint32_t id) const;
    std::vector<uint32_t> suspended_ids() const;

    // Sets every account's group bits from the policy's account_groups.
    void apply_groups(const policy& pol);

private:
    uint32_t capacity_;
    account_record* records_;
    std::vector<std::string> names_{""};   // index = id; id 0 is "unbound"
    std::unordered_map<std::string, uint32_t> ids_;
};

}  // namespace sekisho
