#include "api_server.h"

#include <grp.h>
#include <netdb.h>
#include <pwd.h>
#include <microhttpd.h>
#include <openssl/crypto.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

namespace sekisho {

namespace {

constexpr size_t max_body = 1 << 20;

std::string read_file(const std::string& path, const char* what) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error(std::string("api: cannot read the ") + what + " file " + path);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

// Messages may carry bytes that are not UTF-8: replaced (U+FFFD), never a throw.
std::string error_body(const std::string& message) {
    return nlohmann::json{{"error", message}}.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

struct connection_state {
    std::string body;
    bool too_large = false;
};

using listener_context = api_server::listener_context;

MHD_Result collect_arg(void* cls, MHD_ValueKind, const char* key, const char* value) {
    auto* query = static_cast<std::map<std::string, std::string>*>(cls);
    (*query)[key] = value ? value : "";
    return MHD_YES;
}

MHD_Result send(MHD_Connection* connection, const api_response& r) {
    MHD_Response* response =
        MHD_create_response_from_buffer(r.body.size(), const_cast<char*>(r.body.data()), MHD_RESPMEM_MUST_COPY);
    if (response == nullptr) return MHD_NO;
    MHD_add_response_header(response, "Content-Type", r.content_type.c_str());
    const MHD_Result ret = MHD_queue_response(connection, static_cast<unsigned>(r.status), response);
    MHD_destroy_response(response);
    return ret;
}

// Who is on the other end of the connection (api_request::caller).
std::string caller_of(MHD_Connection* connection, bool tcp) {
    if (tcp) {
        const MHD_ConnectionInfo* ci = MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        char host[NI_MAXHOST] = "?", port[NI_MAXSERV] = "?";
        if (ci != nullptr && ci->client_addr != nullptr) {
            const socklen_t len = ci->client_addr->sa_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
            getnameinfo(ci->client_addr, len, host, sizeof host, port, sizeof port, NI_NUMERICHOST | NI_NUMERICSERV);
        }
        return std::string("token from ") + (std::strchr(host, ':') ? "[" + std::string(host) + "]" : host) + ":" + port;
    }
    const MHD_ConnectionInfo* ci = MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CONNECTION_FD);
    ucred cred{};
    socklen_t len = sizeof cred;
    if (ci == nullptr || getsockopt(ci->connect_fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
        return "unix socket (peer unknown)";
    std::string who = "uid " + std::to_string(cred.uid);
    passwd pw{};
    passwd* found = nullptr;
    char buf[1024];
    if (getpwuid_r(cred.uid, &pw, buf, sizeof buf, &found) == 0 && found != nullptr)
        who += " (" + std::string(found->pw_name) + ")";
    return who + " pid " + std::to_string(cred.pid);
}

MHD_Result on_request(void* cls, MHD_Connection* connection, const char* url, const char* method, const char*,
                      const char* upload_data, size_t* upload_data_size, void** con_cls) {
    auto* ctx = static_cast<listener_context*>(cls);
    if (*con_cls == nullptr) {
        *con_cls = new connection_state;
        return MHD_YES;
    }
    auto* state = static_cast<connection_state*>(*con_cls);
    if (*upload_data_size != 0) {
        if (state->body.size() + *upload_data_size > max_body)
            state->too_large = true;
        else
            state->body.append(upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (state->too_large) return send(connection, {413, error_body("request body over 1 MiB")});
    if (ctx->needs_token) {
        const char* auth = MHD_lookup_connection_value(connection, MHD_HEADER_KIND, "Authorization");
        if (auth == nullptr || !ctx->server->check_token(auth)) {
            ctx->server->count_unauthorised();
            return send(connection, {401, error_body("missing or wrong bearer token")});
        }
    }
    api_request request;
    request.method = method;
    request.path = url;
    request.body = std::move(state->body);
    request.caller = caller_of(connection, ctx->needs_token);
    MHD_get_connection_values(connection, MHD_GET_ARGUMENT_KIND, collect_arg, &request.query);
    return send(connection, ctx->server->submit(std::move(request)));
}

void on_completed(void*, MHD_Connection*, void** con_cls, MHD_RequestTerminationCode) {
    delete static_cast<connection_state*>(*con_cls);
    *con_cls = nullptr;
}

}  // namespace

struct api_reply::state {
    std::mutex mutex;
    bool done = false;
    std::function<void(api_response)> deliver;
};

api_reply::api_reply(std::function<void(api_response)> deliver) : state_(std::make_shared<state>()) {
    state_->deliver = std::move(deliver);
}

void api_reply::operator()(api_response response) const {
    if (!state_) return;
    std::function<void(api_response)> deliver;
    {
        std::lock_guard lock(state_->mutex);
        if (state_->done) return;
        state_->done = true;
        deliver = std::move(state_->deliver);
    }
    if (deliver) deliver(std::move(response));
}

bool api_reply::answered() const {
    if (!state_) return false;
    std::lock_guard lock(state_->mutex);
    return state_->done;
}

api_server::api_server(const api_config& config) : config_(config) {
    if (!config.unix_path.empty()) {
        unix_fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        if (config.unix_path.size() >= sizeof addr.sun_path)
            throw std::runtime_error("api: socket path too long: " + config.unix_path);
        std::strcpy(addr.sun_path, config.unix_path.c_str());
        ::unlink(config.unix_path.c_str());   // a stale socket from a previous run
        if (bind(unix_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || listen(unix_fd_, 64) != 0)
            throw std::runtime_error("api: cannot listen on " + config.unix_path + ": " + std::strerror(errno));
        if (!config.unix_group.empty()) {
            const group* g = getgrnam(config.unix_group.c_str());
            if (g == nullptr) throw std::runtime_error("api: no group '" + config.unix_group + "'");
            if (chown(config.unix_path.c_str(), static_cast<uid_t>(-1), g->gr_gid) != 0)
                throw std::runtime_error("api: cannot chown " + config.unix_path + ": " + std::strerror(errno));
        }
        chmod(config.unix_path.c_str(), 0660);
        unix_daemon_ = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0, nullptr, nullptr,
                                        &on_request, &unix_ctx_, MHD_OPTION_LISTEN_SOCKET, unix_fd_,
                                        MHD_OPTION_NOTIFY_COMPLETED, &on_completed, nullptr,
                                        MHD_OPTION_CONNECTION_TIMEOUT, config.idle_timeout_s, MHD_OPTION_END);
        if (unix_daemon_ == nullptr) throw std::runtime_error("api: cannot start the HTTP server on " + config.unix_path);
    }
    if (!config.tcp_listen.empty()) {
        if (config.tls_cert_file.empty() || config.tls_key_file.empty() || config.token_file.empty())
            throw std::runtime_error("api: TCP needs a TLS certificate, key and token file");
        tls_cert_ = read_file(config.tls_cert_file, "TLS certificate");
        tls_key_ = read_file(config.tls_key_file, "TLS key");
        token_ = read_file(config.token_file, "token");
        while (!token_.empty() && (token_.back() == '\n' || token_.back() == '\r' || token_.back() == ' '))
            token_.pop_back();
        if (token_.size() < 16) throw std::runtime_error("api: the token in " + config.token_file + " is shorter than 16 characters");
        const size_t colon = config.tcp_listen.rfind(':');
        if (colon == std::string::npos) throw std::runtime_error("api: tcp listen '" + config.tcp_listen + "' is not ADDRESS:PORT");
        sockaddr_storage ss{};
        std::string host = config.tcp_listen.substr(0, colon);
        if (host.size() > 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
        const int port = std::stoi(config.tcp_listen.substr(colon + 1));
        unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG | MHD_USE_TLS;
        if (inet_pton(AF_INET, host.c_str(), &reinterpret_cast<sockaddr_in*>(&ss)->sin_addr) == 1) {
            auto* a = reinterpret_cast<sockaddr_in*>(&ss);
            a->sin_family = AF_INET;
            a->sin_port = htons(static_cast<uint16_t>(port));
        } else if (inet_pton(AF_INET6, host.c_str(), &reinterpret_cast<sockaddr_in6*>(&ss)->sin6_addr) == 1) {
            auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
            a->sin6_family = AF_INET6;
            a->sin6_port = htons(static_cast<uint16_t>(port));
            flags |= MHD_USE_IPv6;
        } else {
            throw std::runtime_error("api: '" + host + "' is not an IP address");
        }
        tcp_daemon_ = MHD_start_daemon(flags, static_cast<uint16_t>(port), nullptr, nullptr, &on_request, &tcp_ctx_,
                                       MHD_OPTION_SOCK_ADDR, &ss, MHD_OPTION_HTTPS_MEM_CERT, tls_cert_.c_str(),
                                       MHD_OPTION_HTTPS_MEM_KEY, tls_key_.c_str(), MHD_OPTION_NOTIFY_COMPLETED,
                                       &on_completed, nullptr, MHD_OPTION_CONNECTION_TIMEOUT, config.idle_timeout_s,
                                       MHD_OPTION_END);
        if (tcp_daemon_ == nullptr) throw std::runtime_error("api: cannot start the TLS server on " + config.tcp_listen);
    }
}

api_server::~api_server() {
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
        for (auto& p : queue_) {
            p->response = {503, error_body("sekishod is stopping")};
            p->done = true;
        }
        queue_.clear();
    }
    answered_.notify_all();
    if (unix_daemon_) MHD_stop_daemon(unix_daemon_);
    if (tcp_daemon_) MHD_stop_daemon(tcp_daemon_);
    if (unix_fd_ >= 0) {
        ::close(unix_fd_);
        ::unlink(config_.unix_path.c_str());
    }
}

bool api_server::check_token(const std::string& authorization) const {
    const std::string prefix = "Bearer ";
    if (authorization.size() != prefix.size() + token_.size() || authorization.compare(0, prefix.size(), prefix) != 0)
        return false;
    return CRYPTO_memcmp(authorization.data() + prefix.size(), token_.data(), token_.size()) == 0;
}

api_response api_server::submit(api_request request) {
    ++requests_;
    auto p = std::make_shared<pending>();
    p->request = std::move(request);
    std::unique_lock lock(mutex_);
    if (stopping_) return {503, error_body("sekishod is stopping")};
    queue_.push_back(p);
    if (!answered_.wait_for(lock, std::chrono::seconds(30), [&] { return p->done; }))
        return {503, error_body("the control thread did not answer within 30 s")};
    return p->response;
}

void api_server::serve_pending(const handler_fn& handler) {
    for (;;) {
        std::shared_ptr<pending> p;
        {
            std::lock_guard lock(mutex_);
            if (queue_.empty()) return;
            p = queue_.front();
            queue_.pop_front();
        }
        api_reply reply([this, p](api_response r) {
            {
                std::lock_guard lock(mutex_);
                p->response = std::move(r);
                p->done = true;
            }
            answered_.notify_all();
        });
        try {
            handler(p->request, reply);
        } catch (const std::exception& e) {
            reply({500, error_body(e.what())});
        }
    }
}

}  // namespace sekisho
