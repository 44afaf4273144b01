// The fleet's store links against a real PostgreSQL 15 and Redis 7, started
// for this binary by with_fleet_stores.sh (environment: SEKISHO_TEST_*).
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "control/fleet/fleet_config.h"
#include "control/fleet/pg_connection.h"
#include "control/fleet/redis_connection.h"

namespace sekisho {
namespace {

std::string env(const char* name) {
    const char* v = std::getenv(name);
    return v ? v : "";
}

class FleetStores : public ::testing::Test {
protected:
    void SetUp() override {
        if (env("SEKISHO_TEST_PG_CONNINFO").empty()) GTEST_SKIP() << "run through with_fleet_stores.sh";
    }
    std::string conninfo() const { return env("SEKISHO_TEST_PG_CONNINFO"); }
    std::string redis() const { return env("SEKISHO_TEST_REDIS"); }
    std::string redis_password() const { return env("SEKISHO_TEST_REDIS_PASSWORD_FILE"); }
};

TEST_F(FleetStores, PostgresSchemaIsIdempotentAndRefusesANewerOne) {
    pg_connection pg(conninfo());
    ASSERT_TRUE(pg.ok());
    ensure_fleet_schema(pg);
    ensure_fleet_schema(pg);   // a second gateway starting
    pg_result v = pg.exec("SELECT value FROM fleet_meta WHERE key = 'schema_version'", "read");
    ASSERT_EQ(PQntuples(v.get()), 1);
    EXPECT_EQ(std::string(PQgetvalue(v.get(), 0, 0)), std::to_string(fleet_schema_version));
    pg.exec("UPDATE fleet_meta SET value = '999' WHERE key = 'schema_version'", "pretend a newer build");
    try {
        ensure_fleet_schema(pg);
        ADD_FAILURE() << "a newer schema was accepted";
    } catch (const pg_error& e) {
        EXPECT_NE(std::string(e.what()).find("version 999, newer than this build's"), std::string::npos) << e.what();
        EXPECT_FALSE(e.connection_lost());
    }
    pg.exec("UPDATE fleet_meta SET value = '" + std::to_string(fleet_schema_version) + "' WHERE key = 'schema_version'",
            "restore");
}

TEST_F(FleetStores, PostgresErrorsNameTheStep) {
    pg_connection pg(conninfo());
    try {
        pg.exec("SELECT * FROM no_such_table", "read the missing table");
        ADD_FAILURE() << "no error";
    } catch (const pg_error& e) {
        EXPECT_NE(std::string(e.what()).find("postgres: read the missing table: ERROR:"), std::string::npos) << e.what();
        EXPECT_FALSE(e.connection_lost());
    }
    EXPECT_TRUE(pg.ok());   // a refused statement leaves the link up
}

TEST_F(FleetStores, PostgresUnreachableIsALostConnection) {
    const std::string bad = ::testing::TempDir() + "/bad.conninfo";
    std::ofstream(bad) << "host=/nonexistent-socket-dir dbname=sekisho user=sekisho_gateway\n";
    chmod(bad.c_str(), 0600);
    try {
        pg_connection pg(bad);
        ADD_FAILURE() << "connected to nothing";
    } catch (const pg_error& e) {
        EXPECT_TRUE(e.connection_lost());
        EXPECT_NE(std::string(e.what()).find("postgres: cannot connect (" + bad + ")"), std::string::npos) << e.what();
    }
}

// TCP to the fleet's PostgreSQL is TLS only: verify-full against the CA
// connects encrypted; without TLS, or against another CA, it is refused.
TEST_F(FleetStores, PostgresOverTcpIsTlsVerified) {
    pg_connection pg(env("SEKISHO_TEST_PG_TLS_CONNINFO"));
    pg_result r = pg.exec("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()", "read pg_stat_ssl");
    ASSERT_EQ(PQntuples(r.get()), 1);
    EXPECT_EQ(std::string(PQgetvalue(r.get(), 0, 0)), "t");
    EXPECT_EQ(std::string(PQgetvalue(r.get(), 0, 1)).rfind("TLSv1.", 0), 0u);

    std::ifstream in(env("SEKISHO_TEST_PG_TLS_CONNINFO"));
    std::string tls_line;
    std::getline(in, tls_line);
    auto variant = [&](const std::string& from, const std::string& to) {
        std::string line = tls_line;
        line.replace(line.find(from), from.size(), to);
        const std::string path = ::testing::TempDir() + "/variant.conninfo";
        std::ofstream(path) << line << "\n";
        chmod(path.c_str(), 0600);
        return path;
    };
    EXPECT_THROW(pg_connection(variant("sslmode=verify-full", "sslmode=disable")), pg_error);
    try {
        pg_connection other(variant("/ca.pem", "/other-ca.pem"));
        ADD_FAILURE() << "a server certificate from another CA was accepted";
    } catch (const pg_error& e) {
        EXPECT_NE(std::string(e.what()).find("certificate verify failed"), std::string::npos) << e.what();
    }
}

TEST_F(FleetStores, RedisCommandsPipelineAndAuth) {
    redis_connection r(redis(), redis_password());
    EXPECT_EQ(std::string(r.command({"PING"})->str), "PONG");
    r.append({"DEL", "sekisho:test"});
    r.append({"SETBIT", "sekisho:test", "7", "1"});
    r.append({"BITCOUNT", "sekisho:test"});
    r.reply();
    r.reply();
    EXPECT_EQ(r.reply()->integer, 1);
    try {
        r.command({"NOSUCHCOMMAND", "account@example.jp"});
        ADD_FAILURE() << "no error";
    } catch (const redis_error& e) {
        EXPECT_FALSE(e.connection_lost());
        EXPECT_EQ(std::string(e.what()).find("account@example.jp"), std::string::npos) << "arguments leaked: " << e.what();
    }
    // Without the password: refused.
    redis_connection anonymous(redis(), "");
    EXPECT_THROW(anonymous.command({"GET", "sekisho:test"}), redis_error);
}

// Redis over TCP with TLS, verified against the CA and the host name; the
// same port refuses a client that trusts another CA or speaks plain TCP.
TEST_F(FleetStores, RedisOverTlsIsVerified) {
    const std::string tls = env("SEKISHO_TEST_REDIS_TLS");
    const std::string port = tls.substr(tls.rfind(':'));
    redis_connection r(redis_endpoint{"localhost" + port, redis_password(), env("SEKISHO_TEST_CA")});
    EXPECT_TRUE(r.tls());
    EXPECT_EQ(std::string(r.command({"PING"})->str), "PONG");
    // A reply larger than one read, pipelined behind another.
    r.append({"SET", "sekisho:big", std::string(100000, 'x')});
    r.append({"GET", "sekisho:big"});
    r.reply();
    EXPECT_EQ(r.reply()->len, 100000u);

    const std::string other_ca = env("SEKISHO_TEST_CA").substr(0, env("SEKISHO_TEST_CA").rfind('/')) + "/other-ca.pem";
    try {
        redis_connection bad(redis_endpoint{"localhost" + port, redis_password(), other_ca});
        ADD_FAILURE() << "a certificate from another CA was accepted";
    } catch (const redis_error& e) {
        EXPECT_TRUE(e.connection_lost());
        EXPECT_NE(std::string(e.what()).find("certificate verify failed"), std::string::npos) << e.what();
    }
    // The certificate names localhost, not 127.0.0.1.
    EXPECT_THROW(redis_connection(redis_endpoint{tls, redis_password(), env("SEKISHO_TEST_CA")}), redis_error);
    // Plain TCP to the TLS port: the handshake Redis expects never comes; the timeout ends it.
    EXPECT_THROW(redis_connection(redis_endpoint{tls, redis_password(), "", std::chrono::milliseconds(300)}),
                 redis_error);
    EXPECT_THROW(redis_connection(redis_endpoint{redis(), "", env("SEKISHO_TEST_CA")}), redis_error);
}

TEST_F(FleetStores, RedisUnreachableIsALostConnection) {
    try {
        redis_connection r("unix:/nonexistent/redis.sock", "");
        ADD_FAILURE() << "connected to nothing";
    } catch (const redis_error& e) {
        EXPECT_TRUE(e.connection_lost());
    }
    EXPECT_THROW(redis_connection("no-port", ""), redis_error);
}

}  // namespace
}  // namespace sekisho
