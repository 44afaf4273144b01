// content_inspector: across a policy apply, a message that starts under one
// generation and ends under another is judged by the new rule set only (its
// rule ids and body stream from the old one are not carried over: they index
// another rule set and another Hyperscan database), counted as a restart; a
// message wholly under one policy is not disturbed. Body streams across
// segments, of one message at a time and of messages interleaved.
#include "dataplane/inspect/content_inspector.h"

#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "dataplane/compiled_policy.h"
#include "dataplane/limits/mail_tracker.h"
#include "control/policy/policy.h"
#include "control/policy/policy_compiler.h"
#include "dataplane/worker_counters.h"

namespace sekisho {
namespace {

// Six body rules (the last, "old-5", at index 5) or one ("new-0").
std::string policy_with(const std::string& rules) {
    return "version: 1\n"
           "ports:\n  smtp: [25]\n  submission: [587, 465]\n"
           "subscribers:\n  dynamic: [198.51.100.0/24]\n"
           "inspection:\n  flows_per_worker: 16\n  rules:\n" +
           rules;
}
const std::string old_rules =
    "    - {id: old-0, pattern: 'alpha0', where: body, score: 1}\n"
    "    - {id: old-1, pattern: 'alpha1', where: body, score: 1}\n"
    "    - {id: old-2, pattern: 'alpha2', where: body, score: 1}\n"
    "    - {id: old-3, pattern: 'alpha3', where: body, score: 1}\n"
    "    - {id: old-4, pattern: 'alpha4', where: body, score: 1}\n"
    "    - {id: old-5, pattern: 'blackword', where: body, score: 7, action: quarantine}\n";
const std::string new_rules = "    - {id: new-0, pattern: 'blackword|later', where: body, score: 3}\n";

constexpr std::string_view headers = "From: a@example.jp\r\nSubject: hello\r\n\r\n";

class content_inspector_test : public ::testing::Test {
protected:
    void SetUp() override {
        old_policy = compile_policy(load_policy_text(policy_with(old_rules), "old.yaml"), 101);
        new_policy = compile_policy(load_policy_text(policy_with(new_rules), "new.yaml"), 102);
        inspector = std::make_unique<content_inspector>(0, 64, nullptr, counters);
        key.family = 4;
        key.subscriber_port = 40000;
        key.server_port = 25;
        const uint8_t ip[4] = {198, 51, 100, 7};
        std::memcpy(key.subscriber, ip, 4);
    }
    void feed(const compiled_policy& p, std::string_view bytes) { feed(p, key, bytes); }
    void feed(const compiled_policy& p, const flow_key& k, std::string_view bytes) {
        inspector->content(p, k, reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), ++now);
    }
    message_verdict end(const compiled_policy& p) { return end(p, key); }
    message_verdict end(const compiled_policy& p, const flow_key& k) {
        message_context ctx;
        ctx.now_ns = ++now;
        ctx.recipients = 1;
        return inspector->message_end(p, k, ctx);
    }
    // A message's start, its headers and its first body bytes.
    void begin(const compiled_policy& p, std::string_view first) {
        inspector->message_start(p, key, ++now, 0);
        feed(p, headers);
        feed(p, first);
    }
    flow_key other_key(uint16_t port) const {
        flow_key k = key;
        k.subscriber_port = port;
        return k;
    }

    worker_counters counters;
    std::unique_ptr<compiled_policy> old_policy, new_policy;
    std::unique_ptr<content_inspector> inspector;
    flow_key key{};
    uint64_t now = 1;
};

TEST_F(content_inspector_test, one_policy_per_message_is_undisturbed) {
    begin(*old_policy, "a blackword in the first segment\r\n");
    feed(*old_policy, "and more text\r\n");
    const message_verdict v = end(*old_policy);
    ASSERT_EQ(v.rule_count, 1u);
    EXPECT_EQ(v.rules[0], 5u);
    EXPECT_EQ(v.score, 7);
    EXPECT_EQ(v.action, score_action::quarantine);
    EXPECT_EQ(counters.inspection.policy_restarts.load(), 0u);
}

TEST_F(content_inspector_test, a_policy_applied_mid_message_takes_over) {
    begin(*old_policy, "a blackword in the first segment\r\n");  // old-5 (index 5) matches
    // The new generation: index 5 does not exist in its one-rule set.
    feed(*new_policy, "text that comes later\r\n");
    const message_verdict v = end(*new_policy);
    ASSERT_EQ(v.rule_count, 1u);
    EXPECT_EQ(v.rules[0], 0u);  // new-0, from the segment seen under the new policy
    EXPECT_EQ(v.score, 3);
    EXPECT_EQ(v.action, score_action::event);
    EXPECT_FALSE(v.act);
    EXPECT_EQ(counters.inspection.policy_restarts.load(), 1u);

    // The next message, wholly under the new policy: no restart, its own match.
    begin(*new_policy, "a blackword again\r\n");
    const message_verdict w = end(*new_policy);
    ASSERT_EQ(w.rule_count, 1u);
    EXPECT_EQ(w.score, 3);
    EXPECT_EQ(counters.inspection.policy_restarts.load(), 1u);
}

TEST_F(content_inspector_test, a_policy_applied_just_before_the_end) {
    begin(*old_policy, "a blackword\r\n");
    const message_verdict v = end(*new_policy);  // the end-of-data segment under the new policy
    EXPECT_EQ(v.rule_count, 0u);
    EXPECT_EQ(v.score, 0);
    EXPECT_EQ(counters.inspection.policy_restarts.load(), 1u);
}

// A policy apply as a worker lives it: each generation has its own working set for the worker
// (scratch and streams made for its databases); once the worker has adopted the new generation it
// scans with the new one only, and leaves the old one, where the message's body stream was open,
// as it was; the old snapshot is then freed (the grace period is over) and takes its working
// sets with it while the message goes on.
TEST_F(content_inspector_test, each_generation_scans_with_its_own_working_set) {
    content_scan_state& old_ws = *old_policy->scan_states()->for_worker(0);
    content_scan_state& new_ws = *new_policy->scan_states()->for_worker(0);
    EXPECT_NE(old_ws.scratch.get(), new_ws.scratch.get());
    EXPECT_EQ(old_policy->scan_states()->for_worker(1), nullptr) << "compiled for one worker";
    auto open_slots = [](const content_scan_state& ws) {
        unsigned n = 0;
        for (const auto& b : ws.body_slots) n += b.owner != nullptr;
        return n;
    };

    begin(*old_policy, "the first half: black");  // its body stream open in the old working set
    const uint64_t old_clock = old_ws.body_clock;
    EXPECT_GT(old_clock, 0u);
    EXPECT_EQ(open_slots(old_ws), 1u);
    EXPECT_EQ(new_ws.body_clock, 0u);

    feed(*new_policy, "word, then later\r\n");  // adopted: a fresh stream, in the new working set
    EXPECT_EQ(counters.inspection.policy_restarts.load(), 1u);
    EXPECT_GT(new_ws.body_clock, 0u);
    EXPECT_EQ(open_slots(new_ws), 1u);
    EXPECT_EQ(old_ws.body_clock, old_clock) << "the new generation's work touched the old working set";
    EXPECT_EQ(open_slots(old_ws), 1u);

    old_policy.reset();  // as policy_store::publish frees it after the grace period
    feed(*new_policy, "and a blackword\r\n");
    const message_verdict v = end(*new_policy);
    ASSERT_EQ(v.rule_count, 1u);
    EXPECT_EQ(v.rules[0], 0u);  // new-0, once ("later", then "blackword")
    EXPECT_EQ(v.score, 3);
    EXPECT_EQ(open_slots(new_ws), 0u) << "the message's end frees its slot";
    EXPECT_EQ(counters.inspection.stream_errors.load(), 0u);
}

// The worker keeps the body streams of the messages it served last open and puts one away into
// its message's record when another message needs its slot: a blackword split across segments
// is found whether the messages' segments follow each other or interleave, within the open
// streams or beyond them, and a message that never saw it is not credited with another's.
TEST_F(content_inspector_test, a_match_across_segments_alone_and_interleaved) {
    // Alone: the stream stays open from one segment to the next.
    begin(*old_policy, "the first half: black");
    feed(*old_policy, "word, the second half\r\n");
    message_verdict v = end(*old_policy);
    ASSERT_EQ(v.rule_count, 1u);
    EXPECT_EQ(v.rules[0], 5u);

    // Three messages, segment by segment in turn: each keeps its open stream.
    const flow_key a = other_key(40001), b = other_key(40002), c = other_key(40003);
    for (const flow_key& k : {a, b, c}) inspector->message_start(*old_policy, k, ++now, 0);
    for (const flow_key& k : {a, b, c}) feed(*old_policy, k, headers);
    feed(*old_policy, a, "text then black");
    feed(*old_policy, b, "other text then bla");
    feed(*old_policy, c, "a third text then black");
    feed(*old_policy, a, "word and more\r\n");
    feed(*old_policy, b, "ckword and more\r\n");
    feed(*old_policy, c, "bird, no match\r\n");
    const message_verdict va = end(*old_policy, a), vb = end(*old_policy, b), vc = end(*old_policy, c);
    ASSERT_EQ(va.rule_count, 1u);
    EXPECT_EQ(va.rules[0], 5u);
    ASSERT_EQ(vb.rule_count, 1u);
    EXPECT_EQ(vb.rules[0], 5u);
    EXPECT_EQ(vc.rule_count, 0u);
    EXPECT_EQ(counters.inspection.body_evictions.load(), 0u);

    // More messages at once than the worker keeps streams open, in turn: each segment finds its
    // message's slot taken (the least recently used), its stream put away into its record, and
    // has it brought back into another slot. Put away as the stream's bytes (this Hyperscan's
    // streams are flat: content_scan_state::flat_stream_bytes), and compressed, as with a
    // Hyperscan whose streams are not.
    content_scan_state& ws = *old_policy->scan_states()->for_worker(0);
    size_t stream_bytes = 0;
    ASSERT_EQ(hs_stream_size(old_policy->content_rules()->database(content_db::body), &stream_bytes), HS_SUCCESS);
    EXPECT_EQ(ws.body_flat_bytes, stream_bytes);
    const size_t flat = ws.body_flat_bytes;
    uint16_t port = 41000;
    for (const size_t flat_bytes : {flat, size_t{0}}) {
        ws.body_flat_bytes = flat_bytes;
        const uint64_t evictions = counters.inspection.body_evictions.load();
        constexpr unsigned many = content_open_bodies + 4;
        std::vector<flow_key> keys;
        for (unsigned i = 0; i < many; ++i) keys.push_back(other_key(port++));
        for (const flow_key& k : keys) inspector->message_start(*old_policy, k, ++now, 0);
        for (const flow_key& k : keys) feed(*old_policy, k, headers);
        for (unsigned i = 0; i < many; ++i) feed(*old_policy, keys[i], "text then bla");
        for (unsigned i = 0; i < many; ++i) feed(*old_policy, keys[i], i % 2 ? "ckbird\r\n" : "ck");
        for (unsigned i = 0; i < many; i += 2) feed(*old_policy, keys[i], "word and more\r\n");
        for (unsigned i = 0; i < many; ++i) {
            const message_verdict vi = end(*old_policy, keys[i]);
            ASSERT_EQ(vi.rule_count, i % 2 ? 0u : 1u) << "message " << i << ", flat bytes " << flat_bytes;
            if (i % 2 == 0) {
                EXPECT_EQ(vi.rules[0], 5u);
            }
        }
        // Every segment after the first round found its slot taken: round 2 all `many`, round 3
        // the even half but those still open from round 2's last ones.
        EXPECT_GE(counters.inspection.body_evictions.load() - evictions, uint64_t{many});
        EXPECT_EQ(counters.inspection.stream_errors.load(), 0u);
        EXPECT_EQ(counters.inspection.stream_overflow.load(), 0u);
    }
    ws.body_flat_bytes = flat;

    // The next message on a key whose record held the open stream starts with a fresh one.
    begin(*old_policy, "black");
    v = end(*old_policy);
    EXPECT_EQ(v.rule_count, 0u);
    begin(*old_policy, "word at the start\r\n");
    v = end(*old_policy);
    EXPECT_EQ(v.rule_count, 0u) << "no match across two messages";

    // A session that ends mid-message with the stream open; the next message on that key (in
    // a new record, which may or may not be the old slot) has a fresh stream.
    begin(*old_policy, "black");
    inspector->abandon(key);
    begin(*old_policy, "word at the start\r\n");
    v = end(*old_policy);
    EXPECT_EQ(v.rule_count, 0u) << "no match across an abandoned message and the next";

    // A message that starts again without an end (RSET mid-BDAT): the same record, another
    // message, a fresh stream.
    begin(*old_policy, "black");
    begin(*old_policy, "word at the start\r\n");
    v = end(*old_policy);
    EXPECT_EQ(v.rule_count, 0u) << "no match across a message started again and the one before";
}

}  // namespace
}  // namespace sekisho
