// A YAML document read whole with libyaml into a compact tree: what the
// policy, content-rule and RADIUS-clients readers walk.
//
// Why not yaml-cpp's node graph: a policy may list a million subscriber
// prefixes, and yaml-cpp takes ~4 s of CPU and ~600 MB to read one (a heap
// node per scalar, a regex scanner); libyaml's event parser into this flat
// tree takes a fraction of that. The tree is immutable once read.
//
// Semantics: one document per text; mappings keep every pair in order,
// duplicate keys included (the readers refuse them, naming both lines);
// anchors and aliases resolve to the anchored node; a plain (unquoted)
// scalar "", "~", "null", "Null" or "NULL" is null, not a scalar; lines are
// 1-based. A node is a cheap handle into its document, which must outlive it;
// looking up a missing key or index gives an undefined node (false in a
// boolean context), never an exception.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sekisho::yaml {

// "LINE: message" as libyaml reports it; line is 1-based.
class syntax_error : public std::runtime_error {
public:
    syntax_error(int line, const std::string& message)
        : std::runtime_error(message), line_(line) {}
    int line() const { return line_; }

private:
    int line_;
};

enum class node_type : uint8_t { undefined, null, scalar, sequence, map };

struct document_data;

class node {
public:
    node() = default;

    node_type type() const;
    bool defined() const { return type() != node_type::undefined; }
    bool is_null() const { return type() == node_type::null; }
    bool is_scalar() const { return type() == node_type::scalar; }
    bool is_sequence() const { return type() == node_type::sequence; }
    bool is_map() const { return type() == node_type::map; }
    explicit operator bool() const { return defined(); }

    // The scalar's text; "" for any other node.
    const std::string& scalar() const;
    // 1-based line where the node starts; 0 for an undefined node.
    int line() const;
    // Sequence elements or mapping pairs; 0 for other nodes.
    size_t size() const;
    // The i-th element of a sequence (undefined past the end or for other nodes).
    node operator[](size_t i) const;
    // The value of the first pair whose key is the scalar `key` (undefined when none).
    node operator[](std::string_view key) const;
    // The i-th pair of a mapping.
    node key_at(size_t i) const;
    node value_at(size_t i) const;

    // Iteration: elements of a sequence (*it); pairs of a mapping
    // (it->first, it->second).
    class iterator;
    iterator begin() const;
    iterator end() const;

private:
    friend class document;
    node(const document_data* d, uint32_t index) : doc_(d), index_(index) {}
    const document_data* doc_ = nullptr;
    uint32_t index_ = 0;
};

class node::iterator {
public:
    struct pair {
        node first, second;
    };
    iterator(node parent, size_t i) : parent_(parent), i_(i) {}
    bool operator!=(const iterator& o) const { return i_ != o.i_; }
    iterator& operator++() {
        ++i_;
        return *this;
    }
    node operator*() const { return parent_[i_]; }
    const pair* operator->() const {
        current_ = {parent_.key_at(i_), parent_.value_at(i_)};
        return &current_;
    }

private:
    node parent_;
    size_t i_;
    mutable pair current_;
};

inline node::iterator node::begin() const { return {*this, 0}; }
inline node::iterator node::end() const { return {*this, size()}; }

class document {
public:
    // Reads the first and only document of `text`. An empty text is a null
    // root. Throws syntax_error (libyaml's problem, and a second document).
    static document parse(std::string_view text);
    ~document();
    document(document&&) noexcept;
    document& operator=(document&&) noexcept;

    // The nodes point into the document: never take them from a temporary.
    node root() const&;
    node root() const&& = delete;

private:
    document();
    std::unique_ptr<document_data> data_;
};

}  // namespace sekisho::yaml
