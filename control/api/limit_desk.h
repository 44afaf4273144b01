// The support desk's view of send-rate limits (the control API's limits show
// and limits reset, docs/api.md): for one subscriber, each limit's current
// count against its maximum and any cool-down, and clearing a tripped limit.
//
// A subscriber is asked for by address or by account:
//  - by address: every limit. Address and prefix scope records (and the
//    account scope of an unbound address, kept in its prefix record) are the
//    workers' own: the request goes to every worker's request box and is
//    answered when all have served it (limit_request_box.h), within a turn or
//    two of the control loop; a reset is done by the worker that owns the
//    record. Where the NIC spread one subscriber over several workers
//    (net_af_packet hashes by connection), each holds a record: the reading
//    is the one nearest to tripping (each record is judged on its own),
//    with `count_total` and `records` saying so; a reset clears them all. The account scope of the account bound to the address now is read
//    and cleared in place (limit_cell.h).
//  - by account: the account scope limits only (the others are per address:
//    ask by address).
// Fleet mode (account scope, counted per window): each such reading shows the
// other gateways' count stored for the account (`fleet_share`), which the
// workers add to the account's own count; `tripped` judges the sum. A reset
// of an account cell clears its share too, then tells the account reset
// listener (account_limit_sync, so that the fleet's hash is deleted), with
// the cells cleared; a reset by address clears the share of the account
// bound to the address now, the address and prefix cells have none.
// One worker request runs at a time; others wait in order (at most
// max_waiting, then 503). A request the workers do not answer within
// answer_timeout (no worker running) is answered 503.
//
// Threading: every call on the control thread.
#pragma once

#include <chrono>
#include <deque>
#include <functional>
#include <optional>

#include "control/api/api_request.h"
#include "control/api/api_server.h"
#include "dataplane/limits/limit_request_box.h"

namespace sekisho {

class compiled_policy;
class data_plane;

class limit_desk {
public:
    explicit limit_desk(data_plane& plane) : plane_(plane) {}

    // After a reset cleared account cells: the account's id, a bit per
    // account_record cell cleared, the reset's Unix time, the policy the
    // workers count under. Control thread; must not block.
    using account_reset_fn =
        std::function<void(uint32_t account, uint32_t cells, uint64_t now_ns, const compiled_policy& policy)>;
    // Fleet mode, once the fleet link exists; empty: nobody is told.
    void on_account_reset(account_reset_fn fn) { account_reset_ = std::move(fn); }

    // limits_show or limits_reset; answers through `reply`, now or from poll().
    void handle(const api_command& c, api_reply reply);
    // Answers a request the workers have served, starts the next. Every loop turn.
    void poll();

    static constexpr size_t max_waiting = 16;
    static constexpr std::chrono::seconds answer_timeout{2};

private:
    struct pending {
        api_command command;
        api_reply reply;
        uint32_t account = 0;   // bound to the address when asked
        std::chrono::steady_clock::time_point posted{};
    };
    void start_next();
    // `records`: every worker's answer (by address), nullptr by account.
    api_response answer(const pending& p, const std::vector<limit_record_answer>* records);

    data_plane& plane_;
    account_reset_fn account_reset_;
    std::optional<pending> running_;
    std::deque<pending> waiting_;
};

}  // namespace sekisho
