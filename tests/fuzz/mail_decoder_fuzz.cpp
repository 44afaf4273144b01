// Fuzz target: the streaming MIME / base64 / quoted-printable / RFC 2047 /
// charset decoder (dataplane/mime/mail_decoder.cpp).
//
// Input: byte 0 chooses the body limit, byte 1 the segmentation, the rest is
// the message. The message is decoded three times, whole and in pieces with
// the SIMD kernels the CPU has, and whole by the scalar code alone; the outputs
// must be identical (mail_decoder.h promises the same concatenated output
// whatever the segmentation, decode_kernels.h that a kernel never changes what
// is decoded); field names and header chunks stay within their bounds, body
// text within the limit.
#include <string>
#include <string_view>

#include "dataplane/mime/decode_kernels.h"
#include "fuzz_target.h"
#include "dataplane/mime/mail_decoder.h"

using namespace sekisho;

namespace {

// Everything the decoder reported, in an order-preserving form that does not
// depend on where output pieces end.
struct transcript : mail_decoder_sink {
    std::string log;     // "\x01H" name ":" value, "\x01B" body text, "\x01P" part boundary
    std::string value;   // the header field being reported
    bool in_body = false;
    bool field_open = false;
    size_t output = 0;
    uint32_t part_boundaries = 0;   // on_part_boundary() calls

    void on_header(std::string_view name, const uint8_t* utf8, size_t len, bool field_end) override {
        fuzz_check(name.size() <= mail_max_header_name);
        fuzz_check(len <= mail_header_chunk);
        value.append(reinterpret_cast<const char*>(utf8), len);
        output += len;
        field_open = !field_end;
        if (!field_end) return;
        log += "\x01H";
        log += name;
        log += ':';
        log += value;
        value.clear();
        in_body = false;
    }
    void on_body(const uint8_t* utf8, size_t len) override {
        fuzz_check(len > 0);
        fuzz_check(!field_open);
        if (!in_body) log += "\x01B";
        in_body = true;
        log.append(reinterpret_cast<const char*>(utf8), len);
        output += len;
    }
    void on_part_boundary() override {
        fuzz_check(!field_open);
        ++part_boundaries;
        log += "\x01P";
        in_body = false;
    }
};

charset_converters& converters() {   // one per worker in sekishod; one per process here
    static charset_converters cv;
    return cv;
}

struct decoded {
    std::string log;
    size_t body_bytes;
    bool truncated, too_deep;
    uint32_t parts;
};

decoded decode(const uint8_t* msg, size_t len, uint32_t limit, uint8_t split) {
    mail_decoder d;
    d.reset(limit);
    transcript t;
    if (split == 0) {
        d.feed(msg, len, t, converters());
    } else {
        // Pieces of 1..(split % 61 + 1) bytes from a small generator seeded by `split`.
        uint32_t state = split;
        const uint32_t most = split % 61 + 1;
        for (size_t at = 0; at < len;) {
            state = state * 1103515245u + 12345u;
            const size_t n = std::min<size_t>(len - at, 1 + (state >> 16) % most);
            d.feed(msg + at, n, t, converters());
            at += n;
        }
    }
    d.finish(t, converters());
    fuzz_check(d.finished());
    fuzz_check(!t.field_open);
    fuzz_check(d.body_bytes() <= limit);
    fuzz_check(t.output <= 3 * len + 16);
    // Fed after finish(): ignored.
    d.feed(msg, len, t, converters());
    return {t.log, d.body_bytes(), d.truncated(), d.too_deep(), t.part_boundaries};
}

}  // namespace

SEKISHO_FUZZ_TARGET(mail_decoder)(const uint8_t* data, size_t size) {
    if (size < 2) return 0;
    const uint32_t limit = data[0] & 0x80 ? 1 + (data[0] & 0x7f) * 16u : mail_default_body_limit;
    const uint8_t split = data[1] ? data[1] : 1;
    const uint8_t* msg = data + 2;
    const size_t len = size - 2;

    (void)mail_charset_from_name(std::string_view(reinterpret_cast<const char*>(msg), std::min<size_t>(len, 40)));

    const decoded whole = decode(msg, len, limit, 0);
    const decoded pieces = decode(msg, len, limit, split);
    const simd_level level = simd_active();
    set_simd_limit(simd_level::scalar);
    const decoded scalar = decode(msg, len, limit, 0);
    set_simd_limit(level);
    for (const decoded* other : {&pieces, &scalar}) {
        fuzz_check(whole.log == other->log);
        fuzz_check(whole.body_bytes == other->body_bytes);
        fuzz_check(whole.truncated == other->truncated);
        fuzz_check(whole.too_deep == other->too_deep);
        fuzz_check(whole.parts == other->parts);
    }
    return 0;
}
