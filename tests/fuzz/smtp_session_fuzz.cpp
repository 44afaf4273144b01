// Fuzz target: the SMTP session parser (dataplane/smtp/smtp_session.cpp), both
// directions, with message content going on into the MIME decoder as in the
// data plane (mail_tracker -> content_inspector).
//
// Input: byte 0 picks implicit TLS (bit 0); then records of one header byte
// (bit 0: 0 = client->server, 1 = server->client; bits 1-7: length 0..127;
// except 0xfe, which marks a gap instead: client records are 0..126 bytes) followed by that many bytes, fed as
// one segment. The last record may be short. Invariants: the return offset,
// the observer contract (no empty content, content only after a message start
// and before its end, the user name bound), counters that only grow and agree.
#include <string_view>

#include "fuzz_target.h"
#include "dataplane/mime/mail_decoder.h"
#include "dataplane/smtp/smtp_session.h"

using namespace sekisho;

namespace {

struct null_sink : mail_decoder_sink {
    size_t bytes = 0;
    void on_header(std::string_view, const uint8_t*, size_t len, bool) override { bytes += len; }
    void on_body(const uint8_t*, size_t len) override { bytes += len; }
};

struct observer : smtp_observer {
    smtp_session* s = nullptr;
    mail_decoder decoder;
    null_sink sink;
    charset_converters* cv = nullptr;
    bool message_open = false;
    uint32_t commands = 0, replies = 0;

    void on_command(const smtp_command_info& c) override {
        ++commands;
        fuzz_check(static_cast<unsigned>(c.cmd) <= static_cast<unsigned>(smtp_command::none));
        fuzz_check(c.cmd != smtp_command::none);
        fuzz_check(s->message_recipients() <= s->recipients());
    }
    void on_reply(const smtp_reply_info& r) override {
        ++replies;
        fuzz_check(r.code >= 200 && r.code <= 599);
        if (r.greeting) fuzz_check(r.to == smtp_command::none);
        if (r.end_of_data) fuzz_check(r.to == smtp_command::data || r.to == smtp_command::bdat);
        fuzz_check(s->rejected_recipients() <= s->recipients());
    }
    void on_message_start() override {
        // A message may start again without an end: RSET or MAIL FROM abandon one in BDAT chunks.
        message_open = true;
        decoder.reset(4096);
    }
    void on_content(const uint8_t* data, size_t len) override {
        fuzz_check(message_open);
        fuzz_check(len > 0);
        decoder.feed(data, len, sink, *cv);
    }
    void on_message_end() override {
        fuzz_check(message_open);
        message_open = false;
        decoder.finish(sink, *cv);
    }
    void on_auth_name(std::string_view name, bool) override { fuzz_check(name.size() <= smtp_max_auth_name); }
};

}  // namespace

SEKISHO_FUZZ_TARGET(smtp_session)(const uint8_t* data, size_t size) {
    if (size < 1) return 0;
    static charset_converters cv;
    smtp_session s(data[0] & 1);
    observer obs;
    obs.s = &s;
    obs.cv = &cv;
    uint32_t messages = 0, recipients = 0, rejected = 0;
    for (size_t at = 1; at < size;) {
        const uint8_t h = data[at++];
        if (h == 0xfe) {
            s.mark_gap();
            fuzz_check(!s.inspecting());
            continue;
        }
        const size_t n = std::min<size_t>(h >> 1, size - at);
        const bool was_inspecting = s.inspecting();
        const size_t used = h & 1 ? s.feed_server(data + at, n, obs) : s.feed_client(data + at, n, obs);
        fuzz_check(used <= n);
        if (!was_inspecting) fuzz_check(used == 0);
        if (s.inspecting()) fuzz_check(used == n);
        at += n;

        fuzz_check(s.auth_name().size() <= smtp_max_auth_name);
        fuzz_check(s.pending() <= 255 * smtp_max_pending);
        fuzz_check(s.message_recipients() <= s.recipients());
        fuzz_check(s.rejected_recipients() <= s.recipients());
        fuzz_check(s.messages() >= messages && s.recipients() >= recipients);
        fuzz_check(s.rejected_recipients() >= rejected);
        messages = s.messages();
        recipients = s.recipients();
        rejected = s.rejected_recipients();
        if (s.uninspectable()) fuzz_check(s.desync_reason() != smtp_desync::none);
        fuzz_check(static_cast<size_t>(s.desync_reason()) < smtp_desync_count);
    }
    if (obs.message_open) obs.decoder.finish(obs.sink, cv);
    return 0;
}
