// Subscriber identity for a running gateway: RADIUS accounting in, bindings
// into the data-plane subscriber table and the durable binding history.
//
// A NAS's Accounting-Request is answered only after its binding is in the
// data plane and committed to the history (RFC 2866: the response means the
// record is stored). At start the open bindings of the history are restored
// into the data plane, so a restart does not forget who holds what.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "binding.h"
#include "binding_history.h"
#include "policy.h"
#include "radius_accounting.h"

namespace sekisho {

class gateway;

class subscriber_identity {
public:
    using log_fn = std::function<void(const std::string&)>;
    // Opens the history and the RADIUS listener the policy names (either may
    // be absent). Throws std::runtime_error / policy_error with the reason.
    subscriber_identity(gateway& gw, const identity_config& config, log_fn log);
    ~subscriber_identity();

    // From the control loop: handles waiting RADIUS datagrams, and purges the
    // history once an hour.
    void poll();

    const radius::listener_counters* radius_counters() const;
    uint64_t bindings_restored() const { return restored_; }
    uint64_t apply_errors() const { return apply_errors_; }
    binding_history* history() { return history_.get(); }

private:
    bool apply(const binding_update& u);
    bool commit();
    void bind_all(const std::vector<ip_prefix>& addresses, const std::string& account);
    void unbind_all(const std::vector<ip_prefix>& addresses, const std::string& account);

    gateway& gw_;
    identity_config config_;
    log_fn log_;
    std::unique_ptr<binding_history> history_;
    std::unique_ptr<radius::accounting_listener> listener_;
    std::vector<binding_update> batch_;
    uint64_t restored_ = 0, apply_errors_ = 0;
    std::chrono::steady_clock::time_point next_purge_;
};

}  // namespace sekisho
