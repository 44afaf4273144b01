// The fleet file: what it accepts, and for each mistake an error naming the
// file, the line and the field. Credential files readable by others are refused.
#include "control/fleet/fleet_config.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace sekisho {
namespace {

class FleetConfig : public ::testing::Test {
protected:
    void SetUp() override {
        dir_ = std::filesystem::temp_directory_path() /
               ("sekisho-fleet-config-" + std::to_string(getpid()) + "-" +
                ::testing::UnitTest::GetInstance()->current_test_info()->name());
        std::filesystem::create_directories(dir_);
        write("pg.conninfo", "host=/tmp dbname=sekisho user=sekisho_gateway\n", 0640);
        write("redis.password", "secret\n", 0600);
    }
    void TearDown() override { std::filesystem::remove_all(dir_); }
    std::string write(const std::string& name, const std::string& text, mode_t mode = 0644) {
        const std::string path = (dir_ / name).string();
        std::ofstream(path) << text;
        chmod(path.c_str(), mode);
        return path;
    }
    std::string fleet(const std::string& body) { return write("fleet.yaml", body); }
    std::string pg() const { return (dir_ / "pg.conninfo").string(); }
    std::string error_of(const std::string& body) {
        try {
            read_fleet_config(fleet(body));
        } catch (const fleet_config_error& e) {
            return e.what();
        }
        return "";
    }
    std::filesystem::path dir_;
};

TEST_F(FleetConfig, ReadsEveryKey) {
    const fleet_config c = read_fleet_config(fleet("gateway: edge-1\ngroup: canary\npostgres:\n  conninfo_file: " + pg() +
                                                   "\nredis:\n  address: 127.0.0.1:6379\n  password_file: " +
                                                   (dir_ / "redis.password").string() +
                                                   "\nsync_interval: 100ms\n"));
    EXPECT_EQ(c.gateway, "edge-1");
    EXPECT_EQ(c.group, "canary");
    EXPECT_EQ(c.postgres_conninfo_file, pg());
    EXPECT_EQ(c.redis_address, "127.0.0.1:6379");
    EXPECT_EQ(c.sync_interval_ns, 100'000'000u);
    EXPECT_EQ(read_credential_file((dir_ / "redis.password").string(), "x"), "secret");
}

TEST_F(FleetConfig, DefaultsWithOneStore) {
    const fleet_config c = read_fleet_config(fleet("gateway: g\nredis:\n  address: unix:/run/redis.sock\n"));
    EXPECT_EQ(c.group, "default");
    EXPECT_TRUE(c.postgres_conninfo_file.empty());
    EXPECT_EQ(c.sync_interval_ns, 200'000'000u);
}

// {description, file body, the error's expected part}
struct bad_case {
    const char* description;
    std::string body;
    std::string expected;
};

TEST_F(FleetConfig, MistakesNameFileLineAndField) {
    const std::string file = (dir_ / "fleet.yaml").string();
    const bad_case cases[] = {
        {"no gateway", "redis:\n  address: h:1\n", file + ": gateway: missing"},
        {"bad gateway name", "gateway: 'edge 1'\nredis:\n  address: h:1\n", file + ":1: gateway: 1 to 63"},
        {"unknown key", "gateway: g\nredis:\n  address: h:1\nsync: 1s\n", file + ":4: sync: unknown key"},
        {"no store", "gateway: g\n", "neither postgres nor redis"},
        {"short interval", "gateway: g\nredis:\n  address: h:1\nsync_interval: 1ms\n",
         file + ":4: sync_interval: a duration from 10ms to 60s"},
        {"a key this build does not have", "gateway: g\nredis:\n  address: h:1\nspool_limit: 1GiB\n",
         file + ":4: spool_limit: unknown key"},
        {"redis without address", "gateway: g\nredis:\n  password_file: /x\n", "redis.address: missing"},
        {"unknown postgres key", "gateway: g\npostgres:\n  host: x\n", file + ":3: postgres.host: unknown key"},
        {"syntax", "gateway: [\n", file + ":"},
        {"not a mapping", "- a\n", "not a YAML mapping"},
        {"TLS on a Unix socket", "gateway: g\nredis:\n  address: unix:/run/r.sock\n  tls_ca_file: /ca.pem\n",
         file + ":3: redis.tls_ca_file: TLS is for a HOST:PORT address"},
    };
    for (const bad_case& c : cases) EXPECT_NE(error_of(c.body).find(c.expected), std::string::npos)
        << c.description << ": " << error_of(c.body);
}

TEST_F(FleetConfig, CredentialFilesReadableByOthersAreRefused) {
    chmod(pg().c_str(), 0644);
    const std::string e = error_of("gateway: g\npostgres:\n  conninfo_file: " + pg() + "\n");
    EXPECT_NE(e.find(pg() + ": postgres.conninfo_file: readable or writable by others (mode 0644)"), std::string::npos)
        << e;
    EXPECT_NE(error_of("gateway: g\npostgres:\n  conninfo_file: " + (dir_ / "missing").string() + "\n").find("cannot stat"),
              std::string::npos);
    write("empty", "\n", 0600);
    EXPECT_NE(error_of("gateway: g\npostgres:\n  conninfo_file: " + (dir_ / "empty").string() + "\n").find(": empty"),
              std::string::npos);
}

}  // namespace
}  // namespace sekisho
