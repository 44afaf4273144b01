// The least-privilege deployment against a real PostgreSQL 15
// (with_fleet_stores.sh): a DBA (the superuser here) runs `sekishoctl --fleet
// ADMIN fleet schema --apply` on a database of its own; CREATE on its schema
// is revoked from the gateway and controller roles; then the gateway's
// concerns connect (no DDL), ship events (partitions through the schema's
// functions) and bindings, keep retention, and the controller pushes a
// policy, each with exactly what docs/security.md grants, and no more.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sys/stat.h>
#include <sys/wait.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <thread>

#include "control/fleet/binding_shipper.h"
#include "control/fleet/event_shipper.h"
#include "control/fleet/fleet_schema.h"
#include "control/fleet/operator_sync.h"
#include "control/fleet/pg_connection.h"
#include "control/fleet/policy_sync.h"
#include "control/identity/binding_history.h"
#include "control/policy/policy.h"
#include "tests/support/fleet_test_env.h"

namespace sekisho {
namespace {

namespace fs = std::filesystem;

using test::env;

using test::eventually;

class FleetSchema : public ::testing::Test {
protected:
    static constexpr const char* database = "sekisho_dba";

    void SetUp() override {
        if (env("SEKISHO_TEST_PG_CONNINFO").empty()) GTEST_SKIP() << "run through with_fleet_stores.sh";
        dir_ = ::testing::TempDir() + "/fleet_schema";
        fs::remove_all(dir_);
        fs::create_directories(dir_);
        std::ifstream in(env("SEKISHO_TEST_PG_CONNINFO"));
        std::getline(in, gateway_conninfo_);
        // The superuser on the cluster's default database, to make a database of the test's own.
        pg_connection postgres(write_conninfo("postgres", "postgres", "postgres"));
        postgres.exec("SET client_min_messages = warning", "quiet");
        postgres.exec(std::string("DROP DATABASE IF EXISTS ") + database + " WITH (FORCE)", "drop the database");
        postgres.exec(std::string("CREATE DATABASE ") + database, "create the database");
    }
    void TearDown() override {
        if (!dir_.empty()) fs::remove_all(dir_);
    }

    // A conninfo file (0640) for `user` on `db`, from the test cluster's gateway conninfo.
    std::string write_conninfo(const std::string& name, const std::string& user, const std::string& db) const {
        std::string c = gateway_conninfo_;
        c.replace(c.find("user=sekisho_gateway"), 20, "user=" + user);
        c.replace(c.find("dbname=sekisho"), 14, "dbname=" + db);
        const std::string path = dir_ + "/" + name + ".conninfo";
        std::ofstream(path) << c << "\n";
        ::chmod(path.c_str(), 0640);
        return path;
    }
    std::string role(const std::string& r) const { return write_conninfo(r, "sekisho_" + r, database); }
    std::string admin() const { return write_conninfo("admin", "postgres", database); }

    // sekishoctl (next to this test in the build tree, or $SEKISHOCTL) with ARGS: output and exit code.
    std::pair<std::string, int> ctl(const std::string& args) const {
        std::string bin = env("SEKISHOCTL");
        if (bin.empty()) bin = (fs::canonical("/proc/self/exe").parent_path().parent_path() / "cmd/sekishoctl/sekishoctl");
        return test::run_command(bin + " " + args);
    }

    // A shipper's options as gateway gw-dba with the role of `conninfo_file`; its cursor <dir>/NAME.cursor.
    template <class Options>
    Options shipper_options(const std::string& conninfo_file, const std::string& name) const {
        Options o;
        o.gateway = "gw-dba";
        o.conninfo_file = conninfo_file;
        o.cursor_path = dir_ + "/" + name + ".cursor";
        o.sync_interval_ns = 20'000'000;
        return o;
    }

    // The error of `sql` run as the role of `conninfo_file`; "" when it succeeded.
    static std::string refusal(const std::string& conninfo_file, const std::string& sql) {
        try {
            pg_connection pg(conninfo_file);
            pg.exec(sql, "try");
            return "";
        } catch (const pg_error& e) {
            return e.what();
        }
    }

    std::string dir_, gateway_conninfo_;
};

TEST_F(FleetSchema, GatewaysDeskAndControllerWorkWithoutCreateAfterTheDbaSetup) {
    // The script: printed for review, then applied twice (idempotent).
    const auto [script, rc0] = ctl("--fleet " + admin() + " fleet schema");
    ASSERT_EQ(rc0, 0) << script;
    EXPECT_NE(script.find("CREATE TABLE IF NOT EXISTS events ("), std::string::npos) << script;
    EXPECT_NE(script.find("GRANT INSERT ON events TO sekisho_gateway;"), std::string::npos) << script;
    for (int i = 0; i < 2; ++i) {
        const auto [out, rc] = ctl("--fleet " + admin() + " fleet schema --apply");
        ASSERT_EQ(rc, 0) << out;
        EXPECT_NE(out.find("fleet schema version 1 in place; roles granted\n"), std::string::npos) << out;
    }
    pg_connection dba(admin());
    dba.exec("REVOKE CREATE ON SCHEMA public FROM PUBLIC, sekisho_gateway, sekisho_controller", "revoke CREATE");
    const std::string gateway = role("gateway"), desk = role("desk"), controller = role("controller");
    EXPECT_NE(refusal(gateway, "CREATE TABLE gateway_made (a int)").find("permission denied for schema public"),
              std::string::npos);

    // The concerns' DDL itself is refused now (a CREATE ... IF NOT EXISTS needs CREATE even when
    // the table is there); their connect-time step runs none, so it passes.
    EXPECT_NE(refusal(gateway, fleet_sql::create_event_tables).find("permission denied for schema public"),
              std::string::npos);
    EXPECT_NE(refusal(gateway, fleet_sql::create_operator_tables).find("permission denied for schema public"),
              std::string::npos);
    {
        pg_connection pg(gateway);
        pg.exec("SET client_min_messages = warning", "quiet");
        ensure_fleet_schema(pg);
        ensure_operator_tables(pg);
        ensure_event_tables(pg);
        ensure_binding_tables(pg);
        ensure_policy_columns(pg);
    }
    // The event shipper: today's partition through the function, every line a row.
    auto eo = shipper_options<event_shipper_options>(gateway, "events");
    eo.events_path = dir_ + "/events.jsonl";
    {
        const std::string now_ns = std::to_string(static_cast<uint64_t>(std::time(nullptr)) * 1'000'000'000ull);
        std::ofstream log(eo.events_path);
        for (int i = 0; i < 3; ++i)
            log << R"({"type":"op25b_block","src":"198.51.100.)" << i + 1 << R"(","time_ns":)" << now_ns << "}\n";
    }
    {
        event_shipper s(eo);
        ASSERT_TRUE(eventually([&] { return s.state().shipped == 3; })) << s.status().dump();
    }
    // The binding shipper: a Start and its Stop, upserted.
    auto bo = shipper_options<binding_shipper_options>(gateway, "bindings");
    bo.history_path = dir_ + "/history.db";
    {
        binding_history h(bo.history_path);
        binding_update u;
        u.account = "alice";
        u.session_id = "s1";
        std::string why;
        u.ipv4 = parse_prefix("198.51.100.1/32", why);
        u.nas_address = "192.0.2.1";
        u.event_time = std::time(nullptr) - 60;
        h.apply(u);
        u.kind = binding_kind::stop;
        u.event_time += 30;
        h.apply(u);
        binding_shipper s(bo);   // one history row, started and stopped
        ASSERT_TRUE(eventually([&] { return s.state().backlog_rows == 0 && s.state().shipped == 1; }))
            << s.status().dump();
    }
    // Retention through the function; the gateway may not drop a table itself.
    {
        pg_connection pg(gateway);
        pg.exec("SET client_min_messages = warning", "quiet");
        const std::string old = ensure_event_partition(pg, 1'700'000'000);
        EXPECT_EQ(old, "events_p20231114");
        EXPECT_NE(refusal(gateway, "DROP TABLE " + old).find("must be owner"), std::string::npos);
        EXPECT_EQ(drop_old_event_partitions(pg, std::time(nullptr), 30), 1);
        pg.exec("INSERT INTO operator_changes (change_id, kind, account, gateway, caller, at)"
                " VALUES ('c1', 'suspend', 'alice', 'gw-dba', 'test', now())",
                "the operator log, as operator_sync writes it");
        pg.exec("INSERT INTO gateways (gateway, grp) VALUES ('gw-dba', 'default')"
                " ON CONFLICT (gateway) DO UPDATE SET last_seen = now()",
                "the heartbeat's upsert");
    }
    // The controller pushes a policy into the DBA's tables; the gateway may not.
    const std::string policy = dir_ + "/policy.yaml";
    std::ofstream(policy) << "subscribers:\n  - 198.51.100.0/24\n";
    const auto [pushed, rc1] = ctl("--fleet " + controller + " fleet policy push " + policy + " --group default");
    EXPECT_EQ(rc1, 0) << pushed;
    EXPECT_NE(refusal(gateway, "INSERT INTO policy_versions (grp, text, author) VALUES ('default', 'x', 'x')")
                  .find("permission denied for table policy_versions"),
              std::string::npos);
    // The desk reads everything and writes nothing.
    pg_connection d(desk);
    pg_result n = d.exec("SELECT (SELECT count(*) FROM events WHERE gateway = 'gw-dba') || ' ' ||"
                         " (SELECT count(*) FROM bindings WHERE gateway = 'gw-dba' AND stop IS NOT NULL) || ' ' ||"
                         " (SELECT count(*) FROM operator_changes) || ' ' || (SELECT count(*) FROM policy_versions)",
                         "the desk's read");
    EXPECT_EQ(std::string(PQgetvalue(n.get(), 0, 0)), "3 1 1 1");
    EXPECT_NE(refusal(desk, "DELETE FROM events").find("permission denied for table events"), std::string::npos);
    EXPECT_NE(refusal(desk, "SELECT sekisho_event_partition(current_date)").find("permission denied for function"),
              std::string::npos);
    // Owned by the DBA's role, not by a gateway (an owner could do anything to it).
    pg_result owner = dba.exec("SELECT string_agg(DISTINCT tableowner, ',') FROM pg_tables WHERE schemaname = 'public'",
                               "the tables' owners");
    EXPECT_EQ(std::string(PQgetvalue(owner.get(), 0, 0)), "postgres");
}

}  // namespace
}  // namespace sekisho
