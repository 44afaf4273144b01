#include "control/identity/operator_binding_table.h"

#include <algorithm>

namespace sekisho {

void operator_binding_table::hold(const ip_prefix& prefix, const std::string& account) {
    for (auto& b : held_)
        if (b.prefix == prefix) {
            b.account = account;
            return;
        }
    // Broader first: reassert() binds in this order, so a more specific API
    // binding inside a broader one keeps its own account.
    const auto at = std::upper_bound(held_.begin(), held_.end(), prefix.length,
                                     [](uint8_t length, const api_binding& b) { return length < b.prefix.length; });
    held_.insert(at, {prefix, account});
}

void operator_binding_table::release(const ip_prefix& prefix) {
    held_.erase(std::remove_if(held_.begin(), held_.end(), [&](const api_binding& b) { return b.prefix == prefix; }),
                held_.end());
}

const operator_binding_table::api_binding* operator_binding_table::held_at(const ip_prefix& prefix) const {
    for (const auto& b : held_)
        if (b.prefix == prefix) return &b;
    return nullptr;
}

void operator_binding_table::reassert(const ip_prefix& changed, undo_log* undo) {
    for (const auto& b : held_) {
        if (!b.prefix.overlaps(changed)) continue;
        const ip_prefix& overlap = b.prefix.length >= changed.length ? b.prefix : changed;
        if (undo) base_.bind(overlap, b.account, *undo);
        else base_.bind(overlap, b.account);
    }
}

std::vector<std::string> operator_binding_table::reassert_all() {
    std::vector<std::string> errors;
    for (const auto& b : held_) {
        try {
            base_.bind(b.prefix, b.account);
        } catch (const std::exception& e) {
            errors.push_back(b.prefix.to_string() + " of " + b.account + ": " + e.what());
        }
    }
    return errors;
}

uint32_t operator_binding_table::bind(const ip_prefix& prefix, const std::string& account) {
    const uint32_t n = base_.bind(prefix, account);
    reassert(prefix, nullptr);
    return n;
}

uint32_t operator_binding_table::unbind(const ip_prefix& prefix) {
    const uint32_t n = base_.unbind(prefix);
    reassert(prefix, nullptr);
    return n;
}

uint32_t operator_binding_table::bind(const ip_prefix& prefix, const std::string& account, undo_log& undo) {
    const uint32_t n = base_.bind(prefix, account, undo);
    reassert(prefix, &undo);
    return n;
}

uint32_t operator_binding_table::unbind(const ip_prefix& prefix, const std::string& account, undo_log& undo) {
    const uint32_t n = base_.unbind(prefix, account, undo);
    reassert(prefix, &undo);
    return n;
}

}  // namespace sekisho
