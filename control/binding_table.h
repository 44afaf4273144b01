// A data plane's subscriber binding table (address or prefix -> account) as
// the control plane writes it: the control API binds and unbinds one prefix
// at a time; subscriber identity (RADIUS, the binding history) applies an
// update whole or not at all, recording what it changed in an undo log.
//
// An IPv4 prefix, or an IPv6 prefix shorter than the policy's
// ipv6_prefix_length, stands for one table entry per /32 or per subscriber
// prefix, at most 2^max_binding_host_bits of them (policy.h).
//
// The DPDK data plane implements it (dpdk_data_plane.h); a data plane
// without bindings (the XDP program) has none: data_plane::writable_bindings()
// returns nullptr. Control thread only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "dataplane/limits/subscriber_table.h"

namespace sekisho {

struct ip_prefix;

class binding_table {
public:
    // The entries bind() and unbind() overwrote or removed, in order, so
    // that undo_bindings() can put them back.
    struct undo_log {
        struct entry {
            subscriber_key key;
            uint32_t account_id;   // before the change; 0: the key was unbound
        };
        std::vector<entry> entries;
    };

    // Throws the std::runtime_error bind() would throw for the width of
    // `prefix` ("... is too wide to bind"), changing nothing: lets a caller
    // refuse a whole update before any of it is applied.
    virtual void check_bindable(const ip_prefix& prefix) const = 0;

    // Binds every entry of `prefix` to `account`, registering the account.
    // Returns the number of entries written; throws std::runtime_error if
    // the prefix is too wide, the account registry or the table is full
    // (the entries written before stay: use the undo-logged form to take
    // them back).
    virtual uint32_t bind(const ip_prefix& prefix, const std::string& account) = 0;
    // Unbinds every entry of `prefix`, whatever account holds it. Returns
    // the number of entries it covers.
    virtual uint32_t unbind(const ip_prefix& prefix) = 0;

    // As bind() above, recording each entry's previous value in `undo` (also
    // when it throws midway: undo_bindings() then takes back what was done).
    virtual uint32_t bind(const ip_prefix& prefix, const std::string& account, undo_log& undo) = 0;
    // Unbinds only the entries of `prefix` still bound to `account` (a later
    // session, the API or a static binding may hold others), recording them.
    // Returns how many it removed.
    virtual uint32_t unbind(const ip_prefix& prefix, const std::string& account, undo_log& undo) = 0;
    // The accounts that hold entries of `prefix` now, each once, in no
    // particular order (what binding it would overwrite). Throws like
    // check_bindable() for a prefix too wide.
    virtual std::vector<uint32_t> holders(const ip_prefix& prefix) const = 0;

    // Restores the logged entries, newest first, and empties `undo`. Returns
    // how many could not be restored (the table full), which the caller
    // reports; never throws.
    virtual size_t undo_bindings(undo_log& undo) noexcept = 0;

protected:
    ~binding_table() = default;   // not owned through this interface
};

}  // namespace sekisho
