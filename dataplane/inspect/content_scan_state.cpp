#include "dataplane/inspect/content_scan_state.h"

#include <cstring>
#include <stdexcept>
#include <utility>

namespace sekisho {

namespace {

// A stream's state is flat when Hyperscan's own copy of a stream that has scanned something is
// byte for byte the original: no pointer into itself, nothing outside the block (Hyperscan 5.4
// copies streams with memcpy). Then copying the bytes into another stream of the same database
// is what hs_reset_and_copy_stream does without its EOD reports. 0 if not, or no database.
size_t flat_stream_bytes(const hs_database_t* db, hs_scratch_t* scratch) {
    size_t size = 0;
    if (db == nullptr || hs_stream_size(db, &size) != HS_SUCCESS || size == 0) return 0;
    hs_stream_t* a = nullptr;
    hs_stream_t* b = nullptr;
    if (hs_open_stream(db, 0, &a) != HS_SUCCESS) return 0;
    static constexpr char probe[] = "Sekisho stream probe: some text, 0123456789, and more text.";
    size_t flat = 0;
    if (hs_scan_stream(a, probe, sizeof probe - 1, 0, scratch, nullptr, nullptr) == HS_SUCCESS &&
        hs_copy_stream(&b, a) == HS_SUCCESS && std::memcmp(a, b, size) == 0)
        flat = size;
    if (b != nullptr) hs_close_stream(b, nullptr, nullptr, nullptr);
    hs_close_stream(a, nullptr, nullptr, nullptr);
    return flat;
}

}  // namespace

content_scan_state content_scan_state::make(const content_rule_set& rules) {
    content_scan_state s;
    s.scratch = rules.alloc_scratch();
    auto open = [](const hs_database_t* db) {
        hs_stream_t* stream = nullptr;
        if (db != nullptr && hs_open_stream(db, 0, &stream) != HS_SUCCESS)
            throw std::runtime_error("Hyperscan: cannot open a stream");
        return hs_stream_ptr(stream);
    };
    for (unsigned d = 0; d < content_db_count; ++d)
        if (static_cast<content_db>(d) != content_db::body) s.streams[d] = open(rules.database(static_cast<content_db>(d)));
    for (auto& b : s.body_slots) b.stream = open(rules.database(content_db::body));
    for (unsigned h = 0; h < rules.header_count(); ++h) s.header_streams.push_back(open(rules.header_database(h)));
    s.body_flat_bytes = flat_stream_bytes(rules.database(content_db::body), s.scratch.get());
    return s;
}

content_scan_states::content_scan_states(std::shared_ptr<const content_rule_set> rules, unsigned workers)
    : rules_(std::move(rules)) {
    states_.reserve(workers);
    for (unsigned w = 0; w < workers; ++w) states_.push_back(content_scan_state::make(*rules_));
}

}  // namespace sekisho
