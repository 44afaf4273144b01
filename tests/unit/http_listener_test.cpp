// The HTTP layer of the control API and the metrics (control/api/http_listener.cpp)
// with real libmicrohttpd on a Unix socket and raw HTTP/1.1 clients: answers
// given later from another thread while other clients are served, the stop
// with requests still waiting, a reply dropped unanswered, the head refused
// before any body byte, the connection limit.
#include <gtest/gtest.h>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "control/api/http_listener.h"

namespace sekisho {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

class socket_dir {
public:
    socket_dir() {
        char tmpl[] = "/tmp/http_listener_test.XXXXXX";
        path_ = mkdtemp(tmpl);
    }
    ~socket_dir() { fs::remove_all(path_); }
    std::string socket() const { return path_ + "/s"; }

private:
    std::string path_;
};

int listen_at(const std::string& path) {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strcpy(a.sun_path, path.c_str());
    if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(fd, 16) != 0) ADD_FAILURE() << path;
    return fd;
}

int connect_to(const std::string& path) {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strcpy(a.sun_path, path.c_str());
    if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) ADD_FAILURE() << "connect " << path;
    timeval tv{5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

// Everything the server sends until it closes or `timeout` passes without a byte.
std::string read_all(int fd, std::chrono::milliseconds timeout = 5000ms) {
    timeval tv{static_cast<time_t>(timeout.count() / 1000), static_cast<suseconds_t>(timeout.count() % 1000 * 1000)};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    std::string out;
    char buf[4096];
    for (;;) {
        const ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n <= 0) break;
        out.append(buf, static_cast<size_t>(n));
    }
    return out;
}

// One request (Connection: close) and the whole answer.
std::string exchange(const std::string& path, const std::string& request) {
    const int fd = connect_to(path);
    send(fd, request.data(), request.size(), MSG_NOSIGNAL);
    std::string answer = read_all(fd);
    close(fd);
    return answer;
}

std::string get(const std::string& target) {
    return "GET " + target + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
}

int status_of(const std::string& answer) {
    return answer.size() > 12 && answer.compare(0, 9, "HTTP/1.1 ") == 0 ? std::atoi(answer.c_str() + 9) : 0;
}

std::string body_of(const std::string& answer) {
    const size_t end = answer.find("\r\n\r\n");
    return end == std::string::npos ? "" : answer.substr(end + 4);
}

http_listener_config unix_config(const std::string& path, unsigned max_connections = 16) {
    http_listener_config c;
    c.name = "test " + path;
    c.unix_fd = listen_at(path);
    c.max_connections = max_connections;
    c.max_buffered_body_bytes = 1 << 20;
    c.stopping_response = {503, "stopping", "text/plain"};
    return c;
}

auto admit_all(size_t body = 1024) {
    return [body](const http_head&) -> std::variant<size_t, http_response> { return body; };
}

// The replies the handler kept for later, by the request's target.
struct kept_replies {
    std::mutex mutex;
    std::vector<std::pair<std::string, http_reply>> replies;
    size_t size() {
        std::lock_guard lock(mutex);
        return replies.size();
    }
    http_reply take(size_t i) {
        std::lock_guard lock(mutex);
        return replies.at(i).second;
    }
};

bool wait_for(const std::function<bool()>& condition) {
    for (int i = 0; i < 500 && !condition(); ++i) std::this_thread::sleep_for(10ms);
    return condition();
}

TEST(http_listener, answers_later_from_another_thread_while_serving_others) {
    socket_dir dir;
    kept_replies kept;
    http_listener listener(unix_config(dir.socket()), admit_all(), [&](http_request r, http_reply reply) {
        if (r.head.target == "/slow") {
            std::lock_guard lock(kept.mutex);
            kept.replies.emplace_back(r.head.target, reply);
        } else {
            reply({200, "fast " + r.head.method + " " + r.head.target + " " + r.head.peer, "text/plain"});
        }
    });
    auto slow = std::async(std::launch::async, [&] { return exchange(dir.socket(), get("/slow")); });
    ASSERT_TRUE(wait_for([&] { return kept.size() == 1; }));
    // The listener's thread is free: another client is answered while /slow waits.
    const std::string fast = exchange(dir.socket(), get("/fast?x=%00"));
    EXPECT_EQ(status_of(fast), 200);
    EXPECT_EQ(body_of(fast).rfind("fast GET /fast?x=%00 uid ", 0), 0u) << fast;   // the raw target, the peer's uid
    EXPECT_EQ(slow.wait_for(0ms), std::future_status::timeout);
    std::thread([r = kept.take(0)] { r({202, "late", "text/plain"}); }).join();
    const std::string answer = slow.get();
    EXPECT_EQ(status_of(answer), 202);
    EXPECT_EQ(body_of(answer), "late");
    kept.take(0)({500, "again", "text/plain"});   // a second answer is ignored
}

TEST(http_listener, stop_answers_waiting_requests_and_later_replies_do_nothing) {
    socket_dir dir;
    kept_replies kept;
    auto listener = std::make_unique<http_listener>(unix_config(dir.socket()), admit_all(),
                                                    [&](http_request r, http_reply reply) {
                                                        std::lock_guard lock(kept.mutex);
                                                        kept.replies.emplace_back(r.head.target, reply);
                                                    });
    auto a = std::async(std::launch::async, [&] { return exchange(dir.socket(), get("/a")); });
    auto b = std::async(std::launch::async, [&] { return exchange(dir.socket(), get("/b")); });
    ASSERT_TRUE(wait_for([&] { return kept.size() == 2; }));
    kept.take(0)({200, "answered", "text/plain"});   // one answered before the stop
    listener.reset();                                   // would abort if a connection stayed suspended
    const std::string first = a.get(), second = b.get();
    EXPECT_EQ(status_of(first) + status_of(second), 200 + 503) << first << "\n" << second;
    EXPECT_TRUE(body_of(first) == "stopping" || body_of(second) == "stopping");
    kept.take(1)({200, "too late", "text/plain"});   // the listener is gone: nothing happens
}

TEST(http_listener, a_reply_dropped_unanswered_is_500) {
    socket_dir dir;
    http_listener_config c = unix_config(dir.socket());
    c.error_response = [](int status, const std::string& message) {
        return http_response{status, "error: " + message, "text/plain"};
    };
    http_listener listener(std::move(c), admit_all(), [](http_request, http_reply) {});
    const std::string answer = exchange(dir.socket(), get("/x"));
    EXPECT_EQ(status_of(answer), 500);
    EXPECT_EQ(body_of(answer), "error: the request was dropped without an answer");
}

TEST(http_listener, the_head_is_judged_before_any_body_byte) {
    socket_dir dir;
    std::atomic<int> handled{0};
    std::string seen_body;
    http_listener listener(
        unix_config(dir.socket()),
        [](const http_head& h) -> std::variant<size_t, http_response> {
            if (!h.authorization || *h.authorization != "Bearer right") return http_response{401, "no", "text/plain"};
            return size_t{16};
        },
        [&](http_request r, http_reply reply) {
            seen_body = r.body;
            ++handled;
            reply({200, "ok", "text/plain"});
        });
    // Headers alone, the body promised but never sent: the refusal comes at once.
    for (const auto& [headers, status] : std::vector<std::pair<std::string, int>>{
             {"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n", 401},
             {"POST /x HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer right\r\nContent-Length: 17\r\n\r\n", 413}}) {
        const int fd = connect_to(dir.socket());
        send(fd, headers.data(), headers.size(), MSG_NOSIGNAL);
        const auto start = std::chrono::steady_clock::now();
        const std::string answer = read_all(fd, 3000ms);
        close(fd);
        EXPECT_EQ(status_of(answer), status) << answer;
        EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);   // closed after the answer, not at a timeout
    }
    EXPECT_EQ(handled, 0);
    const std::string ok = exchange(dir.socket(), "POST /x HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer right\r\n"
                                                  "Content-Length: 16\r\nConnection: close\r\n\r\n0123456789abcdef");
    EXPECT_EQ(status_of(ok), 200);
    EXPECT_EQ(seen_body, "0123456789abcdef");
}

TEST(http_listener, connections_over_the_limit_are_closed_at_once) {
    socket_dir dir;
    http_listener listener(unix_config(dir.socket(), 2), admit_all(),
                           [](http_request, http_reply reply) { reply({200, "ok", "text/plain"}); });
    EXPECT_EQ(listener.max_connections(), 2u);
    const int idle1 = connect_to(dir.socket()), idle2 = connect_to(dir.socket());
    std::this_thread::sleep_for(100ms);   // both accepted
    const int third = connect_to(dir.socket());
    const auto start = std::chrono::steady_clock::now();
    EXPECT_EQ(read_all(third, 3000ms), "");   // closed without a byte
    EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);
    close(third);
    close(idle1);
    std::this_thread::sleep_for(100ms);
    EXPECT_EQ(status_of(exchange(dir.socket(), get("/y"))), 200);   // a slot is free again
    close(idle2);
}

}  // namespace
}  // namespace sekisho
