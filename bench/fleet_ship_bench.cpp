// The fleet's event shipping: event log lines per second that one gateway's
// event_shipper puts into a real PostgreSQL (batches of 5000 lines by COPY
// into a staging table, INSERT ... SELECT ... ON CONFLICT DO NOTHING into the
// day's partition), against a baseline in the same run and database: one
// INSERT per line, each its own transaction (what a naive shipper does).
//
//   tests/fleet/with_fleet_stores.sh build/bench/fleet_ship_bench [--lines N] [--short]
//     --lines N  lines shipped by the shipper (default 200000; the baseline
//                inserts a tenth of them, at least 1000)
//     --short    20000 lines (CI: the self-checks run, the figures are rough)
//
// The lines are what sekishod writes: op25b_block events of many subscribers
// with accounts, in one event log file written before the clock starts. The
// shipper's time runs from its start (connect, schema, partitions) to the
// last line shipped. Self-checks (exit 1 on failure): every line exactly one
// row for each gateway name (count and distinct keys), the shipper's own
// counters (shipped = lines, nothing unparsable or refused), a second
// shipper over the same file without a cursor inserts nothing, and the
// batches are faster than the baseline.
//
// Needs SEKISHO_TEST_PG_CONNINFO (with_fleet_stores.sh sets it); the last line
// of the output is a JSON object with "bench":"fleet_ship".
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "bench/fleet_bench_support.h"
#include "control/fleet/event_shipper.h"
#include "control/fleet/pg_connection.h"

using namespace sekisho;
using bench::seconds_since;

namespace {

std::string line_for(uint64_t i, uint64_t base_ns) {
    char buf[512];
    std::snprintf(buf, sizeof buf,
                  R"({"action":"reset","count":1,"dst":"203.0.113.25","dst_port":25,"generation":1,)"
                  R"("ingress":"access","reason":"dynamic_to_mx","src":"2001:db8:%x:%x::%x","src_port":%u,)"
                  R"("tcp_flags":2,"time_ns":%llu,"type":"op25b_block","worker":%u,"account":"user%u@example.jp"})",
                  static_cast<unsigned>(i >> 16 & 255), static_cast<unsigned>(i >> 8 & 255),
                  static_cast<unsigned>(i & 255), static_cast<unsigned>(1024 + i % 60000),
                  static_cast<unsigned long long>(base_ns + i * 1000), static_cast<unsigned>(i % 4),
                  static_cast<unsigned>(i % 100000));
    return buf;
}

bench::self_checks checks;
void check(bool ok, const std::string& what) { checks.check(ok, what); }

uint64_t number(pg_connection& pg, const std::string& sql) {
    sekisho::pg_result r = pg.exec(sql, "bench query");
    return std::strtoull(PQgetvalue(r.get(), 0, 0), nullptr, 10);
}

}  // namespace

int main(int argc, char** argv) {
    uint64_t lines = 200000;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--short") lines = 20000;
        else if (a == "--lines" && i + 1 < argc) lines = std::strtoull(argv[++i], nullptr, 10);
        else {
            std::fprintf(stderr, "usage: %s [--lines N] [--short]\n", argv[0]);
            return 2;
        }
    }
    const char* conninfo = std::getenv("SEKISHO_TEST_PG_CONNINFO");
    if (!conninfo || !*conninfo) {
        std::fprintf(stderr, "fleet_ship_bench: run through tests/fleet/with_fleet_stores.sh (a real PostgreSQL)\n");
        return 77;
    }
    const std::string dir = std::filesystem::temp_directory_path() / ("fleet_ship_bench." + std::to_string(getpid()));
    std::filesystem::create_directories(dir);
    const uint64_t base_ns = static_cast<uint64_t>(std::time(nullptr)) * 1'000'000'000ull;
    {
        std::ofstream out(dir + "/events.jsonl");
        for (uint64_t i = 0; i < lines; ++i) out << line_for(i, base_ns) << '\n';
    }
    const std::string tag = std::to_string(getpid());
    const std::string shipper_gw = "bench-ship-" + tag, baseline_gw = "bench-insert-" + tag;

    // The shipper.
    event_shipper_options o;
    o.gateway = shipper_gw;
    o.conninfo_file = conninfo;
    o.events_path = dir + "/events.jsonl";
    o.cursor_path = dir + "/events.cursor";
    o.sync_interval_ns = 10'000'000;
    auto t0 = std::chrono::steady_clock::now();
    double ship_s;
    event_shipper_state st;
    {
        event_shipper s(o);
        while ((st = s.state()).shipped < lines && seconds_since(t0) < 600)
            std::this_thread::sleep_for(std::chrono::milliseconds(2));
        ship_s = seconds_since(t0);
    }
    check(st.shipped == lines, "shipper shipped " + std::to_string(st.shipped) + " of " + std::to_string(lines));
    check(st.inserted == lines, "shipper inserted " + std::to_string(st.inserted));
    check(st.unparsable == 0 && st.refused == 0, "no bad lines");

    // The baseline: one INSERT (one transaction) per line, same columns.
    pg_connection pg(conninfo);
    const uint64_t baseline_lines = std::max<uint64_t>(1000, lines / 10);
    t0 = std::chrono::steady_clock::now();
    for (uint64_t i = 0; i < baseline_lines; ++i) {
        const std::string text = line_for(i, base_ns);
        char src[32];
        std::snprintf(src, sizeof src, "2001:db8:%x:%x::%x", static_cast<unsigned>(i >> 16 & 255),
                      static_cast<unsigned>(i >> 8 & 255), static_cast<unsigned>(i & 255));
        pg.exec_params("INSERT INTO events (gateway, file_id, line_offset, time, type, address, account, line) "
                       "VALUES ($1, 1, $2, timestamptz 'epoch' + $3::bigint * interval '1 microsecond', "
                       "'op25b_block', $4::inet, $5, $6::jsonb) ON CONFLICT DO NOTHING",
                       {baseline_gw, std::to_string(i), std::to_string((base_ns + i * 1000) / 1000), src,
                        "user" + std::to_string(i % 100000) + "@example.jp", text},
                       "baseline insert");
    }
    const double baseline_s = seconds_since(t0);

    // Self-checks in the database.
    check(number(pg, "SELECT count(*) FROM events WHERE gateway = '" + shipper_gw + "'") == lines, "shipper rows");
    check(number(pg, "SELECT count(DISTINCT (file_id, line_offset)) FROM events WHERE gateway = '" + shipper_gw + "'") ==
              lines,
          "shipper keys");
    check(number(pg, "SELECT count(*) FROM events WHERE gateway = '" + baseline_gw + "'") == baseline_lines,
          "baseline rows");
    // The same file again without a cursor: nothing twice.
    std::filesystem::remove(o.cursor_path);
    {
        event_shipper s(o);
        const auto t1 = std::chrono::steady_clock::now();
        while ((st = s.state()).shipped < lines && seconds_since(t1) < 600)
            std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    check(st.inserted == 0, "a replay inserted " + std::to_string(st.inserted));
    check(number(pg, "SELECT count(*) FROM events WHERE gateway = '" + shipper_gw + "'") == lines, "rows after replay");
    pg.exec("DELETE FROM events WHERE gateway IN ('" + shipper_gw + "', '" + baseline_gw + "')", "clean up");
    std::filesystem::remove_all(dir);

    const double ship_rate = static_cast<double>(lines) / ship_s;
    const double baseline_rate = static_cast<double>(baseline_lines) / baseline_s;
    check(ship_rate > baseline_rate, "batches slower than one INSERT per line");
    std::printf("fleet ship bench: %llu lines shipped in %.3f s (%.0f lines/s); baseline %llu single-row INSERTs in "
                "%.3f s (%.0f rows/s); ratio %.1f\n",
                static_cast<unsigned long long>(lines), ship_s, ship_rate,
                static_cast<unsigned long long>(baseline_lines), baseline_s, baseline_rate, ship_rate / baseline_rate);
    std::printf("{\"bench\":\"fleet_ship\",\"lines\":%llu,\"lines_per_sec\":%.0f,\"baseline_rows\":%llu,"
                "\"baseline_rows_per_sec\":%.0f,\"ratio\":%.2f,\"self_check\":%s}\n",
                static_cast<unsigned long long>(lines), ship_rate, static_cast<unsigned long long>(baseline_lines),
                baseline_rate, ship_rate / baseline_rate, checks.failed() ? "false" : "true");
    return checks.failed() ? 1 : 0;
}
