#include "cmd/sekishoctl/fleet_store.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "cmd/sekishoctl/commands.h"
#include "control/api/untrusted_text.h"

namespace sekisho::ctl {

namespace {

std::string trimmed(const char* m) {
    std::string s = m ? m : "";
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    return escape_unprintable(s);
}

}  // namespace

std::string read_conninfo(const std::string& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) throw usage_error("--fleet " + path + ": cannot stat: " + std::strerror(errno));
    if ((st.st_mode & 007) != 0)
        throw usage_error("--fleet " + path +
                          ": readable or writable by others: it holds credentials (0600 or 0640; chmod o-rwx)");
    std::string text = read_text_file(path);
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) text.pop_back();
    if (text.empty()) throw usage_error("--fleet " + path + ": empty");
    return text;
}

fleet_store::fleet_store(const std::string& conninfo_file) {
    std::string conninfo = read_conninfo(conninfo_file);
    if (conninfo.find("connect_timeout") == std::string::npos) conninfo += " connect_timeout=5";
    conn_ = PQconnectdb(conninfo.c_str());
    if (PQstatus(conn_) != CONNECTION_OK) {
        const std::string m = trimmed(PQerrorMessage(conn_));
        PQfinish(conn_);
        conn_ = nullptr;
        throw store_error("cannot reach the fleet's PostgreSQL (" + conninfo_file + "): " + m);
    }
    PQclear(PQexec(conn_, "SET TIME ZONE 'UTC'"));
    // "relation ... already exists, skipping" and the like: nothing an operator acts on.
    PQsetNoticeProcessor(conn_, [](void*, const char*) {}, nullptr);
}

fleet_store::~fleet_store() {
    if (conn_) PQfinish(conn_);
}

fleet_store::result fleet_store::exec(const std::string& sql, const std::vector<std::string>& params,
                                      const std::string& step) {
    std::vector<const char*> values;
    for (const auto& p : params) values.push_back(p.c_str());
    result r(PQexecParams(conn_, sql.c_str(), static_cast<int>(values.size()), nullptr, values.data(), nullptr,
                          nullptr, 0),
             PQclear);
    const ExecStatusType s = r ? PQresultStatus(r.get()) : PGRES_FATAL_ERROR;
    if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK)
        throw store_error("postgres: " + step + ": " + trimmed(r ? PQresultErrorMessage(r.get()) : PQerrorMessage(conn_)));
    return r;
}

void fleet_store::exec_script(const std::string& sql, const std::string& step) {
    result r(PQexec(conn_, sql.c_str()), PQclear);
    const ExecStatusType s = r ? PQresultStatus(r.get()) : PGRES_FATAL_ERROR;
    if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK)
        throw store_error("postgres: " + step + ": " + trimmed(r ? PQresultErrorMessage(r.get()) : PQerrorMessage(conn_)));
}

bool fleet_store::has_table(const std::string& name) {
    result r = exec("SELECT to_regclass($1) IS NOT NULL", {name}, "look for " + name);
    return std::string(PQgetvalue(r.get(), 0, 0)) == "t";
}

std::string text_at(const PGresult* r, int row, int col) {
    return PQgetisnull(r, row, col) ? "" : PQgetvalue(r, row, col);
}

int64_t number_at(const PGresult* r, int row, int col) { return std::strtoll(PQgetvalue(r, row, col), nullptr, 10); }

}  // namespace sekisho::ctl
