// The YAML tree the policy readers walk (control/policy/yaml_tree.h): structure,
// lines, null scalars, anchors, duplicate keys kept for the reader to refuse,
// and errors with their line.
#include <gtest/gtest.h>

#include "control/policy/yaml_tree.h"

namespace sekisho::yaml {
namespace {

TEST(yaml_tree, maps_sequences_scalars_and_their_lines) {
    const document d = document::parse("version: 1\nports:\n  smtp: [25, 2525]\nrelays:\n  - 203.0.113.10/32\n");
    const node root = d.root();
    ASSERT_TRUE(root.is_map());
    EXPECT_EQ(root.size(), 3u);
    EXPECT_EQ(root["version"].scalar(), "1");
    EXPECT_EQ(root["version"].line(), 1);
    const node smtp = root["ports"]["smtp"];
    ASSERT_TRUE(smtp.is_sequence());
    EXPECT_EQ(smtp.size(), 2u);
    EXPECT_EQ(smtp[1].scalar(), "2525");
    EXPECT_EQ(smtp.line(), 3);
    EXPECT_EQ(root["relays"][0].scalar(), "203.0.113.10/32");
    EXPECT_EQ(root["relays"][0].line(), 5);
    // Absent keys and indexes are undefined, never an exception; so is indexing a scalar.
    EXPECT_FALSE(root["nope"]);
    EXPECT_FALSE(root["relays"][1]);
    EXPECT_FALSE(root["version"]["x"]);
    EXPECT_EQ(root["nope"].line(), 0);
    EXPECT_EQ(root["nope"].scalar(), "");
    size_t keys = 0;
    for (auto it = root.begin(); it != root.end(); ++it) keys += it->first.is_scalar() ? 1 : 0;
    EXPECT_EQ(keys, 3u);
}

TEST(yaml_tree, plain_null_forms_are_null_and_quoted_ones_are_text) {
    const document d = document::parse("a:\nb: ~\nc: null\nd: NULL\ne: \"null\"\nf: ''\n");
    const node r = d.root();
    for (const char* k : {"a", "b", "c", "d"}) EXPECT_TRUE(r[k].is_null()) << k;
    EXPECT_TRUE(r["e"].is_scalar());
    EXPECT_EQ(r["e"].scalar(), "null");
    EXPECT_TRUE(r["f"].is_scalar());
    EXPECT_EQ(r["f"].scalar(), "");
    const document empty = document::parse("");
    EXPECT_FALSE(empty.root().defined());
}

TEST(yaml_tree, duplicate_keys_are_kept_in_order_for_the_reader) {
    const document d = document::parse("op25b: {mode: enforce}\nop25b: {mode: monitor}\n");
    const node r = d.root();
    ASSERT_EQ(r.size(), 2u);
    EXPECT_EQ(r["op25b"]["mode"].scalar(), "enforce");   // lookup answers the first
    EXPECT_EQ(r.key_at(1).line(), 2);
    EXPECT_EQ(r.value_at(1)["mode"].scalar(), "monitor");
}

TEST(yaml_tree, anchors_and_aliases) {
    const document d = document::parse("base: &b [198.51.100.0/24]\ncopy: *b\n");
    const node r = d.root();
    ASSERT_TRUE(r["copy"].is_sequence());
    EXPECT_EQ(r["copy"][0].scalar(), "198.51.100.0/24");
    try {
        document::parse("copy: *nothing\n");
        FAIL() << "an alias without its anchor was read";
    } catch (const syntax_error& e) {
        EXPECT_EQ(e.line(), 1);
    }
}

TEST(yaml_tree, syntax_errors_carry_their_line) {
    try {
        document::parse("version: 1\nports:\n  smtp: [25\n  submission: [587]\n");
        FAIL();
    } catch (const syntax_error& e) {
        EXPECT_EQ(e.line(), 4);
        EXPECT_STREQ(e.what(), "did not find expected ',' or ']' (while parsing a flow sequence)");
    }
    try {
        document::parse("a: 1\n---\nb: 2\n");
        FAIL();
    } catch (const syntax_error& e) {
        EXPECT_EQ(e.line(), 2);
    }
}

TEST(yaml_tree, a_million_scalars) {
    std::string text = "dynamic:\n";
    for (int i = 0; i < 1000000; ++i) text += "  - 100.64.0.0/32\n";
    const document d = document::parse(text);
    EXPECT_EQ(d.root()["dynamic"].size(), 1000000u);
    EXPECT_EQ(d.root()["dynamic"][999999].line(), 1000001);
}

}  // namespace
}  // namespace sekisho::yaml
