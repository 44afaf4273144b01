// Fuzz target: the operator's YAML policy (control/policy/policy.cpp, with its content
// rules, control/policy/content_rules_yaml.cpp) and the RADIUS clients file
// (control/identity/radius_accounting.cpp), from text as `sekishod --check-policy`,
// SIGHUP and POST /v1/policy read it.
//
// Errors are the expected outcome for most inputs; what must not happen is a
// crash, UB, a leak, or any other exception than policy_error (the API would
// answer 500 instead of 422 with file:line errors). Every error names the file
// and a line; an accepted policy has only well-formed prefixes.
#include <string>

#include "fuzz_target.h"
#include "control/policy/policy.h"
#include "control/identity/radius_accounting.h"

using namespace sekisho;

namespace {

void check_errors(const policy_error& e, const std::string& name) {
    fuzz_check(!e.errors().empty());
    for (const std::string& m : e.errors()) {
        fuzz_check(m.compare(0, name.size() + 1, name + ":") == 0);
        const size_t colon = m.find(':', name.size() + 1);
        fuzz_check(colon != std::string::npos && colon > name.size() + 1);   // a line number
        for (size_t i = name.size() + 1; i < colon; ++i) fuzz_check(m[i] >= '0' && m[i] <= '9');
    }
}

void check_prefix(const ip_prefix& p) {
    fuzz_check(p.family == 4 || p.family == 6);
    fuzz_check(p.length <= (p.family == 4 ? 32 : 128));
}

}  // namespace

SEKISHO_FUZZ_TARGET(policy)(const uint8_t* data, size_t size) {
    if (size > 64 * 1024) return 0;
    const std::string text(reinterpret_cast<const char*>(data), size);

    const std::string name = "fuzz.yaml";
    try {
        const policy p = load_policy_text(text, name);
        for (const auto* list : {&p.dynamic_ranges, &p.static_ranges, &p.relays})
            for (const ip_prefix& r : *list) check_prefix(r);
        for (const auto& b : p.bindings) check_prefix(b.prefix);
        fuzz_check(p.ipv6_prefix_length <= 128);
        for (const auto& l : p.limits) fuzz_check(!l.name.empty());
    } catch (const policy_error& e) {
        check_errors(e, name);
    }

    const std::string clients = "clients.yaml";
    try {
        const radius::client_table t = radius::load_clients_text(text, clients);
        (void)t.size();
    } catch (const policy_error& e) {
        check_errors(e, clients);
    }
    return 0;
}
