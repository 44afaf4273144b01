// The fleet's PostgreSQL as sekishoctl reaches it (--fleet FILE): the
// connection string from a credential file (refused when others may read or
// write it), one connection with a 5 s connect timeout and UTC times, and
// statements whose failure is a store_error naming the step and PostgreSQL's
// message (escaped: a server's text is untrusted). No reconnect: a command
// that loses its store fails (exit 1) and is run again. One thread.
#pragma once

#include <libpq-fe.h>

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace sekisho::ctl {

// The store failed or could not be reached: exit 1.
struct store_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// The connection string in `path`; throws usage_error (exit 2) when the
// file is missing, empty, or readable or writable by others.
std::string read_conninfo(const std::string& path);

class fleet_store {
public:
    // Connects; throws store_error ("cannot reach the fleet's PostgreSQL
    // (FILE): why") when it cannot.
    explicit fleet_store(const std::string& conninfo_file);
    ~fleet_store();
    fleet_store(const fleet_store&) = delete;
    fleet_store& operator=(const fleet_store&) = delete;

    using result = std::unique_ptr<PGresult, void (*)(PGresult*)>;
    // One statement with text parameters; throws store_error
    // ("postgres: STEP: message") unless it succeeded.
    result exec(const std::string& sql, const std::vector<std::string>& params, const std::string& step);
    // Statements without parameters (several may be given at once).
    void exec_script(const std::string& sql, const std::string& step);
    bool has_table(const std::string& name);

private:
    PGconn* conn_ = nullptr;
};

// A column of a result row: "" (text_at) for NULL; number_at parses base 10.
std::string text_at(const PGresult* r, int row, int col);
int64_t number_at(const PGresult* r, int row, int col);

}  // namespace sekisho::ctl
