// Test driver: the RADIUS accounting listener feeding the binding history,
// as sekishod will run them, without the data plane.
//
//   radius_listener_driver --clients FILE --db FILE [--listen 127.0.0.1] [--port 0] [--seconds 30]
//
// First stdout line: {"listening":"127.0.0.1:PORT","port":PORT}. Runs until
// SIGTERM/SIGINT or --seconds, then prints the counters as one JSON line and
// exits 0. Drops and failures are logged to stderr. Exit 2 on bad arguments
// or setup errors.
#include <poll.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "control/identity/binding_history.h"
#include "control/identity/radius_accounting.h"

namespace {

volatile std::sig_atomic_t stop_requested = 0;
void on_signal(int) { stop_requested = 1; }

int usage(const std::string& why) {
    std::cerr << "radius_listener_driver: " << why
              << "\nusage: radius_listener_driver --clients FILE --db FILE [--listen ADDR] [--port N] [--seconds N]\n";
    return 2;
}

}  // namespace

int main(int argc, char** argv) {
    using namespace sekisho;
    std::string clients_path, db_path;
    radius::listener_config config;
    config.port = 0;
    long seconds = 30;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (i + 1 >= argc) return usage("missing value after " + arg);
        const std::string value = argv[++i];
        try {
            if (arg == "--clients") clients_path = value;
            else if (arg == "--db") db_path = value;
            else if (arg == "--listen") config.address = value;
            else if (arg == "--port") config.port = static_cast<uint16_t>(std::stoul(value));
            else if (arg == "--seconds") seconds = std::stol(value);
            else return usage("unknown option " + arg);
        } catch (const std::exception&) {
            return usage("bad value for " + arg + ": " + value);
        }
    }
    if (clients_path.empty() || db_path.empty()) return usage("--clients and --db are required");

    std::signal(SIGTERM, on_signal);
    std::signal(SIGINT, on_signal);
    try {
        binding_history history(db_path);
        // As sekishod will: collect a poll's updates, store them in one
        // transaction, and only then let the listener answer the NASes.
        std::vector<binding_update> batch;
        auto apply = [&](const binding_update& u) {
            batch.push_back(u);
            return true;
        };
        auto commit = [&] {
            std::vector<binding_update> updates;
            updates.swap(batch);
            history.apply(updates);
            for (const auto& u : updates)
                std::cerr << "applied " << to_string(u.kind) << " session '" << u.session_id << "' account '"
                          << u.account << "' nas '" << u.nas() << "' at " << u.event_time << "\n";
            return true;
        };
        auto log = [](const std::string& line) { std::cerr << line << "\n"; };
        radius::accounting_listener listener(config, radius::load_clients_file(clients_path), apply, log);
        listener.set_commit(commit);
        std::cout << nlohmann::json{{"listening", listener.local()}, {"port", listener.port()}}.dump() << std::endl;

        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
        while (!stop_requested && std::chrono::steady_clock::now() < deadline) {
            pollfd p{listener.fd(), POLLIN, 0};
            if (::poll(&p, 1, 100) > 0) listener.poll_once();
        }
        listener.poll_once();

        const auto& c = listener.counters();
        std::cout << nlohmann::json{{"received", c.received},
                                    {"accepted", c.accepted},
                                    {"ignored", c.ignored},
                                    {"unknown_client", c.unknown_client},
                                    {"malformed", c.malformed},
                                    {"unsupported_code", c.unsupported_code},
                                    {"bad_authenticator", c.bad_authenticator},
                                    {"apply_failed", c.apply_failed},
                                    {"send_failed", c.send_failed},
                                    {"receive_errors", c.receive_errors},
                                    {"starts", c.starts},
                                    {"interims", c.interims},
                                    {"stops", c.stops},
                                    {"accounting_ons", c.accounting_ons},
                                    {"accounting_offs", c.accounting_offs},
                                    {"open_bindings", history.open_bindings().size()}}
                         .dump()
                  << std::endl;
    } catch (const std::exception& e) {
        std::cerr << "radius_listener_driver: " << e.what() << "\n";
        return 2;
    }
    return 0;
}
