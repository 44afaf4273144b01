// mail_tracker segment by segment, in the manner of Katran's lib/testing
// fixtures: a table of fixtures, each a policy, the subscribers' bindings and
// accounts, and the segments of one or more SMTP connections in the order the
// gateway sees them. Every segment carries what the tracker must do with it:
//
//  - its verdict: forwarded (handle() lets it pass, nothing injected), dropped
//    (stopped, nothing injected) or replaced (stopped, and segments injected);
//  - the injected segments, as exact frames: built here with frame_builder
//    from the connection and the triggering segment's numbers, independently
//    of build_tcp_segment, and compared byte for byte, on the list that leaves
//    through the right port;
//  - the events it raises (limit_exceeded, account_suspended, content_verdict,
//    mail_session), every field;
// and each fixture the mail counters it leaves (a counter not named must stay
// 0), the limit hits by index, and the flows still open.
//
// The fixtures cover every limit action (drop-syn, reset, tempfail, monitor),
// every measure (connections, messages, recipients, recipients_per_message,
// rejected_recipients), every scope (address, IPv6 prefix, account, an unbound
// address as its own account), several limits on one segment, suspension (a
// SYN refused, an open session reset at its next segment) and the content
// verdicts (event, tempfail, quarantine, tighten) reached before the
// end-of-data marker. Runs under eal_test_main.cpp (mbufs, rte_hash, rings).
#include "dataplane/limits/mail_tracker.h"

#include <gtest/gtest.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

#include <array>
#include <cstring>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "../support/frame_builder.h"
#include "../support/lab_policy.h"
#include "control/policy/policy.h"
#include "control/policy/policy_compiler.h"
#include "dataplane/event_ring.h"
#include "dataplane/inspect/content_inspector.h"
#include "dataplane/limits/subscriber_table.h"
#include "dataplane/net/packet_parser.h"
#include "dataplane/pipeline.h"
#include "dataplane/worker_counters.h"

namespace sekisho {
namespace {

using test::bytes;
using test::frame_builder;

constexpr uint8_t fin = test::tcp_flags_fin, syn = test::tcp_flags_syn, rst = test::tcp_flags_rst,
                  psh = test::tcp_flags_psh, ack = test::tcp_flags_ack;

// The lab's subscriber ranges (tests/support/lab_policy.h; IPv6 subscribers by
// the default /56); each fixture appends its limits, inspection and account
// groups.
const std::string base_policy = test::lab_policy_text;

constexpr uint64_t base_ns = 1795399200ull * 1000000000ull;  // an hour boundary: windows start here
const std::array<uint8_t, 6> client_mac{0x02, 0, 0, 0, 0, 0x01}, server_mac{0x02, 0, 0, 0, 0, 0x02};

constexpr const char* tempfail_text = "421 4.7.0 Too much mail from your connection, try again later\r\n";

// The dialogue's lines.
constexpr const char* greeting = "220 mx.example.net ESMTP\r\n";
constexpr const char* ehlo = "EHLO client.example.jp\r\n";
constexpr const char* ehlo_reply = "250-mx.example.net\r\n250 PIPELINING\r\n";
constexpr const char* mail_from = "MAIL FROM:<a@example.jp>\r\n";
constexpr const char* mail_ok = "250 2.1.0 Ok\r\n";
constexpr const char* rcpt_ok = "250 2.1.5 Ok\r\n";
constexpr const char* rset = "RSET\r\n";
constexpr const char* rset_ok = "250 2.0.0 Ok\r\n";
constexpr const char* data_cmd = "DATA\r\n";
constexpr const char* go_ahead = "354 End data with <CR><LF>.<CR><LF>\r\n";
constexpr const char* end_of_data = ".\r\n";
constexpr const char* queued = "250 2.0.0 Ok: queued as 4Xq1\r\n";
constexpr const char* quit = "QUIT\r\n";
constexpr const char* bye = "221 2.0.0 Bye\r\n";
std::string rcpt_to(int n) { return "RCPT TO:<r" + std::to_string(n) + "@example.net>\r\n"; }
std::string rejected(int n) {
    return "550 5.1.1 <r" + std::to_string(n) + "@example.net>: Recipient address rejected\r\n";
}

// --- The table's vocabulary ---------------------------------------------------

enum class side { client, server };
enum class verdict { forwarded, dropped, replaced };
const char* to_string(verdict v) {
    constexpr const char* names[] = {"forwarded", "dropped", "replaced"};
    return names[static_cast<unsigned>(v)];
}

// One TCP connection: the subscriber (client, behind the access port) and the
// server (behind the core port).
struct connection {
    std::string client;
    uint16_t client_port;
    std::string server = test::mx4;
    uint16_t server_port = 587;
    std::optional<uint16_t> pppoe = std::nullopt;   // the access line's PPPoE session
    bool ipv6() const { return client.find(':') != std::string::npos; }
};

// A sequence or acknowledgement number of an injected segment, by what the
// segment that triggered it carried.
enum class number { zero, seq, ack, seq_plus_payload, seq_plus_one };

// A segment the tracker must inject.
struct injection {
    side to;
    uint8_t flags;
    number seq, ack;
    std::string payload;
};
injection rst_to(side to, number seq) { return {to, rst, seq, number::zero, ""}; }
// The answer to a client SYN: RST+ACK acknowledging it (RFC 9293 3.10.7.1).
injection rst_ack_to_syn() { return {side::client, rst | ack, number::zero, number::seq_plus_one, ""}; }
// Both ends reset for a client segment: the client at the number it expects
// next (the segment's acknowledgement), the server at the segment's own.
std::vector<injection> resets_for_client_segment() {
    return {rst_to(side::client, number::ack), rst_to(side::server, number::seq)};
}
// The 421 answering a refused client segment in the server's name (it
// acknowledges the segment and closes), and the server's side reset.
std::vector<injection> tempfail_for_client_segment() {
    return {{side::client, fin | psh | ack, number::ack, number::seq_plus_payload, tempfail_text},
            rst_to(side::server, number::seq)};
}
// A server reply replaced by the 421 at its own numbers; the server reset.
std::vector<injection> tempfail_for_server_segment() {
    return {{side::client, fin | psh | ack, number::seq, number::ack, tempfail_text},
            rst_to(side::server, number::ack)};
}

// An event the segment must raise. Addresses, ports, time, generation, worker,
// ingress and TCP flags follow from the segment and are checked for every
// event; these are the rest (a content verdict's fingerprint is the
// inspector's, message_fingerprint_test pins it).
struct expected_event {
    event_type type;
    std::string limit;           // limit_exceeded: the limit's name (its index is the event's reason)
    uint8_t action = 0;          // limit_action; score_action for content_verdict; session bits for mail_session
    uint32_t count = 0;          // the measured count; messages (mail_session); recipients (content_verdict)
    uint32_t account = 0;
    uint32_t recipients = 0, rejected_recipients = 0;   // mail_session
    int32_t score = 0;                                  // content_verdict
    std::vector<uint16_t> rules = {};                   // content_verdict: rule indices
    uint8_t flags = 0;                                  // event_flags
};
expected_event limit_hit(const char* limit, limit_action a, uint32_t count, uint32_t account = 0) {
    return {event_type::limit_exceeded, limit, static_cast<uint8_t>(a), count, account};
}
// A monitor-action limit's first hit on its connection: the connection it would have stopped.
expected_event first_monitored(expected_event e) {
    e.flags = event_flags::first_monitored_hit;
    return e;
}
expected_event suspended_refusal(uint32_t account) {
    return {event_type::account_suspended, "", static_cast<uint8_t>(limit_action::reset), 0, account};
}
expected_event session_end(uint32_t messages, uint32_t recipients, uint32_t rejected, uint32_t account = 0) {
    return {event_type::mail_session, "", 0, messages, account, recipients, rejected};
}
expected_event content_verdict(int32_t score, std::vector<uint16_t> rules, score_action a, uint32_t recipients,
                               uint32_t account = 0) {
    return {event_type::content_verdict, "", static_cast<uint8_t>(a), recipients, account, 0, 0, score,
            std::move(rules)};
}

// One segment of a connection and what must become of it. Sequence and
// acknowledgement numbers follow the connection (client from 1000, server
// from 5000), each segment advancing its side.
struct step {
    unsigned conn;
    side from;
    uint8_t flags;
    std::string payload;
    verdict expect = verdict::forwarded;
    std::vector<injection> injected = {};
    std::vector<expected_event> events = {};
    uint64_t after_ms = 1;                    // time since the previous step
    bool retransmission = false;              // the side's previous segment again (same number)
    std::optional<uint32_t> suspend_first;    // the operator suspends this account just before

    step& replaced_by(std::vector<injection> v) {
        expect = verdict::replaced;
        injected = std::move(v);
        return *this;
    }
    step& dropped() {
        expect = verdict::dropped;
        return *this;
    }
    step& raises(std::vector<expected_event> e) {
        events = std::move(e);
        return *this;
    }
    step& after(uint64_t ms) {
        after_ms = ms;
        return *this;
    }
    step& again() {
        retransmission = true;
        return *this;
    }
    step& once_suspended(uint32_t account) {
        suspend_first = account;
        return *this;
    }
};
step client(unsigned conn, std::string text, uint8_t flags = psh | ack) {
    return {conn, side::client, flags, std::move(text)};
}
step server(unsigned conn, std::string text, uint8_t flags = psh | ack) {
    return {conn, side::server, flags, std::move(text)};
}
step client_syn(unsigned conn) { return client(conn, "", syn); }
step server_syn_ack(unsigned conn) { return server(conn, "", syn | ack); }
step client_ack(unsigned conn) { return client(conn, "", ack); }
step client_fin(unsigned conn) { return client(conn, "", fin | ack); }
step server_fin(unsigned conn) { return server(conn, "", fin | ack); }
step client_rst(unsigned conn) { return client(conn, "", rst); }

// Steps in order: single steps and runs of them (std::vector<step>).
struct steps : std::vector<step> {
    struct part {
        part(step s) : v{std::move(s)} {}
        part(std::vector<step> s) : v(std::move(s)) {}
        std::vector<step> v;
    };
    steps(std::initializer_list<part> parts) {
        for (const part& p : parts) insert(end(), p.v.begin(), p.v.end());
    }
};
// The handshake and the greeting, all forwarded.
std::vector<step> connect_and_greet(unsigned conn) {
    return {client_syn(conn), server_syn_ack(conn), client_ack(conn), server(conn, greeting)};
}
// ... then EHLO and its reply.
std::vector<step> open_session(unsigned conn) {
    std::vector<step> s = connect_and_greet(conn);
    s.push_back(client(conn, ehlo));
    s.push_back(server(conn, ehlo_reply));
    return s;
}
// A whole message with one recipient, MAIL FROM to the 250 after its end of
// data, all forwarded; `at_end`: the events its end of data raises.
std::vector<step> message(unsigned conn, const std::string& body, std::vector<expected_event> at_end = {}) {
    return {client(conn, mail_from),
            server(conn, mail_ok),
            client(conn, rcpt_to(1)),
            server(conn, rcpt_ok),
            client(conn, data_cmd),
            server(conn, go_ahead),
            client(conn, body),
            client(conn, end_of_data).raises(std::move(at_end)),
            server(conn, queued)};
}

struct binding {
    std::string address;   // an IPv4 address, or an IPv6 prefix (its first 56 bits)
    uint32_t account;
};
struct account_setup {
    uint32_t id;
    uint32_t groups = 0;   // account group bits (the order of account_groups)
    bool suspended = false;
    // Fleet mode: per account limit slot, what the other gateways counted in
    // the window the fixture starts in (the control thread's fleet_share).
    std::vector<std::pair<uint8_t, uint32_t>> fleet_shares = {};
};

struct fixture {
    std::string name;
    std::string description;
    std::string policy;    // appended to base_policy
    std::vector<connection> connections;
    steps script;
    std::vector<std::pair<std::string, uint64_t>> mail_counters;   // the others must stay 0
    uint32_t open_flows;
    std::vector<binding> bindings = {};
    std::vector<account_setup> accounts = {};
    std::vector<std::pair<std::string, uint64_t>> inspection_counters = {};   // checked as named
    // Injections the pool had no mbuf for, by the port they would have left through.
    std::array<uint64_t, ingress_count> reset_failures = {};
};
void PrintTo(const fixture& f, std::ostream* os) { *os << f.name; }

// --- The fixtures -------------------------------------------------------------

const char* dyn4a = "198.51.100.7";
const char* dyn4b = "198.51.100.8";
const char* unbound4 = "198.51.100.9";
const char* body_clean = "Subject: hello\r\n\r\nSee you at ten.\r\n";
const char* body_mild = "Subject: hello\r\n\r\nthere is a mildword in here\r\n";
const char* body_black = "Subject: hello\r\n\r\nthere is a blackword in here\r\n";

std::vector<fixture> fixtures() {
    std::vector<fixture> t;

    t.push_back({
        "connections_drop_syn_by_address",
        "connections, address scope, drop-syn: the third SYN within the burst is dropped without a "
        "reply; another address and, later, the same one connect again",
        "limits:\n  - {name: conn-drop, measure: connections, max: 2, window: 10s, burst: 2, action: drop-syn}\n",
        {{dyn4a, 40001}, {dyn4a, 40002}, {dyn4a, 40003}, {dyn4b, 40004}, {dyn4a, 40005}},
        {client_syn(0), client_syn(1), client_syn(2).dropped().raises({limit_hit("conn-drop", limit_action::drop_syn, 0)}),
         client_syn(3), client_syn(4).after(11000)},
        {{"flows_created", 5}, {"flows_ended", 1}, {"syns_dropped", 1}},
        4,
    });

    t.push_back({
        "connections_reset_by_ipv6_prefix",
        "connections, prefix scope, reset, over PPPoE: a second address of the same /56 gets RST+ACK for "
        "its SYN; a retransmitted SYN is the same connection; another /56 is not limited",
        "limits:\n  - {name: conn-prefix, measure: connections, scope: prefix, max: 1, window: 10s, action: reset}\n",
        {{"2001:db8:100:1::7", 40001, test::mx6, 587, 0x77},
         {"2001:db8:100:2::8", 40002, test::mx6, 587, 0x78},
         {"2001:db8:100:100::9", 40003, test::mx6, 587, 0x79}},
        {client_syn(0), client_syn(0).again().after(1000),
         client_syn(1).replaced_by({rst_ack_to_syn()}).raises({limit_hit("conn-prefix", limit_action::reset, 0)}),
         client_syn(2)},
        {{"flows_created", 3}, {"flows_ended", 1}, {"resets_sent", 1}},
        2,
    });

    t.push_back({
        "connections_tempfail_by_account",
        "connections, account scope, tempfail: the account's second connection (another address) opens, "
        "its greeting becomes the 421, the server is reset; the client's FIN is answered with an RST",
        "limits:\n  - {name: conn-account, measure: connections, scope: account, max: 1, window: 10s, "
        "action: tempfail}\n",
        {{dyn4a, 40001}, {dyn4b, 40002}},
        {connect_and_greet(0),
         client_syn(1).raises({limit_hit("conn-account", limit_action::tempfail, 0, 1)}),
         server_syn_ack(1), client_ack(1),
         server(1, greeting).replaced_by(tempfail_for_server_segment()).raises({session_end(0, 0, 0, 1)}),
         client_fin(1).replaced_by({rst_to(side::client, number::ack)})},
        {{"flows_created", 2}, {"flows_ended", 1}, {"tempfails_sent", 1}},
        1,
        {{dyn4a, 1}, {dyn4b, 1}},
    });

    t.push_back({
        "messages_tempfail_by_account",
        "messages, account scope, tempfail: the account's third MAIL FROM over its two addresses gets the "
        "421 in the server's name, the server an RST; an unbound address is its own account",
        "limits:\n  - {name: msgs-account, measure: messages, scope: account, max: 2, window: 1h}\n",
        {{dyn4a, 40001}, {dyn4b, 40002}, {unbound4, 40003}},
        {open_session(0), client(0, mail_from), server(0, mail_ok),
         open_session(1), client(1, mail_from), server(1, mail_ok), client(1, rset), server(1, rset_ok),
         client(0, rset), server(0, rset_ok),
         client(0, mail_from)
             .replaced_by(tempfail_for_client_segment())
             .raises({limit_hit("msgs-account", limit_action::tempfail, 3, 1), session_end(2, 0, 0, 1)}),
         open_session(2), client(2, mail_from), server(2, mail_ok), client(2, rset), server(2, rset_ok),
         client(2, mail_from), server(2, mail_ok), client(2, rset), server(2, rset_ok),
         client(2, mail_from)
             .replaced_by(tempfail_for_client_segment())
             .raises({limit_hit("msgs-account", limit_action::tempfail, 3), session_end(3, 0, 0)})},
        {{"flows_created", 3}, {"commands", 4 + 3 + 6}, {"messages", 6}, {"tempfails_sent", 2}},
        3,
        {{dyn4a, 1}, {dyn4b, 1}},
    });

    std::vector<step> next_window = open_session(1);
    next_window.front().after(11000);
    t.push_back({
        "messages_tempfail_by_account_with_fleet_share",
        "messages, account scope, fleet mode: the account's other gateways sent 2 of its 3 in this window, so "
        "its second MAIL FROM here is refused with the fleet's count; in the next window that share is stale "
        "(counts 0) and two messages pass",
        "limits:\n  - {name: msgs-account, measure: messages, scope: account, max: 3, window: 10s}\n",
        {{dyn4a, 40001}, {dyn4b, 40002}},
        {open_session(0), client(0, mail_from), server(0, mail_ok), client(0, rset), server(0, rset_ok),
         client(0, mail_from)
             .replaced_by(tempfail_for_client_segment())
             .raises({limit_hit("msgs-account", limit_action::tempfail, 4, 1), session_end(2, 0, 0, 1)}),
         next_window,
         client(1, mail_from), server(1, mail_ok), client(1, rset), server(1, rset_ok),
         client(1, mail_from), server(1, mail_ok)},
        {{"flows_created", 2}, {"commands", 4 + 4}, {"messages", 4}, {"tempfails_sent", 1}},
        2,
        {{dyn4a, 1}, {dyn4b, 1}},
        {{1, 0, false, {{0, 2}}}},
    });

    t.push_back({
        "messages_monitor_by_address",
        "messages, address scope, monitor: every MAIL FROM past the limit is forwarded and raises an event "
        "with the real count; the session closes with both FINs and reports what it carried",
        "limits:\n  - {name: msgs-monitor, measure: messages, max: 1, window: 1h, action: monitor}\n",
        {{dyn4a, 40001}},
        {open_session(0), message(0, body_clean),
         client(0, mail_from).raises({first_monitored(limit_hit("msgs-monitor", limit_action::monitor, 2))}),
         server(0, mail_ok), client(0, rcpt_to(1)), server(0, rcpt_ok), client(0, rset), server(0, rset_ok),
         client(0, mail_from).raises({limit_hit("msgs-monitor", limit_action::monitor, 3)}),
         server(0, mail_ok), client(0, quit), server(0, bye), server_fin(0),
         client_fin(0).raises({session_end(3, 2, 0)})},
        {{"flows_created", 1},
         {"flows_ended", 1},
         {"commands", 9},
         {"messages", 3},
         {"recipients", 2},
         {"monitored_connections", 1}},   // two hits, one connection
        0,
    });

    t.push_back({
        "recipients_reset_by_address",
        "recipients, address scope, reset: the third RCPT TO resets both ends; the server's late reply is "
        "dropped, the client still talking gets an RST, its own RST ends the flow",
        "limits:\n  - {name: rcpt-reset, measure: recipients, max: 2, window: 1h, action: reset}\n",
        {{dyn4a, 40001}},
        {open_session(0), client(0, mail_from), server(0, mail_ok), client(0, rcpt_to(1)), server(0, rcpt_ok),
         client(0, rcpt_to(2)),
         client(0, rcpt_to(3))
             .replaced_by(resets_for_client_segment())
             .raises({limit_hit("rcpt-reset", limit_action::reset, 3), session_end(1, 3, 0)}),
         server(0, rcpt_ok).dropped(), client(0, quit).replaced_by({rst_to(side::client, number::ack)}),
         client_rst(0).dropped()},
        {{"flows_created", 1}, {"flows_ended", 1}, {"commands", 5}, {"messages", 1}, {"recipients", 3},
         {"resets_sent", 1}},
        0,
    });

    t.push_back({
        "recipients_per_message_tempfail",
        "recipients_per_message, tempfail: two recipients pass in each message, the second message's third "
        "RCPT TO gets the 421",
        "limits:\n  - {name: rcpt-per-msg, measure: recipients_per_message, max: 2}\n",
        {{dyn4a, 40001}},
        {open_session(0), client(0, mail_from), server(0, mail_ok), client(0, rcpt_to(1)), server(0, rcpt_ok),
         client(0, rcpt_to(2)), server(0, rcpt_ok), client(0, rset), server(0, rset_ok),
         client(0, mail_from), server(0, mail_ok), client(0, rcpt_to(1)), server(0, rcpt_ok),
         client(0, rcpt_to(2)), server(0, rcpt_ok),
         client(0, rcpt_to(3))
             .replaced_by(tempfail_for_client_segment())
             .raises({limit_hit("rcpt-per-msg", limit_action::tempfail, 3), session_end(2, 5, 0)})},
        {{"flows_created", 1}, {"commands", 9}, {"messages", 2}, {"recipients", 5}, {"tempfails_sent", 1}},
        1,
    });

    t.push_back({
        "rejected_recipients_tempfail_replaces_the_reply",
        "rejected_recipients, tempfail: the second 550 to RCPT TO is replaced by the 421 at its own "
        "sequence numbers (injected toward the client on the forward list), the server reset",
        "limits:\n  - {name: rejected, measure: rejected_recipients, max: 1, window: 1h}\n",
        {{dyn4a, 40001}},
        {open_session(0), client(0, mail_from), server(0, mail_ok), client(0, rcpt_to(1)), server(0, rejected(1)),
         client(0, rcpt_to(2)),
         server(0, rejected(2))
             .replaced_by(tempfail_for_server_segment())
             .raises({limit_hit("rejected", limit_action::tempfail, 2), session_end(1, 2, 2)})},
        {{"flows_created", 1},
         {"commands", 4},
         {"messages", 1},
         {"recipients", 2},
         {"rejected_recipients", 2},
         {"tempfails_sent", 1}},
        1,
    });

    t.push_back({
        "several_limits_on_one_segment",
        "three limits trip on one pipelined segment (monitor, reset, tempfail): every hit raises its event, "
        "the strongest action (reset) is taken, and the commands after the trip are not counted",
        "limits:\n"
        "  - {name: rcpt-monitor, measure: recipients, max: 1, window: 1h, action: monitor}\n"
        "  - {name: rcpt-reset, measure: recipients, max: 1, window: 1h, action: reset}\n"
        "  - {name: rcpt-per-msg, measure: recipients_per_message, max: 1, action: tempfail}\n",
        {{dyn4a, 40001}},
        {open_session(0),
         client(0, std::string(mail_from) + rcpt_to(1) + rcpt_to(2) + rcpt_to(3))
             .replaced_by(resets_for_client_segment())
             .raises({first_monitored(limit_hit("rcpt-monitor", limit_action::monitor, 2)),
                      limit_hit("rcpt-reset", limit_action::reset, 2),
                      limit_hit("rcpt-per-msg", limit_action::tempfail, 2), session_end(1, 2, 0)})},
        {{"flows_created", 1},
         {"commands", 4},
         {"messages", 1},
         {"recipients", 2},
         {"resets_sent", 1},
         {"monitored_connections", 1}},
        1,
    });

    t.push_back({
        "suspended_account",
        "a suspended account's SYN gets RST+ACK; another account suspended while its session is open: "
        "the server's next reply still passes, the client's next segment resets both ends",
        "",
        {{dyn4a, 40001}, {dyn4b, 40002}},
        {client_syn(0).replaced_by({rst_ack_to_syn()}).raises({suspended_refusal(1)}),
         open_session(1), client(1, mail_from), server(1, mail_ok), client(1, rcpt_to(1)),
         server(1, rcpt_ok).once_suspended(2),
         client(1, data_cmd)
             .replaced_by(resets_for_client_segment())
             .raises({suspended_refusal(2), session_end(1, 1, 0, 2)}),
         client_rst(1).dropped()},
        {{"flows_created", 2},
         {"flows_ended", 2},
         {"commands", 3},
         {"messages", 1},
         {"recipients", 1},
         {"resets_sent", 1},
         {"suspended_refused", 2}},
        0,
        {{dyn4a, 1}, {dyn4b, 2}},
        {{1, 0, true}, {2}},
    });

    const std::string rules =
        "inspection:\n"
        "  flows_per_worker: 16\n"
        "  rules:\n"
        "    - {id: mild, pattern: 'mildword', where: body, score: 3}\n"
        "    - {id: black, pattern: 'blackword', where: body, score: 10}\n";

    t.push_back({
        "content_event_then_tempfail",
        "content rules: a message scoring under every threshold goes through with a content_verdict "
        "event; one reaching the tempfail threshold is refused at its end-of-data marker, which never "
        "reaches the server",
        rules + "  message_actions:\n    - {score: 10, action: tempfail}\n",
        {{dyn4a, 40001}},
        {open_session(0), message(0, body_mild, {content_verdict(3, {0}, score_action::event, 1)}),
         client(0, mail_from), server(0, mail_ok), client(0, rcpt_to(1)), server(0, rcpt_ok),
         client(0, data_cmd), server(0, go_ahead), client(0, body_black),
         client(0, end_of_data)
             .replaced_by(tempfail_for_client_segment())
             .raises({content_verdict(10, {1}, score_action::tempfail, 1), session_end(2, 2, 0)})},
        {{"flows_created", 1}, {"commands", 7}, {"messages", 2}, {"recipients", 2}, {"tempfails_sent", 1}},
        1,
        {},
        {},
        {{"messages", 2}, {"verdicts_acted", 1}, {"rule_matches", 2}},
    });

    t.push_back({
        "content_quarantine_suspends_the_account",
        "a rule with action quarantine: both ends reset before the end-of-data marker, and the account is "
        "suspended: its next connection is refused at the SYN",
        rules + "    - {id: quarantined, pattern: 'quarantineword', where: body, score: 1, action: quarantine}\n",
        {{dyn4a, 40001}, {dyn4a, 40002}},
        {open_session(0), client(0, mail_from), server(0, mail_ok), client(0, rcpt_to(1)), server(0, rcpt_ok),
         client(0, data_cmd), server(0, go_ahead), client(0, "Subject: x\r\n\r\na quarantineword\r\n"),
         client(0, end_of_data)
             .replaced_by(resets_for_client_segment())
             .raises({content_verdict(1, {2}, score_action::quarantine, 1, 1), session_end(1, 1, 0, 1)}),
         client_rst(0).dropped(),
         client_syn(1).replaced_by({rst_ack_to_syn()}).raises({suspended_refusal(1)})},
        {{"flows_created", 2},
         {"flows_ended", 2},
         {"commands", 4},
         {"messages", 1},
         {"recipients", 1},
         {"resets_sent", 1},
         {"suspended_refused", 1}},
        0,
        {{dyn4a, 1}},
        {{1}},
        {{"messages", 1}, {"verdicts_acted", 1}},
    });

    t.push_back({
        "content_tighten_brings_the_group_limit",
        "a message scoring the tighten threshold puts its account into the group 'tightened': the group's "
        "limit governs the account's next messages, and its second one is refused",
        "account_groups:\n  tightened: []\n"
        "limits:\n  - {name: msgs-tightened, applies_to: 'group:tightened', scope: account, measure: messages, "
        "max: 1, window: 1h}\n" +
            rules + "  message_actions:\n    - {score: 10, action: tighten}\n",
        {{dyn4a, 40001}},
        {open_session(0), message(0, body_black, {content_verdict(10, {1}, score_action::tighten, 1, 1)}),
         message(0, body_clean),
         client(0, mail_from)
             .replaced_by(tempfail_for_client_segment())
             .raises({limit_hit("msgs-tightened", limit_action::tempfail, 2, 1), session_end(3, 2, 0, 1)})},
        {{"flows_created", 1}, {"commands", 8}, {"messages", 3}, {"recipients", 2}, {"tempfails_sent", 1}},
        1,
        {{dyn4a, 1}},
        {{1}},
        {{"messages", 2}, {"verdicts_acted", 1}},
    });

    return t;
}

// --- The harness --------------------------------------------------------------

const std::pair<const char*, counter worker_counters::mail_counters::*> mail_counter_fields[] = {
    {"flows_created", &worker_counters::mail_counters::flows_created},
    {"flows_ended", &worker_counters::mail_counters::flows_ended},
    {"flows_expired", &worker_counters::mail_counters::flows_expired},
    {"flow_table_full", &worker_counters::mail_counters::flow_table_full},
    {"subscriber_state_full", &worker_counters::mail_counters::subscriber_state_full},
    {"uninspectable", &worker_counters::mail_counters::uninspectable},
    {"tls", &worker_counters::mail_counters::tls},
    {"commands", &worker_counters::mail_counters::commands},
    {"messages", &worker_counters::mail_counters::messages},
    {"recipients", &worker_counters::mail_counters::recipients},
    {"rejected_recipients", &worker_counters::mail_counters::rejected_recipients},
    {"tempfails_sent", &worker_counters::mail_counters::tempfails_sent},
    {"resets_sent", &worker_counters::mail_counters::resets_sent},
    {"syns_dropped", &worker_counters::mail_counters::syns_dropped},
    {"suspended_refused", &worker_counters::mail_counters::suspended_refused},
    {"monitored_connections", &worker_counters::mail_counters::monitored_connections},
};
const std::pair<const char*, counter worker_counters::inspection_counters::*> inspection_counter_fields[] = {
    {"messages", &worker_counters::inspection_counters::messages},
    {"verdicts_acted", &worker_counters::inspection_counters::verdicts_acted},
    {"rule_matches", &worker_counters::inspection_counters::rule_matches},
    {"table_full", &worker_counters::inspection_counters::table_full},
};

std::string unique_name(const char* base) {
    static unsigned n = 0;
    return std::string(base) + std::to_string(++n);
}

subscriber_key key_of(const binding& b) {
    if (b.address.find(':') == std::string::npos) return subscriber_key::v4(test::ip4_host(b.address));
    return subscriber_key::v6(test::ip6(b.address).data(), 56);
}

bytes text_bytes(const std::string& s) { return bytes(s.begin(), s.end()); }
bytes address_bytes(const std::string& a) {
    if (a.find(':') == std::string::npos) {
        const auto v4 = test::ip4(a);
        return bytes(v4.begin(), v4.end());
    }
    const auto v6 = test::ip6(a);
    return bytes(v6.begin(), v6.end());
}

// A segment as it went on the wire, and the numbers injections refer to.
struct sent_segment {
    bytes frame;
    uint32_t seq, ack;
    uint32_t payload_len;
};

// Where a connection's sides stand: the next sequence number of each, and
// each side's last segment (for a retransmission).
struct connection_state {
    uint32_t client_next = 1000, server_next = 5000;
    uint32_t client_last = 1000, server_last = 5000;
};

frame_builder endpoints(const connection& c, bool to_client) {
    frame_builder b;
    b.macs(to_client ? client_mac : server_mac, to_client ? server_mac : client_mac);
    if (c.pppoe) b.pppoe(*c.pppoe);
    const std::string& src = to_client ? c.server : c.client;
    const std::string& dst = to_client ? c.client : c.server;
    if (c.ipv6())
        b.ipv6(src, dst);
    else
        b.ipv4(src, dst);
    b.tcp(to_client ? c.server_port : c.client_port, to_client ? c.client_port : c.server_port);
    return b;
}

sent_segment make_segment(const connection& c, connection_state& st, const step& s) {
    const bool from_client = s.from == side::client;
    uint32_t& next = from_client ? st.client_next : st.server_next;
    uint32_t& last = from_client ? st.client_last : st.server_last;
    const uint32_t other_next = from_client ? st.server_next : st.client_next;
    sent_segment out;
    out.seq = s.retransmission ? last : next;
    out.ack = (s.flags & ack) ? other_next : 0;
    out.payload_len = static_cast<uint32_t>(s.payload.size());
    out.frame =
        endpoints(c, !from_client).flags(s.flags).seq(out.seq).ack(out.ack).payload(text_bytes(s.payload)).build();
    if (!s.retransmission) {
        last = next;
        next += out.payload_len + ((s.flags & syn) ? 1 : 0) + ((s.flags & fin) ? 1 : 0);
    }
    return out;
}

uint32_t resolve(number n, const sent_segment& trigger) {
    switch (n) {
    case number::zero: return 0;
    case number::seq: return trigger.seq;
    case number::ack: return trigger.ack;
    case number::seq_plus_payload: return trigger.seq + trigger.payload_len;
    case number::seq_plus_one: return trigger.seq + 1;
    }
    return 0;
}

// The exact frame of an injected segment: the connection's encapsulation,
// addresses, ports and MACs in the injection's direction; IPv4 with ID 0, DF,
// TTL 64; IPv6 hop limit 64; a 20-byte TCP header, window 0 on a reset and
// 8192 otherwise; zero padded to 60 bytes.
bytes expected_frame(const connection& c, const injection& inj, const sent_segment& trigger) {
    frame_builder b = endpoints(c, inj.to == side::client);
    if (!c.ipv6()) b.ipv4_fragment(0, false, true);
    bytes f = b.flags(inj.flags)
                  .seq(resolve(inj.seq, trigger))
                  .ack(resolve(inj.ack, trigger))
                  .window((inj.flags & rst) ? 0 : 8192)
                  .payload(text_bytes(inj.payload))
                  .pad_to(60)
                  .build();
    if (!c.ipv6()) {   // frame_builder writes ID 0x1234: ID 0, checksum again
        const size_t l3 = 14 + (c.pppoe ? 8 : 0);
        f[l3 + 4] = f[l3 + 5] = 0;
        f[l3 + 10] = f[l3 + 11] = 0;
        const uint16_t sum = test::internet_checksum(f.data() + l3, 20);
        f[l3 + 10] = static_cast<uint8_t>(sum >> 8);
        f[l3 + 11] = static_cast<uint8_t>(sum);
    }
    return f;
}

// The mbufs of one run, in a pool of its own.
struct mbuf_pool {
    explicit mbuf_pool(unsigned n)
        : pool(rte_pktmbuf_pool_create(unique_name("sk_mt_pool").c_str(), n, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
                                       SOCKET_ID_ANY)) {}
    ~mbuf_pool() { rte_mempool_free(pool); }
    mbuf_pool(const mbuf_pool&) = delete;
    mbuf_pool& operator=(const mbuf_pool&) = delete;
    rte_mempool* pool;
};

bytes bytes_of(const rte_mbuf* m) {
    const uint8_t* d = rte_pktmbuf_mtod(m, const uint8_t*);
    return bytes(d, d + m->data_len);
}

// A tracker's state with `slots` flows and `slots` limit records.
mail_state small_tables(const subscriber_table& subscribers, std::vector<account_record>& accounts, uint32_t slots) {
    mail_state st;
    st.subscribers = &subscribers;
    st.accounts = accounts.data();
    st.max_accounts = static_cast<uint32_t>(accounts.size());
    st.flows = slots;
    st.subscriber_records = slots;
    return st;
}

// One fixture's tracker and everything around it, as a worker has them.
class tracker_run {
public:
    // `through_burst`: each segment goes through the pipeline's burst calls
    // (prepare() with that one segment, then handle(..., 0)) instead of handle().
    tracker_run(const fixture& f, rte_mempool* pool, bool through_burst = false)
        : f_(f),
          through_burst_(through_burst),
          policy_(compile_policy(load_policy_text(base_policy + f.policy, f.name + ".yaml"), test::next_generation())),
          subscribers_(unique_name("sk_mt_subs").c_str(), 64, nullptr),
          accounts_(8),
          ring_(unique_name("sk_mt_ev").c_str(), 256),
          inspector_(0, 16, nullptr, counters_),
          states_(f.connections.size()) {
        for (const binding& b : f.bindings) EXPECT_TRUE(subscribers_.bind(key_of(b), b.account)) << b.address;
        for (const account_setup& a : f.accounts) {
            accounts_[a.id].groups = a.groups;
            accounts_[a.id].suspended = a.suspended ? 1 : 0;
            for (const auto& [slot, count] : a.fleet_shares)
                for (unsigned i = 0; i < policy_->limit_count(); ++i)
                    if (policy_->limit(i).scope == limit_scope::account && policy_->limit(i).slot == slot)
                        store_fleet_share(accounts_[a.id].fleet_share[slot],
                                          count_window_index(base_ns, policy_->limit(i).window_ns), count);
        }
        tracker_ = std::make_unique<mail_tracker>(0, small_tables(subscribers_, accounts_, 64), pool, counters_, &ring_,
                                                  &inspector_);
    }

    // Feeds one step; checks its verdict, its injections and its events.
    void run(const step& s, size_t index) {
        SCOPED_TRACE("step " + std::to_string(index) + " (" + (s.from == side::client ? "client" : "server") +
                     " of connection " + std::to_string(s.conn) + "): '" + s.payload + "'");
        ASSERT_LT(s.conn, f_.connections.size());
        ASSERT_EQ(s.expect == verdict::replaced, !s.injected.empty()) << "the table: replaced means injected";
        if (s.suspend_first) accounts_[*s.suspend_first].suspended = 1;
        now_ += s.after_ms * 1'000'000;
        const connection& c = f_.connections[s.conn];
        const sent_segment seg = make_segment(c, states_[s.conn], s);
        parsed_packet p;
        ASSERT_EQ(parse_frame(seg.frame.data(), static_cast<uint32_t>(seg.frame.size()), p), frame_kind::ip_tcp);
        const ingress in = s.from == side::client ? ingress::access : ingress::core;
        ASSERT_TRUE(mail_tracker::wants(p, in, *policy_));

        burst_output out;
        bool pass;
        if (through_burst_) {
            const parsed_packet* burst[] = {&p};
            tracker_->prepare(*policy_, in, burst, 1);
            pass = tracker_->handle(*policy_, p, in, now_, out, 0);
        } else {
            pass = tracker_->handle(*policy_, p, in, now_, out);
        }
        const verdict got = out.n_forward + out.n_reply ? verdict::replaced
                            : pass                          ? verdict::forwarded
                                                            : verdict::dropped;
        EXPECT_EQ(pass, s.expect == verdict::forwarded) << "handle() returned " << pass;
        EXPECT_STREQ(to_string(got), to_string(s.expect));

        // Injections toward the client leave through the access port: on the
        // reply list when the segment came from the client, else forward.
        rte_mbuf** to_client = in == ingress::access ? out.reply : out.forward;
        const uint16_t n_client = in == ingress::access ? out.n_reply : out.n_forward;
        rte_mbuf** to_server = in == ingress::access ? out.forward : out.reply;
        const uint16_t n_server = in == ingress::access ? out.n_forward : out.n_reply;
        std::vector<bytes> want_client, want_server, got_client, got_server;
        for (const injection& inj : s.injected)
            (inj.to == side::client ? want_client : want_server).push_back(expected_frame(c, inj, seg));
        for (uint16_t i = 0; i < n_client; ++i) got_client.push_back(bytes_of(to_client[i]));
        for (uint16_t i = 0; i < n_server; ++i) got_server.push_back(bytes_of(to_server[i]));
        EXPECT_EQ(got_client, want_client) << "injected toward the client (access port)";
        EXPECT_EQ(got_server, want_server) << "injected toward the server (core port)";
        for (uint16_t i = 0; i < out.n_forward; ++i) EXPECT_EQ(out.forward[i]->pkt_len, out.forward[i]->data_len);
        for (uint16_t i = 0; i < out.n_reply; ++i) EXPECT_EQ(out.reply[i]->pkt_len, out.reply[i]->data_len);
        rte_pktmbuf_free_bulk(out.forward, out.n_forward);
        rte_pktmbuf_free_bulk(out.reply, out.n_reply);

        check_events(s, c, p, in);
    }

    // The control thread's request as the worker serves it between bursts (limit_request_box.h).
    limit_record_answer serve(const limit_record_request& r) {
        limit_request_box box;
        EXPECT_TRUE(box.idle());
        box.post(r);
        EXPECT_TRUE(box.pending());
        tracker_->serve(box);
        EXPECT_TRUE(box.answered());
        return box.answer();
    }
    uint64_t now() const { return now_; }

    void check_counters() {
        const auto& mail = counters_.mail;
        for (const auto& [name, field] : mail_counter_fields) {
            uint64_t want = 0;
            for (const auto& [n, v] : f_.mail_counters)
                if (n == name) want = v;
            EXPECT_EQ((mail.*field).load(), want) << "mail." << name;
        }
        for (const auto& [n, v] : f_.mail_counters) {
            bool known = false;
            for (const auto& field : mail_counter_fields) known |= n == field.first;
            EXPECT_TRUE(known) << "the table names an unknown counter " << n;
        }
        for (unsigned i = 0; i < max_limits; ++i)
            EXPECT_EQ(mail.limit_hits[i].load(), limit_hits_[i]) << "limit_hits[" << i << "]";
        for (const auto& [n, v] : f_.inspection_counters) {
            bool found = false;
            for (const auto& [name, field] : inspection_counter_fields)
                if (n == name) {
                    found = true;
                    EXPECT_EQ((counters_.inspection.*field).load(), v) << "inspection." << name;
                }
            EXPECT_TRUE(found) << "the table names an unknown counter " << n;
        }
        EXPECT_EQ(counters_.events_emitted.load(), events_seen_);
        EXPECT_EQ(counters_.events_ring_full.load(), 0u);
        for (unsigned i = 0; i < ingress_count; ++i)
            EXPECT_EQ(counters_.port[i].reset_failures.load(), f_.reset_failures[i])
                << "reset_failures on the " << to_string(static_cast<ingress>(i)) << " port";
        EXPECT_EQ(tracker_->flows(), f_.open_flows) << "flows still open";
    }

private:
    void check_events(const step& s, const connection& c, const parsed_packet& p, ingress in) {
        std::vector<event_record> got(32);
        got.resize(ring_.pop(got.data(), static_cast<unsigned>(got.size())));
        events_seen_ += got.size();
        ASSERT_EQ(got.size(), s.events.size()) << "events raised";
        const bytes client_ip = address_bytes(c.client), server_ip = address_bytes(c.server);
        for (size_t k = 0; k < got.size(); ++k) {
            const event_record& e = got[k];
            const expected_event& w = s.events[k];
            SCOPED_TRACE("event " + std::to_string(k));
            ASSERT_EQ(e.type, w.type);
            EXPECT_EQ(e.time_ns, now_);
            EXPECT_EQ(e.generation, policy_->generation());
            EXPECT_EQ(e.worker, 0);
            EXPECT_EQ(e.ip_version, c.ipv6() ? 6 : 4);
            // Subscriber first, whichever way the segment went.
            EXPECT_EQ(bytes(e.src, e.src + client_ip.size()), client_ip);
            EXPECT_EQ(bytes(e.dst, e.dst + server_ip.size()), server_ip);
            EXPECT_EQ(e.src_port, c.client_port);
            EXPECT_EQ(e.dst_port, c.server_port);
            EXPECT_EQ(e.account, w.account);
            EXPECT_EQ(e.action, w.action);
            EXPECT_EQ(e.count, w.count);
            if (w.type == event_type::mail_session) {
                EXPECT_EQ(e.ingress, static_cast<uint8_t>(ingress::access));
                EXPECT_EQ(e.tcp_flags, 0);
                EXPECT_EQ(e.recipients, w.recipients);
                EXPECT_EQ(e.rejected_recipients, w.rejected_recipients);
                continue;
            }
            EXPECT_EQ(e.ingress, static_cast<uint8_t>(in));
            EXPECT_EQ(e.tcp_flags, p.tcp_flags);
            if (w.type == event_type::limit_exceeded) {
                unsigned index = max_limits;
                for (unsigned i = 0; i < policy_->limit_count(); ++i)
                    if (w.limit == policy_->limit(i).name) index = i;
                ASSERT_LT(index, max_limits) << "no limit named " << w.limit;
                EXPECT_EQ(e.reason, index) << w.limit;
                EXPECT_EQ(e.flags, w.flags) << w.limit << ": the first monitored hit of its connection";
                ++limit_hits_[index];
            } else if (w.type == event_type::account_suspended) {
                EXPECT_EQ(e.reason, 0);
            } else if (w.type == event_type::content_verdict) {
                EXPECT_EQ(e.score, w.score);
                EXPECT_EQ(std::vector<uint16_t>(e.rules, e.rules + e.rule_count), w.rules);
                EXPECT_EQ(e.signals, 0);
            }
        }
    }

    const fixture& f_;
    const bool through_burst_;
    std::unique_ptr<compiled_policy> policy_;
    worker_counters counters_;
    subscriber_table subscribers_;
    std::vector<account_record> accounts_;
    event_ring ring_;
    content_inspector inspector_;
    std::unique_ptr<mail_tracker> tracker_;
    std::vector<connection_state> states_;
    uint64_t now_ = base_ns;
    uint64_t events_seen_ = 0;
    uint64_t limit_hits_[max_limits] = {};
};

class mail_tracker_fixture : public ::testing::TestWithParam<fixture> {};

void run_fixture(const fixture& f, bool through_burst) {
    SCOPED_TRACE(f.description);
    mbuf_pool mbufs(1023);
    ASSERT_NE(mbufs.pool, nullptr);
    {
        tracker_run run(f, mbufs.pool, through_burst);
        for (size_t i = 0; i < f.script.size(); ++i) {
            run.run(f.script[i], i);
            if (::testing::Test::HasFatalFailure()) return;
        }
        run.check_counters();
    }
    EXPECT_EQ(rte_mempool_avail_count(mbufs.pool), 1023u) << "an mbuf leaked";
}

TEST_P(mail_tracker_fixture, segment_by_segment) { run_fixture(GetParam(), false); }

// The same table through the calls the pipeline makes (prepare, then handle
// by place in the burst): the same verdicts, injections, events and counters.
TEST_P(mail_tracker_fixture, segment_by_segment_through_the_burst_calls) { run_fixture(GetParam(), true); }

// The burst calls against handle(), over bursts of many segments: random
// SMTP dialogues on connections that share 4-tuples (a RST, then a new SYN on
// the same tuple), limits that reset connections, and tables of 4 flows and 4
// limit records, so that within one burst flows are created, ended, refused
// for want of room and recreated after prepare() looked them up. Every
// segment's verdict and injections, the events and the counters must be the
// same either way.
TEST(mail_tracker_burst, many_segments_a_burst_judged_as_one_at_a_time) {
    const std::string policy_text =
        base_policy +
        "limits:\n"
        "  - {name: conn-rate, measure: connections, max: 20, window: 10s, burst: 20, action: drop-syn}\n"
        "  - {name: msgs-addr, measure: messages, max: 3, window: 60s, action: reset}\n"
        "  - {name: rcpt-account, measure: recipients, scope: account, max: 12, window: 60s, action: tempfail}\n";
    const auto policy = compile_policy(load_policy_text(policy_text, "burst.yaml"), test::next_generation());
    const std::vector<connection> conns = {
        {dyn4a, 40001}, {dyn4a, 40002}, {dyn4b, 40003}, {"2001:db8:100:1::7", 40004, test::mx6, 587},
        {dyn4a, 40001}, {"2001:db8:100:1::7", 40004, test::mx6, 587},   // the first and fourth tuples again
        {"198.51.100.9", 40005}, {"198.51.100.10", 40006},
    };
    struct gateway {
        worker_counters counters;
        subscriber_table subscribers{unique_name("sk_mtb_subs").c_str(), 64, nullptr};
        std::vector<account_record> accounts = std::vector<account_record>(8);
        event_ring ring{unique_name("sk_mtb_ev").c_str(), 4096};
        std::unique_ptr<mail_tracker> tracker;
        gateway(rte_mempool* pool) {
            EXPECT_TRUE(subscribers.bind(subscriber_key::v4(0xC6336407), 1));   // dyn4a
            EXPECT_TRUE(subscribers.bind(subscriber_key::v4(0xC6336408), 1));   // dyn4b: the same account
            tracker = std::make_unique<mail_tracker>(0, small_tables(subscribers, accounts, 4), pool, counters, &ring);
        }
    };
    mbuf_pool mbufs(4095);
    ASSERT_NE(mbufs.pool, nullptr);
    {
        gateway one(mbufs.pool), burst(mbufs.pool);
        std::vector<connection_state> states(conns.size());
        std::vector<int> stage(conns.size(), 0);
        std::mt19937 rng(20261207);
        // The next segment of connection c's dialogue, and where it leaves it.
        auto next_step = [&](size_t c) {
            const unsigned k = static_cast<unsigned>(c);
            int& at = stage[c];
            if (at > 0 && rng() % 23 == 0) {   // the client resets; a new SYN follows on the same tuple
                at = 0;
                return step{k, side::client, rst | ack, ""};
            }
            switch (at++) {
            case 0: states[c] = connection_state{}; return step{k, side::client, syn, ""};
            case 1: return step{k, side::server, syn | ack, ""};
            case 2: return step{k, side::client, ack, ""};
            case 3: return step{k, side::server, psh | ack, greeting};
            case 4: return step{k, side::client, psh | ack, ehlo};
            case 5: return step{k, side::server, psh | ack, ehlo_reply};
            case 6: return step{k, side::client, psh | ack, mail_from};
            case 7: return step{k, side::server, psh | ack, mail_ok};
            case 8: return step{k, side::client, psh | ack, rcpt_to(static_cast<int>(rng() % 9))};
            case 9: return step{k, side::server, psh | ack, rng() % 3 ? std::string(rcpt_ok) : rejected(1)};
            case 10: return step{k, side::client, psh | ack, rset};
            default: at = 6; return step{k, side::server, psh | ack, rset_ok};
            }
        };
        uint64_t now = base_ns;
        unsigned segments = 0, multi = 0;
        for (int round = 0; round < 600; ++round) {
            // One burst: segments from one side, of connections picked at random.
            const side from = rng() % 2 ? side::client : side::server;
            const unsigned want = 1 + rng() % 24;
            std::vector<bytes> frames;
            for (unsigned tries = 0; frames.size() < want && tries < 200; ++tries) {
                const size_t c = rng() % conns.size();
                const int saved = stage[c];
                step s = next_step(c);
                if (s.from != from) {
                    stage[c] = saved;   // not this burst's side: the dialogue waits
                    continue;
                }
                frames.push_back(make_segment(conns[c], states[c], s).frame);
            }
            if (frames.empty()) continue;
            now += 1'000'000ull * (1 + rng() % 400);
            const ingress in = from == side::client ? ingress::access : ingress::core;
            std::vector<parsed_packet> parsed(frames.size());
            std::vector<const parsed_packet*> mine;
            for (size_t i = 0; i < frames.size(); ++i) {
                ASSERT_EQ(parse_frame(frames[i].data(), static_cast<uint32_t>(frames[i].size()), parsed[i]),
                          frame_kind::ip_tcp);
                mine.push_back(&parsed[i]);
            }
            burst.tracker->prepare(*policy, in, mine.data(), static_cast<uint16_t>(mine.size()));
            for (size_t i = 0; i < frames.size(); ++i) {
                burst_output a, b;
                const bool pass_a = one.tracker->handle(*policy, parsed[i], in, now, a);
                const bool pass_b = burst.tracker->handle(*policy, parsed[i], in, now, b, static_cast<uint16_t>(i));
                EXPECT_EQ(pass_a, pass_b) << "round " << round << ", segment " << i;
                std::vector<bytes> out_a, out_b;
                for (uint16_t j = 0; j < a.n_forward; ++j) out_a.push_back(bytes_of(a.forward[j]));
                for (uint16_t j = 0; j < a.n_reply; ++j) out_a.push_back(bytes_of(a.reply[j]));
                for (uint16_t j = 0; j < b.n_forward; ++j) out_b.push_back(bytes_of(b.forward[j]));
                for (uint16_t j = 0; j < b.n_reply; ++j) out_b.push_back(bytes_of(b.reply[j]));
                EXPECT_EQ(out_a, out_b) << "round " << round << ", segment " << i;
                rte_pktmbuf_free_bulk(a.forward, a.n_forward);
                rte_pktmbuf_free_bulk(a.reply, a.n_reply);
                rte_pktmbuf_free_bulk(b.forward, b.n_forward);
                rte_pktmbuf_free_bulk(b.reply, b.n_reply);
                if (::testing::Test::HasFailure()) return;
            }
            one.tracker->sweep(*policy, now);
            burst.tracker->sweep(*policy, now);
            segments += static_cast<unsigned>(frames.size());
            multi += frames.size() > 1;
        }
        EXPECT_GT(segments, 2000u);
        EXPECT_GT(multi, 300u);
        for (const auto& [name, field] : mail_counter_fields)
            EXPECT_EQ((one.counters.mail.*field).load(), (burst.counters.mail.*field).load()) << name;
        EXPECT_GT(one.counters.mail.flow_table_full.load(), 0u) << "the table was never full: the test lost its edge";
        EXPECT_GT(one.counters.mail.resets_sent.load(), 0u) << "no limit reset a connection";
        std::vector<event_record> ea(4096), eb(4096);
        const unsigned na = one.ring.pop(ea.data(), 4096), nb = burst.ring.pop(eb.data(), 4096);
        ASSERT_EQ(na, nb);
        EXPECT_GT(na, 0u);
        for (unsigned i = 0; i < na; ++i) EXPECT_EQ(std::memcmp(&ea[i], &eb[i], sizeof(event_record)), 0) << "event " << i;
    }
    EXPECT_EQ(rte_mempool_avail_count(mbufs.pool), 4095u) << "an mbuf leaked";
}

// An injection the pool has no mbuf for is counted as a reset failure on the
// port it would have left through (toward the client the access port, toward
// the server the core port), whichever side the segment that tripped the limit
// came from; the segment is still stopped and the action still counted.
TEST(mail_tracker_pool, failures_counted_on_the_port_of_each_injection) {
    mbuf_pool tiny(4);
    ASSERT_NE(tiny.pool, nullptr);
    rte_mbuf* hog[4];
    ASSERT_EQ(rte_pktmbuf_alloc_bulk(tiny.pool, hog, 4), 0);
    fixture f{
        "pool_exhausted",
        "reset both ways on a client segment, then the 421 and the RST for a server reply, with no mbuf",
        "limits:\n"
        "  - {name: rcpt-reset, measure: recipients, max: 2, window: 1h, action: reset}\n"
        "  - {name: rejected, measure: rejected_recipients, max: 1, window: 1h}\n",
        {{dyn4a, 40001}, {dyn4b, 40002}},
        {open_session(0), client(0, mail_from), server(0, mail_ok), client(0, rcpt_to(1)), client(0, rcpt_to(2)),
         client(0, rcpt_to(3))
             .dropped()
             .raises({limit_hit("rcpt-reset", limit_action::reset, 3), session_end(1, 3, 0)}),
         open_session(1), client(1, mail_from), server(1, mail_ok), client(1, rcpt_to(1)), server(1, rejected(1)),
         client(1, rcpt_to(2)),
         server(1, rejected(2))
             .dropped()
             .raises({limit_hit("rejected", limit_action::tempfail, 2), session_end(1, 2, 2)})},
        {{"flows_created", 2},
         {"commands", 9},
         {"messages", 2},
         {"recipients", 5},
         {"rejected_recipients", 2},
         {"resets_sent", 1},
         {"tempfails_sent", 1}},
        2,
    };
    f.reset_failures = {2, 2};   // access: the RST and the 421 to the client; core: the two RSTs
    {
        tracker_run run(f, tiny.pool);
        for (size_t i = 0; i < f.script.size(); ++i) {
            run.run(f.script[i], i);
            if (::testing::Test::HasFatalFailure()) break;
        }
        run.check_counters();
    }
    rte_pktmbuf_free_bulk(hog, 4);
}

// The support desk's requests (limits show and reset): the worker copies the record it holds
// for a key, never creates one, and clears only the cells it is asked to; after a reset the
// next message counts from 1 again.
TEST(mail_tracker_limit_requests, copy_and_reset_the_records_the_worker_holds) {
    mbuf_pool mbufs(1023);
    ASSERT_NE(mbufs.pool, nullptr);
    fixture f{
        "limit_requests",
        "two limits on one address record, read and reset through the request box",
        "limits:\n"
        "  - {name: msgs, scope: address, measure: messages, max: 2, window: 1h, cooldown: 10m}\n"
        "  - {name: rcpts, scope: address, measure: recipients, max: 50, window: 1h}\n",
        {{dyn4a, 40001}, {dyn4a, 40002}},
        {open_session(0), client(0, mail_from), server(0, mail_ok), client(0, rcpt_to(1)), server(0, rcpt_ok),
         client(0, rset), server(0, rset_ok), client(0, mail_from), server(0, mail_ok), client(0, rset),
         server(0, rset_ok),
         client(0, mail_from)
             .replaced_by(tempfail_for_client_segment())
             .raises({limit_hit("msgs", limit_action::tempfail, 3), session_end(3, 1, 0)})},
        {},
        0,
    };
    tracker_run run(f, mbufs.pool);
    for (size_t i = 0; i < f.script.size(); ++i) {
        run.run(f.script[i], i);
        if (HasFatalFailure()) return;
    }
    constexpr uint64_t hour = 3600ull * 1'000'000'000ull;
    const subscriber_key key = subscriber_key::v4(test::ip4_host(dyn4a));
    limit_record_request read{key, key, 0, 0};
    limit_record_answer a = run.serve(read);
    ASSERT_TRUE(a.address.found);
    EXPECT_EQ(window_count(a.address.cells[0], run.now(), hour), 2u) << "msgs: two booked, the third refused";
    EXPECT_GT(cooldown_until(a.address.cells[0]), run.now()) << "msgs: cooling down";
    EXPECT_EQ(window_count(a.address.cells[1], run.now(), hour), 1u) << "rcpts";
    EXPECT_TRUE(a.prefix.found) << "IPv4: the prefix record is the address record";

    limit_record_request reset_msgs = read;
    reset_msgs.reset_address_cells = 1u << 0;
    a = run.serve(reset_msgs);
    EXPECT_EQ(window_count(a.address.cells[0], run.now(), hour), 2u) << "the answer is from before the reset";
    a = run.serve(read);
    EXPECT_EQ(window_count(a.address.cells[0], run.now(), hour), 0u) << "msgs cleared";
    EXPECT_EQ(cooldown_until(a.address.cells[0]), 0u) << "its cool-down too";
    EXPECT_EQ(window_count(a.address.cells[1], run.now(), hour), 1u) << "rcpts not asked for: kept";

    const subscriber_key stranger = subscriber_key::v4(test::ip4_host("198.51.100.99"));
    EXPECT_FALSE(run.serve({stranger, stranger, ~0u, ~0u}).address.found);
    EXPECT_FALSE(run.serve({stranger, stranger, 0, 0}).address.found) << "a request creates no record";

    // After the reset a new session's message passes and counts 1.
    size_t index = f.script.size();
    for (const step& s : open_session(1)) run.run(s, index++);
    run.run(client(1, mail_from), index++);
    a = run.serve(read);
    EXPECT_EQ(window_count(a.address.cells[0], run.now(), hour), 1u) << "counting again from the reset";
}

INSTANTIATE_TEST_SUITE_P(fixtures, mail_tracker_fixture, ::testing::ValuesIn(fixtures()),
                         [](const ::testing::TestParamInfo<fixture>& i) { return i.param.name; });

}  // namespace
}  // namespace sekisho
