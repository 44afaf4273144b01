#include "control/api/http_listener.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pwd.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <mutex>
#include <stdexcept>
#include <unordered_set>

namespace sekisho {

namespace detail {

struct http_reply_state {
    std::mutex mutex;
    bool answered = false;
    std::function<void(http_response)> deliver;
    std::optional<http_response> if_dropped;   // delivered when the last copy goes unanswered

    ~http_reply_state() {
        if (answered || !deliver || !if_dropped) return;
        try {
            deliver(std::move(*if_dropped));
        } catch (...) {
            // a destructor: the connection is then answered when the listener stops
        }
    }
};

}  // namespace detail

http_reply::http_reply(std::function<void(http_response)> deliver)
    : state_(std::make_shared<detail::http_reply_state>()) {
    state_->deliver = std::move(deliver);
}

http_reply::http_reply(std::shared_ptr<detail::http_reply_state> state) : state_(std::move(state)) {}

void http_reply::operator()(http_response response) const {
    std::function<void(http_response)> deliver;
    {
        std::lock_guard lock(state_->mutex);
        if (state_->answered) return;
        state_->answered = true;
        deliver = std::move(state_->deliver);
    }
    if (deliver) deliver(std::move(response));
}

namespace {

// One request handed to handle_fn, until its connection is done with it.
struct exchange {
    MHD_Connection* connection = nullptr;
    std::optional<http_response> response;   // the answer, once given and not yet queued
    bool suspended = false;                  // waiting in MHD_suspend_connection for `response`
    bool done = false;                       // the connection finished (or dropped) the request
};

// Per request (libmicrohttpd's con_cls): from the request line to the completion callback.
struct request_state {
    enum class stage { head, body, answering } at = stage::head;
    std::string target;      // as sent (the URI log callback sees it before unescaping)
    http_head head;
    std::string body;
    size_t max_body = 0;
    size_t reserved = 0;     // bytes of the listener's body budget this request holds
    std::shared_ptr<exchange> ex;
};

// The process's descriptors: RLIMIT_NOFILE's soft limit raised to the hard limit
// once, and what listeners may hold out of it, leaving reserved_descriptors for the rest.
constexpr unsigned reserved_descriptors = 256;
std::mutex descriptor_mutex;
long descriptors_left = -1;   // -1: not yet measured

long open_descriptors() {
    long n = 0;
    if (DIR* d = opendir("/proc/self/fd")) {
        while (readdir(d) != nullptr) ++n;
        closedir(d);
        n -= 3;   // ".", ".." and the directory's own descriptor
    }
    return n < 0 ? 0 : n;
}

unsigned reserve_descriptors(unsigned wanted) {
    std::lock_guard lock(descriptor_mutex);
    if (descriptors_left < 0) {
        rlimit rl{};
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
            rlimit raised = rl;
            raised.rlim_cur = rl.rlim_max;
            if (setrlimit(RLIMIT_NOFILE, &raised) == 0) rl = raised;
        }
        getrlimit(RLIMIT_NOFILE, &rl);
        const long limit = rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > (1u << 20) ? (1l << 20)
                                                                                   : static_cast<long>(rl.rlim_cur);
        descriptors_left = limit - open_descriptors() - reserved_descriptors;
    }
    const long granted = std::max(0l, std::min<long>(wanted, descriptors_left));
    descriptors_left -= granted;
    return static_cast<unsigned>(granted);
}

void release_descriptors(unsigned n) {
    std::lock_guard lock(descriptor_mutex);
    descriptors_left += n;
}

std::string size_text(uint64_t bytes) {
    if (bytes >= (1u << 20) && bytes % (1u << 20) == 0) return std::to_string(bytes >> 20) + " MiB";
    return std::to_string(bytes) + " bytes";
}

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

std::string percent_decode(std::string_view s, bool plus_is_space) {
    std::string out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size(); ++i) {
        const char c = s[i];
        if (c == '+' && plus_is_space) {
            out += ' ';
        } else if (c == '%' && i + 2 < s.size() && hex_value(s[i + 1]) >= 0 && hex_value(s[i + 2]) >= 0) {
            out += static_cast<char>(hex_value(s[i + 1]) << 4 | hex_value(s[i + 2]));
            i += 2;
        } else {
            out += c;
        }
    }
    return out;
}

std::string peer_of(MHD_Connection* connection, bool tcp) {
    if (tcp) {
        const MHD_ConnectionInfo* ci = MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        char host[NI_MAXHOST] = "?", port[NI_MAXSERV] = "?";
        if (ci != nullptr && ci->client_addr != nullptr) {
            const socklen_t len = ci->client_addr->sa_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
            getnameinfo(ci->client_addr, len, host, sizeof host, port, sizeof port, NI_NUMERICHOST | NI_NUMERICSERV);
        }
        return (std::strchr(host, ':') ? "[" + std::string(host) + "]" : std::string(host)) + ":" + port;
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

MHD_Result queue(MHD_Connection* connection, const http_response& r) {
    MHD_Response* response =
        MHD_create_response_from_buffer(r.body.size(), const_cast<char*>(r.body.data()), MHD_RESPMEM_MUST_COPY);
    if (response == nullptr) return MHD_NO;
    MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, r.content_type.c_str());
    const MHD_Result ret = MHD_queue_response(connection, static_cast<unsigned>(r.status), response);
    MHD_destroy_response(response);
    return ret;
}

}  // namespace

http_target decode_target(std::string_view target) {
    http_target t;
    const size_t q = target.find('?');
    t.path = percent_decode(target.substr(0, q), false);
    if (q == std::string_view::npos) return t;
    std::string_view query = target.substr(q + 1);
    while (!query.empty()) {
        const size_t amp = query.find('&');
        const std::string_view pair = query.substr(0, amp);
        if (!pair.empty()) {
            const size_t eq = pair.find('=');
            t.args.emplace_back(percent_decode(pair.substr(0, eq), true),
                                eq == std::string_view::npos ? "" : percent_decode(pair.substr(eq + 1), true));
        }
        if (amp == std::string_view::npos) break;
        query.remove_prefix(amp + 1);
    }
    return t;
}

sockaddr_storage parse_listen_address(const std::string& text, const std::string& what) {
    const size_t colon = text.rfind(':');
    if (colon == std::string::npos || colon + 1 == text.size())
        throw std::runtime_error(what + ": '" + text + "' is not ADDRESS:PORT");
    std::string host = text.substr(0, colon);
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    const std::string port_text = text.substr(colon + 1);
    unsigned long port = 0;
    for (char c : port_text) {
        if (c < '0' || c > '9' || port > 65535) throw std::runtime_error(what + ": '" + port_text + "' is not a port");
        port = port * 10 + static_cast<unsigned>(c - '0');
    }
    if (port == 0 || port > 65535) throw std::runtime_error(what + ": '" + port_text + "' is not a port (1-65535)");
    sockaddr_storage ss{};
    if (auto* a = reinterpret_cast<sockaddr_in*>(&ss); inet_pton(AF_INET, host.c_str(), &a->sin_addr) == 1) {
        a->sin_family = AF_INET;
        a->sin_port = htons(static_cast<uint16_t>(port));
    } else if (auto* a6 = reinterpret_cast<sockaddr_in6*>(&ss); inet_pton(AF_INET6, host.c_str(), &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons(static_cast<uint16_t>(port));
    } else {
        throw std::runtime_error(what + ": '" + host + "' is not an IP address");
    }
    return ss;
}

// What the replies and libmicrohttpd's callbacks share; the replies keep it
// alive after the listener is gone (then `stopped` makes them do nothing).
struct http_listener::core : std::enable_shared_from_this<http_listener::core> {
    http_listener_config config;
    admit_fn admit;
    handle_fn handle;
    unsigned max_connections = 0;
    std::atomic<MHD_Daemon*> daemon{nullptr};

    std::mutex mutex;
    std::condition_variable finished;                     // an exchange is done (while stopping)
    bool stopping = false;                                // new requests get stopping_response
    bool stopped = false;                                 // replies do nothing
    std::unordered_set<std::shared_ptr<exchange>> suspended;
    unsigned in_flight = 0;                               // exchanges not yet done
    size_t buffered = 0;                                  // body bytes reserved
    // libmicrohttpd's log lines, at most 10 per 10 s (an attack is many refused connections).
    std::chrono::steady_clock::time_point log_window{};
    unsigned logged = 0, suppressed = 0;

    http_response error(int status, const std::string& message) const {
        if (config.error_response) return config.error_response(status, message);
        return {status, message + "\n", "text/plain; charset=utf-8"};
    }
};

namespace {

using listener_core = http_listener::core;

void log_line(void* cls, const char* format, va_list ap) {
    auto* c = static_cast<listener_core*>(cls);
    char text[512];
    std::vsnprintf(text, sizeof text, format, ap);
    const auto now = std::chrono::steady_clock::now();
    unsigned suppressed = 0;
    {
        std::lock_guard lock(c->mutex);
        if (now - c->log_window > std::chrono::seconds(10)) {
            suppressed = c->suppressed;
            c->log_window = now;
            c->logged = c->suppressed = 0;
        }
        if (c->logged >= 10) {
            ++c->suppressed;
            return;
        }
        ++c->logged;
    }
    if (suppressed) std::cerr << "sekishod: " << c->config.name << ": " << suppressed << " more messages suppressed\n";
    std::string line = text;
    while (!line.empty() && line.back() == '\n') line.pop_back();
    std::cerr << "sekishod: " << c->config.name << ": " << line << std::endl;
}

// Over max_connections a new connection is closed at once: libmicrohttpd's own
// limit (one above) would instead stop accepting and leave clients in the backlog.
MHD_Result accept_policy(void* cls, const sockaddr*, socklen_t) {
    auto* c = static_cast<listener_core*>(cls);
    MHD_Daemon* d = c->daemon.load();
    if (d == nullptr) return MHD_YES;
    const MHD_DaemonInfo* info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
    return info != nullptr && info->num_connections >= c->max_connections ? MHD_NO : MHD_YES;
}

void* on_uri(void*, const char* uri, MHD_Connection*) {
    auto* st = new request_state;
    st->target = uri ? uri : "";
    return st;
}

std::optional<uint64_t> content_length_of(MHD_Connection* connection) {
    const char* v = MHD_lookup_connection_value(connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (v == nullptr) return std::nullopt;
    uint64_t n = 0;
    for (const char* p = v; *p; ++p) {
        if (*p < '0' || *p > '9' || n > UINT64_MAX / 10 - 1) return UINT64_MAX;   // libmicrohttpd refuses these first
        n = n * 10 + static_cast<uint64_t>(*p - '0');
    }
    return n;
}

// The first call: headers complete, no body byte read yet.
MHD_Result admit(listener_core& c, MHD_Connection* connection, request_state& st, const char* method) {
    st.at = request_state::stage::body;
    http_head& h = st.head;
    h.method = method ? method : "";
    h.target = std::move(st.target);
    if (const char* a = MHD_lookup_connection_value(connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION))
        h.authorization = a;
    h.content_length = content_length_of(connection);
    h.tcp = c.config.unix_fd < 0;
    h.peer = peer_of(connection, h.tcp);
    {
        std::lock_guard lock(c.mutex);
        if (c.stopping) return queue(connection, c.config.stopping_response);
    }
    std::variant<size_t, http_response> decision;
    try {
        decision = c.admit(h);
    } catch (const std::exception& e) {
        decision = c.error(500, e.what());
    }
    if (const auto* refusal = std::get_if<http_response>(&decision)) return queue(connection, *refusal);
    st.max_body = std::get<size_t>(decision);
    const uint64_t declared = h.content_length.value_or(0);
    if (declared > st.max_body)
        return queue(connection, c.error(413, "the request body (" + size_text(declared) + ") is over this request's limit of " +
                                                  size_text(st.max_body)));
    std::lock_guard lock(c.mutex);
    if (c.buffered + declared > c.config.max_buffered_body_bytes)
        return queue(connection, c.error(503, "request bodies of " + size_text(c.buffered) +
                                                  " are already being received or answered here; retry later"));
    c.buffered += declared;
    st.reserved = declared;
    return MHD_YES;
}

MHD_Result receive(listener_core& c, request_state& st, const char* data, size_t size) {
    // A declared length is enforced by libmicrohttpd; an undeclared (chunked) body
    // that outgrows its limit or the budget is cut off: no response can be queued mid-body.
    if (size > st.max_body - st.body.size()) return MHD_NO;
    if (st.body.size() + size > st.reserved) {
        const size_t more = st.body.size() + size - st.reserved;
        std::lock_guard lock(c.mutex);
        if (c.buffered + more > c.config.max_buffered_body_bytes) return MHD_NO;
        c.buffered += more;
        st.reserved += more;
    }
    st.body.append(data, size);
    return MHD_YES;
}

// The whole request is in: hand it over, then answer or wait suspended for the answer.
MHD_Result dispatch(listener_core& core, MHD_Connection* connection, request_state& st) {
    const std::shared_ptr<listener_core> c = core.shared_from_this();
    st.at = request_state::stage::answering;
    {
        std::lock_guard lock(c->mutex);
        if (c->stopping) return queue(connection, c->config.stopping_response);
        st.ex = std::make_shared<exchange>();
        st.ex->connection = connection;
        ++c->in_flight;
    }
    auto state = std::make_shared<detail::http_reply_state>();
    state->if_dropped = c->error(500, "the request was dropped without an answer");
    state->deliver = [c, ex = st.ex](http_response r) {
        std::lock_guard lock(c->mutex);
        if (c->stopped || ex->done || ex->response) return;
        ex->response = std::move(r);
        if (ex->suspended) {
            ex->suspended = false;
            c->suspended.erase(ex);
            MHD_resume_connection(ex->connection);
        }
    };
    http_reply reply(std::move(state));
    try {
        c->handle(http_request{std::move(st.head), std::move(st.body)}, reply);
    } catch (const std::exception& e) {
        reply(c->error(500, e.what()));
    }
    std::unique_lock lock(c->mutex);
    if (st.ex->response) {
        const http_response r = std::move(*st.ex->response);
        st.ex->response.reset();
        lock.unlock();
        return queue(connection, r);
    }
    // Stopping began while the handler ran: the destructor has resumed the suspended connections
    // already, and libmicrohttpd must not be stopped with one still suspended.
    if (c->stopping) {
        lock.unlock();
        return queue(connection, c->config.stopping_response);
    }
    MHD_suspend_connection(connection);
    st.ex->suspended = true;
    c->suspended.insert(st.ex);
    return MHD_YES;
}

// Called again after MHD_resume_connection: the answer is there.
MHD_Result answer(listener_core& c, MHD_Connection* connection, request_state& st) {
    std::unique_lock lock(c.mutex);
    if (!st.ex || !st.ex->response) return MHD_NO;   // cannot happen: resumed only with a response
    const http_response r = std::move(*st.ex->response);
    st.ex->response.reset();
    lock.unlock();
    return queue(connection, r);
}

}  // namespace

namespace {

MHD_Result on_access(void* cls, MHD_Connection* connection, const char* url, const char* method, const char*,
                     const char* upload_data, size_t* upload_data_size, void** con_cls) {
    auto& c = *static_cast<listener_core*>(cls);
    auto* st = static_cast<request_state*>(*con_cls);
    if (st == nullptr) {   // no URI log call (a request line without a target)
        st = static_cast<request_state*>(on_uri(nullptr, url, connection));
        *con_cls = st;
    }
    switch (st->at) {
        case request_state::stage::head:
            return admit(c, connection, *st, method);
        case request_state::stage::body:
            if (*upload_data_size != 0) {
                const MHD_Result r = receive(c, *st, upload_data, *upload_data_size);
                *upload_data_size = 0;
                return r;
            }
            return dispatch(c, connection, *st);
        case request_state::stage::answering:
            return answer(c, connection, *st);
    }
    return MHD_NO;
}

void on_completed(void* cls, MHD_Connection*, void** con_cls, MHD_RequestTerminationCode) {
    auto& c = *static_cast<listener_core*>(cls);
    auto* st = static_cast<request_state*>(*con_cls);
    if (st == nullptr) return;
    {
        std::lock_guard lock(c.mutex);
        c.buffered -= st->reserved;
        if (st->ex) {
            st->ex->done = true;
            if (st->ex->suspended) c.suspended.erase(st->ex);   // only when libmicrohttpd stops
            st->ex->suspended = false;
            st->ex->connection = nullptr;
            --c.in_flight;
        }
    }
    c.finished.notify_all();
    delete st;
    *con_cls = nullptr;
}

}  // namespace

http_listener::http_listener(http_listener_config config, admit_fn admit, handle_fn handle)
    : core_(std::make_shared<core>()) {
    core& c = *core_;
    c.config = std::move(config);
    c.admit = std::move(admit);
    c.handle = std::move(handle);
    c.max_connections = reserve_descriptors(c.config.max_connections);
    if (c.max_connections < std::min(8u, c.config.max_connections)) {
        release_descriptors(c.max_connections);
        throw std::runtime_error(c.config.name + ": too few file descriptors left for " +
                                 std::to_string(c.config.max_connections) +
                                 " connections (RLIMIT_NOFILE; raise LimitNOFILE)");
    }
    if (c.max_connections < c.config.max_connections)
        std::cerr << "sekishod: " << c.config.name << ": at most " << c.max_connections << " connections (of "
                  << c.config.max_connections << "): RLIMIT_NOFILE leaves no more" << std::endl;

    unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    std::vector<MHD_OptionItem> options = {
        {MHD_OPTION_EXTERNAL_LOGGER, reinterpret_cast<intptr_t>(&log_line), &c},   // first: for every message
        {MHD_OPTION_CONNECTION_LIMIT, static_cast<intptr_t>(c.max_connections + 1), nullptr},
        {MHD_OPTION_CONNECTION_TIMEOUT, static_cast<intptr_t>(c.config.idle_timeout_s), nullptr},
        {MHD_OPTION_CONNECTION_MEMORY_LIMIT, static_cast<intptr_t>(c.config.connection_memory), nullptr},
        {MHD_OPTION_URI_LOG_CALLBACK, reinterpret_cast<intptr_t>(&on_uri), nullptr},
        {MHD_OPTION_NOTIFY_COMPLETED, reinterpret_cast<intptr_t>(&on_completed), &c},
    };
    sockaddr_storage address{};
    uint16_t port = 0;
    if (c.config.unix_fd >= 0) {
        options.push_back({MHD_OPTION_LISTEN_SOCKET, c.config.unix_fd, nullptr});
    } else {
        address = parse_listen_address(c.config.tcp_address, c.config.name);
        if (address.ss_family == AF_INET6) {
            flags |= MHD_USE_IPv6;
            port = ntohs(reinterpret_cast<sockaddr_in6*>(&address)->sin6_port);
        } else {
            port = ntohs(reinterpret_cast<sockaddr_in*>(&address)->sin_port);
        }
        options.push_back({MHD_OPTION_SOCK_ADDR, 0, &address});
        if (c.config.max_connections_per_peer)
            options.push_back({MHD_OPTION_PER_IP_CONNECTION_LIMIT,
                               static_cast<intptr_t>(c.config.max_connections_per_peer), nullptr});
        if (!c.config.tls_cert_pem.empty()) {
            flags |= MHD_USE_TLS;
            options.push_back({MHD_OPTION_HTTPS_MEM_CERT, 0, c.config.tls_cert_pem.data()});
            options.push_back({MHD_OPTION_HTTPS_MEM_KEY, 0, c.config.tls_key_pem.data()});
        }
    }
    options.push_back({MHD_OPTION_END, 0, nullptr});
    daemon_ = MHD_start_daemon(flags, port, &accept_policy, &c, &on_access, &c, MHD_OPTION_ARRAY, options.data(),
                               MHD_OPTION_END);
    if (daemon_ == nullptr) {
        release_descriptors(c.max_connections);
        throw std::runtime_error(c.config.name + ": cannot start the HTTP server" +
                                 (c.config.unix_fd < 0 ? " on " + c.config.tcp_address : std::string()) +
                                 " (address in use?)");
    }
    c.daemon.store(daemon_);
}

http_listener::~http_listener() {
    core& c = *core_;
    {
        std::unique_lock lock(c.mutex);
        c.stopping = true;
        for (const auto& ex : c.suspended) {
            ex->response = c.config.stopping_response;
            ex->suspended = false;
            MHD_resume_connection(ex->connection);
        }
        c.suspended.clear();
        c.finished.wait_for(lock, std::chrono::seconds(1), [&] { return c.in_flight == 0; });
        c.stopped = true;
    }
    MHD_stop_daemon(daemon_);
    release_descriptors(c.max_connections);
}

unsigned http_listener::max_connections() const { return core_->max_connections; }

}  // namespace sekisho
