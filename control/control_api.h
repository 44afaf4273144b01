// The control API's endpoints (docs/api.md), answered on the control thread.
//
// Every request is validated: a bad body or argument gets 400 with a precise
// error naming the field, never a partial change; a bad policy gets 422 with
// every "file:line: message". Changes are atomic: a policy is validated and
// compiled off the data path, then swapped by RCU.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "api_server.h"

namespace sekisho {

class data_plane;
struct api_command;
class subscriber_identity;

struct control_context {
    data_plane* plane = nullptr;             // the DPDK gateway or the XDP program
    subscriber_identity* identity = nullptr;
    std::string policy_path;
    std::string events_path;                 // "-" when events go to stdout
    std::string port_names[2];               // DPDK ports or XDP interfaces
    unsigned workers = 1;                    // DPDK workers; XDP: CPUs
    std::chrono::steady_clock::time_point started;
    std::function<void(double)> observe_apply;   // metrics hook, may be empty
    const api_server* server = nullptr;
};

class control_api {
public:
    control_api(control_context ctx, std::string policy_text);

    // Answers one request; one that changes something (or tried to) is audited.
    api_response handle(const api_request& request);

    // SIGHUP and the API share one apply path: validate, compile, publish,
    // remember the previous text for rollback. Throws policy_error /
    // std::runtime_error, leaving the running policy in place.
    struct applied {
        uint64_t generation;
        double compile_seconds;
        std::string diff_json;
        std::vector<std::string> notes;   // data_plane::apply_notes()
    };
    applied apply_text(const std::string& text, const std::string& source, bool dry_run);

    // SIGHUP: applies the policy file again (policy_path) through apply_text(), writes an
    // api_change record with caller "SIGHUP" and says on standard error what happened.
    void reload();

private:
    // The audit trail: every request that changes something (or tried to), and SIGHUP,
    // as an api_change record in the event log: who, what, the outcome; never a body.
    void audit(const api_command* c, const std::string& endpoint, const std::string& caller,
               const api_response& r);
    // The endpoints, on requests parse_api_request() (api_request.h) validated.
    api_response dispatch(const api_command& c, const std::string& body);
    api_response status();
    api_response policy_show();
    api_response policy_apply(const api_command& c, const std::string& text);
    api_response policy_rollback();
    api_response bindings_list(const api_command& c);
    api_response bindings_add(const api_command& c);
    api_response bindings_del(const api_command& c);
    api_response whois(const api_command& c);
    api_response account_suspend(const api_command& c, bool suspend);
    api_response accounts_list(const api_command& c);
    api_response events(const api_command& c);
    api_response report(const api_command& c);
    api_response top(const api_command& c);

    control_context ctx_;
    std::string text_, previous_text_;
};

}  // namespace sekisho
