#include "cmd/sekishoctl/api_client.h"

#include <curl/curl.h>

#include <cctype>
#include <cstdio>
#include <stdexcept>

namespace sekisho::ctl {

api_client::reply api_client::call(const std::string& method, const std::string& path, const std::string& body,
                                   const std::string& content_type, long timeout_s) const {
    CURL* c = curl_easy_init();
    if (c == nullptr) throw std::runtime_error("cannot initialise libcurl");
    reply r;
    std::string target = (url.empty() ? "http://localhost" : url) + path;
    curl_easy_setopt(c, CURLOPT_URL, target.c_str());
    if (url.empty()) curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, socket.c_str());
    else curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https");   // checked by parse_command_line() too: never in clear
    if (!cacert.empty()) curl_easy_setopt(c, CURLOPT_CAINFO, cacert.c_str());
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method.c_str());
    curl_easy_setopt(c, CURLOPT_TIMEOUT, timeout_s);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_slist* headers = nullptr;
    const std::string auth = "Authorization: Bearer " + token;
    if (!token.empty()) headers = curl_slist_append(headers, auth.c_str());
    const std::string ct = "Content-Type: " + content_type;
    if (!body.empty() || method == "POST") {
        headers = curl_slist_append(headers, ct.c_str());
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.c_str());
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, +[](char* p, size_t s, size_t n, void* out) {
        static_cast<std::string*>(out)->append(p, s * n);
        return s * n;
    });
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r.body);
    const CURLcode rc = curl_easy_perform(c);
    if (rc == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    curl_slist_free_all(headers);
    curl_easy_cleanup(c);
    if (rc != CURLE_OK)
        throw std::runtime_error(std::string("cannot reach sekishod at ") + (url.empty() ? socket : url) + ": " +
                                 curl_easy_strerror(rc));
    return r;
}

std::string url_escape(const std::string& s) {
    std::string out;
    char buf[4];
    for (unsigned char ch : s) {
        if (std::isalnum(ch) || ch == '-' || ch == '.' || ch == '_' || ch == '~') {
            out += static_cast<char>(ch);
        } else {
            std::snprintf(buf, sizeof buf, "%%%02X", ch);
            out += buf;
        }
    }
    return out;
}

int exit_code_for(long status) {
    if (status >= 200 && status < 300) return 0;
    if (status == 401) return 5;
    if (status == 404) return 3;
    if (status == 400 || status == 409 || status == 413 || status == 422 || status == 501) return 4;
    return 1;
}

}  // namespace sekisho::ctl
