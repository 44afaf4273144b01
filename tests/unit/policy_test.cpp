// The operator's policy: parsing, defaults, and every error with its line.
#include "control/policy/policy.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

namespace sekisho {
namespace {

using strings = std::vector<std::string>;

// The errors load_policy_text reports for `text` (fails if it accepts it).
strings errors_of(const std::string& text) {
    try {
        load_policy_text(text, "p.yaml");
    } catch (const policy_error& e) {
        EXPECT_FALSE(e.errors().empty());
        std::string joined;
        for (const auto& s : e.errors()) joined += (joined.empty() ? "" : "\n") + s;
        EXPECT_EQ(joined, e.what()) << "what() lists every error";
        return e.errors();
    }
    ADD_FAILURE() << "policy accepted:\n" << text;
    return {};
}

std::string prefix_string(std::string_view text) {
    std::string err;
    auto p = parse_prefix(text, err);
    return p ? p->to_string() : "error: " + err;
}

TEST(policy, full_policy) {
    const policy p = load_policy_text(R"(# comment
version: 1
ports:
  smtp: [25, 2525]
  submission: [587]
subscribers:
  dynamic:
    - 198.51.100.0/24
    - "2001:db8:100::/40"
  static: [198.51.100.128/28, "2001:db8:1ff::/48"]
  ipv6_prefix_length: 48
relays: [203.0.113.10/32, "2001:db8:25::10/128", 192.0.2.0/24]
op25b:
  mode: monitor
  action: drop
)", "full.yaml");
    EXPECT_EQ(p.source, "full.yaml");
    EXPECT_EQ(p.version, 1);
    EXPECT_EQ(p.smtp_ports, (std::vector<uint16_t>{25, 2525}));
    EXPECT_EQ(p.submission_ports, (std::vector<uint16_t>{587}));
    ASSERT_EQ(p.dynamic_ranges.size(), 2u);
    EXPECT_EQ(p.dynamic_ranges[0].to_string(), "198.51.100.0/24");
    EXPECT_EQ(p.dynamic_ranges[0].family, 4);
    EXPECT_EQ(p.dynamic_ranges[0].v4(), 0xc6336400u);
    EXPECT_EQ(p.dynamic_ranges[0].line, 8);
    EXPECT_EQ(p.dynamic_ranges[1].to_string(), "2001:db8:100::/40");
    EXPECT_EQ(p.dynamic_ranges[1].family, 6);
    EXPECT_EQ(p.dynamic_ranges[1].line, 9);
    ASSERT_EQ(p.static_ranges.size(), 2u);
    EXPECT_EQ(p.static_ranges[0].to_string(), "198.51.100.128/28");
    EXPECT_EQ(p.static_ranges[1].to_string(), "2001:db8:1ff::/48");
    EXPECT_EQ(p.static_ranges[1].line, 10);
    EXPECT_EQ(p.ipv6_prefix_length, 48);
    ASSERT_EQ(p.relays.size(), 3u);
    EXPECT_EQ(p.relays[0].to_string(), "203.0.113.10/32");
    EXPECT_EQ(p.relays[1].to_string(), "2001:db8:25::10/128");
    EXPECT_EQ(p.relays[2].to_string(), "192.0.2.0/24");
    EXPECT_EQ(p.mode, op25b_mode::monitor);
    EXPECT_EQ(p.action, op25b_action::drop);
}

TEST(policy, defaults) {
    const policy p = load_policy_text("version: 1\n", "min.yaml");
    EXPECT_EQ(p.smtp_ports, (std::vector<uint16_t>{25}));
    EXPECT_EQ(p.submission_ports, (std::vector<uint16_t>{587, 465}));
    EXPECT_TRUE(p.dynamic_ranges.empty());
    EXPECT_TRUE(p.static_ranges.empty());
    EXPECT_TRUE(p.relays.empty());
    EXPECT_EQ(p.ipv6_prefix_length, 56);
    EXPECT_EQ(p.mode, op25b_mode::enforce);
    EXPECT_EQ(p.action, op25b_action::reset);

    // Sections present with some keys absent keep the other defaults.
    const policy q = load_policy_text("version: 1\nports:\n  smtp: [2525]\nop25b:\n  action: drop\n", "q.yaml");
    EXPECT_EQ(q.smtp_ports, (std::vector<uint16_t>{2525}));
    EXPECT_EQ(q.submission_ports, (std::vector<uint16_t>{587, 465}));
    EXPECT_EQ(q.mode, op25b_mode::enforce);
    EXPECT_EQ(q.action, op25b_action::drop);
}

TEST(policy, shipped_example_configs_load) {
    // __FILE__ is relative to the build directory, where meson test runs.
    const auto configs = std::filesystem::path(__FILE__).parent_path() / ".." / ".." / "configs";
    if (!std::filesystem::exists(configs / "op25b-enforce.yaml"))
        GTEST_SKIP() << "configs/ not found from " << std::filesystem::current_path();
    for (const char* name : {"op25b-enforce.yaml", "op25b-monitor.yaml", "op25b-drop.yaml"}) {
        SCOPED_TRACE(name);
        const policy p = load_policy_file((configs / name).string());
        EXPECT_EQ(p.dynamic_ranges.size(), 2u);
        EXPECT_EQ(p.static_ranges.size(), 2u);
        EXPECT_EQ(p.relays.size(), 2u);
    }
}

TEST(policy, missing_file) {
    try {
        load_policy_file("/nonexistent/policy.yaml");
        FAIL() << "accepted a missing file";
    } catch (const policy_error& e) {
        EXPECT_EQ(e.errors(), strings{"/nonexistent/policy.yaml:0: cannot open the policy file"});
    }
}

TEST(policy, unknown_top_level_key) {
    EXPECT_EQ(errors_of("version: 1\n\ncolour: blue\n"),
              strings{"p.yaml:3: colour: unknown key (expected one of: version, ports, subscribers, relays, op25b, account_groups, limits, tracking, radius, history, inspection, events)"});
}

TEST(policy, unknown_nested_keys) {
    EXPECT_EQ(errors_of("version: 1\nports:\n  smtp: [25]\n  smpt: [25]\n"),
              strings{"p.yaml:4: ports.smpt: unknown key (expected one of: smtp, submission, implicit_tls)"});
    EXPECT_EQ(errors_of("version: 1\nsubscribers:\n  dynamics: []\n"),
              strings{"p.yaml:3: subscribers.dynamics: unknown key (expected one of: dynamic, static, ipv6_prefix_length, bindings)"});
    EXPECT_EQ(errors_of("version: 1\nop25b:\n  mode: enforce\n  actoin: drop\n"),
              strings{"p.yaml:4: op25b.actoin: unknown key (expected one of: mode, action)"});
}

TEST(policy, bad_prefix) {
    EXPECT_EQ(errors_of("version: 1\nsubscribers:\n  dynamic:\n    - 198.51.100.0/24\n    - 198.51.300.0/24\n"),
              strings{"p.yaml:5: subscribers.dynamic[1]: '198.51.300.0/24' is not an IPv4 or IPv6 address or prefix"});
    EXPECT_EQ(errors_of("version: 1\nrelays: [mx.example.net]\n"),
              strings{"p.yaml:2: relays[0]: 'mx.example.net' is not an IPv4 or IPv6 address or prefix"});
}

TEST(policy, host_bits_set_suggests_the_network) {
    EXPECT_EQ(errors_of("version: 1\nsubscribers:\n  dynamic:\n    - 198.51.100.1/24\n"),
              strings{"p.yaml:4: subscribers.dynamic[0]: '198.51.100.1/24' has host bits set "
                      "(did you mean 198.51.100.0/24?)"});
    EXPECT_EQ(errors_of("version: 1\nsubscribers:\n  static: [\"2001:db8:1ff::1/48\"]\n"),
              strings{"p.yaml:3: subscribers.static[0]: '2001:db8:1ff::1/48' has host bits set "
                      "(did you mean 2001:db8:1ff::/48?)"});
}

TEST(policy, prefix_length_too_long) {
    EXPECT_EQ(errors_of("version: 1\nrelays:\n  - 203.0.113.10/33\n"),
              strings{"p.yaml:3: relays[0]: '203.0.113.10/33' has an invalid prefix length (0 to 32)"});
    EXPECT_EQ(errors_of("version: 1\nrelays:\n  - \"2001:db8::/129\"\n"),
              strings{"p.yaml:3: relays[0]: '2001:db8::/129' has an invalid prefix length (0 to 128)"});
}

TEST(policy, duplicate_prefix) {
    EXPECT_EQ(errors_of("version: 1\nrelays:\n  - 203.0.113.10/32\n  - 203.0.113.10\n"),
              strings{"p.yaml:4: relays[1]: 203.0.113.10/32 is listed twice (first at line 3)"});
}

TEST(policy, port_out_of_range) {
    EXPECT_EQ(errors_of("version: 1\nports:\n  smtp: [25, 65536]\n"),
              strings{"p.yaml:3: ports.smtp[1]: 65536 is out of range (1 to 65535)"});
    EXPECT_EQ(errors_of("version: 1\nports:\n  submission:\n    - 0\n"),
              strings{"p.yaml:4: ports.submission[0]: 0 is out of range (1 to 65535)"});
    EXPECT_EQ(errors_of("version: 1\nports:\n  smtp: [-25]\n"),
              strings{"p.yaml:3: ports.smtp[0]: -25 is out of range (1 to 65535)"});
}

TEST(policy, port_not_a_number) {
    EXPECT_EQ(errors_of("version: 1\nports:\n  smtp: [smtp]\n"),
              strings{"p.yaml:3: ports.smtp[0]: 'smtp' is not an integer"});
    EXPECT_EQ(errors_of("version: 1\nports:\n  smtp: [25.0]\n"),
              strings{"p.yaml:3: ports.smtp[0]: '25.0' is not an integer"});
    EXPECT_EQ(errors_of("version: 1\nports:\n  smtp: 25\n"),
              strings{"p.yaml:3: ports.smtp: expected a list of TCP ports, e.g. [25]"});
}

TEST(policy, duplicate_port) {
    EXPECT_EQ(errors_of("version: 1\nports:\n  smtp:\n    - 25\n    - 2525\n    - 25\n"),
              strings{"p.yaml:6: ports.smtp[2]: port 25 is listed twice"});
}

TEST(policy, port_in_smtp_and_submission) {
    EXPECT_EQ(errors_of("version: 1\nports:\n  smtp: [25, 587]\n  submission: [587, 465]\n"),
              strings{"p.yaml:4: ports.submission: port 587 is in both ports.smtp and ports.submission; a port is blocked or it is not"});
}

// When `ports.submission` is absent the default [587, 465] applies; an smtp
// port among them is reported at the smtp list the operator wrote, not at the
// missing submission node.
TEST(policy, smtp_port_in_default_submission_ports) {
    const std::string text = "version: 1\nports:\n  smtp: [25, 465]\n";
    try {
        load_policy_text(text, "p.yaml");
        FAIL() << "accepted smtp port 465, which is also a default submission port";
    } catch (const policy_error& e) {
        ASSERT_EQ(e.errors().size(), 1u);
        EXPECT_NE(e.errors()[0].find("port 465 is in both ports.smtp and ports.submission (default [587, 465])"),
                  std::string::npos) << e.errors()[0];
        EXPECT_EQ(e.errors()[0].rfind("p.yaml:3: ports.smtp:", 0), 0u) << e.errors()[0];
        EXPECT_EQ(e.errors()[0].rfind("p.yaml:", 0), 0u) << e.errors()[0];
    } catch (const std::exception& e) {
        FAIL() << "threw a non-policy_error: " << e.what();
    }
}

TEST(policy, bad_mode_and_action) {
    EXPECT_EQ(errors_of("version: 1\nop25b:\n  mode: block\n"),
              strings{"p.yaml:3: op25b.mode: 'block' is not one of: enforce, monitor"});
    EXPECT_EQ(errors_of("version: 1\nop25b:\n  mode: enforce\n  action: reject\n"),
              strings{"p.yaml:4: op25b.action: 'reject' is not one of: reset, drop"});
    EXPECT_EQ(errors_of("version: 1\nop25b:\n  mode: [enforce]\n"),
              strings{"p.yaml:3: op25b.mode: value is not one of: enforce, monitor"});
}

TEST(policy, version) {
    EXPECT_EQ(errors_of("ports:\n  smtp: [25]\n"), strings{"p.yaml:1: version: missing (this release reads version: 1)"});
    EXPECT_EQ(errors_of("# header\n\nports:\n  smtp: [25]\n"),
              strings{"p.yaml:3: version: missing (this release reads version: 1)"});
    EXPECT_EQ(errors_of("version: 2\n"), strings{"p.yaml:1: version: 2 is out of range (1 to 1)"});
    EXPECT_EQ(errors_of("version: one\n"), strings{"p.yaml:1: version: 'one' is not an integer"});
}

TEST(policy, yaml_syntax_error_has_a_line) {
    const strings e = errors_of("version: 1\nports:\n  smtp: [25\n  submission: [587]\nop25b: {mode: enforce\n");
    ASSERT_EQ(e.size(), 1u);
    EXPECT_EQ(e[0].rfind("p.yaml:", 0), 0u);
    // libyaml marks where it notices the missing ']': the next line.
    EXPECT_EQ(e[0], "p.yaml:4: YAML syntax error: did not find expected ',' or ']' (while parsing a flow sequence)");
    const strings tab = errors_of("version: 1\nports:\n\tsmtp: [25]\n");
    ASSERT_EQ(tab.size(), 1u);
    EXPECT_EQ(tab[0].rfind("p.yaml:3: YAML syntax error", 0), 0u) << tab[0];
    const strings e2 = errors_of("version: 1\nops: x\n op25b: y\n");
    ASSERT_EQ(e2.size(), 1u);
    EXPECT_EQ(e2[0], "p.yaml:3: YAML syntax error: mapping values are not allowed in this context");
    // A second document would be read by nobody: refused.
    EXPECT_EQ(errors_of("version: 1\n---\nversion: 1\n"),
              strings{"p.yaml:2: YAML syntax error: a second YAML document; a file holds one"});
}

TEST(policy, duplicate_keys_anywhere_are_refused_with_both_lines) {
    EXPECT_EQ(errors_of("version: 1\nop25b:\n  mode: enforce\nop25b:\n  mode: monitor\n"),
              strings{"p.yaml:4: op25b: duplicate key (first at line 2)"});
    EXPECT_EQ(errors_of("version: 1\nop25b:\n  mode: enforce\n  mode: monitor\n"),
              strings{"p.yaml:4: op25b.mode: duplicate key (first at line 3)"});
    EXPECT_EQ(errors_of("version: 1\naccount_groups:\n  vip: [a]\n  vip: [b]\n"),
              strings{"p.yaml:4: account_groups.vip: duplicate key (first at line 3)"});
}

TEST(policy, bindings_too_wide_or_beyond_the_table_are_refused_at_check_time) {
    EXPECT_EQ(errors_of("version: 1\nsubscribers:\n  bindings:\n    - {prefix: 198.50.0.0/15, account: a}\n"),
              strings{"p.yaml:4: subscribers.bindings[0].prefix: 198.50.0.0/15 is too wide to bind (131072 "
                      "addresses; at most 65536 per binding)"});
    EXPECT_EQ(errors_of("version: 1\nsubscribers:\n  bindings:\n    - {prefix: \"::/0\", account: a}\n"),
              strings{"p.yaml:4: subscribers.bindings[0].prefix: ::/0 is too wide to bind (2^56 subscriber "
                      "prefixes; at most 65536 per binding)"});
    EXPECT_EQ(errors_of("version: 1\nsubscribers:\n  bindings:\n    - {prefix: 198.51.100.0/24, account: a}\n"
                        "tracking:\n  max_bindings: 128\n"),
              strings{"p.yaml:3: subscribers.bindings: 256 table entries, more than tracking.max_bindings (128)"});
}

TEST(policy, account_names_with_control_characters_are_refused) {
    EXPECT_EQ(errors_of("version: 1\nsubscribers:\n  bindings:\n    - {prefix: 198.51.100.7, account: \"a\\e[31m\"}\n"),
              strings{"p.yaml:4: subscribers.bindings[0].account: the account name has a control character 0x1b at "
                      "byte 1"});
    EXPECT_EQ(errors_of("version: 1\naccount_groups:\n  vip: [\"b\\a\"]\n"),
              strings{"p.yaml:3: account_groups.vip[0]: the account name has a control character 0x07 at byte 1"});
}

TEST(policy, keys_read_at_start_are_named_with_their_values_and_line) {
    const policy a = load_policy_text("version: 1\n", "a.yaml");
    const policy b = load_policy_text(
        "version: 1\nop25b:\n  mode: monitor\ntracking:\n  max_bindings: 2048\nevents:\n  aggregate_window: 0s\n",
        "b.yaml");
    const auto changes = start_only_changes(a, b);
    ASSERT_EQ(changes.size(), 2u);
    EXPECT_EQ(describe(changes[0], b.source),
              "b.yaml:5: tracking.max_bindings: read at start only; running 1048576, this policy 2048 (restart "
              "sekishod to change it)");
    EXPECT_EQ(describe(changes[1], b.source),
              "b.yaml:7: events.aggregate_window: read at start only; running 10s, this policy 0 (restart sekishod "
              "to change it)");
    EXPECT_TRUE(start_only_changes(b, b).empty());
    // op25b.mode is not among them: it applies.
    for (const auto& c : changes) EXPECT_NE(c.key, "op25b.mode");
}

TEST(policy, keys_read_at_start_come_in_the_order_the_policy_writes_them) {
    const policy a = load_policy_text("version: 1\n", "a.yaml");
    // radius.listen (line 3) is checked after tracking.max_bindings (line 6): listed by line.
    const policy b = load_policy_text("version: 1\nradius:\n  listen: 127.0.0.1:1814\n  clients_file: /c.yaml\n"
                                      "tracking:\n  max_bindings: 2048\n",
                                      "b.yaml");
    std::vector<int> lines;
    for (const auto& c : start_only_changes(a, b)) lines.push_back(c.line);
    EXPECT_EQ(lines, (std::vector<int>{3, 4, 6}));
}

TEST(policy, policy_errors_keep_line_order_whoever_found_them) {
    // A name with colons and digits of its own ("a:1:b.yaml") does not fool the order.
    const policy_error e({"/tmp/x:1:b.yaml:9: nine", "/tmp/x:1:b.yaml:2: two", "/tmp/x:1:b.yaml:10: ten",
                          "/tmp/x:1:b.yaml:2: two again"});
    EXPECT_EQ(e.errors(), (strings{"/tmp/x:1:b.yaml:2: two", "/tmp/x:1:b.yaml:2: two again", "/tmp/x:1:b.yaml:9: nine",
                                   "/tmp/x:1:b.yaml:10: ten"}));
    EXPECT_EQ(std::string(e.what()).substr(0, 22), "/tmp/x:1:b.yaml:2: two");
}

TEST(policy, a_million_prefixes_read_in_linear_time) {
    std::string text = "version: 1\nsubscribers:\n  dynamic:\n";
    for (uint32_t i = 0; i < (1u << 20); ++i)
        text += "    - 100." + std::to_string(64 + (i >> 16)) + "." + std::to_string((i >> 8) & 255) + "." +
                std::to_string(i & 255) + "/32\n";
    text += "    - 100.64.0.7/32\n";   // one duplicate, at the end
    try {
        load_policy_text(text, "big.yaml");
        FAIL() << "the duplicate was not found";
    } catch (const policy_error& e) {
        EXPECT_EQ(e.errors(), strings{"big.yaml:1048580: subscribers.dynamic[1048576]: 100.64.0.7/32 is listed twice "
                                      "(first at line 11)"});
    }
}

TEST(policy, empty_file) {
    EXPECT_EQ(errors_of(""), strings{"p.yaml:1: the policy is empty"});
    EXPECT_EQ(errors_of("# only a comment\n\n"), strings{"p.yaml:1: the policy is empty"});
}

TEST(policy, not_a_mapping) {
    EXPECT_EQ(errors_of("- version: 1\n"), strings{"p.yaml:1: expected a mapping of keys to values"});
    EXPECT_EQ(errors_of("version: 1\nop25b: enforce\n"), strings{"p.yaml:2: op25b: expected a mapping of keys to values"});
}

TEST(policy, ipv6_prefix_length_range) {
    EXPECT_EQ(errors_of("version: 1\nsubscribers:\n  ipv6_prefix_length: 129\n"),
              strings{"p.yaml:3: subscribers.ipv6_prefix_length: 129 is out of range (32 to 128)"});
}

TEST(policy, range_in_dynamic_and_static) {
    EXPECT_EQ(errors_of("version: 1\nsubscribers:\n  dynamic:\n    - 192.0.2.0/24\n    - 198.51.100.0/24\n"
                        "  static:\n    - 198.51.100.0/24\n"),
              strings{"p.yaml:7: subscribers.static: 198.51.100.0/24 is also in subscribers.dynamic (line 5); "
                      "a range is dynamic or static"});
    // A static range inside a dynamic one is the normal case, not an error.
    EXPECT_NO_THROW(load_policy_text("version: 1\nsubscribers:\n  dynamic: [198.51.100.0/24]\n"
                                     "  static: [198.51.100.128/28]\n", "ok.yaml"));
}

TEST(policy, several_errors_reported_together) {
    const strings e = errors_of(R"(version: 1
ports:
  smtp: [25, 99999]
subscribers:
  dynamic: [198.51.100.1/24]
  colour: red
relays: [not-an-address]
op25b:
  mode: loud
  action: drop
)");
    EXPECT_EQ(e, (strings{
                     "p.yaml:3: ports.smtp[1]: 99999 is out of range (1 to 65535)",
                     "p.yaml:5: subscribers.dynamic[0]: '198.51.100.1/24' has host bits set (did you mean 198.51.100.0/24?)",
                     "p.yaml:6: subscribers.colour: unknown key (expected one of: dynamic, static, ipv6_prefix_length, bindings)",
                     "p.yaml:7: relays[0]: 'not-an-address' is not an IPv4 or IPv6 address or prefix",
                     "p.yaml:9: op25b.mode: 'loud' is not one of: enforce, monitor",
                 }));
}

TEST(parse_prefix, ipv4) {
    std::string err;
    const auto p = parse_prefix("198.51.100.0/24", err);
    ASSERT_TRUE(p);
    EXPECT_EQ(p->family, 4);
    EXPECT_EQ(p->length, 24);
    EXPECT_EQ(p->v4(), 0xc6336400u);
    EXPECT_EQ(prefix_string("192.0.2.128/25"), "192.0.2.128/25");
    EXPECT_EQ(prefix_string("0.0.0.0/0"), "0.0.0.0/0");
}

TEST(parse_prefix, ipv6) {
    std::string err;
    const auto p = parse_prefix("2001:db8::/32", err);
    ASSERT_TRUE(p);
    EXPECT_EQ(p->family, 6);
    EXPECT_EQ(p->length, 32);
    EXPECT_EQ(p->bytes[0], 0x20);
    EXPECT_EQ(p->bytes[3], 0xb8);
    EXPECT_EQ(prefix_string("2001:db8:100::/40"), "2001:db8:100::/40");
    EXPECT_EQ(prefix_string("::/0"), "::/0");
}

TEST(parse_prefix, bare_address_is_a_host_prefix) {
    EXPECT_EQ(prefix_string("203.0.113.10"), "203.0.113.10/32");
    EXPECT_EQ(prefix_string("2001:db8:25::10"), "2001:db8:25::10/128");
}

TEST(parse_prefix, garbage) {
    for (const char* bad : {"", "garbage", "198.51.100", "198.51.100.0/", "198.51.100.0/-1", "198.51.100.0/24x",
                            "198.51.100.0/33", "2001:db8::/129", "2001:db8::/ 32", "/24", "198.51.100.0/24/24",
                            "2001:db8:::/32", "198.51.100.1/24"}) {
        std::string err;
        EXPECT_FALSE(parse_prefix(bad, err)) << bad;
        EXPECT_NE(err.find(std::string("'") + bad + "'"), std::string::npos) << err;
    }
    std::string err;
    parse_prefix("198.51.100.77/28", err);
    EXPECT_EQ(err, "'198.51.100.77/28' has host bits set (did you mean 198.51.100.64/28?)");
}

}  // namespace
}  // namespace sekisho

// --- limits, bindings, account groups, tracking ---
namespace sekisho {
namespace {

constexpr const char* limits_policy = R"(version: 1
subscribers:
  dynamic: [198.51.100.0/24]
  bindings:
    - {prefix: 198.51.100.7, account: alice@example.jp}
    - {prefix: "2001:db8:100:100::/56", account: bob@example.jp}
account_groups:
  newsletters: [news@example.jp]
limits:
  - name: conn-rate
    applies_to: dynamic
    measure: connections
    max: 5
    window: 1s
    burst: 10
  - name: msgs
    scope: account
    measure: messages
    max: 100
    window: 1h
    cooldown: 10m
  - name: news-msgs
    applies_to: group:newsletters
    scope: account
    measure: messages
    max: 10000
    window: 1d
    action: monitor
  - name: rcpt-per-msg
    measure: recipients_per_message
    max: 50
    action: reset
tracking:
  flows_per_worker: 1024
  flow_idle_timeout: 2m
)";

TEST(policy_limits, parsed_with_defaults) {
    const policy p = load_policy_text(limits_policy, "p.yaml");
    ASSERT_EQ(p.limits.size(), 4u);
    const limit_rule& conn = p.limits[0];
    EXPECT_EQ(conn.name, "conn-rate");
    EXPECT_EQ(conn.applies_to, "dynamic");
    EXPECT_EQ(conn.scope, limit_scope::address);
    EXPECT_EQ(conn.measure, limit_measure::connections);
    EXPECT_EQ(conn.max, 5u);
    EXPECT_EQ(conn.window_ns, 1'000'000'000ull);
    EXPECT_EQ(conn.burst, 10u);
    EXPECT_EQ(conn.action, limit_action::drop_syn) << "connections default to drop-syn";
    EXPECT_EQ(conn.line, 10);
    const limit_rule& msgs = p.limits[1];
    EXPECT_EQ(msgs.scope, limit_scope::account);
    EXPECT_EQ(msgs.action, limit_action::tempfail) << "other measures default to tempfail";
    EXPECT_EQ(msgs.cooldown_ns, 600'000'000'000ull);
    EXPECT_EQ(p.limits[2].applies_to, "group:newsletters");
    EXPECT_EQ(p.limits[3].window_ns, 0u);
    ASSERT_EQ(p.bindings.size(), 2u);
    EXPECT_EQ(p.bindings[0].account, "alice@example.jp");
    EXPECT_EQ(p.bindings[1].prefix.to_string(), "2001:db8:100:100::/56");
    ASSERT_EQ(p.account_groups.size(), 1u);
    EXPECT_EQ(p.account_groups[0].second, strings{"news@example.jp"});
    EXPECT_EQ(p.tracking.flows_per_worker, 1024u);
    EXPECT_EQ(p.tracking.flow_idle_timeout_ns, 120'000'000'000ull);
}

TEST(policy_limits, errors_name_the_line) {
    EXPECT_EQ(errors_of("version: 1\nlimits:\n  - name: a\n    measure: mails\n    max: 1\n    window: 1h\n"),
              strings{"p.yaml:4: limits[0].measure: 'mails' is not one of: connections, messages, recipients, "
                      "recipients_per_message, rejected_recipients"});
    EXPECT_EQ(errors_of("version: 1\nlimits:\n  - name: a\n    measure: messages\n    max: 1\n"),
              strings{"p.yaml:3: limits[0]: needs a window (e.g. 1s, 10m, 1h)"});
    EXPECT_EQ(errors_of("version: 1\nlimits:\n  - name: a\n    measure: messages\n    max: 1\n    window: 1y\n"),
              strings{"p.yaml:6: limits[0].window: '1y' is not a duration (a positive number with ms, s, m, h "
                      "or d, e.g. 10m)"});
    EXPECT_EQ(errors_of("version: 1\nlimits:\n  - name: a\n    measure: messages\n    max: 1\n    window: 1h\n"
                        "    action: drop-syn\n"),
              strings{"p.yaml:7: limits[0].action: drop-syn applies to measure connections only"});
    EXPECT_EQ(errors_of("version: 1\nlimits:\n  - name: a\n    measure: messages\n    max: 1\n    window: 1h\n"
                        "    burst: 4\n"),
              strings{"p.yaml:7: limits[0].burst: burst applies to measure connections only"});
    EXPECT_EQ(errors_of("version: 1\nlimits:\n  - name: a\n    applies_to: group:vip\n    measure: messages\n"
                        "    max: 1\n    window: 1h\n"),
              strings{"p.yaml:4: limits[0].applies_to: no account group 'vip' in account_groups"});
    EXPECT_EQ(errors_of("version: 1\nlimits:\n  - name: a b\n    measure: messages\n    max: 1\n    window: 1h\n"),
              strings{"p.yaml:3: limits[0].name: 'a b': use letters, digits, '-' and '_' only"});
    EXPECT_EQ(errors_of("version: 1\nlimits:\n  - name: a\n    measure: recipients_per_message\n    max: 1\n"
                        "    window: 1h\n"),
              strings{"p.yaml:6: limits[0].window: recipients_per_message counts within one message: no window"});
    EXPECT_EQ(errors_of("version: 1\nsubscribers:\n  bindings:\n    - {prefix: 198.51.100.7}\n"),
              strings{"p.yaml:4: subscribers.bindings[0]: needs both prefix and account"});
}

TEST(policy_limits, duplicate_names_and_slot_bounds) {
    std::string text = "version: 1\nlimits:\n";
    for (int i = 0; i < 5; ++i)
        text += "  - {name: acct" + std::to_string(i) + ", scope: account, measure: messages, max: 1, window: 1h}\n";
    text += "  - {name: acct0, measure: messages, max: 1, window: 1h}\n";
    const strings e = errors_of(text);
    ASSERT_EQ(e.size(), 2u);
    // In line order, whatever order the reader found them in.
    EXPECT_EQ(e[0], "p.yaml:3: limits: 5 limits with scope account; at most 4");
    EXPECT_EQ(e[1], "p.yaml:8: limits[5].name: 'acct0' is already the name of the limit at line 3");
}

TEST(policy_limits, durations) {
    EXPECT_EQ(parse_duration("500ms"), 500'000'000ull);
    EXPECT_EQ(parse_duration("90d"), 90ull * 86'400'000'000'000ull);
    EXPECT_FALSE(parse_duration("0s"));
    EXPECT_FALSE(parse_duration("10"));
    EXPECT_FALSE(parse_duration("s"));
    EXPECT_FALSE(parse_duration("-1s"));
    // The largest that fits in uint64 nanoseconds, and one more: refused, not wrapped around.
    EXPECT_EQ(parse_duration("213503d"), 213503ull * 86'400'000'000'000ull);
    EXPECT_FALSE(parse_duration("213504d"));
    EXPECT_FALSE(parse_duration("999999999999d"));
    EXPECT_FALSE(parse_duration("5124096h"));
    EXPECT_EQ(parse_duration("999999999999ms"), 999'999'999'999ull * 1'000'000ull);
}

}  // namespace
}  // namespace sekisho
