// content_rules_compiler: the bounded compile of an apply. A compile within
// its timeout returns the rules; a bad rule is a policy_error naming it; a
// compile that overruns is abandoned (rule_compile_timeout) and, while it
// still runs, the next compile is refused at once; once it has finished,
// compiles work again.
#include "control/policy/content_rules_compile.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "control/policy/policy.h"

namespace sekisho {
namespace {

content_rule rule(std::string id, std::string pattern) {
    content_rule r;
    r.id = std::move(id);
    r.pattern = std::move(pattern);
    r.score = 1;
    r.line = 7;
    return r;
}

// Enough bounded repeats over overlapping classes that Hyperscan needs
// seconds, not milliseconds, to build the database.
std::vector<content_rule> heavy_rules() {
    std::vector<content_rule> out;
    for (int i = 0; i < 30; ++i)
        out.push_back(rule("heavy-" + std::to_string(i),
                           "[a-m]{" + std::to_string(5 + i % 17) + ",90}" + std::string(1, static_cast<char>('a' + i % 26)) +
                               "[^z]{" + std::to_string(3 + i % 11) + ",70}[0-9]{2,40}x"));
    return out;
}

constexpr uint64_t ms = 1'000'000ull;

TEST(ContentRulesCompiler, CompilesWithinTheTimeout) {
    content_rules_compiler c;
    const auto set = c.compile({rule("a", "blackword"), rule("b", "deai[0-9]+")}, "policy.yaml", 60'000 * ms);
    ASSERT_NE(set, nullptr);
    EXPECT_EQ(set->rules().size(), 2u);
    EXPECT_FALSE(c.busy());
}

TEST(ContentRulesCompiler, NoRulesNoDatabase) {
    content_rules_compiler c;
    EXPECT_EQ(c.compile({}, "policy.yaml", 1 * ms), nullptr);
}

TEST(ContentRulesCompiler, ABadRuleIsAPolicyErrorNamingItsIdAndLine) {
    content_rules_compiler c;
    try {
        c.compile({rule("ok", "fine"), rule("lookbehind", "(?<=a)b")}, "policy.yaml", 60'000 * ms);
        FAIL() << "compiled";
    } catch (const policy_error& e) {
        ASSERT_EQ(e.errors().size(), 1u);
        EXPECT_NE(e.errors()[0].find("lookbehind"), std::string::npos) << e.errors()[0];
        EXPECT_NE(e.errors()[0].find("policy.yaml:7"), std::string::npos) << e.errors()[0];
    }
}

TEST(ContentRulesCompiler, AnOverrunIsAbandonedAndRefusesTheNextUntilItEnds) {
    content_rules_compiler c;
    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_THROW(c.compile(heavy_rules(), "policy.yaml", 20 * ms), rule_compile_timeout);
    const auto waited = std::chrono::steady_clock::now() - t0;
    EXPECT_LT(waited, std::chrono::seconds(5)) << "the caller waited for the abandoned compile";
    ASSERT_TRUE(c.busy()) << "the heavy compile finished within 20 ms: make heavy_rules() heavier";
    // While it runs, a new compile is refused at once, even a trivial one.
    try {
        c.compile({rule("a", "blackword")}, "policy.yaml", 60'000 * ms);
        FAIL() << "compiled while the abandoned compile runs";
    } catch (const rule_compile_timeout& e) {
        EXPECT_NE(std::string(e.what()).find("still running"), std::string::npos) << e.what();
    }
    // It ends on its own; then compiles work again.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(5);
    while (c.busy() && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    ASSERT_FALSE(c.busy());
    EXPECT_NE(c.compile({rule("a", "blackword")}, "policy.yaml", 60'000 * ms), nullptr);
}

}  // namespace
}  // namespace sekisho
