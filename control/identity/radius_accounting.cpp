#include "control/identity/radius_accounting.h"

#include "control/policy/yaml_tree.h"
#include "control/utc_time.h"
#include "control/utf8.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <fstream>
#include <memory>
#include <sstream>
#include <stdexcept>

namespace sekisho::radius {

namespace {

uint16_t get16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }
uint32_t get32(const uint8_t* p) {
    return static_cast<uint32_t>(p[0]) << 24 | static_cast<uint32_t>(p[1]) << 16 |
           static_cast<uint32_t>(p[2]) << 8 | p[3];
}

const char* code_name(uint8_t code) {
    switch (code) {
        case 1: return "Access-Request";
        case 2: return "Access-Accept";
        case 3: return "Access-Reject";
        case 4: return "Accounting-Request";
        case 5: return "Accounting-Response";
        case 11: return "Access-Challenge";
        case 12: return "Status-Server";
        case 13: return "Status-Client";
        case 40: return "Disconnect-Request";
        case 43: return "CoA-Request";
        default: return "unknown";
    }
}

std::string attribute_label(uint8_t type) {
    const char* name = attribute_name(type);
    return "attribute " + std::to_string(type) + (*name ? std::string(" (") + name + ")" : std::string());
}

// MD5 through libcrypto's EVP interface (the low-level MD5() is deprecated
// in OpenSSL 3).
class md5 {
public:
    md5() : ctx_(EVP_MD_CTX_new()) {
        if (!ctx_ || EVP_DigestInit_ex(ctx_.get(), EVP_md5(), nullptr) != 1)
            throw std::runtime_error("radius: MD5 is not available from libcrypto (is a FIPS-only provider loaded?)");
    }
    void update(const void* data, size_t size) {
        if (size && EVP_DigestUpdate(ctx_.get(), data, size) != 1) throw std::runtime_error("radius: MD5 update failed");
    }
    authenticator final() {
        authenticator out{};
        unsigned size = 0;
        if (EVP_DigestFinal_ex(ctx_.get(), out.data(), &size) != 1 || size != out.size())
            throw std::runtime_error("radius: MD5 final failed");
        return out;
    }

private:
    struct deleter {
        void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
    };
    std::unique_ptr<EVP_MD_CTX, deleter> ctx_;
};

ip_prefix host_prefix(uint8_t family, const uint8_t* bytes) {
    ip_prefix p;
    p.family = family;
    p.length = family == 4 ? 32 : 128;
    std::memcpy(p.bytes.data(), bytes, family == 4 ? 4 : 16);
    return p;
}

std::string address_text(const ip_prefix& p) {
    char buf[INET6_ADDRSTRLEN] = {};
    inet_ntop(p.family == 4 ? AF_INET : AF_INET6, p.bytes.data(), buf, sizeof buf);
    return buf;
}

// Source address of a datagram; IPv4-mapped IPv6 becomes IPv4.
std::optional<ip_prefix> source_host(const sockaddr_storage& ss, uint16_t* port = nullptr) {
    if (ss.ss_family == AF_INET) {
        const auto& in = reinterpret_cast<const sockaddr_in&>(ss);
        if (port) *port = ntohs(in.sin_port);
        return host_prefix(4, reinterpret_cast<const uint8_t*>(&in.sin_addr));
    }
    if (ss.ss_family == AF_INET6) {
        const auto& in6 = reinterpret_cast<const sockaddr_in6&>(ss);
        if (port) *port = ntohs(in6.sin6_port);
        const auto* b = reinterpret_cast<const uint8_t*>(&in6.sin6_addr);
        if (IN6_IS_ADDR_V4MAPPED(&in6.sin6_addr)) return host_prefix(4, b + 12);
        return host_prefix(6, b);
    }
    return std::nullopt;
}

// "1795400000 (2026-11-23T02:13:20Z)".
std::string time_text(int64_t t) { return std::to_string(t) + " (" + utc_time_text(t) + ")"; }

// The duplicate-detection key of a request: source address and port,
// Identifier, Request Authenticator.
std::string request_key_of(const sockaddr_storage& from, const packet_header& h) {
    std::string key;
    uint16_t port = 0;
    if (const auto host = source_host(from, &port)) {
        key.push_back(static_cast<char>(host->family));
        key.append(reinterpret_cast<const char*>(host->bytes.data()), host->family == 4 ? 4 : 16);
    }
    key.push_back(static_cast<char>(port >> 8));
    key.push_back(static_cast<char>(port & 0xff));
    key.push_back(static_cast<char>(h.identifier));
    key.append(reinterpret_cast<const char*>(h.auth.data()), h.auth.size());
    return key;
}

std::string endpoint_text(const sockaddr_storage& ss) {
    uint16_t port = 0;
    const auto host = source_host(ss, &port);
    if (!host) return "<unknown address family>";
    const std::string a = address_text(*host);
    return (host->family == 6 ? "[" + a + "]" : a) + ":" + std::to_string(port);
}

}  // namespace

std::optional<binding_kind> binding_kind_of(uint32_t status_type) {
    switch (static_cast<acct_status>(status_type)) {
        case acct_status::start: return binding_kind::start;
        case acct_status::stop: return binding_kind::stop;
        case acct_status::interim_update: return binding_kind::interim;
        case acct_status::accounting_on: return binding_kind::accounting_on;
        case acct_status::accounting_off: return binding_kind::accounting_off;
    }
    return std::nullopt;
}

const char* attribute_name(uint8_t type) {
    switch (type) {
        case attr_user_name: return "User-Name";
        case attr_nas_ip_address: return "NAS-IP-Address";
        case attr_framed_ip_address: return "Framed-IP-Address";
        case attr_nas_identifier: return "NAS-Identifier";
        case attr_proxy_state: return "Proxy-State";
        case attr_acct_status_type: return "Acct-Status-Type";
        case attr_acct_delay_time: return "Acct-Delay-Time";
        case attr_acct_session_id: return "Acct-Session-Id";
        case attr_acct_session_time: return "Acct-Session-Time";
        case attr_event_timestamp: return "Event-Timestamp";
        case attr_nas_ipv6_address: return "NAS-IPv6-Address";
        case attr_framed_ipv6_prefix: return "Framed-IPv6-Prefix";
        case attr_delegated_ipv6_prefix: return "Delegated-IPv6-Prefix";
        default: return "";
    }
}

// ---------------------------------------------------------------- parsing

result<packet_header> parse_header(std::span<const uint8_t> d) {
    using R = result<packet_header>;
    if (d.size() < header_size)
        return R::failure("packet is " + std::to_string(d.size()) + " octets, shorter than the 20-octet RADIUS header");
    packet_header h;
    h.code = d[0];
    h.identifier = d[1];
    h.length = get16(&d[2]);
    std::copy_n(&d[4], h.auth.size(), h.auth.begin());
    if (h.length < header_size)
        return R::failure("Length field " + std::to_string(h.length) + " is below the 20-octet minimum");
    if (h.length > max_packet_size)
        return R::failure("Length field " + std::to_string(h.length) + " exceeds the RFC 2865 maximum of 4096");
    if (h.length > d.size())
        return R::failure("Length field " + std::to_string(h.length) + " exceeds the " + std::to_string(d.size()) +
                          " octets received");
    return h;
}

namespace {

// One attribute of an Accounting-Request, its Length already checked to fit
// the packet. Every refusal names the attribute and its offset (`where`).
// `first_seen` is shared by every attribute of one packet: the offset of each
// type's first occurrence, 0 while not yet seen.
struct attribute_reader {
    uint8_t type;
    uint8_t len;
    const uint8_t* whole;   // the attribute as received: type, Length, value
    const uint8_t* v;       // the value: len - 2 octets
    size_t vlen;
    size_t off;
    const std::string& where;   // "Attribute-Name (N) at offset O", for messages
    std::array<int, 256>& first_seen;

    std::optional<std::string> expect_len(size_t want) const {
        if (len == want) return std::nullopt;
        return where + ": length " + std::to_string(len) + ", expected " + std::to_string(want);
    }
    std::optional<std::string> once() {
        if (first_seen[type] == 0) {
            first_seen[type] = static_cast<int>(off);
            return std::nullopt;
        }
        return where + ": appears a second time (first at offset " + std::to_string(first_seen[type]) +
               "); it may appear once";
    }
    std::optional<std::string> text(std::optional<std::string>& out) {
        if (len < 3)
            return where + ": length " + std::to_string(len) + ", a text attribute needs at least 3 (RFC 2865 5)";
        if (auto e = once()) return e;
        out.emplace(reinterpret_cast<const char*>(v), vlen);
        return std::nullopt;
    }
    std::optional<std::string> integer(std::optional<uint32_t>& out) {
        if (auto e = expect_len(6)) return e;
        if (auto e = once()) return e;
        out = get32(v);
        return std::nullopt;
    }
    std::optional<std::string> address(std::optional<ip_prefix>& out, uint8_t family) {
        if (auto e = expect_len(family == 4 ? 6 : 18)) return e;
        if (auto e = once()) return e;
        out = host_prefix(family, v);
        return std::nullopt;
    }
    // RFC 3162 2.3 / RFC 4818 / RFC 8044 3.11: Reserved, Prefix-Length,
    // then at least ceil(Prefix-Length / 8) prefix octets, at most 16.
    std::optional<std::string> ipv6_prefix(std::vector<ip_prefix>& out) const {
        if (len < 4 || len > 20)
            return where + ": length " + std::to_string(len) + ", an IPv6 prefix attribute is 4 to 20 octets";
        const unsigned plen = v[1];
        if (plen > 128)
            return where + ": prefix length " + std::to_string(plen) + " exceeds 128";
        const size_t octets = vlen - 2;
        if (octets * 8 < plen)
            return where + ": prefix length /" + std::to_string(plen) + " needs " + std::to_string((plen + 7) / 8) +
                   " prefix octets, the attribute carries " + std::to_string(octets);
        ip_prefix p;
        p.family = 6;
        p.length = static_cast<uint8_t>(plen);
        std::copy_n(v + 2, octets, p.bytes.begin());
        for (unsigned bit = plen; bit < octets * 8; ++bit)
            if (p.bytes[bit / 8] & (0x80 >> (bit % 8)))
                return where + ": " + address_text(p) + " has bits set beyond its prefix length /" +
                       std::to_string(plen);
        out.push_back(p);
        return std::nullopt;
    }
};

// Stores one attribute into `req`, or says why the packet is refused.
// Attributes Sekisho does not use (Vendor-Specific among them) are skipped.
// Proxy-State is kept whole (type and length too): the reply echoes it.
std::optional<std::string> read_attribute(attribute_reader& a, accounting_request& req) {
    switch (a.type) {
        case attr_user_name: return a.text(req.user_name);
        case attr_acct_session_id: return a.text(req.session_id);
        case attr_nas_identifier: return a.text(req.nas_identifier);
        case attr_acct_status_type: return a.integer(req.status_type);
        case attr_acct_delay_time: return a.integer(req.delay_time);
        case attr_acct_session_time: return a.integer(req.session_time);
        case attr_event_timestamp: return a.integer(req.event_timestamp);
        case attr_framed_ip_address: return a.address(req.framed_ip, 4);
        case attr_nas_ip_address: return a.address(req.nas_ip, 4);
        case attr_nas_ipv6_address: return a.address(req.nas_ipv6, 6);
        case attr_framed_ipv6_prefix: return a.ipv6_prefix(req.framed_ipv6_prefixes);
        case attr_delegated_ipv6_prefix: return a.ipv6_prefix(req.delegated_ipv6_prefixes);
        case attr_proxy_state:
            if (a.len < 3) return a.where + ": length " + std::to_string(a.len) + ", Proxy-State needs at least 3";
            req.proxy_state.insert(req.proxy_state.end(), a.whole, a.whole + a.len);
            return std::nullopt;
        default: return std::nullopt;
    }
}

}  // namespace

result<accounting_request> parse_accounting_request(std::span<const uint8_t> d) {
    using R = result<accounting_request>;
    const auto header = parse_header(d);
    if (!header) return R::failure(header.error());
    if (header->code != code_accounting_request)
        return R::failure("code " + std::to_string(header->code) + " (" + code_name(header->code) +
                          ") is not Accounting-Request (4)");

    accounting_request req;
    req.header = *header;
    std::array<int, 256> first_seen{};   // offset of the first occurrence, 0 = not yet
    const size_t end = header->length;
    size_t off = header_size;
    while (off < end) {
        const size_t left = end - off;
        if (left < 2)
            return R::failure("truncated attribute at offset " + std::to_string(off) +
                              ": 1 octet left before Length " + std::to_string(end) + ", an attribute needs 2");
        const uint8_t type = d[off];
        const uint8_t len = d[off + 1];
        const std::string where = attribute_label(type) + " at offset " + std::to_string(off);
        if (len < 2) return R::failure(where + ": length " + std::to_string(len) + " is below the minimum of 2");
        if (len > left)
            return R::failure(where + ": length " + std::to_string(len) + " runs past the end of the packet (" +
                              std::to_string(left) + " octets left)");
        attribute_reader attribute{type, len, &d[off], &d[off + 2], len - 2u, off, where, first_seen};
        if (const auto error = read_attribute(attribute, req)) return R::failure(*error);
        off += len;
    }
    return req;
}

// ---------------------------------------------------------------- authenticators

authenticator request_authenticator(std::span<const uint8_t> packet, std::string_view secret) {
    const size_t length = get16(&packet[2]);
    static constexpr std::array<uint8_t, 16> zeros{};
    md5 h;
    h.update(packet.data(), 4);
    h.update(zeros.data(), zeros.size());
    h.update(packet.data() + header_size, length - header_size);
    h.update(secret.data(), secret.size());
    return h.final();
}

bool verify_request_authenticator(std::span<const uint8_t> packet, std::string_view secret) {
    const authenticator expected = request_authenticator(packet, secret);
    return CRYPTO_memcmp(expected.data(), packet.data() + 4, expected.size()) == 0;
}

std::vector<uint8_t> build_accounting_response(const packet_header& request, std::span<const uint8_t> attributes,
                                               std::string_view secret) {
    const size_t length = header_size + attributes.size();
    if (length > max_packet_size) throw std::length_error("radius: response attributes exceed 4096 octets");
    std::vector<uint8_t> out(length);
    out[0] = code_accounting_response;
    out[1] = request.identifier;
    out[2] = static_cast<uint8_t>(length >> 8);
    out[3] = static_cast<uint8_t>(length);
    std::copy(attributes.begin(), attributes.end(), out.begin() + header_size);
    md5 h;
    h.update(out.data(), 4);
    h.update(request.auth.data(), request.auth.size());
    h.update(attributes.data(), attributes.size());
    h.update(secret.data(), secret.size());
    const authenticator auth = h.final();
    std::copy(auth.begin(), auth.end(), out.begin() + 4);
    return out;
}

// ---------------------------------------------------------------- binding update

std::string escape_text(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    auto escape = [&](uint8_t c) {
        static constexpr char hex[] = "0123456789abcdef";
        out += "\\x";
        out += hex[c >> 4];
        out += hex[c & 15];
    };
    size_t i = 0;
    while (i < s.size()) {
        const auto c = static_cast<uint8_t>(s[i]);
        if (c < 0x80) {
            if (c < 0x20 || c == 0x7f || c == '\\') escape(c);
            else out += static_cast<char>(c);
            ++i;
            continue;
        }
        // A well-formed UTF-8 sequence passes; any other octet is escaped.
        const size_t n = utf8_sequence_length(s, i);
        if (n > 0) {
            out.append(s.substr(i, n));
            i += n;
        } else {
            escape(c);
            ++i;
        }
    }
    return out;
}

std::optional<std::string> check_event_time(const accounting_request& req, int64_t receive_time,
                                            const time_bounds& bounds) {
    const std::string received = "the receive time " + time_text(receive_time);
    if (req.event_timestamp) {
        const int64_t t = *req.event_timestamp;
        if (t > receive_time + bounds.max_future_seconds)
            return "Event-Timestamp (55) " + time_text(t) + " is " + std::to_string(t - receive_time) + " s after " +
                   received + "; at most " + std::to_string(bounds.max_future_seconds) + " s ahead is accepted";
        if (t < receive_time - bounds.max_age_seconds)
            return "Event-Timestamp (55) " + time_text(t) + " is " + std::to_string(receive_time - t) + " s before " +
                   received + "; at most " + std::to_string(bounds.max_age_seconds) + " s old is accepted";
    }
    if (req.delay_time && static_cast<int64_t>(*req.delay_time) > bounds.max_age_seconds)
        return "Acct-Delay-Time (41) " + std::to_string(*req.delay_time) + " s exceeds the maximum age of " +
               std::to_string(bounds.max_age_seconds) + " s (" + received + ")";
    if (req.session_time && static_cast<int64_t>(*req.session_time) > bounds.max_session_seconds)
        return "Acct-Session-Time (46) " + std::to_string(*req.session_time) + " s exceeds the maximum session length of " +
               std::to_string(bounds.max_session_seconds) + " s";
    return std::nullopt;
}

result<binding_update> to_binding_update(const accounting_request& req, int64_t receive_time) {
    using R = result<binding_update>;
    if (!req.status_type) return R::failure("no Acct-Status-Type (40)");
    const auto kind = binding_kind_of(*req.status_type);
    if (!kind) return R::failure("Acct-Status-Type " + std::to_string(*req.status_type) + " is not a binding event");

    binding_update u;
    u.kind = *kind;
    const bool per_session = *kind == binding_kind::start || *kind == binding_kind::interim || *kind == binding_kind::stop;
    if (per_session && !req.session_id)
        return R::failure(std::string(to_string(*kind)) + " without Acct-Session-Id (44)");
    if (!req.nas_ip && !req.nas_ipv6 && !req.nas_identifier)
        return R::failure("no NAS-IP-Address (4), NAS-IPv6-Address (95) or NAS-Identifier (32) (RFC 2866 4.1)");

    if (req.user_name) u.account = escape_text(*req.user_name);
    if (req.session_id) u.session_id = escape_text(*req.session_id);
    if (req.nas_identifier) u.nas_identifier = escape_text(*req.nas_identifier);
    if (req.nas_ip) u.nas_address = address_text(*req.nas_ip);
    else if (req.nas_ipv6) u.nas_address = address_text(*req.nas_ipv6);

    if (req.framed_ip) {
        const uint32_t a = req.framed_ip->v4();
        if (a != 0 && a != 0xfffffffeu && a != 0xffffffffu) u.ipv4 = *req.framed_ip;
    }
    for (const auto* list : {&req.delegated_ipv6_prefixes, &req.framed_ipv6_prefixes})
        for (const auto& p : *list)
            if (std::find(u.ipv6_prefixes.begin(), u.ipv6_prefixes.end(), p) == u.ipv6_prefixes.end())
                u.ipv6_prefixes.push_back(p);

    if (req.event_timestamp) {
        u.event_time = *req.event_timestamp;
        u.event_time_from_packet = true;
    } else {
        u.event_time = receive_time - static_cast<int64_t>(req.delay_time.value_or(0));
    }
    u.session_time = req.session_time;
    return u;
}

// ---------------------------------------------------------------- clients

client_table::client_table(std::vector<client> clients) : clients_(std::move(clients)) {
    std::stable_sort(clients_.begin(), clients_.end(),
                     [](const client& a, const client& b) { return a.address.length > b.address.length; });
}

const client* client_table::find(const ip_prefix& host) const {
    for (const auto& c : clients_)
        if (c.address.contains(host)) return &c;
    return nullptr;
}

const client* client_table::find(const sockaddr_storage& source) const {
    const auto host = source_host(source);
    return host ? find(*host) : nullptr;
}

namespace {

class clients_reader {
public:
    explicit clients_reader(std::string name) : name_(std::move(name)) {}

    void error(const yaml::node& at, const std::string& path, const std::string& msg) {
        const int line = at.line();
        errors_.push_back(name_ + ":" + std::to_string(line) + ": " + (path.empty() ? "" : path + ": ") + msg);
    }

    // An unknown key is named only when it looks like a key (a short word):
    // a file that is not a clients file (a typo naming another file, read by
    // a daemon running as root) must not have its lines echoed into errors.
    void check_keys(const yaml::node& map, const std::string& path, const std::vector<std::string>& known) {
        for (auto it = map.begin(); it != map.end(); ++it) {
            const std::string key = it->first.is_scalar() ? it->first.scalar() : std::string("?");
            if (std::find(known.begin(), known.end(), key) != known.end()) continue;
            const bool word = !key.empty() && key.size() <= 32 && std::all_of(key.begin(), key.end(), [](char ch) {
                return std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '-';
            });
            std::string list;
            for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
            const std::string shown = word ? (path.empty() ? key : path + "." + key) : path;
            error(it->first, shown, std::string(word ? "" : "a key that is not a word: ") + "unknown key (expected one of: " +
                                        list + ")");
        }
    }

    client_table read(const yaml::node& root) {
        if (!root.defined() || root.is_null()) throw policy_error({name_ + ":1: the clients file is empty"});
        if (!root.is_map()) {
            error(root, "", "expected a mapping with the key 'clients'");
            throw policy_error(std::move(errors_));
        }
        check_keys(root, "", {"clients"});
        const yaml::node list = root["clients"];
        if (!list) {
            error(root, "clients", "missing (a list of {address, secret})");
            throw policy_error(std::move(errors_));
        }
        std::vector<client> out;
        if (!list.is_sequence()) {
            error(list, "clients", "expected a list of {address, secret}");
        } else {
            for (size_t i = 0; i < list.size(); ++i) entry(list[i], "clients[" + std::to_string(i) + "]", out);
        }
        if (!errors_.empty()) throw policy_error(std::move(errors_));
        return client_table(std::move(out));
    }

private:
    void entry(const yaml::node& n, const std::string& path, std::vector<client>& out) {
        if (!n.is_map()) {
            error(n, path, "expected a mapping {address, secret}");
            return;
        }
        check_keys(n, path, {"address", "secret", "name"});
        client c;
        c.line = n.line();
        bool ok = true;
        if (const auto a = n["address"]; !a) {
            error(n, path + ".address", "missing");
            ok = false;
        } else if (!a.is_scalar()) {
            error(a, path + ".address", "expected an address or prefix such as 192.0.2.1 or 192.0.2.0/28");
            ok = false;
        } else {
            std::string why;
            if (auto p = parse_prefix(a.scalar(), why)) {
                c.address = *p;
                c.address.line = a.line();
                for (const auto& prev : out)
                    if (prev.address == c.address) {
                        error(a, path + ".address",
                              c.address.to_string() + " is listed twice (first at line " + std::to_string(prev.line) + ")");
                        ok = false;
                    }
            } else {
                error(a, path + ".address", why);
                ok = false;
            }
        }
        // The secret's value never goes into a message, whatever is wrong with it.
        if (const auto s = n["secret"]; !s) {
            error(n, path + ".secret", "missing (the RADIUS shared secret)");
            ok = false;
        } else if (!s.is_scalar()) {
            error(s, path + ".secret", "expected the shared secret as a string");
            ok = false;
        } else if (s.scalar().empty()) {
            error(s, path + ".secret", "is empty");
            ok = false;
        } else {
            c.secret = s.scalar();
        }
        if (const auto nm = n["name"]) {
            if (!nm.is_scalar() || nm.scalar().empty()) {
                error(nm, path + ".name", "expected a non-empty name");
                ok = false;
            } else {
                c.name = nm.scalar();
            }
        }
        if (!ok) return;
        if (c.name.empty()) c.name = c.address.length == (c.address.family == 4 ? 32 : 128) ? address_text(c.address)
                                                                                          : c.address.to_string();
        out.push_back(std::move(c));
    }

    std::string name_;
    std::vector<std::string> errors_;
};

}  // namespace

client_table load_clients_text(const std::string& text, const std::string& name) {
    // libyaml's messages name the problem, never the characters at it (which
    // may be part of a secret).
    std::optional<yaml::document> doc;
    try {
        doc = yaml::document::parse(text);
    } catch (const yaml::syntax_error& e) {
        throw policy_error({name + ":" + std::to_string(e.line()) + ": YAML syntax error: " + e.what()});
    }
    return clients_reader(name).read(doc->root());
}

client_table load_clients_file(const std::string& path) {
    std::ifstream in(path);
    if (!in) throw policy_error({path + ":0: cannot open the RADIUS clients file"});
    std::ostringstream text;
    text << in.rdbuf();
    return load_clients_text(text.str(), path);
}

// ---------------------------------------------------------------- listener

listener_config parse_listen(const std::string& text) {
    listener_config c;
    const size_t colon = text.rfind(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == text.size())
        throw std::invalid_argument("'" + text + "' is not ADDRESS:PORT");
    std::string host = text.substr(0, colon);
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    in6_addr any{};
    if (inet_pton(AF_INET, host.c_str(), &any) != 1 && inet_pton(AF_INET6, host.c_str(), &any) != 1)
        throw std::invalid_argument("'" + text + "': '" + host + "' is not an IPv4 or IPv6 address ([...] for IPv6)");
    if (host.find(':') != std::string::npos && text.front() != '[')
        throw std::invalid_argument("'" + text + "': an IPv6 address goes in brackets, [" + host + "]:PORT");
    const std::string port = text.substr(colon + 1);
    if (port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos || std::stoul(port) > 65535)
        throw std::invalid_argument("'" + text + "': '" + port + "' is not a port (0-65535)");
    c.address = host;
    c.port = static_cast<uint16_t>(std::stoul(port));
    return c;
}

accounting_listener::accounting_listener(const listener_config& config, client_table clients, apply_fn apply,
                                         log_fn log, clock_fn clock)
    : max_per_poll_(std::max<size_t>(1, config.max_datagrams_per_poll)),
      clients_(std::move(clients)),
      apply_(std::move(apply)),
      times_(config.times),
      duplicate_window_(std::max<int64_t>(0, config.duplicate_window_seconds)),
      duplicate_capacity_(config.duplicate_cache_entries),
      log_(std::move(log)),
      clock_(std::move(clock)),
      buffer_(max_packet_size + 1) {
    if (!apply_) throw std::invalid_argument("radius: the listener needs an apply callback");
    if (!clock_)
        clock_ = [] {
            return static_cast<int64_t>(
                std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
                    .count());
        };

    std::string host = config.address;
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    const std::string where = (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" +
                              std::to_string(config.port);
    sockaddr_storage ss{};
    socklen_t ss_len = 0;
    if (auto* in = reinterpret_cast<sockaddr_in*>(&ss); inet_pton(AF_INET, host.c_str(), &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = htons(config.port);
        ss_len = sizeof(sockaddr_in);
    } else if (auto* in6 = reinterpret_cast<sockaddr_in6*>(&ss); inet_pton(AF_INET6, host.c_str(), &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(config.port);
        ss_len = sizeof(sockaddr_in6);
    } else {
        throw std::runtime_error("radius: '" + config.address + "' is not an IPv4 or IPv6 address to listen on");
    }

    fd_ = ::socket(ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd_ < 0) throw std::runtime_error("radius: cannot open a UDP socket for " + where + ": " + std::strerror(errno));
    auto fail = [&](const std::string& what) {
        const int err = errno;
        ::close(fd_);
        fd_ = -1;
        throw std::runtime_error("radius: cannot " + what + " " + where + ": " + std::strerror(err));
    };
    if (config.receive_buffer_bytes > 0 &&
        setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &config.receive_buffer_bytes, sizeof config.receive_buffer_bytes) != 0)
        fail("set SO_RCVBUF on");
    if (::bind(fd_, reinterpret_cast<const sockaddr*>(&ss), ss_len) != 0) fail("bind");
    sockaddr_storage bound{};
    socklen_t bound_len = sizeof bound;
    if (getsockname(fd_, reinterpret_cast<sockaddr*>(&bound), &bound_len) != 0) fail("read the address of");
    port_ = ntohs(bound.ss_family == AF_INET ? reinterpret_cast<const sockaddr_in&>(bound).sin_port
                                             : reinterpret_cast<const sockaddr_in6&>(bound).sin6_port);
    local_ = (ss.ss_family == AF_INET6 ? "[" + host + "]" : host) + ":" + std::to_string(port_);
}

accounting_listener::~accounting_listener() {
    if (fd_ >= 0) ::close(fd_);
}

std::vector<std::pair<std::string, uint64_t>> listener_counters::by_result() const {
    return {{"accepted", accepted},
            {"ignored", ignored},
            {"duplicate", duplicate},
            {"unknown_client", unknown_client},
            {"malformed", malformed},
            {"unsupported_code", unsupported_code},
            {"bad_authenticator", bad_authenticator},
            {"bad_time", bad_time},
            {"bad_address", bad_address},
            {"apply_failed", apply_failed},
            {"send_failed", send_failed},
            {"receive_error", receive_errors}};
}

void accounting_listener::replace_clients(client_table clients) {
    clients_ = std::move(clients);
    answered_.clear();
    answered_order_.clear();
}

size_t accounting_listener::poll_once() {
    forget_expired(clock_());
    size_t n = 0;
    while (n < max_per_poll_) {
        sockaddr_storage from{};
        socklen_t from_len = sizeof from;
        // MSG_TRUNC: the return value is the datagram's real size, so an
        // oversized one is recognised rather than parsed cut.
        const ssize_t got = ::recvfrom(fd_, buffer_.data(), buffer_.size(), MSG_TRUNC,
                                       reinterpret_cast<sockaddr*>(&from), &from_len);
        if (got < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            ++counters_.receive_errors;
            if (log_) log_("radius " + local_ + ": receive failed: " + std::strerror(errno));
            ++n;
            continue;
        }
        ++n;
        ++counters_.received;
        const size_t size = static_cast<size_t>(got);
        handle(std::span<const uint8_t>(buffer_.data(), std::min(size, buffer_.size())), size, from, from_len);
    }
    finish_batch();
    return n;
}

void accounting_listener::finish_batch() {
    if (!applied_this_poll_) return;
    applied_this_poll_ = false;
    std::vector<pending_response> batch;
    batch.swap(pending_);
    bool committed = false;
    std::string why = "the batch could not be stored";
    try {
        committed = commit_();
    } catch (const std::exception& e) {
        why = e.what();
    }
    if (!committed) {
        // Not stored: a retransmission must be applied, not answered from the cache.
        for (const auto& r : batch) answered_.erase(r.key);
        if (batch.empty()) return;
        counters_.apply_failed += batch.size();
        if (log_)
            log_("radius " + local_ + ": " + std::to_string(batch.size()) +
                 " accounting updates not answered, the NASes will retransmit: " + why);
        return;
    }
    for (const auto& r : batch) {
        if (auto it = answered_.find(r.key); it != answered_.end()) it->second.response = r.response;
        respond(r);
    }
}

bool accounting_listener::send(const pending_response& r) {
    const ssize_t sent = ::sendto(fd_, r.response.data(), r.response.size(), 0,
                                  reinterpret_cast<const sockaddr*>(&r.to), r.to_len);
    if (sent == static_cast<ssize_t>(r.response.size())) return true;
    const std::string err = sent < 0 ? std::strerror(errno) : "short send";
    drop(counters_.send_failed, r.source, "the Accounting-Response could not be sent: " + err + r.ident);
    return false;
}

void accounting_listener::respond(const pending_response& r) {
    if (!send(r)) return;
    if (!r.kind) {
        ++counters_.ignored;
        return;
    }
    ++counters_.accepted;
    switch (*r.kind) {
        case binding_kind::start: ++counters_.starts; break;
        case binding_kind::interim: ++counters_.interims; break;
        case binding_kind::stop: ++counters_.stops; break;
        case binding_kind::accounting_on: ++counters_.accounting_ons; break;
        case binding_kind::accounting_off: ++counters_.accounting_offs; break;
    }
}

void accounting_listener::remember(const request_key& key, std::vector<uint8_t> response, int64_t now) {
    if (duplicate_window_ == 0 || duplicate_capacity_ == 0) return;
    // Bounded: the oldest are forgotten first (a key remembered twice has
    // two entries in the order; only the one matching its time erases it).
    while (answered_order_.size() >= duplicate_capacity_) {
        const auto& [at, old] = answered_order_.front();
        if (auto it = answered_.find(old); it != answered_.end() && it->second.at == at) answered_.erase(it);
        answered_order_.pop_front();
    }
    answered_[key] = answered{std::move(response), now};
    answered_order_.emplace_back(now, key);
}

void accounting_listener::forget_expired(int64_t now) {
    while (!answered_order_.empty() && answered_order_.front().first + duplicate_window_ < now) {
        const auto& [at, old] = answered_order_.front();
        if (auto it = answered_.find(old); it != answered_.end() && it->second.at == at) answered_.erase(it);
        answered_order_.pop_front();
    }
}

void accounting_listener::drop(uint64_t& counter, const std::string& source, const std::string& why) {
    ++counter;
    if (log_) log_("radius " + local_ + ": dropped a datagram from " + source + ": " + why);
}

void accounting_listener::handle(std::span<const uint8_t> d, size_t received, const sockaddr_storage& from,
                                 socklen_t from_len) {
    const std::string source = endpoint_text(from);
    const client* c = clients_.find(from);
    if (!c) return drop(counters_.unknown_client, source, "not a configured RADIUS client");
    if (received > max_packet_size)
        return drop(counters_.malformed, source,
                    "datagram of " + std::to_string(received) + " octets exceeds the RFC 2865 maximum of 4096");
    const auto header = parse_header(d);
    if (!header) return drop(counters_.malformed, source, header.error());
    const std::string ident = " (client " + c->name + ", identifier " + std::to_string(header->identifier) + ")";
    if (header->code != code_accounting_request)
        return drop(counters_.unsupported_code, source,
                    "code " + std::to_string(header->code) + " (" + code_name(header->code) +
                        ") is not Accounting-Request (4)" + ident);
    // Authenticate before looking at any attribute.
    if (!verify_request_authenticator(d, c->secret))
        return drop(counters_.bad_authenticator, source,
                    "the Request Authenticator does not match the client's shared secret" + ident);

    // An exact retransmission of a request answered (or about to be, at the
    // end of this poll): not applied again; the NAS lost our response.
    std::string key = request_key_of(from, *header);
    if (const auto it = answered_.find(key); it != answered_.end()) {
        if (it->second.response.empty()) {
            ++counters_.duplicate;   // answered with the first copy at the end of this poll
            return;
        }
        const pending_response again{it->second.response, from, from_len, std::nullopt, source, ident, {}};
        if (send(again)) ++counters_.duplicate;
        return;
    }

    const auto request = parse_accounting_request(d);
    if (!request) return drop(counters_.malformed, source, request.error() + ident);
    if (!request->status_type) return drop(counters_.malformed, source, "no Acct-Status-Type (40)" + ident);

    const int64_t now = clock_();
    const auto kind = binding_kind_of(*request->status_type);
    if (kind) {
        if (const auto bad = check_event_time(*request, now, times_))
            return drop(counters_.bad_time, source,
                        std::string(to_string(*kind)) + " not stored: " + *bad + ident);
        const auto update = to_binding_update(*request, now);
        if (!update) return drop(counters_.malformed, source, update.error() + ident);
        const std::string what = std::string(to_string(*kind)) + " of session '" + update->session_id + "'";
        bool applied = false;
        std::string why = "the binding could not be stored";
        if (commit_) applied_this_poll_ = true;
        try {
            applied = apply_(*update);
        } catch (const update_refused& e) {
            return drop(counters_.bad_address, source, what + " refused, nothing of it applied: " + e.what() + ident);
        } catch (const std::exception& e) {
            why = e.what();
        }
        if (!applied)
            return drop(counters_.apply_failed, source, what + " not answered, the NAS will retransmit: " + why + ident);
    }
    // Other status types (Tunnel-Start, Failed, ...) have nothing to store:
    // answered so the NAS stops retransmitting.
    pending_response r{build_accounting_response(*header, request->proxy_state, c->secret), from, from_len, kind,
                       source, ident, std::move(key)};
    if (commit_ && kind) {
        remember(r.key, {}, now);   // pending: a copy arriving in this poll is not applied twice
        pending_.push_back(std::move(r));
    } else {
        remember(r.key, r.response, now);
        respond(r);
    }
}

}  // namespace sekisho::radius
