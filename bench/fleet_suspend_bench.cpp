// The fleet's suspension-to-enforcement time (docs/performance.md): two
// gateways in this process, each with its own operator.db, account registry
// and operator_sync, sharing the real PostgreSQL that
// tests/fleet/with_fleet_stores.sh started. N accounts are suspended on
// gateway A one after the other through what the control API does (the
// suspension durable in operator.db, then the account registry's flag); each
// figure is the time from the start of that call until gateway B's account
// registry has the account suspended (B's workers refuse its next SMTP
// connection from then on). Then the same N accounts are resumed on A, timed
// the same way. Both gateways' control threads turn every 10 ms, as
// sekishod's does; the fallback read is sekishod's default (1 s), so the
// figures are LISTEN/NOTIFY's.
//
// Baseline in the same run: the local suspension alone (the call on A, until
// A's own registry has it: what a single gateway's API takes).
//
// Then the store killed midway: PostgreSQL is killed (kill -9, through
// tests/fleet/fleet_stores.sh), N/4 more accounts (at least 5) are suspended on
// A (each in force on A at once, queued in its outbox), and PostgreSQL is
// started again; the catch-up figure is the time from its return until B has
// them all (the links' reconnect backoff, 100 ms doubling, included).
//
//   tests/fleet/with_fleet_stores.sh build/bench/fleet_suspend_bench [--changes N] [--short]
//     --changes N  suspensions (and as many resumptions); default 200
//     --short      20 (CI: the self-checks run, the figures are rough)
//
// Self-checks (exit 1 on failure): every change arrived at B, exactly once
// (each gateway applied all 2N + N/4 changes from the log, A published them,
// B audited them, the log holds them as A's rows and none of B's), B ends with
// none of the first N accounts suspended and all of the last N/4, each of
// those in force on A while the store was down, p99 < 1 s for suspensions and
// for resumptions, and the catch-up within 10 s of the store's return.
// The last line of the output is a JSON object with "bench":"fleet_suspend".
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench_support.h"
#include "bench/fleet_bench_support.h"
#include "control/fleet/operator_sync.h"
#include "control/fleet/pg_connection.h"
#include "control/identity/account_registry.h"
#include "control/state/operator_state.h"

using namespace sekisho;
using bench::percentile;
using bench::seconds_since;
using bench::wall_clock;

namespace {

// One gateway's operator state and its fleet link, as serve() wires them.
class gateway {
public:
    gateway(const std::string& name, const std::string& dir, const std::string& conninfo)
        : name_(name), accounts_(4096), decisions_(dir + "/" + name + "-operator.db") {
        operator_sync_options o;
        o.gateway = name;
        o.conninfo_file = conninfo;
        o.log = [name](const std::string& line) { std::fprintf(stderr, "[%s] %s\n", name.c_str(), line.c_str()); };
        o.audit = [this](nlohmann::json) { audits_.fetch_add(1); };
        sync_ = std::make_unique<operator_sync>(std::move(o), decisions_, &accounts_);
    }
    // The control API's `account suspend` / `account resume`: durable first, then in force.
    void suspend(const std::string& account) {
        decisions_.suspend({account, static_cast<int64_t>(std::time(nullptr)), "bench-" + name_, "bench"});
        accounts_.set_suspended(accounts_.id_of(account), true);
    }
    void resume(const std::string& account) {
        decisions_.resume(account, "bench-" + name_, static_cast<int64_t>(std::time(nullptr)));
        accounts_.set_suspended(accounts_.id_of(account), false);
    }
    bool suspended(const std::string& account) { return accounts_.suspended(accounts_.id_of(account)); }
    operator_sync& sync() { return *sync_; }
    uint64_t audits() const { return audits_.load(); }

private:
    std::string name_;
    account_registry accounts_;
    operator_state decisions_;
    std::atomic<uint64_t> audits_{0};
    std::unique_ptr<operator_sync> sync_;   // last: stopped before the state it works on
};

// Both control threads' turns (10 ms) until `done` after a turn, or `limit_s`; false on timeout.
bool turn_until(gateway& a, gateway& b, const std::function<bool()>& done, double limit_s) {
    const auto t0 = wall_clock::now();
    while (seconds_since(t0) < limit_s) {
        a.sync().poll();
        b.sync().poll();
        if (done()) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
}

// Runs `step` (a function of tests/fleet/fleet_stores.sh) on the cluster with_fleet_stores.sh
// started; true when it succeeded.
bool store_step(const std::string& step) {
    const char* dir = std::getenv("SEKISHO_TEST_PG_DIR");
    if (!dir || !*dir) return false;
    // The script's status is the step's (sourcing the file may end on a false test).
    const std::string script = "source '" SEKISHO_SOURCE_ROOT "/tests/fleet/fleet_stores.sh'; FLEET_DIR='" +
                               std::string(dir) + "'; FLEET_PG_PID=\"$(head -n 1 \"$FLEET_DIR/pg/postmaster.pid\" " +
                               "2>/dev/null)\"; " + step;
    const pid_t pid = fork();
    if (pid == 0) {
        execlp("bash", "bash", "-c", script.c_str(), static_cast<char*>(nullptr));
        _exit(127);
    }
    int status = 0;
    return pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

// The store killed with `accounts` to suspend while it is away: each suspended on A (and in force
// there at once), then the store started again; the seconds from its return until B has them all.
// A negative figure after a FAIL line when a step failed or B did not catch up within 10 s.
double catch_up(gateway& a, gateway& b, const std::vector<std::string>& accounts, bench::self_checks& checks) {
    if (!store_step("fleet_kill_postgres")) {
        checks.check(false, "PostgreSQL could not be killed (SEKISHO_TEST_PG_DIR)");
        return -1;
    }
    unsigned enforced = 0;
    for (const std::string& acc : accounts) {
        a.suspend(acc);
        enforced += a.suspended(acc) ? 1 : 0;
    }
    checks.check(enforced == accounts.size(), "suspensions not in force on A while the store was down");
    turn_until(a, b, [] { return false; }, 0.5);   // the links notice, their backoff grows
    if (!store_step("fleet_start_postgres")) {
        checks.check(false, "PostgreSQL did not start again");
        return -1;
    }
    const auto t0 = wall_clock::now();
    auto all_on_b = [&] {
        for (const std::string& acc : accounts)
            if (!b.suspended(acc)) return false;
        return true;
    };
    const bool ok = turn_until(a, b, all_on_b, 10);
    const double took = seconds_since(t0);
    checks.check(ok, "B did not have the suspensions made while the store was down within 10 s of its return");
    return ok ? took : -1;
}

struct timings {
    std::vector<double> fleet_ms, local_ms;
};

// One change on A per account, each waited for on B: `change` makes it, `arrived` tells
// whether B has it in force. False (after a FAIL line) if one did not arrive within 5 s.
bool run_changes(gateway& a, gateway& b, const std::vector<std::string>& accounts, bool suspend, timings& t,
                 bench::self_checks& checks) {
    for (const std::string& acc : accounts) {
        const auto t0 = wall_clock::now();
        if (suspend)
            a.suspend(acc);
        else
            a.resume(acc);
        t.local_ms.push_back(seconds_since(t0) * 1e3);
        const bool ok = turn_until(a, b, [&] { return b.suspended(acc) == suspend; }, 5);
        t.fleet_ms.push_back(seconds_since(t0) * 1e3);
        checks.check(ok, std::string(suspend ? "suspension" : "resumption") + " of " + acc + " not on B within 5 s");
        if (!ok) return false;
    }
    return true;
}

uint64_t number(pg_connection& pg, const std::string& sql, const std::string& value) {
    sekisho::pg_result r = pg.exec_params(sql, {value}, "bench query");
    return std::strtoull(PQgetvalue(r.get(), 0, 0), nullptr, 10);
}

void print_line(const char* what, const timings& t) {
    std::printf("%s: %zu, A's API call until in force on B: p50 %.1f ms, p99 %.1f ms, max %.1f ms; "
                "the local call alone (baseline): p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
                what, t.fleet_ms.size(), percentile(t.fleet_ms, 50), percentile(t.fleet_ms, 99),
                percentile(t.fleet_ms, 100), percentile(t.local_ms, 50), percentile(t.local_ms, 99),
                percentile(t.local_ms, 100));
}

int run(unsigned n, const char* conninfo);

}  // namespace

int main(int argc, char** argv) {
    unsigned n = 200;
    for (int i = 1; i < argc; ++i) {  // N: the sequential changes; the store-down batch is N/4
        const std::string arg = argv[i];
        if (arg == "--short")
            n = 20;
        else if (arg == "--changes" && i + 1 < argc && std::atoi(argv[i + 1]) > 0)
            n = static_cast<unsigned>(std::atoi(argv[++i]));
        else {
            std::fprintf(stderr, "usage: %s [--changes N] [--short]\n", argv[0]);
            return 2;
        }
    }
    const char* conninfo = std::getenv("SEKISHO_TEST_PG_CONNINFO");
    if (!conninfo || !*conninfo) {
        std::fprintf(stderr, "fleet_suspend_bench: run through tests/fleet/with_fleet_stores.sh (a real PostgreSQL)\n");
        return 77;
    }
    // The account registry is in rte_malloc memory: the EAL (no hugepages) is up for it. It pins
    // this thread to lcore 0; the gateways' threads are not workers, so every CPU is theirs again.
    const bool eal_up = bench::init_eal("fleet-suspend-bench", 256);
    cpu_set_t all;
    CPU_ZERO(&all);
    for (int c = 0; c < CPU_SETSIZE; ++c) CPU_SET(c, &all);
    sched_setaffinity(0, sizeof all, &all);
    return bench::run_on_eal("fleet_suspend_bench", eal_up, [&] { return run(n, conninfo); });
}

namespace {

int run(unsigned n, const char* conninfo) {
    const std::string tag = std::to_string(getpid());
    const std::string dir = std::filesystem::temp_directory_path() / ("fleet_suspend_bench." + tag);
    std::filesystem::create_directories(dir);
    bench::self_checks checks;
    timings sus, res;
    double catch_up_s = -1;
    const unsigned down_batch = std::max(5u, n / 4);
    try {
        const std::string name_a = "bench-a-" + tag, name_b = "bench-b-" + tag;
        std::vector<std::string> accounts;
        for (unsigned i = 0; i < n; ++i) accounts.push_back("bench" + tag + "-" + std::to_string(i) + "@example.jp");
        std::vector<std::string> while_down;
        for (unsigned i = 0; i < down_batch; ++i)
            while_down.push_back("bench" + tag + "-down-" + std::to_string(i) + "@example.jp");
        {
            gateway a(name_a, dir, conninfo), b(name_b, dir, conninfo);
            checks.check(turn_until(a, b, [&] { return a.sync().link_up() && b.sync().link_up(); }, 10),
                         "the gateways' links did not come up within 10 s");
            if (!checks.failed() && run_changes(a, b, accounts, true, sus, checks) &&
                run_changes(a, b, accounts, false, res, checks))
                catch_up_s = catch_up(a, b, while_down, checks);
            // Every change once on both, and nothing more (an echo or a duplicate would show by now).
            const uint64_t want = 2ull * n + down_batch;
            turn_until(a, b, [&] { return a.sync().applied() >= want && b.sync().applied() >= want; }, 5);
            turn_until(a, b, [] { return false; }, 1);
            checks.check(a.sync().published() == want, "A published " + std::to_string(a.sync().published()) +
                                                           " changes (want " + std::to_string(want) + ")");
            checks.check(a.sync().applied() == want && b.sync().applied() == want,
                         "applied from the log: A " + std::to_string(a.sync().applied()) + ", B " +
                             std::to_string(b.sync().applied()) + " (want " + std::to_string(want) + " each)");
            checks.check(b.audits() == want, "B audited " + std::to_string(b.audits()) + " fleet changes (want " +
                                                 std::to_string(want) + ")");
            checks.check(a.audits() == 0, "A audited " + std::to_string(a.audits()) + " of its own changes (want 0)");
            unsigned left = 0;
            for (const std::string& acc : accounts) left += b.suspended(acc) ? 1 : 0;
            checks.check(left == 0, std::to_string(left) + " accounts still suspended on B after their resumption");
            unsigned missing = 0;
            for (const std::string& acc : while_down) missing += b.suspended(acc) ? 0 : 1;
            checks.check(missing == 0, std::to_string(missing) + " suspensions made while the store was down not on B");
            pg_connection pg(conninfo);
            checks.check(number(pg, "SELECT count(*) FROM operator_changes WHERE gateway = $1", name_a) == want,
                         "the change log does not hold exactly A's " + std::to_string(want) + " changes");
            checks.check(number(pg, "SELECT count(*) FROM operator_changes WHERE gateway = $1", name_b) == 0,
                         "B wrote changes into the log (an echo)");
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "fleet_suspend_bench: %s\n", e.what());
        std::filesystem::remove_all(dir);
        return 1;
    }
    std::filesystem::remove_all(dir);

    print_line("suspensions", sus);
    print_line("resumptions", res);
    std::printf("store killed: %u suspensions made on A while PostgreSQL was down, all in force on B %.3f s after "
                "it returned (reconnect backoff included)\n",
                down_batch, catch_up_s);
    checks.check(percentile(sus.fleet_ms, 99) < 1000, "suspension p99 not under 1 s");
    checks.check(percentile(res.fleet_ms, 99) < 1000, "resumption p99 not under 1 s");
    std::printf("{\"bench\":\"fleet_suspend\",\"changes\":%u,\"suspend_p50_ms\":%.1f,\"suspend_p99_ms\":%.1f,"
                "\"suspend_max_ms\":%.1f,\"resume_p50_ms\":%.1f,\"resume_p99_ms\":%.1f,\"resume_max_ms\":%.1f,"
                "\"local_suspend_p50_ms\":%.2f,\"local_suspend_p99_ms\":%.2f,\"control_turn_ms\":10,"
                "\"store_down_changes\":%u,\"catch_up_after_store_return_s\":%.3f,\"self_check\":%s}\n",
                n, percentile(sus.fleet_ms, 50), percentile(sus.fleet_ms, 99), percentile(sus.fleet_ms, 100),
                percentile(res.fleet_ms, 50), percentile(res.fleet_ms, 99), percentile(res.fleet_ms, 100),
                percentile(sus.local_ms, 50), percentile(sus.local_ms, 99), down_batch, catch_up_s,
                checks.failed() ? "false" : "true");
    return checks.failed() ? 1 : 0;
}

}  // namespace
