#include "control/api/api_server.h"

#include <grp.h>
#include <openssl/crypto.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "control/api/api_request.h"

namespace sekisho {

namespace {

std::string read_file(const std::string& path, const char* what) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error(std::string("api: cannot read the ") + what + " file " + path);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

// A listening Unix socket at `path`, mode 0660, group `group` (if any).
int listen_unix(const std::string& path, const std::string& group) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.size() >= sizeof addr.sun_path) throw std::runtime_error("api: socket path too long: " + path);
    std::strcpy(addr.sun_path, path.c_str());
    const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) throw std::runtime_error(std::string("api: cannot create a Unix socket: ") + std::strerror(errno));
    try {
        ::unlink(path.c_str());   // a stale socket from a previous run
        if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || listen(fd, 64) != 0)
            throw std::runtime_error("api: cannot listen on " + path + ": " + std::strerror(errno));
        if (!group.empty()) {
            const struct group* g = getgrnam(group.c_str());
            if (g == nullptr) throw std::runtime_error("api: no group '" + group + "'");
            if (chown(path.c_str(), static_cast<uid_t>(-1), g->gr_gid) != 0)
                throw std::runtime_error("api: cannot chown " + path + ": " + std::strerror(errno));
        }
        if (chmod(path.c_str(), 0660) != 0)
            throw std::runtime_error("api: cannot chmod " + path + ": " + std::strerror(errno));
    } catch (...) {
        ::close(fd);
        throw;
    }
    return fd;
}

http_listener_config listener_config(const api_config& config, const std::string& name) {
    http_listener_config lc;
    lc.name = name;
    lc.idle_timeout_s = config.idle_timeout_s;
    lc.max_buffered_body_bytes = config.max_buffered_body_bytes;
    lc.error_response = [](int status, const std::string& message) { return api_error(status, message); };
    lc.stopping_response = api_error(503, "sekishod is stopping");
    return lc;
}

}  // namespace

api_server::api_server(const api_config& config) : config_(config) {
    if (!config.unix_path.empty()) {
        http_listener_config lc = listener_config(config, "api socket " + config.unix_path);
        lc.unix_fd = listen_unix(config.unix_path, config.unix_group);
        lc.max_connections = config.unix_max_connections;
        try {
            unix_listener_ = std::make_unique<http_listener>(
                std::move(lc), [this](const http_head& h) { return admit(h, false); },
                [this](http_request r, api_reply reply) { enqueue(std::move(r), std::move(reply), true); });
        } catch (...) {
            ::close(lc.unix_fd);
            ::unlink(config.unix_path.c_str());
            throw;
        }
    }
    // A TCP listener that cannot start must not leave the socket file this
    // constructor created (the destructor, which removes it, does not run).
    try {
        if (!config.tcp_listen.empty()) {
            if (config.tls_cert_file.empty() || config.tls_key_file.empty() || config.token_file.empty())
                throw std::runtime_error("api: TCP needs a TLS certificate, key and token file");
            http_listener_config lc = listener_config(config, "api tcp " + config.tcp_listen);
            lc.tcp_address = config.tcp_listen;
            lc.tls_cert_pem = read_file(config.tls_cert_file, "TLS certificate");
            lc.tls_key_pem = read_file(config.tls_key_file, "TLS key");
            lc.max_connections = config.tcp_max_connections;
            lc.max_connections_per_peer = config.tcp_max_connections_per_peer;
            token_ = read_file(config.token_file, "token");
            while (!token_.empty() && (token_.back() == '\n' || token_.back() == '\r' || token_.back() == ' '))
                token_.pop_back();
            if (token_.size() < 16)
                throw std::runtime_error("api: the token in " + config.token_file + " is shorter than 16 characters");
            tcp_listener_ = std::make_unique<http_listener>(
                std::move(lc), [this](const http_head& h) { return admit(h, true); },
                [this](http_request r, api_reply reply) { enqueue(std::move(r), std::move(reply), false); });
        }
    } catch (...) {
        unix_listener_.reset();
        if (!config.unix_path.empty()) ::unlink(config.unix_path.c_str());
        throw;
    }
}

api_server::~api_server() {
    tcp_listener_.reset();
    unix_listener_.reset();
    if (!config_.unix_path.empty()) ::unlink(config_.unix_path.c_str());
}

bool api_server::check_token(const std::string& authorization) const {
    const std::string prefix = "Bearer ";
    if (authorization.size() != prefix.size() + token_.size() || authorization.compare(0, prefix.size(), prefix) != 0)
        return false;
    return CRYPTO_memcmp(authorization.data() + prefix.size(), token_.data(), token_.size()) == 0;
}

std::variant<size_t, http_response> api_server::admit(const http_head& head, bool needs_token) {
    if (needs_token && !(head.authorization && check_token(*head.authorization))) {
        ++unauthorised_;
        return api_error(401, "missing or wrong bearer token");
    }
    return api_max_body_bytes(head.method, decode_target(head.target).path);
}

api_request make_api_request(http_request request, std::string caller) {
    http_target target = decode_target(request.head.target);
    api_request r;
    r.method = std::move(request.head.method);
    r.path = std::move(target.path);
    for (auto& [key, value] : target.args) r.query[key] = std::move(value);
    r.body = std::move(request.body);
    r.caller = std::move(caller);
    return r;
}

void api_server::enqueue(http_request request, api_reply reply, bool from_unix) {
    ++requests_;
    std::string caller = from_unix ? request.head.peer : "token from " + request.head.peer;
    api_request r = make_api_request(std::move(request), std::move(caller));
    std::lock_guard lock(mutex_);
    (from_unix ? unix_queue_ : tcp_queue_).emplace_back(std::move(r), std::move(reply));
}

void api_server::serve_pending(const handler_fn& handler) {
    // What waits now, not what arrives meanwhile: the control thread has other duties.
    std::deque<pending> unix_requests, tcp_requests;
    {
        std::lock_guard lock(mutex_);
        unix_requests.swap(unix_queue_);
        tcp_requests.swap(tcp_queue_);
    }
    for (auto* queue : {&unix_requests, &tcp_requests})
        for (auto& [request, reply] : *queue) {
            try {
                handler(request, reply);
            } catch (const std::exception& e) {
                reply(api_error(500, e.what()));
            }
        }
}

}  // namespace sekisho
