// The event log: per-subscriber aggregation (the first event of a key written
// at once, its repeats as one `repeated` line with count, first_ns, last_ns
// when the window closes; the window by the events' own clock; the bounded
// key set), rotation by size and
// by time with `keep`, fsync policies, write errors on a full disk (/dev/full)
// counted and never thrown, the file deleted or replaced underneath (followed,
// counted), and the policy's events section.
#include "control/observe/event_log.h"

#include <arpa/inet.h>
#include <stdlib.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <tuple>
#include <vector>

#include "dataplane/op25b_classifier.h"
#include "tests/support/temp_dir.h"

namespace sekisho {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr uint64_t s = 1'000'000'000ull;
constexpr uint64_t t0 = 1'795'438'783ull * s;   // 2026-11-22

event_record block(const char* src, uint64_t time_ns, uint64_t generation = 1,
                   event_type type = event_type::op25b_block, uint8_t reason = 0) {
    event_record e{};
    e.time_ns = time_ns;
    e.generation = generation;
    e.type = type;
    e.reason = reason;
    e.ip_version = 4;
    e.ingress = static_cast<uint8_t>(ingress::access);
    e.action = static_cast<uint8_t>(op25b_action::reset);
    e.src_port = 40000;
    e.dst_port = 25;
    e.tcp_flags = 2;
    inet_pton(AF_INET, src, e.src);
    inet_pton(AF_INET, "203.0.113.25", e.dst);
    return e;
}

event_record limit_hit(const char* src, uint64_t time_ns, uint32_t measured) {
    event_record e = block(src, time_ns, 1, event_type::limit_exceeded, 0);
    e.action = static_cast<uint8_t>(limit_action::tempfail);
    e.dst_port = 587;
    e.count = measured;
    return e;
}

event_record session(const char* src, uint64_t time_ns, uint32_t messages, uint32_t recipients, uint32_t rejected,
                     bool tls = false) {
    event_record e = block(src, time_ns, 1, event_type::mail_session, 0);
    e.action = tls ? session_bits::tls : 0;
    e.dst_port = 587;
    e.count = messages;
    e.recipients = recipients;
    e.rejected_recipients = rejected;
    return e;
}

std::vector<json> lines_of(const fs::path& p) {
    std::vector<json> out;
    std::ifstream in(p);
    std::string line;
    while (std::getline(in, line)) out.push_back(json::parse(line));  // throws on a partial line
    return out;
}

// A log that aggregates over `window` and never rotates or syncs.
events_config aggregating(const fs::path& file, uint64_t window = 10 * s) {
    events_config c;
    c.file = file.string();
    c.rotate_bytes = 0;
    c.rotate_interval_ns = 0;
    c.fsync = events_fsync::never;
    c.aggregate_window_ns = window;
    return c;
}

void add(event_log& log, const event_record& e) { log.add(&e, 1); }

void expect_balanced(const event_log& log) {
    const auto& c = log.counters();
    EXPECT_EQ(c.received, c.written + c.write_errors + c.pending);
}

TEST(EventLog, WithoutAggregationEachEventIsOneLineWithCountOne) {
    const test::temp_dir d("events");
    const fs::path f = d.path / "events.jsonl";
    {
        event_log log(aggregating(f, 0));
        add(log, block("198.51.100.7", t0));
        add(log, block("198.51.100.7", t0 + 1));
        add(log, limit_hit("198.51.100.8", t0 + 2, 6));
        EXPECT_EQ(log.written(), 3u);
        EXPECT_EQ(log.counters().lines, 3u);
        expect_balanced(log);
    }
    const auto lines = lines_of(f);
    ASSERT_EQ(lines.size(), 3u);
    EXPECT_EQ(lines[0]["type"], "op25b_block");
    EXPECT_EQ(lines[0]["src"], "198.51.100.7");
    EXPECT_EQ(lines[0]["time_ns"], t0);
    EXPECT_EQ(lines[0]["count"], 1);
    EXPECT_FALSE(lines[0].contains("first_ns"));
    EXPECT_FALSE(lines[0].contains("last_ns"));
    // A limit hit: the limit's own count is `measured`; `count` counts events.
    EXPECT_EQ(lines[2]["type"], "limit_exceeded");
    EXPECT_EQ(lines[2]["measured"], 6);
    EXPECT_EQ(lines[2]["count"], 1);
    EXPECT_EQ(lines[2]["subscriber"], "198.51.100.8");
}

// The control plane's audit records: written at once as given, never held in a window.
TEST(EventLog, ARecordIsOneLineAtOnceEvenWhileAggregating) {
    const test::temp_dir d("events");
    const fs::path f = d.path / "events.jsonl";
    event_log log(aggregating(f));
    add(log, block("198.51.100.7", t0));
    log.add_record(R"({"time_ns":5,"type":"api_change","endpoint":"account_suspend","caller":"uid 0 (root) pid 1"})");
    log.add_record(R"({"time_ns":6,"type":"api_change","endpoint":"account_suspend","caller":"uid 0 (root) pid 1"})");
    log.add_record(R"({"time_ns":6,"type":"api_change","endpoint":"account_suspend","caller":"uid 0 (root) pid 1"})");
    EXPECT_EQ(log.written(), 4u) << "the records, and the block (the first of its key)";
    expect_balanced(log);
    log.flush_all();
    const auto lines = lines_of(f);
    ASSERT_EQ(lines.size(), 4u);
    EXPECT_EQ(lines[0]["type"], "op25b_block");
    EXPECT_EQ(lines[1]["type"], "api_change");
    EXPECT_EQ(lines[1]["time_ns"], 5);
    EXPECT_EQ(lines[1]["caller"], "uid 0 (root) pid 1");
    EXPECT_EQ(lines[1]["count"], 1);
    EXPECT_EQ(lines[2]["time_ns"], 6) << "two alike records are two lines";
    EXPECT_EQ(lines[3]["time_ns"], 6) << "and a third";
    EXPECT_FALSE(lines[3].contains("repeated"));
    expect_balanced(log);
}

// The first event of a key is written at once (an operator sees it when it
// happens); the repeats within the window follow as one line when it closes.
TEST(EventLog, TheFirstEventAtOnceItsRepeatsAsOneLineWithACount) {
    const test::temp_dir d("events");
    const fs::path f = d.path / "events.jsonl";
    event_log log(aggregating(f));
    for (int i = 0; i < 5; ++i) {
        event_record e = block("198.51.100.7", t0 + static_cast<uint64_t>(i) * s);
        e.src_port = static_cast<uint16_t>(40000 + i);
        add(log, e);
        if (i == 0) {
            ASSERT_EQ(lines_of(f).size(), 1u) << "the first event is in the file at once";
            EXPECT_EQ(lines_of(f)[0]["count"], 1);
            EXPECT_FALSE(lines_of(f)[0].contains("repeated"));
        }
    }
    EXPECT_EQ(log.written(), 1u) << "the repeats wait for the window to close";
    EXPECT_EQ(log.counters().pending, 4u);
    expect_balanced(log);
    log.flush_all();
    const auto lines = lines_of(f);
    ASSERT_EQ(lines.size(), 2u);
    EXPECT_EQ(lines[0]["time_ns"], t0);
    EXPECT_EQ(lines[0]["src_port"], 40000);
    EXPECT_EQ(lines[1]["repeated"], true);
    EXPECT_EQ(lines[1]["count"], 4) << "the repeats, not counting the first line's event";
    EXPECT_EQ(lines[1]["first_ns"], t0 + s);
    EXPECT_EQ(lines[1]["last_ns"], t0 + 4 * s);
    EXPECT_EQ(lines[1]["time_ns"], t0 + s);
    EXPECT_EQ(lines[1]["src_port"], 40001) << "the other fields are the first repeat's";
    EXPECT_EQ(log.written(), 5u);
    EXPECT_EQ(log.counters().lines, 2u);
    EXPECT_EQ(log.counters().aggregated, 4u);
    EXPECT_EQ(log.counters().pending, 0u);
    expect_balanced(log);
}

// A key with no repeat in its window: one line, no `repeated` line after it.
TEST(EventLog, AWindowWithoutRepeatsWritesNoSecondLine) {
    const test::temp_dir d("events");
    const fs::path f = d.path / "events.jsonl";
    event_log log(aggregating(f));
    add(log, block("198.51.100.7", t0));
    add(log, block("198.51.100.8", t0 + 11 * s));   // closes .7's window
    log.flush_all();
    const auto lines = lines_of(f);
    ASSERT_EQ(lines.size(), 2u);
    EXPECT_EQ(lines[0]["src"], "198.51.100.7");
    EXPECT_EQ(lines[1]["src"], "198.51.100.8");
    EXPECT_EQ(log.counters().aggregated, 0u);
    expect_balanced(log);
}

// Monitor mode: one SMTP session is many frames (its SYN, then every segment it sends), one
// connection; two sessions, two connections.
TEST(EventLog, MergedBlocksCountTheConnectionsTheirSynsBegan) {
    const test::temp_dir d("events");
    const fs::path f = d.path / "events.jsonl";
    event_log log(aggregating(f));
    constexpr uint8_t syn = 0x02, ack = 0x10, psh = 0x08;
    for (int session = 0; session < 2; ++session)
        for (int i = 0; i < 11; ++i) {
            event_record e = block("198.51.100.7", t0 + static_cast<uint64_t>(session * 11 + i), 1,
                                   event_type::op25b_monitor);
            e.src_port = static_cast<uint16_t>(40000 + session);
            e.tcp_flags = i == 0 ? syn : i == 1 ? ack : static_cast<uint8_t>(psh | ack);
            add(log, e);
        }
    event_record syn_ack = block("198.51.100.7", t0 + 30, 1, event_type::op25b_monitor);
    syn_ack.tcp_flags = syn | ack;   // the server's answer is not a new connection
    add(log, syn_ack);
    log.flush_all();
    const auto lines = lines_of(f);
    ASSERT_EQ(lines.size(), 2u) << "the first event at once, its repeats on one line";
    EXPECT_EQ(lines[0]["count"], 1);
    EXPECT_EQ(lines[0].value("connections", -1), 1);
    EXPECT_EQ(lines[1]["count"], 22);
    EXPECT_EQ(lines[1].value("connections", -1), 1) << "the second session's SYN is among the repeats";
}

TEST(EventLog, AMonitoredLimitCountsTheConnectionsOfItsFirstHits) {
    const test::temp_dir d("events");
    const fs::path f = d.path / "events.jsonl";
    event_log log(aggregating(f));
    for (int i = 0; i < 4; ++i) {
        event_record e = limit_hit("198.51.100.7", t0 + static_cast<uint64_t>(i), 5 + static_cast<uint32_t>(i));
        e.action = static_cast<uint8_t>(limit_action::monitor);
        e.tcp_flags = 0x18;
        e.flags = i == 0 || i == 2 ? event_flags::first_monitored_hit : 0;
        add(log, e);
    }
    log.flush_all();
    auto lines = lines_of(f);
    ASSERT_EQ(lines.size(), 2u) << "the first hit at once, its repeats on one line";
    EXPECT_EQ(lines[0]["count"], 1);
    EXPECT_EQ(lines[0].value("connections", -1), 1);
    EXPECT_EQ(lines[1]["count"], 3);
    EXPECT_EQ(lines[1].value("connections", -1), 1);

    const fs::path single = d.path / "single.jsonl";
    event_log plain_log(aggregating(single, 0));
    add(plain_log, block("198.51.100.8", t0));
    event_record session_end = session("198.51.100.8", t0 + 1, 1, 1, 0);
    add(plain_log, session_end);
    lines = lines_of(single);
    ASSERT_EQ(lines.size(), 2u);
    EXPECT_EQ(lines[0].value("connections", -1), 1) << "an unmerged SYN's event is one connection";
    EXPECT_FALSE(lines[1].contains("connections")) << "only blocks and limit hits stand for connections";
}

TEST(EventLog, MergedSessionsSumWhatTheyCarried) {
    const test::temp_dir d("events");
    const fs::path f = d.path / "events.jsonl";
    {
        event_log log(aggregating(f));
        add(log, session("198.51.100.7", t0, 2, 40, 3));
        add(log, session("198.51.100.7", t0 + s, 1, 10, 0));
        add(log, session("198.51.100.7", t0 + 2 * s, 0, 0, 0, true));   // TLS: a line of its own
        add(log, session("198.51.100.8", t0 + 3 * s, 5, 5, 5));
        log.flush_all();
        expect_balanced(log);
    }
    const auto lines = lines_of(f);
    ASSERT_EQ(lines.size(), 4u);
    std::map<std::tuple<std::string, bool, bool>, json> by;
    for (const json& l : lines) by[{l["subscriber"], l["tls"], l.value("repeated", false)}] = l;
    const auto key = [](const char* subscriber, bool tls, bool repeated = false) {
        return std::tuple<std::string, bool, bool>(subscriber, tls, repeated);
    };
    const json& first = by[key("198.51.100.7", false)];
    EXPECT_EQ(first["type"], "mail_session");
    EXPECT_EQ(first["count"], 1);
    EXPECT_EQ(first["messages"], 2);
    EXPECT_EQ(first["recipients"], 40);
    const json& a = by[key("198.51.100.7", false, true)];
    EXPECT_EQ(a["type"], "mail_session");
    EXPECT_EQ(a["count"], 1) << "sessions after the first";
    EXPECT_EQ(a["messages"], 1);
    EXPECT_EQ(a["recipients"], 10);
    EXPECT_EQ(a["rejected_recipients"], 0);
    EXPECT_EQ(first["messages"].get<uint64_t>() + a["messages"].get<uint64_t>(), 3u) << "the lines sum to the sessions";
    EXPECT_FALSE(a.contains("server")) << "merged sessions went to different servers: none is named";
    EXPECT_EQ(by[key("198.51.100.7", true)]["count"], 1);
    EXPECT_EQ(by[key("198.51.100.8", false)]["rejected_recipients"], 5);
}

TEST(EventLog, AnUnmergedSessionCarriesItsOwnCounts) {
    const test::temp_dir d("events");
    const fs::path f = d.path / "events.jsonl";
    {
        event_log log(aggregating(f, 0));
        add(log, session("192.0.2.9", t0, 4, 9, 1));
    }
    const auto lines = lines_of(f);
    ASSERT_EQ(lines.size(), 1u);
    EXPECT_EQ(lines[0]["count"], 1);
    EXPECT_EQ(lines[0]["messages"], 4);
    EXPECT_EQ(lines[0]["recipients"], 9);
    EXPECT_EQ(lines[0]["rejected_recipients"], 1);
}

TEST(EventLog, DifferentSubscribersTypesReasonsAndGenerationsAreNotMerged) {
    const test::temp_dir d("events");
    const fs::path f = d.path / "events.jsonl";
    event_log log(aggregating(f));
    add(log, block("198.51.100.7", t0));
    add(log, block("198.51.100.7", t0 + 1));                       // merged with the first
    add(log, block("198.51.100.8", t0 + 2));                       // another subscriber
    add(log, block("198.51.100.7", t0 + 3, 2));                    // another generation
    add(log, block("198.51.100.7", t0 + 4, 1, event_type::op25b_monitor));
    add(log, block("198.51.100.7", t0 + 5, 1, event_type::op25b_block,
                   static_cast<uint8_t>(block_reason::op25b_incomplete_fragment)));
    event_record drop = block("198.51.100.7", t0 + 6);
    drop.action = static_cast<uint8_t>(op25b_action::drop);
    add(log, drop);
    add(log, limit_hit("198.51.100.7", t0 + 7, 6));
    add(log, limit_hit("198.51.100.7", t0 + 8, 7));                // merged: same limit, action
    event_record v6 = block("198.51.100.7", t0 + 9);
    v6.ip_version = 6;
    inet_pton(AF_INET6, "2001:db8::7", v6.src);
    add(log, v6);
    log.flush_all();
    const auto lines = lines_of(f);
    ASSERT_EQ(lines.size(), 10u) << "8 keys, 2 of them with a repeat";
    uint64_t total = 0;
    for (const auto& l : lines) total += l["count"].get<uint64_t>();
    EXPECT_EQ(total, 10u) << "the counts always sum to the events";
    EXPECT_EQ(lines[0]["src"], "198.51.100.7");
    EXPECT_EQ(lines[1]["src"], "198.51.100.8");
    EXPECT_EQ(lines[6]["type"], "limit_exceeded");
    EXPECT_EQ(lines[6]["measured"], 6) << "the first hit";
    EXPECT_EQ(lines[8]["repeated"], true);
    EXPECT_EQ(lines[8]["src"], "198.51.100.7");
    EXPECT_EQ(lines[8]["time_ns"], t0 + 1);
    EXPECT_EQ(lines[9]["repeated"], true);
    EXPECT_EQ(lines[9]["type"], "limit_exceeded");
    EXPECT_EQ(lines[9]["measured"], 7) << "the repeat's own hit";
    EXPECT_EQ(log.counters().aggregated, 2u);
}

TEST(EventLog, TheWindowEndsByTheEventsOwnClock) {
    const test::temp_dir d("events");
    const fs::path f = d.path / "events.jsonl";
    event_log log(aggregating(f, 10 * s));
    add(log, block("198.51.100.7", t0));
    add(log, block("198.51.100.7", t0 + 10 * s - 1));   // the last nanosecond of the window
    add(log, block("198.51.100.8", t0 + 5 * s));
    EXPECT_EQ(log.written(), 2u) << "the first of .7 and of .8";
    // Any event at or after the window's end closes it, whoever it is from.
    add(log, block("198.51.100.9", t0 + 10 * s));
    EXPECT_EQ(log.written(), 4u);
    {
        const auto lines = lines_of(f);
        ASSERT_EQ(lines.size(), 4u);
        EXPECT_EQ(lines[2]["repeated"], true) << "the repeat line comes before .9's first line";
        EXPECT_EQ(lines[2]["count"], 1);
        EXPECT_EQ(lines[2]["last_ns"], t0 + 10 * s - 1);
        EXPECT_EQ(lines[3]["src"], "198.51.100.9");
    }
    add(log, block("198.51.100.7", t0 + 10 * s));        // a new window for .7: its first line
    add(log, block("198.51.100.7", t0 + 16 * s));        // closes .8's (opened at t0+5s, no repeat); a repeat of .7
    EXPECT_EQ(log.written(), 5u);
    log.flush_all();
    const auto lines = lines_of(f);
    ASSERT_EQ(lines.size(), 6u);
    EXPECT_EQ(lines[4]["src"], "198.51.100.7");
    EXPECT_EQ(lines[4]["time_ns"], t0 + 10 * s);
    EXPECT_EQ(lines[5]["src"], "198.51.100.7");
    EXPECT_EQ(lines[5]["repeated"], true);
    EXPECT_EQ(lines[5]["first_ns"], t0 + 16 * s);
    expect_balanced(log);
}

TEST(EventLog, ALiveClockClosesWindowsWithoutNewEvents) {
    const test::temp_dir d("events");
    const fs::path f = d.path / "events.jsonl";
    uint64_t now = t0;
    event_log log(aggregating(f, 10 * s), [&] { return now; });
    add(log, block("198.51.100.7", t0));
    add(log, block("198.51.100.7", t0 + s));
    log.drain({});
    EXPECT_EQ(log.written(), 1u);
    now = t0 + 10 * s;
    log.drain({});   // no rings, no events: the clock alone closes the window
    EXPECT_EQ(log.written(), 2u);
    EXPECT_EQ(lines_of(f).size(), 2u);
}

TEST(EventLog, PendingKeysAreBoundedAndOverflowIsCounted) {
    const test::temp_dir d("events");
    const fs::path f = d.path / "events.jsonl";
    events_config c = aggregating(f, 60 * s);
    c.max_pending = 4;
    event_log log(c);
    char addr[32];
    for (int i = 1; i <= 10; ++i) {
        std::snprintf(addr, sizeof addr, "198.51.100.%d", i);
        add(log, block(addr, t0 + static_cast<uint64_t>(i)));
        add(log, block(addr, t0 + static_cast<uint64_t>(i) + 1));   // a repeat, held in the window
        EXPECT_LE(log.counters().pending, 4u);
    }
    EXPECT_EQ(log.counters().aggregation_overflow, 6u);
    EXPECT_EQ(log.written(), 16u) << "10 first lines, and the repeats of the 6 windows closed early";
    const auto early = lines_of(f);
    ASSERT_EQ(early.size(), 16u);
    EXPECT_EQ(early[0]["src"], "198.51.100.1");
    add(log, block("198.51.100.10", t0 + 20));   // still open: merged
    log.flush_all();
    const auto lines = lines_of(f);
    ASSERT_EQ(lines.size(), 20u);
    EXPECT_EQ(lines.back()["src"], "198.51.100.10");
    EXPECT_EQ(lines.back()["count"], 2);
    EXPECT_EQ(lines.back()["repeated"], true);
    expect_balanced(log);
}

TEST(EventLog, RotatesBySizeAndKeepsTheNewestFiles) {
    const test::temp_dir d("events");
    const fs::path f = d.path / "events.jsonl";
    events_config c = aggregating(f, 0);
    c.rotate_bytes = 1000;
    c.keep = 3;
    event_log log(c);
    for (int i = 0; i < 60; ++i) add(log, block("198.51.100.7", t0 + static_cast<uint64_t>(i)));
    log.flush_all();
    EXPECT_GE(log.counters().rotations, 4u);
    EXPECT_EQ(log.counters().io_errors, 0u);
    EXPECT_EQ(log.written(), 60u);
    for (const char* suffix : {"", ".1", ".2", ".3"}) {
        const fs::path p = f.string() + suffix;
        ASSERT_TRUE(fs::exists(p)) << p;
        EXPECT_LE(fs::file_size(p), 1000u) << p;
        EXPECT_FALSE(lines_of(p).empty()) << p;
    }
    EXPECT_FALSE(fs::exists(f.string() + ".4")) << "older than keep: deleted";
    // The newest events are in the current file, older ones in .1, .2, .3.
    const auto current = lines_of(f);
    EXPECT_EQ(current.back()["time_ns"], t0 + 59);
    const auto one = lines_of(f.string() + ".1");
    const auto two = lines_of(f.string() + ".2");
    EXPECT_EQ(one.back()["time_ns"].get<uint64_t>() + 1, current.front()["time_ns"].get<uint64_t>());
    EXPECT_EQ(two.back()["time_ns"].get<uint64_t>() + 1, one.front()["time_ns"].get<uint64_t>());
}

TEST(EventLog, RotatesByTimeSinceTheFileWasOpened) {
    const test::temp_dir d("events");
    const fs::path f = d.path / "events.jsonl";
    uint64_t mono = 1000 * s;
    events_config c = aggregating(f, 0);
    c.rotate_interval_ns = 60 * s;
    c.keep = 2;
    event_log log(c, nullptr, [&] { return mono; });
    add(log, block("198.51.100.7", t0));
    mono += 59 * s;
    log.drain({});
    EXPECT_EQ(log.counters().rotations, 0u);
    mono += s;
    log.drain({});
    EXPECT_EQ(log.counters().rotations, 1u);
    EXPECT_EQ(fs::file_size(f), 0u);
    ASSERT_EQ(lines_of(f.string() + ".1").size(), 1u);
    // An empty file is not rotated: its interval starts again.
    mono += 120 * s;
    log.drain({});
    EXPECT_EQ(log.counters().rotations, 1u);
    add(log, block("198.51.100.7", t0 + 1));
    mono += 60 * s;
    add(log, block("198.51.100.7", t0 + 2));   // rotates first, then goes into the new file
    EXPECT_EQ(log.counters().rotations, 2u);
    EXPECT_EQ(lines_of(f.string() + ".2").front()["time_ns"], t0);
    EXPECT_EQ(lines_of(f.string() + ".1").front()["time_ns"], t0 + 1);
    EXPECT_EQ(lines_of(f).front()["time_ns"], t0 + 2);
    mono += 60 * s;
    log.drain({});
    EXPECT_EQ(log.counters().rotations, 3u);
    EXPECT_FALSE(fs::exists(f.string() + ".3")) << "keep: 2";
    EXPECT_EQ(lines_of(f.string() + ".2").front()["time_ns"], t0 + 1);
}

TEST(EventLog, KeepZeroDeletesTheRotatedFile) {
    const test::temp_dir d("events");
    const fs::path f = d.path / "events.jsonl";
    events_config c = aggregating(f, 0);
    c.rotate_bytes = 4096;
    c.keep = 0;
    event_log log(c);
    for (int i = 0; i < 100; ++i) add(log, block("198.51.100.7", t0 + static_cast<uint64_t>(i)));
    EXPECT_GE(log.counters().rotations, 1u);
    EXPECT_FALSE(fs::exists(f.string() + ".1"));
    EXPECT_LE(fs::file_size(f), 4096u);
}

TEST(EventLog, RotationDeletesFilesAboveKeepLeftByAnEarlierLargerKeep) {
    const test::temp_dir d("events");
    const fs::path f = d.path / "events.jsonl";
    for (int i = 1; i <= 5; ++i) std::ofstream(f.string() + "." + std::to_string(i)) << "{}\n";
    events_config c = aggregating(f, 0);
    c.rotate_bytes = 4096;
    c.keep = 2;
    event_log log(c);
    for (int i = 0; i < 40; ++i) add(log, block("198.51.100.7", t0 + static_cast<uint64_t>(i)));
    ASSERT_GE(log.counters().rotations, 1u);
    EXPECT_TRUE(fs::exists(f.string() + ".2"));
    for (int i = 3; i <= 5; ++i) EXPECT_FALSE(fs::exists(f.string() + "." + std::to_string(i))) << i;
}

TEST(EventLog, EveryFsyncPolicyWrites) {
    for (events_fsync mode : {events_fsync::never, events_fsync::rotate, events_fsync::interval, events_fsync::every}) {
        const test::temp_dir d("events");
        const fs::path f = d.path / "events.jsonl";
        events_config c = aggregating(f, 0);
        c.fsync = mode;
        c.fsync_interval_ns = 1;
        c.rotate_bytes = 4096;
        event_log log(c);
        for (int i = 0; i < 50; ++i) add(log, block("198.51.100.7", t0 + static_cast<uint64_t>(i)));
        log.flush_all();
        EXPECT_EQ(log.written(), 50u);
        EXPECT_EQ(log.counters().io_errors, 0u);
        EXPECT_GE(log.counters().rotations, 1u);
    }
}

// /dev/full: every write fails with ENOSPC, as on a full disk.
TEST(EventLog, AFullDiskIsCountedNeverThrown) {
    events_config c = aggregating("/dev/full", 0);
    c.fsync = events_fsync::every;
    c.rotate_bytes = 4096;
    event_log log(c);
    for (int i = 0; i < 100; ++i) EXPECT_NO_THROW(add(log, block("198.51.100.7", t0 + static_cast<uint64_t>(i))));
    EXPECT_EQ(log.written(), 0u);
    EXPECT_EQ(log.counters().lines, 0u);
    EXPECT_EQ(log.write_errors(), 100u);
    EXPECT_GE(log.counters().io_errors, 100u);
    EXPECT_EQ(log.counters().rotations, 0u) << "not a regular file";
    expect_balanced(log);
}

TEST(EventLog, AFullDiskLosesAggregatedEventsByTheirCount) {
    event_log log(aggregating("/dev/full", 10 * s));
    for (int i = 0; i < 7; ++i) add(log, block("198.51.100.7", t0 + static_cast<uint64_t>(i)));
    EXPECT_EQ(log.write_errors(), 1u) << "the first line, at once";
    EXPECT_NO_THROW(log.flush_all());
    EXPECT_EQ(log.written(), 0u);
    EXPECT_EQ(log.write_errors(), 7u) << "and the repeat line's 6";
    EXPECT_EQ(log.counters().io_errors, 2u);
    expect_balanced(log);
}

// The directory removed with the file: nothing can be opened at the path, so
// every event from then on is a counted loss (never a line into the deleted
// file), and the log keeps trying until the directory is back.
TEST(EventLog, KeepsTryingWhileTheDirectoryIsGone) {
    const test::temp_dir d("events");
    const fs::path dir = d.path / "log";
    fs::create_directory(dir);
    const fs::path f = dir / "events.jsonl";
    events_config c = aggregating(f, 0);
    c.rotate_bytes = 4096;
    event_log log(c);
    add(log, block("198.51.100.7", t0));
    fs::remove_all(dir);
    for (int i = 1; i < 40; ++i) EXPECT_NO_THROW(add(log, block("198.51.100.7", t0 + static_cast<uint64_t>(i))));
    EXPECT_EQ(log.written(), 1u);
    EXPECT_EQ(log.write_errors(), 39u);
    EXPECT_GE(log.counters().io_errors, 39u);
    EXPECT_EQ(log.counters().reopened, 1u);
    expect_balanced(log);
    fs::create_directory(dir);
    add(log, block("198.51.100.7", t0 + 100));
    EXPECT_EQ(log.written(), 2u);
    ASSERT_EQ(lines_of(f).size(), 1u);
    EXPECT_EQ(lines_of(f)[0]["time_ns"], t0 + 100);
    expect_balanced(log);
}

TEST(EventLog, FollowsTheFileDeletedUnderneath) {
    const test::temp_dir d("events");
    const fs::path f = d.path / "events.jsonl";
    event_log log(aggregating(f, 0));
    for (int i = 0; i < 3; ++i) add(log, block("198.51.100.7", t0 + static_cast<uint64_t>(i)));
    ASSERT_EQ(lines_of(f).size(), 3u);
    fs::remove(f);   // an operator's rm, a broken logrotate
    for (int i = 3; i < 5; ++i) add(log, block("198.51.100.7", t0 + static_cast<uint64_t>(i)));
    ASSERT_TRUE(fs::exists(f)) << "the path is created again";
    const auto lines = lines_of(f);
    ASSERT_EQ(lines.size(), 2u);
    EXPECT_EQ(lines[0]["time_ns"], t0 + 3);
    EXPECT_EQ(lines[1]["time_ns"], t0 + 4);
    EXPECT_EQ(log.counters().reopened, 1u);
    EXPECT_EQ(log.written(), 5u);
    EXPECT_EQ(log.write_errors(), 0u);
    EXPECT_EQ(log.counters().io_errors, 0u);
    expect_balanced(log);
    // Nothing to follow while the file stays: a drain checks and stays put.
    log.drain({});
    add(log, block("198.51.100.7", t0 + 5));
    EXPECT_EQ(log.counters().reopened, 1u);
    EXPECT_EQ(lines_of(f).size(), 3u);
    // Deleted again, and nothing arrives for a while: the drain alone follows it.
    fs::remove(f);
    log.drain({});
    EXPECT_EQ(log.counters().reopened, 2u);
    EXPECT_TRUE(fs::exists(f));
    EXPECT_EQ((fs::status(f).permissions() & fs::perms::others_all), fs::perms::none) << "created 0640";
}

// Events waiting in an aggregation window when the file goes are written to
// the new file when the window closes: nothing is lost.
TEST(EventLog, AggregatedEventsOutliveTheDeletedFile) {
    const test::temp_dir d("events");
    const fs::path f = d.path / "events.jsonl";
    event_log log(aggregating(f, 10 * s));
    for (int i = 0; i < 4; ++i) add(log, block("198.51.100.7", t0 + static_cast<uint64_t>(i)));
    EXPECT_EQ(log.counters().pending, 3u) << "the first was written at once";
    fs::remove(f);
    add(log, block("198.51.100.7", t0 + 11 * s));   // closes the first window
    log.flush_all();
    const auto lines = lines_of(f);
    ASSERT_EQ(lines.size(), 2u);
    EXPECT_EQ(lines[0]["count"], 3);
    EXPECT_EQ(lines[0]["repeated"], true);
    EXPECT_EQ(lines[1]["count"], 1);
    EXPECT_EQ(log.written(), 5u);
    EXPECT_EQ(log.write_errors(), 0u);
    EXPECT_EQ(log.counters().reopened, 1u);
    expect_balanced(log);
}

// logrotate without copytruncate and without a signal: the file is moved
// away (and "create" puts a new one in its place); the lines written before
// stay in the moved file, the next ones go to the path.
TEST(EventLog, FollowsTheFileMovedAwayAndReplaced) {
    const test::temp_dir d("events");
    const fs::path f = d.path / "events.jsonl";
    events_config c = aggregating(f, 0);
    c.fsync = events_fsync::rotate;
    c.rotate_bytes = 4096;
    event_log log(c);
    for (int i = 0; i < 2; ++i) add(log, block("198.51.100.7", t0 + static_cast<uint64_t>(i)));
    fs::rename(f, f.string() + ".old");
    std::ofstream(f) << "{\"type\":\"someone_else\",\"count\":1}\n";
    for (int i = 2; i < 4; ++i) add(log, block("198.51.100.7", t0 + static_cast<uint64_t>(i)));
    const auto old = lines_of(f.string() + ".old");
    ASSERT_EQ(old.size(), 2u);
    EXPECT_EQ(old[1]["time_ns"], t0 + 1);
    const auto now = lines_of(f);
    ASSERT_EQ(now.size(), 3u) << "appended to the replacing file";
    EXPECT_EQ(now[0]["type"], "someone_else");
    EXPECT_EQ(now[1]["time_ns"], t0 + 2);
    EXPECT_EQ(now[2]["time_ns"], t0 + 3);
    EXPECT_EQ(log.counters().reopened, 1u);
    EXPECT_EQ(log.counters().io_errors, 0u);
    // Moved away with nothing put in its place: a new file at the path.
    fs::rename(f, f.string() + ".1");
    add(log, block("198.51.100.7", t0 + 4));
    EXPECT_EQ(log.counters().reopened, 2u);
    ASSERT_EQ(lines_of(f).size(), 1u);
    EXPECT_EQ(lines_of(f)[0]["time_ns"], t0 + 4);
    // Size rotation goes on counting from the followed file's size.
    for (int i = 5; i < 60; ++i) add(log, block("198.51.100.7", t0 + static_cast<uint64_t>(i)));
    EXPECT_GE(log.counters().rotations, 1u);
    EXPECT_LE(fs::file_size(f), 4096u);
    EXPECT_EQ(log.written(), 60u);
    EXPECT_EQ(log.write_errors(), 0u);
    expect_balanced(log);
}

TEST(EventLog, AnUnopenableFileThrowsAtStart) {
    EXPECT_THROW(event_log("/nonexistent-dir/events.jsonl"), std::runtime_error);
}

// The policy's events section.

std::vector<std::string> errors_of(const std::string& text) {
    try {
        load_policy_text(text, "p.yaml");
    } catch (const policy_error& e) {
        return e.errors();
    }
    ADD_FAILURE() << "accepted:\n" << text;
    return {};
}

TEST(EventsPolicy, Defaults) {
    const policy p = load_policy_text("version: 1\n", "p.yaml");
    EXPECT_EQ(p.events.file, "/var/log/sekisho/events.jsonl");
    EXPECT_EQ(p.events.rotate_bytes, 100ull << 20);
    EXPECT_EQ(p.events.rotate_interval_ns, 86400 * s);
    EXPECT_EQ(p.events.keep, 14u);
    EXPECT_EQ(p.events.fsync, events_fsync::interval);
    EXPECT_EQ(p.events.fsync_interval_ns, s);
    EXPECT_EQ(p.events.aggregate_window_ns, 10 * s);
}

TEST(EventsPolicy, EveryKey) {
    const policy p = load_policy_text(R"(version: 1
events:
  file: /var/log/sekisho/ev.jsonl
  rotate_bytes: 64KB
  rotate_interval: 1h
  keep: 3
  fsync: interval
  fsync_interval: 500ms
  aggregate_window: 30s
)", "p.yaml");
    EXPECT_EQ(p.events.file, "/var/log/sekisho/ev.jsonl");
    EXPECT_EQ(p.events.rotate_bytes, 64u << 10);
    EXPECT_EQ(p.events.rotate_interval_ns, 3600 * s);
    EXPECT_EQ(p.events.keep, 3u);
    EXPECT_EQ(p.events.fsync_interval_ns, s / 2);
    EXPECT_EQ(p.events.aggregate_window_ns, 30 * s);

    const policy q = load_policy_text(R"(version: 1
events: {file: "-", rotate_bytes: 0, rotate_interval: 0s, keep: 0, fsync: every, aggregate_window: 0s}
)", "p.yaml");
    EXPECT_EQ(q.events.file, "-");
    EXPECT_EQ(q.events.rotate_bytes, 0u);
    EXPECT_EQ(q.events.rotate_interval_ns, 0u);
    EXPECT_EQ(q.events.keep, 0u);
    EXPECT_EQ(q.events.fsync, events_fsync::every);
    EXPECT_EQ(q.events.aggregate_window_ns, 0u);
    EXPECT_EQ(load_policy_text("version: 1\nevents: {rotate_bytes: 2GB, fsync: never}\n", "p.yaml").events.rotate_bytes,
              2ull << 30);
    EXPECT_EQ(load_policy_text("version: 1\nevents: {fsync: rotate}\n", "p.yaml").events.fsync, events_fsync::rotate);
}

TEST(EventsPolicy, ErrorsNameTheLineAndKey) {
    const auto e = errors_of(R"(version: 1
events:
  file: ""
  rotate_bytes: 10XB
  rotate_interval: fast
  keep: -1
  fsync: sometimes
  aggregate_window: 2h
  colour: blue
)");
    ASSERT_EQ(e.size(), 7u) << ::testing::PrintToString(e);
    auto has = [&](const std::string& text) {
        for (const auto& x : e)
            if (x.find(text) != std::string::npos) return true;
        return false;
    };
    EXPECT_TRUE(has("p.yaml:3: events.file: expected a non-empty name")) << ::testing::PrintToString(e);
    EXPECT_TRUE(has("p.yaml:4: events.rotate_bytes: '10XB' is not a size")) << ::testing::PrintToString(e);
    EXPECT_TRUE(has("p.yaml:5: events.rotate_interval: 'fast' is not a duration")) << ::testing::PrintToString(e);
    EXPECT_TRUE(has("p.yaml:6: events.keep: -1 is out of range (0 to 1000)")) << ::testing::PrintToString(e);
    EXPECT_TRUE(has("p.yaml:7: events.fsync: 'sometimes' is not one of: never, rotate, interval, every"))
        << ::testing::PrintToString(e);
    EXPECT_TRUE(has("p.yaml:8: events.aggregate_window: above 1h")) << ::testing::PrintToString(e);
    EXPECT_TRUE(has("p.yaml:9: events.colour: unknown key")) << ::testing::PrintToString(e);

    const auto f = errors_of("version: 1\nevents:\n  fsync: never\n  fsync_interval: 1s\n  rotate_bytes: 100\n");
    ASSERT_EQ(f.size(), 2u) << ::testing::PrintToString(f);
    EXPECT_NE(f[0].find("p.yaml:4: events.fsync_interval: applies to fsync: interval only"), std::string::npos) << f[0];
    EXPECT_NE(f[1].find("p.yaml:5: events.rotate_bytes: '100' is below 4KB"), std::string::npos) << f[1];

    const auto g = errors_of("version: 1\nevents: [1]\n");
    ASSERT_EQ(g.size(), 1u);
    EXPECT_NE(g[0].find("p.yaml:2: events: expected a mapping"), std::string::npos) << g[0];
    const auto h = errors_of("version: 1\nevents: {rotate_interval: 500ms, fsync_interval: 0s}\n");
    ASSERT_EQ(h.size(), 2u) << ::testing::PrintToString(h);
    EXPECT_NE(h[0].find("events.rotate_interval: below 1s"), std::string::npos) << h[0];
    EXPECT_NE(h[1].find("events.fsync_interval: '0s' is not a duration"), std::string::npos) << h[1];
}

}  // namespace
}  // namespace sekisho
