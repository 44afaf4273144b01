// The subscriber binding table as RADIUS writes it (subscriber_identity),
// with the operator's API bindings on top: an address an API binding holds
// stays bound to the operator's account whatever RADIUS binds or unbinds
// there, until the operator deletes the binding (control_api). Why: the
// operator bound it on purpose (a NAS that reports the wrong User-Name, a
// customer moved by hand); RADIUS keeps recording its sessions in the
// binding history, and the data plane follows the operator.
//
// How: every bind or unbind goes to the data plane's table first; then each
// API binding overlapping the changed prefix binds the overlap (the longer of
// the two prefixes) to its account again, broader bindings first so that a
// more specific one inside them wins, in the same undo log, so a failed
// RADIUS update is still taken back whole.
//
// Cost: one prefix comparison per API binding per RADIUS change (operators
// add tens or hundreds, not millions). Control thread only.
#pragma once

#include <string>
#include <vector>

#include "control/binding_table.h"
#include "control/policy/policy.h"

namespace sekisho {

class operator_binding_table final : public binding_table {
public:
    struct api_binding {
        ip_prefix prefix;
        std::string account;
    };

    // `base` (the data plane's table) must outlive this.
    explicit operator_binding_table(binding_table& base) : base_(base) {}

    // The API bindings RADIUS must not override. hold() replaces one of the
    // same prefix; neither touches the table.
    void hold(const ip_prefix& prefix, const std::string& account);
    void release(const ip_prefix& prefix);
    // Ordered by prefix length, broader first.
    const std::vector<api_binding>& held() const { return held_; }
    // The API binding of exactly `prefix`, or nullptr.
    const api_binding* held_at(const ip_prefix& prefix) const;

    // Binds every held binding again (broader first): after a policy's
    // static bindings were bound over them. Returns the errors (a full
    // table), one line each; the others are bound.
    std::vector<std::string> reassert_all();

    void check_bindable(const ip_prefix& prefix) const override { base_.check_bindable(prefix); }
    uint32_t bind(const ip_prefix& prefix, const std::string& account) override;
    uint32_t unbind(const ip_prefix& prefix) override;
    uint32_t bind(const ip_prefix& prefix, const std::string& account, undo_log& undo) override;
    uint32_t unbind(const ip_prefix& prefix, const std::string& account, undo_log& undo) override;
    size_t undo_bindings(undo_log& undo) noexcept override { return base_.undo_bindings(undo); }
    std::vector<uint32_t> holders(const ip_prefix& prefix) const override { return base_.holders(prefix); }

private:
    // Binds the overlap of `changed` with each held binding to its account.
    void reassert(const ip_prefix& changed, undo_log* undo);

    binding_table& base_;
    std::vector<api_binding> held_;
};

}  // namespace sekisho
