#include "control/fleet/pg_connection.h"

#include <string>

#include "control/fleet/fleet_config.h"
#include "control/fleet/policy_schema.h"

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

void ensure_objects(pg_connection& pg, const char* lock, const fleet_sql::concern_objects& objects,
                    const std::string& what) {
    pg.in_transaction("the " + what + " schema", [&] {
        // Serialises gateways starting together: one creates, the others find it.
        pg.exec(lock, "lock the " + what + " schema");
        pg_result have =
            pg.exec_params(fleet_sql::objects_present, {objects.names}, "look for the " + what + " tables");
        if (std::stoi(PQgetvalue(have.get(), 0, 0)) < objects.count)
            pg.exec(objects.create, "create the " + what + " tables");
    });
}

void ensure_fleet_schema(pg_connection& pg) {
    ensure_objects(pg, fleet_sql::schema_lock, fleet_sql::meta_tables, "fleet");
    pg_result v = pg.exec("SELECT value FROM fleet_meta WHERE key = 'schema_version'", "read the schema version");
    if (PQntuples(v.get()) == 1) {
        const int have = std::stoi(PQgetvalue(v.get(), 0, 0));
        if (have > fleet_schema_version)
            throw pg_error("postgres: the fleet schema is version " + std::to_string(have) +
                               ", newer than this build's " + std::to_string(fleet_schema_version) +
                               ": upgrade sekishod",
                           false);
        return;
    }
    pg.exec("INSERT INTO fleet_meta VALUES ('schema_version', '" + std::to_string(fleet_schema_version) +
                "') ON CONFLICT (key) DO NOTHING",
            "record the schema version");
}

}  // namespace sekisho
