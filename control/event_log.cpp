#include "event_log.h"

#include <arpa/inet.h>

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "account_registry.h"
#include "compiled_policy.h"
#include "policy.h"
#include "op25b_classifier.h"

namespace sekisho {

namespace {
std::string address(uint8_t version, const uint8_t* bytes) {
    char buf[INET6_ADDRSTRLEN] = {};
    inet_ntop(version == 4 ? AF_INET : AF_INET6, bytes, buf, sizeof buf);
    return buf;
}
}  // namespace

std::string event_to_json(const event_record& e, const event_names& names) {
    const bool v4 = e.ip_version == 4;
    if (e.type == event_type::account_suspended) {
        const std::string* account = names.accounts ? names.accounts->name_of(e.account) : nullptr;
        return nlohmann::json{{"time_ns", e.time_ns},
                              {"type", "account_suspended"},
                              {"action", "reset"},
                              {"subscriber", address(v4 ? 4 : 6, e.src)},
                              {"server", address(v4 ? 4 : 6, e.dst)},
                              {"subscriber_port", e.src_port},
                              {"server_port", e.dst_port},
                              {"account", account ? nlohmann::json(*account) : nlohmann::json(e.account)},
                              {"generation", e.generation},
                              {"worker", e.worker}}
            .dump();
    }
    if (e.type == event_type::limit_exceeded) {
        const limit_rule* rule = names.pol && e.reason < names.pol->limits.size() ? &names.pol->limits[e.reason] : nullptr;
        const std::string* account = names.accounts ? names.accounts->name_of(e.account) : nullptr;
        nlohmann::json j = {
            {"time_ns", e.time_ns},
            {"type", "limit_exceeded"},
            {"limit", rule ? nlohmann::json(rule->name) : nlohmann::json(e.reason)},
            {"action", to_string(static_cast<limit_action>(e.action))},
            {"subscriber", address(v4 ? 4 : 6, e.src)},
            {"server", address(v4 ? 4 : 6, e.dst)},
            {"subscriber_port", e.src_port},
            {"server_port", e.dst_port},
            {"account", account ? nlohmann::json(*account) : nlohmann::json(nullptr)},
            {"count", e.count},
            {"generation", e.generation},
            {"worker", e.worker},
        };
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

event_log::event_log(const std::string& path) {
    if (path == "-") {
        out_ = stdout;
        owned_ = false;
        return;
    }
    out_ = std::fopen(path.c_str(), "a");
    if (out_ == nullptr) throw std::runtime_error("cannot open event log " + path + ": " + std::strerror(errno));
    owned_ = true;
}

event_log::~event_log() {
    if (owned_) std::fclose(out_);
    else std::fflush(out_);
}

size_t event_log::drain(const std::vector<event_ring*>& rings, const event_names& names) {
    event_record batch[64];
    size_t total = 0;
    for (event_ring* ring : rings) {
        unsigned n;
        while ((n = ring->pop(batch, 64)) > 0) {
            for (unsigned i = 0; i < n; ++i) {
                const std::string line = event_to_json(batch[i], names) + "\n";
                if (std::fwrite(line.data(), 1, line.size(), out_) == line.size())
                    ++written_;
                else
                    ++write_errors_;
            }
            total += n;
        }
    }
    if (total && std::fflush(out_) != 0) ++write_errors_;
    return total;
}

}  // namespace sekisho
