#include "control/fleet/pg_connection.h"

#include <string>

#include "control/fleet/fleet_config.h"

namespace sekisho {

namespace {

std::string message_of(PGconn* conn) {
    std::string m = conn ? PQerrorMessage(conn) : "out of memory";
    while (!m.empty() && (m.back() == '\n' || m.back() == ' ')) m.pop_back();
    return m;
}

}  // namespace

pg_connection::pg_connection(const std::string& conninfo_file) {
    std::string conninfo = read_credential_file(conninfo_file, "postgres.conninfo_file");
    if (conninfo.find("connect_timeout") == std::string::npos) conninfo += " connect_timeout=2";
    conn_ = PQconnectdb(conninfo.c_str());
    if (PQstatus(conn_) != CONNECTION_OK) {
        // libpq's message names host and user, never the password.
        const std::string m = message_of(conn_);
        PQfinish(conn_);
        conn_ = nullptr;
        throw pg_error("postgres: cannot connect (" + conninfo_file + "): " + m, true);
    }
    // Events and bindings carry Unix times; sessions read in UTC.
    PQclear(PQexec(conn_, "SET TIME ZONE 'UTC'"));
}

pg_connection::~pg_connection() {
    if (conn_) PQfinish(conn_);
}

void pg_connection::check(const PGresult* r, const std::string& step) {
    const ExecStatusType s = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK || s == PGRES_COPY_IN || s == PGRES_COPY_OUT) return;
    std::string m = r ? PQresultErrorMessage(r) : message_of(conn_);
    while (!m.empty() && (m.back() == '\n' || m.back() == ' ')) m.pop_back();
    throw pg_error("postgres: " + step + ": " + m, PQstatus(conn_) != CONNECTION_OK);
}

pg_result pg_connection::exec(const std::string& sql, const std::string& step) {
    pg_result r(PQexec(conn_, sql.c_str()));
    check(r.get(), step);
    return r;
}

pg_result pg_connection::exec_params(const std::string& sql, const std::vector<std::string>& params,
                                     const std::string& step) {
    std::vector<const char*> values;
    values.reserve(params.size());
    for (const std::string& p : params) values.push_back(p.c_str());
    pg_result r(PQexecParams(conn_, sql.c_str(), static_cast<int>(values.size()), nullptr, values.data(), nullptr,
                             nullptr, 0));
    check(r.get(), step);
    return r;
}

void ensure_fleet_schema(pg_connection& pg) {
    pg.exec("BEGIN", "begin the schema transaction");
    try {
        // Serialises gateways starting together: one creates, the others find it.
        pg.exec("SELECT pg_advisory_xact_lock(x'7365736b69736f'::bigint)", "lock the schema");
        pg.exec("CREATE TABLE IF NOT EXISTS fleet_meta (key text PRIMARY KEY, value text NOT NULL)",
                "create fleet_meta");
        pg_result v = pg.exec("SELECT value FROM fleet_meta WHERE key = 'schema_version'", "read the schema version");
        if (PQntuples(v.get()) == 1) {
            const int have = std::stoi(PQgetvalue(v.get(), 0, 0));
            if (have > fleet_schema_version)
                throw pg_error("postgres: the fleet schema is version " + std::to_string(have) +
                                   ", newer than this build's " + std::to_string(fleet_schema_version) +
                                   ": upgrade sekishod",
                               false);
        }
        pg.exec("CREATE TABLE IF NOT EXISTS gateways ("
                " gateway text PRIMARY KEY,"
                " grp text NOT NULL,"
                " version text NOT NULL DEFAULT '',"
                " first_seen timestamptz NOT NULL DEFAULT now(),"
                " last_seen timestamptz NOT NULL DEFAULT now())",
                "create gateways");
        pg.exec("INSERT INTO fleet_meta VALUES ('schema_version', '" + std::to_string(fleet_schema_version) +
                    "') ON CONFLICT (key) DO NOTHING",
                "record the schema version");
        pg.exec("COMMIT", "commit the schema");
    } catch (...) {
        PQclear(PQexec(pg.raw(), "ROLLBACK"));
        throw;
    }
}

}  // namespace sekisho
