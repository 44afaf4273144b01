// Subscriber identity as sekishod runs it, inside one process: real RADIUS
// datagrams over loopback to the listener subscriber_identity opens, the
// real gateway's subscriber table (EAL without hugepages), the real SQLite
// history. After every step the data plane must hold exactly what the
// history's open rows say: resent, reordered and lost accounting, a packet
// with an address too wide, the table full midway through a Start, a failed
// COMMIT, RADIUS without a history database, a restart. A poll's updates
// share one transaction without a savepoint each: an update failing midway
// through a batch, a Start resent after its commit, a kill -9 between the
// commit and the answer.
#include "control/identity/subscriber_identity.h"

#include <signal.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "../support/free_port.h"
#include "../support/lab_policy.h"
#include "../support/radius_packet.h"
#include "backends/dpdk/dpdk_data_plane.h"
#include "control/identity/operator_binding_table.h"
#include "control/policy/policy.h"

namespace sekisho {
namespace {

namespace fs = std::filesystem;
using strings = std::vector<std::string>;
using test::bytes;
using test::nas_socket;
using test::text;
using test::u32;
using test::v4;
using test::v6prefix;
using packet = test::radius_packet;

constexpr const char* secret = "identity-test-Kq7f9ZbX";

// An Accounting-Request from NAS 192.0.2.1 (or `nas`), times as given.
struct acct {
    uint32_t status = 1;   // Start
    std::string session;
    std::string user;      // "": no User-Name
    std::vector<const char*> v4s;
    std::vector<std::pair<const char*, uint8_t>> delegated, framed6;
    std::optional<int64_t> event_timestamp;
    std::optional<uint32_t> delay, session_time;
    const char* nas = "192.0.2.1";

    bytes datagram(uint8_t id) const {
        packet p;
        p.id = id;
        p.add(40, u32(status));
        if (!user.empty()) p.add(1, text(user));
        if (!session.empty()) p.add(44, text(session));
        for (const char* a : v4s) p.add(8, v4(a));
        for (const auto& [a, len] : delegated) p.add(123, v6prefix(a, len, (len + 7) / 8));
        for (const auto& [a, len] : framed6) p.add(97, v6prefix(a, len, (len + 7) / 8));
        p.add(4, v4(nas));
        if (event_timestamp) p.add(55, u32(static_cast<uint32_t>(*event_timestamp)));
        if (delay) p.add(41, u32(*delay));
        if (session_time) p.add(46, u32(*session_time));
        return p.finish(secret);
    }
};

struct identity_fixture : ::testing::Test {
    fs::path dir;
    std::string db, clients, events;
    uint16_t port = 0;
    bool with_history = true;
    std::string extra_policy;
    std::unique_ptr<dpdk_data_plane> gw;
    std::unique_ptr<operator_binding_table> operator_table;   // RADIUS writes through it
    std::unique_ptr<subscriber_identity> identity;
    strings log;
    nas_socket nas;
    uint8_t next_id = 1;
    const int64_t now = static_cast<int64_t>(std::time(nullptr));

    void SetUp() override {
        std::string tmpl = (fs::temp_directory_path() / "sekisho-identity-XXXXXX").string();
        ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
        dir = tmpl;
        db = (dir / "bindings.sqlite").string();
        clients = (dir / "clients.yaml").string();
        events = (dir / "events.jsonl").string();
        std::ofstream(clients) << "clients:\n  - address: 127.0.0.1\n    secret: \"" << secret << "\"\n    name: bng-1\n";
        port = test::free_port(SOCK_DGRAM);
    }
    void TearDown() override {
        stop();
        for (const auto& line : log) EXPECT_EQ(line.find(secret), std::string::npos) << line;
        fs::remove_all(dir);
    }

    void start() {
        std::string text = std::string(test::lab_policy_text) + "tracking:\n  max_bindings: 64\n" + extra_policy +
                           "radius:\n  listen: 127.0.0.1:" + std::to_string(port) + "\n  clients_file: " + clients +
                           "\n";
        if (with_history) text += "history:\n  database: " + db + "\n";
        const policy pol = load_policy_text(text, "identity-test.yaml");
        dpdk_data_plane_config cfg;
        cfg.mbufs = 1024;
        cfg.event_ring_capacity = 1024;
        cfg.events_path = events;
        gw = std::make_unique<dpdk_data_plane>(pol, cfg);
        operator_table = std::make_unique<operator_binding_table>(*gw);
        identity = std::make_unique<subscriber_identity>(*operator_table, pol.identity,
                                                         [this](const std::string& line) { log.push_back(line); });
    }
    // As a restart: everything gone but the history file.
    void stop() {
        identity.reset();
        operator_table.reset();
        gw.reset();
    }

    const radius::listener_counters& counters() const { return *identity->radius_counters(); }

    // Sends `d`, lets the identity read it, returns the response if any.
    std::optional<bytes> exchange(const bytes& d) {
        const uint64_t before = counters().received;
        nas.send(d, port);
        for (int i = 0; i < 200 && counters().received == before; ++i) {
            identity->poll();
            if (counters().received == before) std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        EXPECT_GT(counters().received, before) << "the datagram never arrived";
        return nas.receive(100);
    }
    std::optional<bytes> send(const acct& a) { return exchange(a.datagram(next_id++)); }

    // "198.51.100.7/32 alice" for each entry of the subscriber table, sorted.
    strings data_plane() const {
        strings out;
        gw->subscribers().for_each([&](const subscriber_key& k, uint32_t id) {
            ip_prefix p;
            p.family = k.family;
            p.length = k.length;
            std::copy(std::begin(k.addr), std::end(k.addr), p.bytes.begin());
            const std::string* name = gw->accounts().name_of(id);
            out.push_back(p.to_string() + " " + (name ? *name : "?"));
        });
        std::sort(out.begin(), out.end());
        return out;
    }
    // The same from the history's open rows, each IPv6 prefix as the /56
    // subscriber prefixes it covers (the policy's ipv6_prefix_length), read
    // from the file by another connection, as --whois would.
    strings history_open() const {
        strings out;
        if (!with_history) return out;
        binding_history reader(db, binding_history::access::read_only);
        for (const auto& r : reader.open_bindings()) {
            if (r.account.empty()) continue;
            if (r.address.family == 4 || r.address.length >= 56) {
                ip_prefix p = r.address;
                if (p.family == 6) {
                    p.length = 56;
                    std::fill(p.bytes.begin() + 7, p.bytes.end(), 0);
                }
                out.push_back(p.to_string() + " " + r.account);
                continue;
            }
            const unsigned bits = 56u - r.address.length;
            for (uint32_t i = 0; i < (1u << bits); ++i) {
                ip_prefix p = r.address;
                p.length = 56;
                for (unsigned b = 0; b < bits; ++b)
                    if ((i >> b) & 1) p.bytes[(55 - b) / 8] |= static_cast<uint8_t>(0x80u >> ((55 - b) % 8));
                out.push_back(p.to_string() + " " + r.account);
            }
        }
        std::sort(out.begin(), out.end());
        return out;
    }
};

ip_prefix addr(const char* text) {
    std::string err;
    auto p = parse_prefix(text, err);
    if (!p) throw std::runtime_error(err);
    return *p;
}

strings sorted(strings s) {
    std::sort(s.begin(), s.end());
    return s;
}

TEST_F(identity_fixture, replays_never_override_newer_bindings_and_both_sides_agree_after_every_step) {
    start();
    struct step {
        const char* description;
        std::optional<bytes> datagram;   // nullopt: resend the previous step's datagram exactly
        bool answered;
        strings data_plane;
    };
    const int64_t t = now - 1000;
    const acct alice1{1, "s1", "alice@example.jp", {"198.51.100.7"}, {}, {}, t};
    acct alice1_stop = alice1;
    alice1_stop.status = 2;
    alice1_stop.event_timestamp = t + 100;
    const acct alice2{1, "s2", "alice@example.jp", {"198.51.100.7"}, {}, {}, t + 200};
    const acct bob3{1, "s3", "bob@example.jp", {"198.51.100.7"}, {}, {}, t + 300};
    const acct nas_on{7, "", "", {}, {}, {}, t + 350};
    const acct carol4{1, "s4", "carol@example.jp", {"198.51.100.8"}, {}, {}, t + 400};
    const acct dave5{1, "s5", "dave@example.jp", {"198.51.100.9"}, {{"2001:db8:109::", 56}}, {}, t + 500};
    const acct dave5_bare_stop{2, "s5", "", {}, {}, {}, t + 600};
    const acct erin6_stop{2, "s6", "erin@example.jp", {"198.51.100.10"}, {}, {}, t + 700, {}, 100u};
    const acct erin6_start{1, "s6", "erin@example.jp", {"198.51.100.10"}, {}, {}, t + 600};
    acct carol4_stop = carol4;
    carol4_stop.status = 2;
    carol4_stop.event_timestamp = t + 800;
    acct carol4_interim = carol4;
    carol4_interim.status = 3;
    carol4_interim.event_timestamp = t + 750;
    acct far_future = carol4;
    far_future.session = "s7";
    far_future.user = "mallory@example.jp";
    far_future.v4s = {"198.51.100.11"};
    far_future.event_timestamp = 0xffffffffLL;
    acct long_delay = far_future;
    long_delay.event_timestamp.reset();
    long_delay.delay = 0xffffffffu;

    uint8_t id = 100;
    const std::vector<step> steps = {
        {"Start alice s1 on .7", alice1.datagram(id++), true, {"198.51.100.7/32 alice@example.jp"}},
        {"Stop alice s1", alice1_stop.datagram(id++), true, {}},
        {"Start alice s2 on .7 (her new session)", alice2.datagram(id++), true, {"198.51.100.7/32 alice@example.jp"}},
        {"the old Stop of s1 resent as a new packet", alice1_stop.datagram(id++), true,
         {"198.51.100.7/32 alice@example.jp"}},
        {"Start bob s3 on .7 (handover; alice's Stop lost)", bob3.datagram(id++), true, {"198.51.100.7/32 bob@example.jp"}},
        {"the old Start of alice s2 resent as a new packet", alice2.datagram(id++), true,
         {"198.51.100.7/32 bob@example.jp"}},
        {"... and resent exactly (answered from the cache)", std::nullopt, true, {"198.51.100.7/32 bob@example.jp"}},
        {"Accounting-On of the NAS", nas_on.datagram(id++), true, {}},
        {"Start carol s4 on .8 after the reboot", carol4.datagram(id++), true, {"198.51.100.8/32 carol@example.jp"}},
        {"the old Accounting-On resent as a new packet", nas_on.datagram(id++), true,
         {"198.51.100.8/32 carol@example.jp"}},
        {"Start dave s5 on .9 and 2001:db8:109::/56", dave5.datagram(id++), true,
         {"198.51.100.8/32 carol@example.jp", "198.51.100.9/32 dave@example.jp", "2001:db8:109::/56 dave@example.jp"}},
        {"Stop of s5 without User-Name or Framed-IP-Address", dave5_bare_stop.datagram(id++), true,
         {"198.51.100.8/32 carol@example.jp"}},
        {"Stop erin s6 before its Start", erin6_stop.datagram(id++), true, {"198.51.100.8/32 carol@example.jp"}},
        {"the late Start of erin s6", erin6_start.datagram(id++), true, {"198.51.100.8/32 carol@example.jp"}},
        {"Stop carol s4", carol4_stop.datagram(id++), true, {}},
        {"an Interim of s4 after its Stop", carol4_interim.datagram(id++), true, {}},
        {"a Start with Event-Timestamp 2^32-1 (year 2106)", far_future.datagram(id++), false, {}},
        {"a Start with Acct-Delay-Time 2^32-1 (year 1890)", long_delay.datagram(id++), false, {}},
    };
    std::optional<bytes> previous;
    for (const step& s : steps) {
        SCOPED_TRACE(s.description);
        const bytes d = s.datagram ? *s.datagram : *previous;
        previous = d;
        const auto response = exchange(d);
        EXPECT_EQ(response.has_value(), s.answered);
        EXPECT_EQ(data_plane(), sorted(s.data_plane));
        EXPECT_EQ(history_open(), data_plane()) << "the data plane and the history agree";
    }
    EXPECT_EQ(counters().duplicate, 1u);
    EXPECT_EQ(counters().bad_time, 2u);
    EXPECT_EQ(counters().accepted, steps.size() - 3);
    EXPECT_EQ(identity->apply_errors(), 0u);
    // --whois for the year 2106 finds nobody, for now the holders.
    EXPECT_TRUE(identity->history()->who_held(addr("198.51.100.11"), now).empty());
    EXPECT_TRUE(identity->history()->who_held(addr("198.51.100.11"), 0xffffffffLL).empty());
}

TEST_F(identity_fixture, a_packet_with_an_address_too_wide_is_refused_whole) {
    start();
    // A valid delegated /56 and a Framed-IPv6-Prefix ::/0.
    const acct start_with_zero{1, "s1", "alice@example.jp", {"198.51.100.7"}, {{"2001:db8:107::", 56}}, {{"::", 0}},
                               now - 10};
    EXPECT_FALSE(send(start_with_zero)) << "not stored, not answered";
    EXPECT_EQ(data_plane(), strings{}) << "nothing of it bound";
    EXPECT_EQ(history_open(), strings{});
    EXPECT_TRUE(identity->history()->held_between(addr("2001:db8:107::/56"), 0, now * 2).empty()) << "no row";
    EXPECT_EQ(counters().bad_address, 1u);
    ASSERT_FALSE(log.empty());
    EXPECT_NE(log.back().find("start of session 's1' refused, nothing of it applied: ::/0 is too wide to bind (2^56 "
                              "/56 subscriber prefixes)"),
              std::string::npos)
        << log.back();
    // A Stop carrying it is refused likewise; the session's own addresses are fine.
    const acct good{1, "s2", "bob@example.jp", {"198.51.100.8"}, {{"2001:db8:108::", 56}}, {}, now - 5};
    EXPECT_TRUE(send(good));
    acct bad_stop{2, "s2", "bob@example.jp", {}, {}, {{"::", 0}}, now - 1};
    EXPECT_FALSE(send(bad_stop));
    EXPECT_EQ(data_plane(), (strings{"198.51.100.8/32 bob@example.jp", "2001:db8:108::/56 bob@example.jp"}));
    EXPECT_EQ(history_open(), data_plane());
    EXPECT_EQ(counters().bad_address, 2u);
}

TEST_F(identity_fixture, the_table_full_midway_through_a_start_takes_all_of_it_back) {
    start();   // 64 bindings at most
    EXPECT_TRUE(send(acct{1, "s1", "bob@example.jp", {"198.51.100.7"}, {}, {}, now - 100}));
    // Alice takes .7 over and brings a /50: 64 more /56 entries, one too many.
    const acct alice{1, "s2", "alice@example.jp", {"198.51.100.7"}, {{"2001:db8:140::", 50}}, {}, now - 50};
    const bytes d = alice.datagram(77);
    EXPECT_FALSE(exchange(d)) << "not stored, not answered";
    EXPECT_EQ(counters().apply_failed, 1u);
    EXPECT_EQ(data_plane(), strings{"198.51.100.7/32 bob@example.jp"}) << ".7 back to bob, no /56 left";
    EXPECT_EQ(history_open(), data_plane());
    EXPECT_TRUE(identity->history()->held_between(addr("2001:db8:140::/50"), 0, now * 2).empty());
    ASSERT_FALSE(log.empty());
    EXPECT_NE(log.back().find("subscriber table full (64 bindings): cannot bind 2001:db8:140::/50"), std::string::npos)
        << log.back();
    // The same packet again (the NAS retransmits): still too many, still nothing.
    EXPECT_FALSE(exchange(d));
    EXPECT_EQ(data_plane(), strings{"198.51.100.7/32 bob@example.jp"});
    // The batch goes on: a smaller Start in the same state is applied whole.
    const acct smaller{1, "s3", "alice@example.jp", {"198.51.100.7"}, {{"2001:db8:140::", 51}}, {}, now - 40};
    EXPECT_TRUE(send(smaller));
    EXPECT_EQ(data_plane().size(), 33u);
    EXPECT_EQ(history_open(), data_plane());
}

// The operator's API bindings win over RADIUS for their prefixes, whatever
// RADIUS binds or unbinds there, also when an update fails midway and is
// taken back; the history records RADIUS as always.
TEST_F(identity_fixture, api_bindings_stay_over_radius_starts_stops_and_a_failed_update) {
    start();   // 64 bindings at most
    operator_table->hold(addr("198.51.100.7/32"), "erin@example.jp");
    operator_table->bind(addr("198.51.100.7/32"), "erin@example.jp");
    operator_table->hold(addr("2001:db8:150::/56"), "erin@example.jp");
    operator_table->bind(addr("2001:db8:150::/56"), "erin@example.jp");
    EXPECT_TRUE(send(acct{1, "s1", "bob@example.jp", {"198.51.100.7"}, {}, {}, now - 100}));
    EXPECT_EQ(data_plane(), sorted({"198.51.100.7/32 erin@example.jp", "2001:db8:150::/56 erin@example.jp"}));
    EXPECT_EQ(history_open(), strings{"198.51.100.7/32 bob@example.jp"}) << "the history records bob's session";
    // Carol's /52 covers erin's /56: the other 15 are carol's.
    EXPECT_TRUE(send(acct{1, "s2", "carol@example.jp", {"198.51.100.8"}, {{"2001:db8:150::", 52}}, {}, now - 90}));
    strings carol = data_plane();
    EXPECT_EQ(carol.size(), 18u);
    EXPECT_EQ(std::count_if(carol.begin(), carol.end(), [](const std::string& l) { return l.ends_with(" carol@example.jp"); }),
              16);
    EXPECT_NE(std::find(carol.begin(), carol.end(), "2001:db8:150::/56 erin@example.jp"), carol.end());
    // A Start that does not fit (a /50: 64 more entries) is taken back whole, erin's entries included.
    const acct too_big{1, "s3", "dave@example.jp", {"198.51.100.7"}, {{"2001:db8:140::", 50}}, {}, now - 80};
    EXPECT_FALSE(exchange(too_big.datagram(90)));
    EXPECT_EQ(data_plane(), carol);
    // Bob's and carol's Stops leave erin's bindings.
    EXPECT_TRUE(send(acct{2, "s1", "bob@example.jp", {"198.51.100.7"}, {}, {}, now - 70}));
    EXPECT_TRUE(send(acct{2, "s2", "carol@example.jp", {"198.51.100.8"}, {{"2001:db8:150::", 52}}, {}, now - 60}));
    EXPECT_EQ(data_plane(), sorted({"198.51.100.7/32 erin@example.jp", "2001:db8:150::/56 erin@example.jp"}));
    EXPECT_TRUE(history_open().empty());
    // Released: the next RADIUS session has .7.
    operator_table->release(addr("198.51.100.7/32"));
    EXPECT_TRUE(send(acct{1, "s4", "frank@example.jp", {"198.51.100.7"}, {}, {}, now - 50}));
    EXPECT_EQ(data_plane(), sorted({"198.51.100.7/32 frank@example.jp", "2001:db8:150::/56 erin@example.jp"}));
}

TEST_F(identity_fixture, a_failed_commit_takes_the_polls_data_plane_changes_back) {
    start();
    const acct alice{1, "s1", "alice@example.jp", {"198.51.100.7"}, {}, {}, now - 100};
    ASSERT_TRUE(send(alice));
    // The disk refuses to grow the WAL: the COMMIT of the next poll fails.
    struct stat wal {};
    ASSERT_EQ(::stat((db + "-wal").c_str(), &wal), 0);
    rlimit saved{};
    ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &saved), 0);
    const auto old_handler = ::signal(SIGXFSZ, SIG_IGN);
    rlimit small = saved;
    small.rlim_cur = static_cast<rlim_t>(wal.st_size);
    ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
    acct alice_stop = alice;
    alice_stop.status = 2;
    alice_stop.event_timestamp = now - 50;
    const acct bob{1, "s2", "bob@example.jp", {"198.51.100.8"}, {}, {}, now - 40};
    const bytes stop_datagram = alice_stop.datagram(10), bob_datagram = bob.datagram(11);
    const auto stop_response = exchange(stop_datagram);
    const auto bob_response = exchange(bob_datagram);
    ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &saved), 0);
    ::signal(SIGXFSZ, old_handler);
    EXPECT_FALSE(stop_response) << "not committed, not answered";
    EXPECT_FALSE(bob_response);
    EXPECT_EQ(data_plane(), strings{"198.51.100.7/32 alice@example.jp"}) << "the poll's changes were taken back";
    EXPECT_EQ(history_open(), data_plane());
    EXPECT_EQ(counters().apply_failed, 2u);
    EXPECT_EQ(identity->apply_errors(), 2u);
    ASSERT_FALSE(log.empty());
    EXPECT_NE(log.back().find("accounting updates not answered, the NASes will retransmit"), std::string::npos)
        << log.back();
    // The NAS retransmits: applied now, not answered from a cache.
    EXPECT_TRUE(exchange(stop_datagram));
    EXPECT_TRUE(exchange(bob_datagram));
    EXPECT_EQ(data_plane(), strings{"198.51.100.8/32 bob@example.jp"});
    EXPECT_EQ(history_open(), data_plane());
    EXPECT_EQ(counters().duplicate, 0u);
}

TEST_F(identity_fixture, an_api_binding_wider_than_sessions_gives_them_back_when_released) {
    for (const bool history : {true, false}) {
        SCOPED_TRACE(history ? "history database" : "in-memory history");
        with_history = history;
        fs::remove(db);
        start();
        EXPECT_TRUE(send(acct{1, "s1", "alice@example.jp", {"198.51.100.7"}, {{"2001:db8:107::", 56}}, {}, now - 100}));
        EXPECT_TRUE(send(acct{1, "s2", "bob@example.jp", {"198.51.100.8"}, {}, {}, now - 90}));
        EXPECT_TRUE(send(acct{1, "s3", "carol@example.jp", {"198.51.101.7"}, {}, {}, now - 80}));
        const ip_prefix wide = addr("198.51.100.0/28");   // 16 entries of the 64
        operator_table->hold(wide, "erin@example.jp");
        operator_table->bind(wide, "erin@example.jp");
        operator_table->hold(addr("2001:db8:100::/40"), "erin@example.jp");
        EXPECT_TRUE(identity->open_sessions_holding(wide).empty()) << "no session holds the whole /28";
        // Released: what bindings del restores, from the sessions inside.
        operator_table->release(wide);
        operator_table->unbind(wide);
        for (const auto& r : identity->open_sessions_within(wide, 64)) operator_table->bind(r.address, r.account);
        EXPECT_EQ(data_plane(), sorted({"198.51.100.7/32 alice@example.jp", "198.51.100.8/32 bob@example.jp",
                                        "198.51.101.7/32 carol@example.jp", "2001:db8:107::/56 alice@example.jp"}));
        const auto v6 = identity->open_sessions_within(addr("2001:db8:100::/40"), 64);
        ASSERT_EQ(v6.size(), 1u);
        EXPECT_EQ(v6[0].address.to_string(), "2001:db8:107::/56");
        EXPECT_EQ(identity->open_sessions_within(wide, 1).size(), 1u) << "bounded";
        EXPECT_TRUE(send(acct{2, "s2", "bob@example.jp", {"198.51.100.8"}, {}, {}, now - 70}));
        ASSERT_EQ(identity->open_sessions_within(wide, 64).size(), 1u) << "bob's Stop closed his";
        stop();
    }
}

TEST_F(identity_fixture, without_a_history_database_the_same_rules_hold) {
    with_history = false;
    start();
    EXPECT_EQ(identity->history(), nullptr) << "nothing to query";
    const acct alice1{1, "s1", "alice@example.jp", {"198.51.100.7"}, {}, {}, now - 300};
    acct alice1_stop = alice1;
    alice1_stop.status = 2;
    alice1_stop.event_timestamp = now - 200;
    const acct alice2{1, "s2", "alice@example.jp", {"198.51.100.7"}, {}, {}, now - 100};
    EXPECT_TRUE(send(alice1));
    EXPECT_TRUE(send(alice1_stop));
    EXPECT_TRUE(send(alice2));
    EXPECT_TRUE(send(alice1_stop)) << "the old Stop resent";
    EXPECT_EQ(data_plane(), strings{"198.51.100.7/32 alice@example.jp"});
    const acct bob{1, "s3", "bob@example.jp", {"198.51.100.7"}, {}, {}, now - 50};
    EXPECT_TRUE(send(bob));
    EXPECT_TRUE(send(alice2)) << "the old Start resent";
    EXPECT_EQ(data_plane(), strings{"198.51.100.7/32 bob@example.jp"});
    EXPECT_FALSE(fs::exists(db));
}

TEST_F(identity_fixture, a_restart_restores_exactly_the_open_bindings) {
    start();
    EXPECT_TRUE(send(acct{1, "s1", "alice@example.jp", {"198.51.100.7"}, {{"2001:db8:107::", 56}}, {}, now - 300}));
    EXPECT_TRUE(send(acct{1, "s2", "bob@example.jp", {"198.51.100.8"}, {}, {}, now - 200}));
    EXPECT_TRUE(send(acct{2, "s2", "", {}, {}, {}, now - 100}));
    EXPECT_TRUE(send(acct{1, "s3", "carol@example.jp", {"198.51.100.7"}, {}, {}, now - 50}));
    const strings before = data_plane();
    EXPECT_EQ(before, (strings{"198.51.100.7/32 carol@example.jp", "2001:db8:107::/56 alice@example.jp"}));
    stop();
    start();
    EXPECT_EQ(data_plane(), before);
    EXPECT_EQ(identity->bindings_restored(), 2u);
    EXPECT_EQ(history_open(), data_plane());
    struct stat st {};
    ASSERT_EQ(::stat(db.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0640u) << "who held which address: not world-readable";
}

// An update as the RADIUS parser hands it on, from NAS 192.0.2.1.
binding_update update(binding_kind kind, const char* session, const char* account, int64_t t,
                      std::vector<const char*> addresses) {
    binding_update u;
    u.kind = kind;
    u.session_id = session;
    u.account = account;
    u.nas_address = "192.0.2.1";
    u.event_time = t;
    u.event_time_from_packet = true;
    for (const char* a : addresses) {
        const ip_prefix p = addr(a);
        if (p.family == 4) u.ipv4 = p;
        else u.ipv6_prefixes.push_back(p);
    }
    return u;
}

// Every row of the history for `addresses`, as text: who, which session,
// from, to, why it closed.
strings history_rows(binding_history& h, const std::vector<const char*>& addresses, int64_t until) {
    strings out;
    for (const char* a : addresses)
        for (const auto& r : h.held_between(addr(a), 0, until))
            out.push_back(r.address.to_string() + " " + r.account + " " + r.session_id + " " + std::to_string(r.start) +
                          ".." + (r.stop ? std::to_string(*r.stop) : std::string("open")) + " " + r.stop_cause);
    return out;
}

// (MAX(change_seq), COUNT(*)) of the file: what the fleet's binding shipper follows.
std::pair<int64_t, int64_t> change_state(const std::string& db) {
    sqlite3* c = nullptr;
    std::pair<int64_t, int64_t> out{-1, -1};
    if (sqlite3_open_v2(db.c_str(), &c, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
        sqlite3_stmt* st = nullptr;
        if (sqlite3_prepare_v2(c, "SELECT MAX(change_seq), COUNT(*) FROM sessions", -1, &st, nullptr) == SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW)
            out = {sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1)};
        sqlite3_finalize(st);
    }
    sqlite3_close_v2(c);
    return out;
}

// A poll's updates share one transaction without a savepoint each: when one
// fails midway (the table full), the batch is taken back and the others
// applied again, so the history and the data plane hold exactly what they
// would had the failed update never been sent.
TEST_F(identity_fixture, an_update_failing_midway_through_a_batch_takes_back_only_itself) {
    const std::vector<const char*> addresses{"198.51.100.7", "198.51.100.8", "198.51.100.9", "2001:db8:140::/50"};
    const std::vector<binding_update> batch{
        update(binding_kind::start, "s2", "carol@example.jp", now - 90, {"198.51.100.8"}),
        update(binding_kind::stop, "s1", "bob@example.jp", now - 85, {"198.51.100.7"}),
        // .7 and a /50 (64 more /56 entries): one too many for the 64-binding table.
        update(binding_kind::start, "s3", "alice@example.jp", now - 80, {"198.51.100.7", "2001:db8:140::/50"}),
        update(binding_kind::start, "s4", "dave@example.jp", now - 70, {"198.51.100.9"}),
        update(binding_kind::start, "s5", "erin@example.jp", now - 60, {"198.51.100.7"}),
    };
    strings rows[2], table[2];
    std::pair<int64_t, int64_t> changes[2];
    for (const bool with_failure : {true, false}) {
        SCOPED_TRACE(with_failure ? "the batch with the failing update" : "the same batch without it");
        stop();
        fs::remove(db);
        start();
        EXPECT_TRUE(send(acct{1, "s1", "bob@example.jp", {"198.51.100.7"}, {}, {}, now - 100}));
        for (size_t i = 0; i < batch.size(); ++i) {
            if (i == 2) {
                if (with_failure) {
                    EXPECT_THROW(identity->apply(batch[i]), std::runtime_error);
                }
                continue;
            }
            EXPECT_TRUE(identity->apply(batch[i])) << i;
        }
        EXPECT_TRUE(identity->commit());
        EXPECT_EQ(identity->apply_errors(), with_failure ? 1u : 0u);
        rows[with_failure] = history_rows(*identity->history(), addresses, now);
        table[with_failure] = data_plane();
        changes[with_failure] = change_state(db);
        EXPECT_EQ(history_open(), data_plane());
    }
    EXPECT_EQ(rows[true], rows[false]);
    EXPECT_EQ(table[true], table[false]);
    EXPECT_EQ(changes[true], changes[false]) << "the same change numbers for the shipper";
    EXPECT_EQ(table[true], (strings{"198.51.100.7/32 erin@example.jp", "198.51.100.8/32 carol@example.jp",
                                    "198.51.100.9/32 dave@example.jp"}));
    EXPECT_EQ(rows[true].size(), 4u) << testing::PrintToString(rows[true]);
}

// An update that fails first in a batch, and one that fails after others
// failed: each taken back alone, the rest committed.
TEST_F(identity_fixture, several_failing_updates_in_one_batch_leave_the_rest) {
    start();
    const binding_update too_big = update(binding_kind::start, "s9", "mallory@example.jp", now - 95,
                                          {"198.51.100.9", "2001:db8:140::/50"});
    EXPECT_THROW(identity->apply(too_big), std::runtime_error);
    EXPECT_TRUE(identity->apply(update(binding_kind::start, "s1", "bob@example.jp", now - 90, {"198.51.100.7"})));
    EXPECT_THROW(identity->apply(too_big), std::runtime_error);
    EXPECT_TRUE(identity->apply(update(binding_kind::start, "s2", "carol@example.jp", now - 80, {"198.51.100.8"})));
    EXPECT_THROW(identity->apply(too_big), std::runtime_error);
    EXPECT_TRUE(identity->commit());
    EXPECT_EQ(data_plane(), (strings{"198.51.100.7/32 bob@example.jp", "198.51.100.8/32 carol@example.jp"}));
    EXPECT_EQ(history_open(), data_plane());
    EXPECT_TRUE(identity->history()->held_between(addr("198.51.100.9"), 0, now).empty());
    EXPECT_EQ(identity->apply_errors(), 3u);
}

// The same Accounting-Start resent after its batch committed (the NAS lost
// the answer and the duplicate cache forgot it): no row, no change number,
// no data-plane change.
TEST_F(identity_fixture, a_start_resent_after_its_commit_changes_nothing) {
    start();
    const binding_update alice =
        update(binding_kind::start, "s1", "alice@example.jp", now - 100, {"198.51.100.7", "2001:db8:107::/56"});
    const binding_update bob = update(binding_kind::start, "s2", "bob@example.jp", now - 90, {"198.51.100.8"});
    EXPECT_TRUE(identity->apply(alice));
    EXPECT_TRUE(identity->apply(bob));
    EXPECT_TRUE(identity->commit());
    const std::vector<const char*> addresses{"198.51.100.7", "198.51.100.8", "2001:db8:107::/56"};
    const strings rows = history_rows(*identity->history(), addresses, now);
    const strings table = data_plane();
    const auto changes = change_state(db);
    // Resent alone, then both again in one batch with a Stop of bob between.
    EXPECT_TRUE(identity->apply(alice));
    EXPECT_TRUE(identity->commit());
    EXPECT_EQ(history_rows(*identity->history(), addresses, now), rows);
    EXPECT_EQ(data_plane(), table);
    EXPECT_EQ(change_state(db).second, changes.second) << "no row written";
    EXPECT_TRUE(identity->apply(bob));
    EXPECT_TRUE(identity->apply(update(binding_kind::stop, "s2", "bob@example.jp", now - 50, {"198.51.100.8"})));
    EXPECT_TRUE(identity->apply(bob));
    EXPECT_TRUE(identity->apply(alice));
    EXPECT_TRUE(identity->commit());
    EXPECT_EQ(data_plane(), strings({"198.51.100.7/32 alice@example.jp", "2001:db8:107::/56 alice@example.jp"}))
        << "bob's Start after his Stop does not open the session again";
    EXPECT_EQ(history_open(), data_plane());
    EXPECT_EQ(change_state(db).second, changes.second) << "only bob's row closed, nothing added";
}

// kill -9 after the COMMIT and before the answer: the NAS resends, and the
// restarted gateway ends where an uninterrupted one would.
TEST_F(identity_fixture, a_kill_between_commit_and_answer_then_the_resent_start_gives_the_same_result) {
    const acct alice{1, "s1", "alice@example.jp", {"198.51.100.7"}, {{"2001:db8:107::", 56}}, {}, now - 100};
    // Uninterrupted: the reference.
    start();
    EXPECT_TRUE(send(alice));
    const strings table = data_plane();
    const strings rows = history_rows(*identity->history(), {"198.51.100.7", "2001:db8:107::/56"}, now);
    const auto changes = change_state(db);
    stop();
    fs::remove(db);
    // A process that stores the Start as sekishod's poll does (one batch,
    // committed) and dies by SIGKILL before it answers.
    const binding_update u =
        update(binding_kind::start, "s1", "alice@example.jp", now - 100, {"198.51.100.7", "2001:db8:107::/56"});
    const pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        try {
            binding_history h(db);
            h.begin();
            h.apply_in_batch(u);
            h.commit();
        } catch (...) {
            _exit(1);
        }
        ::raise(SIGKILL);
        _exit(2);
    }
    int status = 0;
    ASSERT_EQ(waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;
    start();
    EXPECT_EQ(data_plane(), table) << "restored from the committed row";
    EXPECT_TRUE(send(alice)) << "the NAS's retransmission is answered";
    EXPECT_EQ(data_plane(), table);
    EXPECT_EQ(history_rows(*identity->history(), {"198.51.100.7", "2001:db8:107::/56"}, now), rows);
    EXPECT_EQ(change_state(db), changes);
    EXPECT_EQ(history_open(), data_plane());
}

}  // namespace
}  // namespace sekisho
