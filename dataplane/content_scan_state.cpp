#include "content_scan_state.h"

#include <stdexcept>

namespace sekisho {

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
    return s;
}

}  // namespace sekisho
