// A change of "who holds which address", as the control plane hands it on:
// from RADIUS accounting (radius_accounting.h) to the binding history
// (binding_history.h), which decides what it means for each address
// (binding_change) and so what the data plane's subscriber table does.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "control/policy/policy.h"

namespace sekisho {

enum class binding_kind : uint8_t {
    start,            // Acct-Status-Type Start (1): the session holds its addresses from now
    interim,          // Interim-Update (3): still holds them (opens the binding if the Start was lost)
    stop,             // Stop (2): released
    accounting_on,    // Accounting-On (7): the NAS (re)started; every session it had is gone
    accounting_off,   // Accounting-Off (8): the NAS is going down; likewise
};

inline const char* to_string(binding_kind k) {
    switch (k) {
        case binding_kind::start: return "start";
        case binding_kind::interim: return "interim";
        case binding_kind::stop: return "stop";
        case binding_kind::accounting_on: return "accounting-on";
        case binding_kind::accounting_off: return "accounting-off";
    }
    return "?";
}

struct binding_update {
    binding_kind kind = binding_kind::start;
    // User-Name (1). Text attributes are untrusted bytes: invalid UTF-8 and
    // control characters arrive here escaped as "\xNN" (so the string is
    // always valid UTF-8, safe for logs and JSON). Empty when absent.
    std::string account;
    // Acct-Session-Id (44), escaped likewise. Unique per NAS; empty only for
    // Accounting-On/Off.
    std::string session_id;
    // Framed-IP-Address (8) as a /32. Absent when the packet has none or
    // carries 0.0.0.0, 255.255.255.254 or 255.255.255.255 (RFC 2865:
    // "NAS selects" / "user selects", not an address).
    std::optional<ip_prefix> ipv4;
    // Delegated-IPv6-Prefix (123, RFC 4818) values first, then
    // Framed-IPv6-Prefix (97, RFC 3162) values, in packet order, duplicates
    // removed. The subscriber's LAN is the delegated prefix (e.g. a /56); the
    // framed one is the CPE's WAN link (e.g. a /64). Bind both.
    std::vector<ip_prefix> ipv6_prefixes;
    // NAS-IP-Address (4), else NAS-IPv6-Address (95), as text ("192.0.2.1",
    // "2001:db8::1"); empty when the packet has neither.
    std::string nas_address;
    std::string nas_identifier;   // NAS-Identifier (32), escaped; empty when absent
    // Unix seconds: Event-Timestamp (55) if present, else the receive time
    // minus Acct-Delay-Time (41) (RFC 2866 5.2).
    int64_t event_time = 0;
    bool event_time_from_packet = false;
    std::optional<uint32_t> session_time;   // Acct-Session-Time (46), seconds

    // The NAS as the history keys it: nas_address, or nas_identifier when
    // the NAS sends no address. Acct-Session-Id is unique per NAS.
    const std::string& nas() const { return nas_address.empty() ? nas_identifier : nas_address; }
    // ipv4 (if any), then ipv6_prefixes.
    std::vector<ip_prefix> addresses() const {
        std::vector<ip_prefix> out;
        if (ipv4) out.push_back(*ipv4);
        out.insert(out.end(), ipv6_prefixes.begin(), ipv6_prefixes.end());
        return out;
    }
};

// What the data plane does for one address after the history decided an
// update (binding_history::apply): the data plane follows the history, never
// the packet, so the two cannot disagree.
struct binding_change {
    enum class action : uint8_t {
        bind,     // `address` is now held by `account` (whatever the table held before)
        unbind,   // `address` is no longer held by `account`: remove the entries still
                  // bound to it (a later session, the API or a static binding may hold
                  // some already; those stay)
    };
    action what = action::bind;
    ip_prefix address;
    std::string account;   // never empty: a row without an account changes nothing here

    bool operator==(const binding_change&) const = default;
};

inline const char* to_string(binding_change::action a) { return a == binding_change::action::bind ? "bind" : "unbind"; }

}  // namespace sekisho
