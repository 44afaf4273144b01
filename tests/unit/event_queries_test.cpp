// The abuse desk's queries over a real event log file and a real binding
// history (SQLite, read-only beside the writer): attribution at each event's
// own time (whois, report, top), and reading the log by position (events:
// -n exact, a line still being written, a rotation, a file gone).
#include "control/api/event_queries.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "control/identity/binding_history.h"
#include "tests/support/temp_dir.h"

namespace sekisho {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr int64_t t0 = 1795438000;   // 2026-11-23T...Z

std::string block_line(int64_t t, const char* src, int port, uint64_t count = 1) {
    return json{{"type", "op25b_block"}, {"src", src}, {"src_port", port}, {"time_ns", uint64_t(t) * 1'000'000'000ull},
                {"count", count}}
        .dump();
}

void append(const fs::path& f, const std::string& text) { std::ofstream(f, std::ios::app) << text; }

ip_prefix address(const char* text) {
    std::string why;
    return *parse_prefix(text, why);
}

binding_update session(binding_kind kind, const char* id, int64_t t, const char* account, const char* addr) {
    binding_update u;
    u.kind = kind;
    u.session_id = id;
    u.event_time = t;
    u.account = account;
    u.ipv4 = address(addr);
    u.nas_address = "192.0.2.1";
    return u;
}

// alice holds .7 from t0+100 to t0+200, bob from t0+300 (open).
struct attribution_test : ::testing::Test {
    const test::temp_dir d{"event-queries"};
    fs::path log = d.path / "events.jsonl";
    std::string db = (d.path / "bindings.sqlite").string();
    void SetUp() override {
        binding_history h(db);
        h.apply(session(binding_kind::start, "a", t0 + 100, "alice@example.jp", "198.51.100.7"));
        h.apply(session(binding_kind::stop, "a", t0 + 200, "alice@example.jp", "198.51.100.7"));
        h.apply(session(binding_kind::start, "b", t0 + 300, "bob@example.jp", "198.51.100.7"));
        append(log, block_line(t0 + 78, "198.51.100.7", 1) + "\n");            // 22 s before alice
        append(log, block_line(t0 + 150, "198.51.100.7", 2, 3) + "\n");        // alice's, 3 events
        append(log, block_line(t0 + 250, "198.51.100.7", 3) + "\n");           // between the sessions
        append(log, block_line(t0 + 350, "198.51.100.7", 4, 2) + "\n");        // bob's
        // A mail event stamped with a static binding's account: no history row, the stamp counts.
        append(log, json{{"type", "limit_exceeded"}, {"subscriber", "198.51.100.9"}, {"account", "carol@example.jp"},
                         {"time_ns", uint64_t(t0 + 160) * 1'000'000'000ull}, {"count", 1}}
                            .dump() +
                        "\n");
    }
};

TEST_F(attribution_test, whois_counts_only_the_events_of_the_holder_at_the_time_asked) {
    const json at_alice = query_whois(log.string(), db, address("198.51.100.7"), t0 + 150, std::nullopt);
    EXPECT_EQ(at_alice["held_by"], json::array({"alice@example.jp"}));
    EXPECT_EQ(at_alice["events_within_1h"]["op25b_block"], 3) << at_alice.dump();
    ASSERT_EQ(at_alice["events"].size(), 4u);
    EXPECT_TRUE(at_alice["events"][0]["held_by"].is_null()) << "22 s before her session: nobody's";
    EXPECT_EQ(at_alice["events"][1]["held_by"], "alice@example.jp");
    EXPECT_TRUE(at_alice["events"][2]["held_by"].is_null());
    EXPECT_EQ(at_alice["events"][3]["held_by"], "bob@example.jp");

    const json before = query_whois(log.string(), db, address("198.51.100.7"), t0 + 78, std::nullopt);
    EXPECT_EQ(before["held_by"], json::array());
    EXPECT_EQ(before["bindings"], json::array());
    EXPECT_EQ(before["events_within_1h"]["op25b_block"], 2) << "the two events nobody held it for";
    EXPECT_EQ(before["query"]["at_utc"], "2026-11-23T12:47:58Z");

    // The current binding answers only a question about now.
    const json now = query_whois(log.string(), db, address("198.51.100.8"), t0 + 150, std::string("dave@example.jp"));
    EXPECT_EQ(now["held_by"], json::array({"dave@example.jp"}));
}

TEST_F(attribution_test, report_and_top_have_one_row_per_address_and_holder) {
    const api_response r = query_report(log.string(), db, 0, t0 + 1000, false);
    ASSERT_EQ(r.status, 200);
    const json j = json::parse(r.body);
    std::map<std::string, json> rows;
    for (const auto& row : j["sources"])
        rows[row["source_address"].get<std::string>() + " " + (row["account"].is_null() ? "-" : row["account"].get<std::string>())] = row;
    ASSERT_EQ(rows.size(), 4u) << j.dump();
    EXPECT_EQ(rows["198.51.100.7 -"]["events"], 2);
    EXPECT_EQ(rows["198.51.100.7 -"]["first_seen"], t0 + 78);
    EXPECT_EQ(rows["198.51.100.7 -"]["last_seen"], t0 + 250);
    EXPECT_EQ(rows["198.51.100.7 alice@example.jp"]["events"], 3);
    EXPECT_EQ(rows["198.51.100.7 alice@example.jp"]["first_seen_utc"], "2026-11-23T12:49:10Z");
    EXPECT_EQ(rows["198.51.100.7 bob@example.jp"]["events"], 2);
    EXPECT_EQ(rows["198.51.100.9 carol@example.jp"]["events"], 1) << "a mail event's own account";
    EXPECT_EQ(j["since_utc"], "1970-01-01T00:00:00Z");

    const api_response csv = query_report(log.string(), db, 0, t0 + 1000, true);
    EXPECT_NE(csv.body.find("198.51.100.7,,2,2,0,0,0,"), std::string::npos) << csv.body;
    EXPECT_NE(csv.body.find("198.51.100.7,alice@example.jp,3,3,0,0,0,"), std::string::npos) << csv.body;

    const json top = query_top(log.string(), db, 0, "op25b_block", "1h");
    std::map<std::string, uint64_t> counts;
    for (const auto& t : top["top"]) counts[t["account"].is_null() ? "-" : t["account"].get<std::string>()] = t["count"];
    EXPECT_EQ(counts, (std::map<std::string, uint64_t>{{"-", 2}, {"alice@example.jp", 3}, {"bob@example.jp", 2}}));
}

TEST_F(attribution_test, without_a_history_only_the_events_own_account_attributes) {
    const json top = query_top(log.string(), "", 0, "events", "1h");
    for (const auto& t : top["top"])
        if (t["subscriber"] == "198.51.100.7") {
            EXPECT_TRUE(t["account"].is_null()) << top.dump();
        }
}

json events_after(const fs::path& log, const json& previous, uint64_t n = 1000) {
    events_query q;
    q.n = n;
    const std::string pos = previous["position"];
    const size_t a = pos.find(':'), b = pos.find(':', a + 1);
    q.after = event_position{std::stoull(pos.substr(0, a)), std::stoull(pos.substr(a + 1, b - a - 1)),
                             std::stoull(pos.substr(b + 1))};
    return query_events(log.string(), q);
}

std::vector<int> ports(const json& answer) {
    std::vector<int> out;
    for (const auto& e : answer["events"]) out.push_back(e["src_port"]);
    return out;
}

TEST(EventQueries, ASubscriberPrefixMatchesTheAddressesInIt) {
    const test::temp_dir d("event-queries");
    const fs::path log = d.path / "events.jsonl";
    append(log, block_line(t0, "2001:db8:100:1100::7", 1) + "\n" + block_line(t0 + 1, "2001:db8:100:1200::7", 2) + "\n" +
                    block_line(t0 + 2, "2001:db8:100:11ff:1::9", 3) + "\n" + block_line(t0 + 3, "198.51.100.7", 4) + "\n");
    events_query q;
    q.n = 10;
    q.subscriber = "2001:db8:100:1100::/56";
    q.subscriber_prefix = address("2001:db8:100:1100::/56");
    EXPECT_EQ(ports(query_events(log.string(), q)), (std::vector<int>{1, 3}));
    q.subscriber = "198.51.100.7";
    q.subscriber_prefix = address("198.51.100.7");
    EXPECT_EQ(ports(query_events(log.string(), q)), std::vector<int>{4});
    q.subscriber = "198.51.100.0/25";
    q.subscriber_prefix = address("198.51.100.0/25");
    EXPECT_EQ(ports(query_events(log.string(), q)), std::vector<int>{4});
}

TEST(EventQueries, FollowsTheLogByPositionNotByTime) {
    const test::temp_dir d("event-queries");
    const fs::path log = d.path / "events.jsonl";
    append(log, block_line(t0, "198.51.100.7", 1) + "\n" + block_line(t0 + 5, "198.51.100.7", 2) + "\n");
    events_query q;
    q.n = 0;
    const json none = query_events(log.string(), q);
    EXPECT_EQ(none["events"].size(), 0u) << "-n 0: nothing old";
    q.n = 1;
    const json one = query_events(log.string(), q);
    EXPECT_EQ(ports(one), std::vector<int>{2}) << "-n 1: exactly the newest";
    // A late-written line with an older time, and a line still being written.
    append(log, block_line(t0 - 100, "198.51.100.7", 3) + "\n" + block_line(t0 + 6, "198.51.100.7", 4).substr(0, 20));
    const json next = events_after(log, none);
    EXPECT_EQ(ports(next), std::vector<int>{3}) << "the older stamp is seen; the partial line is not yet";
    append(log, block_line(t0 + 6, "198.51.100.7", 4).substr(20) + "\n");
    const json after_partial = events_after(log, next);
    EXPECT_EQ(ports(after_partial), std::vector<int>{4});
    EXPECT_EQ(ports(events_after(log, after_partial)), std::vector<int>{});
    // At most n per call: the next call goes on from the first not returned.
    append(log, block_line(t0 + 7, "198.51.100.7", 5) + "\n" + block_line(t0 + 8, "198.51.100.7", 6) + "\n");
    const json first_of_two = events_after(log, after_partial, 1);
    EXPECT_EQ(ports(first_of_two), std::vector<int>{5});
    const json second_of_two = events_after(log, first_of_two, 1);
    EXPECT_EQ(ports(second_of_two), std::vector<int>{6});
    // Rotation: the rest of FILE.1, then the new FILE from its start.
    append(log, block_line(t0 + 9, "198.51.100.7", 7) + "\n");
    fs::rename(log, d.path / "events.jsonl.1");
    append(log, block_line(t0 + 10, "198.51.100.7", 8) + "\n");
    const json rotated = events_after(log, second_of_two);
    EXPECT_EQ(ports(rotated), (std::vector<int>{7, 8}));
    EXPECT_EQ(rotated["gap"], false);
    // Both files replaced since (the filesystem may give the new file the
    // inode number of the one read): the new file from its start, and a gap said.
    fs::rename(log, d.path / "events.jsonl.1");
    append(log, block_line(t0 + 11, "198.51.100.7", 9) + "\n");
    fs::rename(log, d.path / "events.jsonl.1");
    append(log, block_line(t0 + 12, "198.51.100.7", 10) + "\n");
    const json gone = events_after(log, rotated);
    EXPECT_EQ(ports(gone), std::vector<int>{10});
    EXPECT_EQ(gone["gap"], true);
}

}  // namespace
}  // namespace sekisho
