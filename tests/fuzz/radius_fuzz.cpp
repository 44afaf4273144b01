// Fuzz target: the RADIUS accounting parser (control/identity/radius_accounting.cpp) as
// the listener runs it on a datagram from the network: header, attributes,
// Request Authenticator check, the time bounds, the binding update, the
// escaped text and the Accounting-Response with the request's Proxy-State.
//
// Beyond "no crash": the authenticator the code computes verifies once put in
// the packet; escaped text is valid UTF-8 without control characters (it goes
// to logs and JSON); the response is a well-formed Accounting-Response.
#include <cstring>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_target.h"
#include "control/identity/radius_accounting.h"

using namespace sekisho;
using namespace sekisho::radius;

namespace {

// Independent of the code under test: RFC 3629 well-formed UTF-8, no C0 controls, no DEL.
bool clean_utf8(std::string_view s) {
    for (size_t i = 0; i < s.size();) {
        const auto c = static_cast<uint8_t>(s[i]);
        if (c < 0x20 || c == 0x7f) return false;
        if (c < 0x80) {
            ++i;
            continue;
        }
        size_t n;
        uint32_t cp;
        if (c >= 0xc2 && c <= 0xdf) n = 1, cp = c & 0x1f;
        else if (c >= 0xe0 && c <= 0xef) n = 2, cp = c & 0x0f;
        else if (c >= 0xf0 && c <= 0xf4) n = 3, cp = c & 0x07;
        else return false;
        if (i + n >= s.size()) return false;
        for (size_t k = 1; k <= n; ++k) {
            const auto t = static_cast<uint8_t>(s[i + k]);
            if ((t & 0xc0) != 0x80) return false;
            cp = cp << 6 | (t & 0x3f);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += n + 1;
    }
    return true;
}

}  // namespace

SEKISHO_FUZZ_TARGET(radius)(const uint8_t* data, size_t size) {
    static constexpr std::string_view secret = "xyzzy5461-fuzz";
    const std::span<const uint8_t> d(data, size);

    const auto header = parse_header(d);
    if (!header) {
        fuzz_check(!header.error().empty());
        fuzz_check(!parse_accounting_request(d));
        return 0;
    }
    fuzz_check(header->length >= header_size && header->length <= max_packet_size && header->length <= size);

    // The authenticator over the first Length octets; put in place, it verifies.
    const bool verified = verify_request_authenticator(d, secret);
    std::vector<uint8_t> signed_copy(data, data + size);
    const authenticator a = request_authenticator(signed_copy, secret);
    std::memcpy(signed_copy.data() + 4, a.data(), a.size());
    fuzz_check(verify_request_authenticator(signed_copy, secret));
    fuzz_check(verified == (std::memcmp(data + 4, a.data(), a.size()) == 0));

    const auto request = parse_accounting_request(d);
    if (!request) {
        fuzz_check(!request.error().empty());
        return 0;
    }
    fuzz_check(request->header.code == code_accounting_request);
    fuzz_check(request->proxy_state.size() + header_size <= header->length);
    if (request->framed_ip) fuzz_check(request->framed_ip->family == 4 && request->framed_ip->length == 32);
    for (const auto* list : {&request->framed_ipv6_prefixes, &request->delegated_ipv6_prefixes})
        for (const ip_prefix& p : *list) fuzz_check(p.family == 6 && p.length <= 128);

    for (const auto& text : {request->user_name, request->session_id, request->nas_identifier})
        if (text) {
            const std::string e = escape_text(*text);
            fuzz_check(clean_utf8(e));
            fuzz_check(e.size() <= 4 * text->size());
        }

    // Time sanity never throws and names what it refuses; whatever it lets
    // through stays within its bounds.
    const int64_t received = 1'700'000'000;
    const time_bounds bounds;
    if (const auto bad = check_event_time(*request, received, bounds)) {
        fuzz_check(!bad->empty());
    } else {
        if (request->event_timestamp)
            fuzz_check(*request->event_timestamp <= received + bounds.max_future_seconds &&
                       *request->event_timestamp >= received - bounds.max_age_seconds);
        if (request->delay_time) fuzz_check(*request->delay_time <= bounds.max_age_seconds);
    }

    const auto update = to_binding_update(*request, received);
    if (update) {
        fuzz_check(clean_utf8(update->account) && clean_utf8(update->session_id) && clean_utf8(update->nas_identifier));
    } else {
        fuzz_check(!update.error().empty());
    }

    // What the listener sends back (it never throws for a request that parsed).
    const std::vector<uint8_t> response = build_accounting_response(request->header, request->proxy_state, secret);
    const auto rh = parse_header(response);
    fuzz_check(rh && rh->code == code_accounting_response && rh->identifier == request->header.identifier);
    fuzz_check(rh->length == response.size());
    return 0;
}
