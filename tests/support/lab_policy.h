// The addresses and policy every test of the OP25B path shares: the same lab
// as tests/e2e/netlab.sh and configs/op25b-enforce.yaml (documentation
// addresses only).
#pragma once

#include <cstdint>
#include <string>

namespace sekisho::test {

constexpr const char* dyn4 = "198.51.100.7";       // dynamic subscriber
constexpr const char* static4 = "198.51.100.130";  // static customer inside the dynamic /24
constexpr const char* other4 = "192.0.2.7";        // not a subscriber
constexpr const char* mx4 = "203.0.113.25";        // a foreign MX
constexpr const char* relay4 = "203.0.113.10";     // the ISP's relay
constexpr const char* dyn6 = "2001:db8:100::7";
constexpr const char* static6 = "2001:db8:1ff::7";
constexpr const char* other6 = "2001:db8:ffff::7";
constexpr const char* mx6 = "2001:db8:25::25";
constexpr const char* relay6 = "2001:db8:25::10";

// The lab policy without its op25b section (defaults: enforce, reset).
constexpr const char* lab_policy_text = R"(version: 1
ports:
  smtp: [25]
  submission: [587, 465]
subscribers:
  dynamic: [198.51.100.0/24, "2001:db8:100::/40"]
  static: [198.51.100.128/28, "2001:db8:1ff::/48"]
relays: [203.0.113.10/32, "2001:db8:25::10/128"]
)";

inline std::string lab_policy(const std::string& mode, const std::string& action) {
    return std::string(lab_policy_text) + "op25b:\n  mode: " + mode + "\n  action: " + action + "\n";
}

// Lookup-table names derive from the generation: unique within one binary.
inline uint64_t next_generation() {
    static uint64_t g = 1000;
    return ++g;
}

}  // namespace sekisho::test
