// "Who held address X at time T": the abuse desk's first question, answered
// from the binding history (read-only, safe beside a running sekishod).
//
//   sekishod --whois ADDRESS [--at TIME] (--history DB | --policy FILE) [--json]
#pragma once

#include <string>

namespace sekisho {

struct whois_options {
    std::string address;          // an address or a prefix
    std::string at;               // Unix seconds or ISO 8601 UTC (2026-11-23T12:00:00Z); empty: now
    std::string history_path;
    bool json = false;
};

// Prints the bindings; returns 0 if an account held the address then, 3 if
// nobody did (no row, or only rows without an account), throws
// std::runtime_error / binding_history_error on bad input or a bad store.
int run_whois(const whois_options& options);

}  // namespace sekisho
