#include "control/policy/yaml_tree.h"

#include <yaml.h>

#include <cstring>
#include <map>

namespace sekisho::yaml {

// Nodes live in one array. A scalar's `first` indexes `scalars`; a
// sequence's elements and a mapping's key/value pairs are `count` (mapping:
// 2 * count) consecutive entries of `children`, from `first`.
struct node_record {
    node_type type = node_type::undefined;
    int line = 0;
    uint32_t first = 0;
    uint32_t count = 0;
};

struct document_data {
    std::vector<node_record> nodes;
    std::vector<uint32_t> children;
    std::vector<std::string> scalars;
    uint32_t root = 0;
};

namespace {

const std::string empty_string;

bool plain_null(const yaml_event_t& e) {
    if (e.data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return false;
    const std::string_view v(reinterpret_cast<const char*>(e.data.scalar.value), e.data.scalar.length);
    return v.empty() || v == "~" || v == "null" || v == "Null" || v == "NULL";
}

class reader {
public:
    explicit reader(document_data& d) : d_(d) {
        d_.nodes.push_back({});   // index 0: undefined
        if (!yaml_parser_initialize(&parser_)) throw syntax_error(0, "cannot initialise the YAML parser");
    }
    ~reader() { yaml_parser_delete(&parser_); }
    reader(const reader&) = delete;
    reader& operator=(const reader&) = delete;

    void read(std::string_view text) {
        yaml_parser_set_input_string(&parser_, reinterpret_cast<const unsigned char*>(text.data()), text.size());
        yaml_parser_set_encoding(&parser_, YAML_UTF8_ENCODING);
        int documents = 0;
        for (;;) {
            yaml_event_t e;
            if (!yaml_parser_parse(&parser_, &e)) fail();
            struct guard {
                yaml_event_t* e;
                ~guard() { yaml_event_delete(e); }
            } g{&e};
            const int line = static_cast<int>(e.start_mark.line) + 1;
            switch (e.type) {
                case YAML_STREAM_END_EVENT:
                    return;
                case YAML_DOCUMENT_START_EVENT:
                    if (++documents > 1) throw syntax_error(line, "a second YAML document; a file holds one");
                    break;
                case YAML_SCALAR_EVENT: {
                    const uint32_t i = add_node(plain_null(e) ? node_type::null : node_type::scalar, line);
                    if (d_.nodes[i].type == node_type::scalar) {
                        d_.nodes[i].first = static_cast<uint32_t>(d_.scalars.size());
                        d_.scalars.emplace_back(reinterpret_cast<const char*>(e.data.scalar.value), e.data.scalar.length);
                    }
                    anchor(e.data.scalar.anchor, i);
                    attach(i);
                    break;
                }
                case YAML_SEQUENCE_START_EVENT:
                case YAML_MAPPING_START_EVENT: {
                    const bool map = e.type == YAML_MAPPING_START_EVENT;
                    const uint32_t i = add_node(map ? node_type::map : node_type::sequence, line);
                    anchor(map ? e.data.mapping_start.anchor : e.data.sequence_start.anchor, i);
                    open_.push_back({i, {}});
                    break;
                }
                case YAML_SEQUENCE_END_EVENT:
                case YAML_MAPPING_END_EVENT: {
                    frame f = std::move(open_.back());
                    open_.pop_back();
                    node_record& r = d_.nodes[f.index];
                    r.first = static_cast<uint32_t>(d_.children.size());
                    r.count = static_cast<uint32_t>(r.type == node_type::map ? f.kids.size() / 2 : f.kids.size());
                    d_.children.insert(d_.children.end(), f.kids.begin(), f.kids.end());
                    attach(f.index);
                    break;
                }
                case YAML_ALIAS_EVENT: {
                    const auto it = anchors_.find(reinterpret_cast<const char*>(e.data.alias.anchor));
                    if (it == anchors_.end())
                        throw syntax_error(line, std::string("alias *") + reinterpret_cast<const char*>(e.data.alias.anchor) +
                                                     " names no anchor before it");
                    attach(it->second);
                    break;
                }
                default:
                    break;
            }
        }
    }

private:
    struct frame {
        uint32_t index;
        std::vector<uint32_t> kids;
    };

    uint32_t add_node(node_type t, int line) {
        d_.nodes.push_back({t, line, 0, 0});
        return static_cast<uint32_t>(d_.nodes.size() - 1);
    }
    void attach(uint32_t i) {
        if (open_.empty()) d_.root = i;
        else open_.back().kids.push_back(i);
    }
    void anchor(const unsigned char* name, uint32_t i) {
        if (name) anchors_[reinterpret_cast<const char*>(name)] = i;
    }
    [[noreturn]] void fail() {
        std::string msg = parser_.problem ? parser_.problem : "unreadable YAML";
        if (parser_.context) msg += std::string(" (") + parser_.context + ")";
        throw syntax_error(static_cast<int>(parser_.problem_mark.line) + 1, msg);
    }

    document_data& d_;
    yaml_parser_t parser_{};
    std::vector<frame> open_;
    std::map<std::string, uint32_t> anchors_;
};

}  // namespace

node_type node::type() const { return doc_ ? doc_->nodes[index_].type : node_type::undefined; }

const std::string& node::scalar() const {
    return is_scalar() ? doc_->scalars[doc_->nodes[index_].first] : empty_string;
}

int node::line() const { return doc_ ? doc_->nodes[index_].line : 0; }

size_t node::size() const { return is_map() || is_sequence() ? doc_->nodes[index_].count : 0; }

node node::operator[](size_t i) const {
    if (!is_sequence() || i >= size()) return {};
    return {doc_, doc_->children[doc_->nodes[index_].first + i]};
}

node node::key_at(size_t i) const {
    if (!is_map() || i >= size()) return {};
    return {doc_, doc_->children[doc_->nodes[index_].first + 2 * i]};
}

node node::value_at(size_t i) const {
    if (!is_map() || i >= size()) return {};
    return {doc_, doc_->children[doc_->nodes[index_].first + 2 * i + 1]};
}

node node::operator[](std::string_view key) const {
    const size_t n = size();
    if (!is_map()) return {};
    for (size_t i = 0; i < n; ++i) {
        const node k = key_at(i);
        if (k.is_scalar() && k.scalar() == key) return value_at(i);
    }
    return {};
}

document::document() : data_(std::make_unique<document_data>()) {}
document::~document() = default;
document::document(document&&) noexcept = default;
document& document::operator=(document&&) noexcept = default;

document document::parse(std::string_view text) {
    document d;
    reader(*d.data_).read(text);
    return d;
}

node document::root() const& {
    if (data_->root == 0) {   // an empty stream: a null document
        return {};
    }
    return {data_.get(), data_->root};
}

}  // namespace sekisho::yaml
