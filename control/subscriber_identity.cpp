#include "subscriber_identity.h"

#include <stdexcept>

#include "gateway.h"

namespace sekisho {

namespace {
// "127.0.0.1:1813", "[2001:db8::1]:1813", "::1" is not accepted without brackets.
radius::listener_config parse_listen(const std::string& text) {
    radius::listener_config c;
    const size_t colon = text.rfind(':');
    if (colon == std::string::npos || colon + 1 == text.size())
        throw std::runtime_error("radius.listen: '" + text + "' is not ADDRESS:PORT");
    std::string host = text.substr(0, colon);
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    c.address = host;
    try {
        const unsigned long port = std::stoul(text.substr(colon + 1));
        if (port > 65535) throw std::out_of_range("port");
        c.port = static_cast<uint16_t>(port);
    } catch (const std::exception&) {
        throw std::runtime_error("radius.listen: '" + text + "' has no valid port");
    }
    return c;
}
}  // namespace

subscriber_identity::subscriber_identity(gateway& gw, const identity_config& config, log_fn log)
    : gw_(gw), config_(config), log_(std::move(log)), next_purge_(std::chrono::steady_clock::now()) {
    if (!config.history_database.empty()) {
        history_ = std::make_unique<binding_history>(config.history_database);
        for (const binding_record& r : history_->open_bindings()) {
            try {
                gw_.bind(r.address, r.account);
                ++restored_;
            } catch (const std::exception& e) {
                ++apply_errors_;
                if (log_) log_("history: cannot restore " + r.address.to_string() + ": " + e.what());
            }
        }
    }
    if (!config.radius_listen.empty()) {
        listener_ = std::make_unique<radius::accounting_listener>(
            parse_listen(config.radius_listen), radius::load_clients_file(config.radius_clients_file),
            [this](const binding_update& u) { return apply(u); }, [this](const std::string& line) {
                if (log_) log_("radius: " + line);
            });
        listener_->set_commit([this] { return commit(); });
    }
}

subscriber_identity::~subscriber_identity() = default;

void subscriber_identity::bind_all(const std::vector<ip_prefix>& addresses, const std::string& account) {
    for (const ip_prefix& p : addresses) gw_.bind(p, account);
}

void subscriber_identity::unbind_all(const std::vector<ip_prefix>& addresses, const std::string& account) {
    // Only what this account still holds: a later session may own it already.
    for (const ip_prefix& p : addresses) gw_.unbind(p, account);
}

bool subscriber_identity::apply(const binding_update& u) {
    try {
        switch (u.kind) {
        case binding_kind::start:
        case binding_kind::interim:
            if (!u.account.empty()) bind_all(u.addresses(), u.account);
            break;
        case binding_kind::stop:
            unbind_all(u.addresses(), u.account);
            break;
        case binding_kind::accounting_on:
        case binding_kind::accounting_off:
            // The NAS restarted: every session it had is gone.
            if (history_)
                for (const binding_record& r : history_->open_bindings())
                    if (r.nas == u.nas()) gw_.unbind(r.address, r.account);
            break;
        }
        batch_.push_back(u);
        return true;
    } catch (const std::exception& e) {
        ++apply_errors_;
        if (log_) log_(std::string("binding not applied: ") + e.what());
        return false;
    }
}

bool subscriber_identity::commit() {
    std::vector<binding_update> batch;
    batch.swap(batch_);
    if (!history_ || batch.empty()) return true;
    try {
        history_->apply(batch);
        return true;
    } catch (const std::exception& e) {
        ++apply_errors_;
        if (log_) log_(std::string("history: ") + e.what());
        return false;
    }
}

void subscriber_identity::poll() {
    if (listener_) listener_->poll_once();
    if (history_ && std::chrono::steady_clock::now() >= next_purge_) {
        next_purge_ = std::chrono::steady_clock::now() + std::chrono::hours(1);
        try {
            history_->purge_older_than(std::chrono::seconds(config_.history_retention_ns / 1'000'000'000ull));
        } catch (const std::exception& e) {
            if (log_) log_(std::string("history purge: ") + e.what());
        }
    }
}

const radius::listener_counters* subscriber_identity::radius_counters() const {
    return listener_ ? &listener_->counters() : nullptr;
}

}  // namespace sekisho
