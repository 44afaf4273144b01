// The control API on the XDP backend (xdp_data_plane): the program loaded for
// real (root), policies applied, dry-run and rolled back through control_api
// as sekishod --backend xdp serves them, what XDP does not enforce named with
// file:line, and the account endpoints refused with 501.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "control/api/control_api.h"
#include "control/observe/event_log.h"
#include "control/policy/policy.h"
#include "backends/xdp/xdp_backend.h"
#include "backends/xdp/xdp_data_plane.h"

namespace sekisho {
namespace {

using json = nlohmann::json;

const char* base_policy = R"(version: 1
subscribers:
  dynamic: [198.51.100.0/24]
relays: [203.0.113.10/32]
op25b:
  mode: enforce
  action: reset
)";

const char* with_limits = R"(version: 1
subscribers:
  dynamic: [198.51.100.0/24]
relays: [203.0.113.10/32]
op25b:
  mode: monitor
  action: reset
limits:
  - {name: syn, scope: address, measure: connections, max: 5, window: 1s}
  - {name: msgs, scope: address, measure: messages, max: 100, window: 1h}
inspection:
  enabled: true
)";

struct xdp_control : ::testing::Test {
    std::filesystem::path dir;
    void SetUp() override {
        char tmpl[] = "/tmp/sekisho-xdp-control-XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir = tmpl;
    }
    void TearDown() override { std::filesystem::remove_all(dir); }
};

api_response call(control_api& api, std::string method, std::string path, std::string body = "",
                  std::map<std::string, std::string> query = {}) {
    return api.handle_and_wait(api_request{std::move(method), std::move(path), std::move(query), std::move(body)});
}

TEST_F(xdp_control, policy_generations_and_refusals_through_the_api) {
    const policy first = load_policy_text(base_policy, "policy");
    xdp_backend backend;
    std::vector<std::string> notes;
    backend.apply(first, &notes);
    EXPECT_TRUE(notes.empty());
    events_config ev;
    ev.file = (dir / "events.jsonl").string();
    event_log log(ev);
    xdp_data_plane plane(backend, first, notes, log);
    control_context cc;
    cc.plane = &plane;
    cc.policy_path = "policy.yaml";
    cc.events_path = log.path();
    cc.port_names[0] = "acc0";
    cc.started = std::chrono::steady_clock::now();
    control_api api(cc, base_policy);

    api_response r = call(api, "GET", "/v1/status");
    ASSERT_EQ(r.status, 200) << r.body;
    json j = json::parse(r.body);
    EXPECT_EQ(j["backend"], "xdp");
    EXPECT_EQ(j["generation"], 1);
    EXPECT_TRUE(j["subscribers"].is_null());
    EXPECT_EQ(j["frames"]["in"], 0);

    // No account table: every binding, account and limit endpoint says so, nothing else happens.
    for (const auto& [method, path, body] :
         {std::tuple<std::string, std::string, std::string>{"GET", "/v1/bindings", ""},
          {"POST", "/v1/bindings", R"({"prefix":"198.51.100.7/32","account":"a"})"},
          {"GET", "/v1/accounts", ""},
          {"POST", "/v1/accounts/suspend", R"({"account":"a"})"},
          {"GET", "/v1/limits", ""},
          {"POST", "/v1/limits/reset", R"({"address":"198.51.100.7"})"}}) {
        r = call(api, method, path, body);
        EXPECT_EQ(r.status, 501) << method << " " << path;
        EXPECT_NE(r.body.find("not available with --backend xdp"), std::string::npos) << r.body;
    }

    // Dry run: accepted, what XDP does not enforce named with file:line, the generation unchanged.
    r = call(api, "POST", "/v1/policy", with_limits, {{"dry_run", "1"}});
    ASSERT_EQ(r.status, 200) << r.body;
    j = json::parse(r.body);
    ASSERT_TRUE(j.contains("not_enforced")) << r.body;
    const std::string ne = j["not_enforced"].dump();
    EXPECT_NE(ne.find("policy:10: limit 'msgs': measure messages needs SMTP tracking"), std::string::npos) << ne;
    EXPECT_NE(ne.find("policy:12: inspection needs SMTP tracking"), std::string::npos) << ne;
    EXPECT_EQ(ne.find("'syn'"), std::string::npos) << "the connection limit is enforced: " << ne;
    EXPECT_EQ(plane.generation(), 1u);

    // An invalid policy: 422 with file:line, the running generation stays.
    r = call(api, "POST", "/v1/policy", "version: 1\nop25b:\n  mode: block\n");
    EXPECT_EQ(r.status, 422);
    EXPECT_NE(r.body.find("policy:3"), std::string::npos) << r.body;
    EXPECT_EQ(plane.generation(), 1u);

    // Apply: a new generation, the policy the API shows, the settings the program holds.
    r = call(api, "POST", "/v1/policy", with_limits);
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(json::parse(r.body)["generation"], 2);
    EXPECT_EQ(plane.generation(), 2u);
    EXPECT_EQ(plane.active_policy().mode, op25b_mode::monitor);
    EXPECT_EQ(plane.active_policy().limits.size(), 2u);
    r = call(api, "GET", "/v1/policy");
    EXPECT_EQ(json::parse(r.body)["text"], with_limits);

    // Rollback: the first policy again, as generation 3.
    r = call(api, "POST", "/v1/policy/rollback");
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(plane.generation(), 3u);
    EXPECT_EQ(plane.active_policy().mode, op25b_mode::enforce);
    EXPECT_TRUE(plane.running_notes().empty());
    // The generation undone left the history: nothing further back, the program stays.
    r = call(api, "POST", "/v1/policy/rollback");
    EXPECT_EQ(r.status, 409) << r.body;
    EXPECT_NE(r.body.find("nothing to roll back"), std::string::npos) << r.body;
    EXPECT_EQ(plane.generation(), 3u);

    // Counter blocks: one per possible CPU plus the control thread's.
    EXPECT_EQ(plane.all_counters().size(), plane.cpus() + 1);
}

// A restart restores the policy history's generation: the program's numbers go on from it.
TEST_F(xdp_control, generations_continue_after_the_restored_one) {
    const policy first = load_policy_text(base_policy, "policy");
    xdp_backend backend;
    backend.continue_generations_after(41);
    EXPECT_EQ(backend.apply(first), 42u);
    backend.continue_generations_after(7);   // once a generation runs: ignored
    EXPECT_EQ(backend.apply(first), 43u);
}

}  // namespace
}  // namespace sekisho
