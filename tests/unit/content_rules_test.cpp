// Content rules: the YAML list reader, the Hyperscan compile (errors with id,
// line and Hyperscan's message), scanning the compiled stream databases, and the
// workers' working sets for them (content_scan_states).
#include "dataplane/inspect/content_rules.h"
#include "control/policy/content_rules_yaml.h"
#include "dataplane/inspect/content_scan_state.h"

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

namespace sekisho {
namespace {

using strings = std::vector<std::string>;

content_rule make_rule(std::string id, std::string pattern, content_target where = content_target::body,
                       int line = 0) {
    content_rule r;
    r.id = std::move(id);
    r.pattern = std::move(pattern);
    r.where = where;
    r.score = 1;
    r.line = line;
    return r;
}

content_rule header_rule(std::string id, std::string pattern, std::string field) {
    content_rule r = make_rule(std::move(id), std::move(pattern), content_target::header);
    r.header = std::move(field);
    return r;
}

std::shared_ptr<const content_rule_set> compile_ok(std::vector<content_rule> rules) {
    strings errors;
    auto set = compile_content_rules(std::move(rules), "p.yaml", errors);
    EXPECT_TRUE(errors.empty()) << errors.front();
    EXPECT_NE(set, nullptr);
    return set;
}

strings compile_errors(std::vector<content_rule> rules) {
    strings errors;
    auto set = compile_content_rules(std::move(rules), "p.yaml", errors);
    EXPECT_EQ(set, nullptr);
    EXPECT_FALSE(errors.empty());
    return errors;
}

// Streams `chunks` through `db` with one stream; returns how often each rule id fired.
std::map<unsigned, int> scan(const hs_database_t* db, hs_scratch_t* scratch, const strings& chunks) {
    std::map<unsigned, int> fired;
    hs_stream_t* stream = nullptr;
    EXPECT_EQ(hs_open_stream(db, 0, &stream), HS_SUCCESS);
    auto on_match = [](unsigned id, unsigned long long, unsigned long long, unsigned, void* ctx) -> int {
        ++(*static_cast<std::map<unsigned, int>*>(ctx))[id];
        return 0;
    };
    for (const auto& c : chunks)
        EXPECT_EQ(hs_scan_stream(stream, c.data(), static_cast<unsigned>(c.size()), 0, scratch, on_match, &fired),
                  HS_SUCCESS);
    EXPECT_EQ(hs_close_stream(stream, scratch, on_match, &fired), HS_SUCCESS);
    return fired;
}

strings bytes_of(const std::string& text) {
    strings out;
    for (char c : text) out.emplace_back(1, c);
    return out;
}

// ---- compile errors --------------------------------------------------------

TEST(content_rules, backreference_reported_with_id_line_and_hyperscan_message) {
    const auto errors = compile_errors({make_rule("ok", "free money", content_target::body, 10),
                                        make_rule("backref", "(a+)b\\1", content_target::body, 14)});
    ASSERT_EQ(errors.size(), 1u);
    EXPECT_EQ(errors[0], "p.yaml:14: rules[1] (id backref): Hyperscan: Back-references are unsupported.");
}

TEST(content_rules, lookbehind_and_lookahead_reported_together) {
    const auto errors = compile_errors({make_rule("behind", "(?<=cheap )meds", content_target::body, 3),
                                        make_rule("fine", "meds", content_target::body, 7),
                                        make_rule("ahead", "v(?!iagra)", content_target::headers, 11)});
    ASSERT_EQ(errors.size(), 2u);
    EXPECT_EQ(errors[0], "p.yaml:3: rules[0] (id behind): Hyperscan: Zero-width assertions are not supported.");
    EXPECT_EQ(errors[1], "p.yaml:11: rules[2] (id ahead): Hyperscan: Zero-width assertions are not supported.");
}

TEST(content_rules, compile_stage_error_maps_back_to_the_rule_index) {
    // `x*` passes hs_expression_info but not hs_compile_multi (it matches the
    // empty buffer): the expression index Hyperscan reports is the one inside
    // the body database, not the policy's, and must be mapped back.
    const auto errors = compile_errors({make_rule("env", "MAIL FROM:<[^>]*@example\\.jp>", content_target::envelope, 2),
                                        make_rule("b1", "unsubscribe", content_target::body, 5),
                                        make_rule("empty", "x*", content_target::body, 8),
                                        make_rule("also-empty", "(y|)", content_target::body, 9)});
    ASSERT_EQ(errors.size(), 2u);
    EXPECT_EQ(errors[0], "p.yaml:8: rules[2] (id empty): Hyperscan: Pattern matches empty buffer; use "
                         "HS_FLAG_ALLOWEMPTY to enable support.");
    EXPECT_EQ(errors[1].rfind("p.yaml:9: rules[3] (id also-empty): Hyperscan: Pattern matches empty buffer", 0), 0u)
        << errors[1];
}

TEST(content_rules, utf8_flag_rejects_invalid_utf8_pattern) {
    content_rule r = make_rule("bad-utf8", "\xe6\x9c", content_target::body, 4);
    r.utf8 = true;
    const auto errors = compile_errors({r});
    ASSERT_EQ(errors.size(), 1u);
    EXPECT_EQ(errors[0].rfind("p.yaml:4: rules[0] (id bad-utf8): Hyperscan: ", 0), 0u) << errors[0];
    r.utf8 = false;   // as bytes it is fine
    EXPECT_NE(compile_ok({r}), nullptr);
}

TEST(content_rules, structural_validation) {
    content_rule nul = make_rule("nul", std::string("a\0b", 3), content_target::body, 1);
    content_rule bad_header = header_rule("hdr", "x", "sub ject");
    bad_header.line = 2;
    content_rule score = make_rule("score", "x", content_target::body, 3);
    score.score = 5000;
    const auto errors = compile_errors({nul, bad_header, score, make_rule("bad id", "x", content_target::body, 4),
                                        make_rule("dup", "x", content_target::body, 5),
                                        make_rule("dup", "y", content_target::body, 6)});
    EXPECT_EQ(errors, (strings{
                          "p.yaml:1: rules[0] (id nul): pattern: contains a NUL byte (write \\x00)",
                          "p.yaml:2: rules[1] (id hdr): where: 'header:sub ject' is not a header field name",
                          "p.yaml:3: rules[2] (id score): score 5000 is out of range (-1000 to 1000)",
                          "p.yaml:4: rules[3] (id bad id): id 'bad id': 1 to 63 letters, digits, '_', '-' or '.'",
                          "p.yaml:6: rules[5] (id dup): id 'dup' is already the id of the rule at line 5",
                      }));
}

TEST(content_rules, empty_set_has_no_databases) {
    auto set = compile_ok({});
    ASSERT_NE(set, nullptr);
    EXPECT_TRUE(set->empty());
    EXPECT_EQ(set->database(content_db::body), nullptr);
    EXPECT_EQ(set->stream_size(content_db::body), 0u);
    EXPECT_EQ(set->flow_stream_bytes(), 0u);
    EXPECT_EQ(set->scratch_size(), 0u);
}

// ---- streaming matches -----------------------------------------------------

TEST(content_rules, pattern_split_across_many_small_writes_fires_once) {
    auto set = compile_ok({make_rule("cialis", "c[i1]al[i1]s"), make_rule("never", "zzzz-never")});
    auto scratch = set->alloc_scratch();
    const std::string body = "Hello,\r\nbuy cialis now, cheap c1al1s, more cialis!\r\n";
    // One byte per write: the pattern spans 6 writes, and appears 3 times.
    auto fired = scan(set->database(content_db::body), scratch.get(), bytes_of(body));
    EXPECT_EQ(fired, (std::map<unsigned, int>{{0, 1}})) << "SINGLEMATCH: once per stream";
    // Every split point of a two-write stream.
    for (size_t cut = 0; cut <= body.size(); ++cut) {
        auto f = scan(set->database(content_db::body), scratch.get(), {body.substr(0, cut), body.substr(cut)});
        EXPECT_EQ(f, (std::map<unsigned, int>{{0, 1}})) << "cut at " << cut;
    }
    // A new stream fires again.
    EXPECT_EQ(scan(set->database(content_db::body), scratch.get(), {"cialis"}), (std::map<unsigned, int>{{0, 1}}));
}

TEST(content_rules, caseless) {
    content_rule ci = make_rule("ci", "free money");
    ci.caseless = true;
    auto set = compile_ok({ci, make_rule("cs", "Free Money")});
    auto scratch = set->alloc_scratch();
    EXPECT_EQ(scan(set->database(content_db::body), scratch.get(), bytes_of("GET FREE MONEY")),
              (std::map<unsigned, int>{{0, 1}}));
    EXPECT_EQ(scan(set->database(content_db::body), scratch.get(), {"get Free ", "Money"}),
              (std::map<unsigned, int>{{0, 1}, {1, 1}}));
}

TEST(content_rules, utf8_japanese_literal_matches_utf8_text_at_every_split) {
    // 未承諾広告 ("unsolicited advertisement", the label Japanese law requires on ads).
    content_rule lit = make_rule("jp-mishoudaku", "未承諾広告", content_target::header);
    lit.header = "subject";
    lit.utf8 = true;
    // In UTF-8 mode '.' is one code point (3 bytes here); as bytes it is one byte.
    content_rule dot_utf8 = make_rule("jp-dot-utf8", "未.諾広告", content_target::header);
    dot_utf8.header = "subject";
    dot_utf8.utf8 = true;
    content_rule dot_bytes = make_rule("jp-dot-bytes", "未.諾広告", content_target::header);
    dot_bytes.header = "subject";
    auto set = compile_ok({lit, dot_utf8, dot_bytes});
    ASSERT_EQ(set->header_count(), 1u);
    EXPECT_EQ(set->header_index("Subject"), 0);
    EXPECT_EQ(set->header_index("SUBJECT"), 0);
    EXPECT_EQ(set->header_index("from"), -1);
    EXPECT_TRUE(set->header_has_utf8(0));
    auto scratch = set->alloc_scratch();
    const std::string subject = "【未承諾広告】今だけ！激安";
    EXPECT_EQ(scan(set->header_database(0), scratch.get(), bytes_of(subject)),
              (std::map<unsigned, int>{{0, 1}, {1, 1}}));
    for (size_t cut = 0; cut <= subject.size(); ++cut)
        EXPECT_EQ(scan(set->header_database(0), scratch.get(), {subject.substr(0, cut), subject.substr(cut)}),
                  (std::map<unsigned, int>{{0, 1}, {1, 1}}))
            << "cut at byte " << cut;
    EXPECT_TRUE(scan(set->header_database(0), scratch.get(), {"承諾済みのお知らせ"}).empty());
}

TEST(content_rules, dotall_and_multiline) {
    content_rule plain = make_rule("plain", "click.here");
    content_rule dotall = make_rule("dotall", "click.here");
    dotall.dotall = true;
    content_rule anchored = make_rule("anchored", "^unsubscribe");
    content_rule multiline = make_rule("multiline", "^unsubscribe");
    multiline.multiline = true;
    auto set = compile_ok({plain, dotall, anchored, multiline});
    auto scratch = set->alloc_scratch();
    EXPECT_EQ(scan(set->database(content_db::body), scratch.get(), {"please click", "\nhere\r\n", "unsubscribe"}),
              (std::map<unsigned, int>{{1, 1}, {3, 1}}));
    EXPECT_EQ(scan(set->database(content_db::body), scratch.get(), {"unsub", "scribe, click here"}),
              (std::map<unsigned, int>{{0, 1}, {1, 1}, {2, 1}, {3, 1}}));
}

// ---- databases, scratch, stream state --------------------------------------

TEST(content_rules, one_scratch_serves_every_database) {
    content_rule hdrs = make_rule("hdrs", "^X-Mailer: .*Bulk", content_target::headers);
    hdrs.multiline = true;
    auto set = compile_ok({
        make_rule("env", "RCPT TO:<[^>]+@(docomo|ezweb)\\.ne\\.jp>", content_target::envelope),
        hdrs,
        header_rule("subj", "viagra", "Subject"),
        header_rule("from", "@[0-9]+\\.[a-z]+$", "from"),
        make_rule("body", "(?i)wire\\s+transfer.{0,40}urgent"),
    });
    ASSERT_NE(set, nullptr);
    EXPECT_TRUE(set->rule(1).multiline);
    // Separate databases, ids are the rule indices in each.
    EXPECT_EQ(set->rule_count(content_db::envelope), 1u);
    EXPECT_EQ(set->rule_count(content_db::headers), 1u);
    EXPECT_EQ(set->rule_count(content_db::body), 1u);
    ASSERT_EQ(set->header_count(), 2u);
    EXPECT_EQ(set->header_name(0), "from");      // names lowercased, sorted
    EXPECT_EQ(set->header_name(1), "subject");
    EXPECT_EQ(set->rule(2).where_string(), "header:subject");
    auto scratch = set->alloc_scratch();
    size_t size = 0;
    ASSERT_EQ(hs_scratch_size(scratch.get(), &size), HS_SUCCESS);
    EXPECT_EQ(size, set->scratch_size());
    EXPECT_GT(size, 0u);
    hs_scratch_t* s = scratch.get();
    EXPECT_EQ(scan(set->database(content_db::envelope), s, {"RCPT TO:<a@doc", "omo.ne.jp>\r\n"}),
              (std::map<unsigned, int>{{0, 1}}));
    EXPECT_EQ(scan(set->database(content_db::headers), s, {"From: x@1.example\n", "X-Mailer: Mass Bulk 2.0\n"}),
              (std::map<unsigned, int>{{1, 1}}));
    EXPECT_EQ(scan(set->header_database(1), s, {"cheap VIAGRA and viagra"}), (std::map<unsigned, int>{{2, 1}}));
    EXPECT_EQ(scan(set->header_database(0), s, {"spam@123.", "example"}), (std::map<unsigned, int>{{3, 1}}));
    EXPECT_TRUE(scan(set->header_database(0), s, {"viagra"}).empty()) << "subject rule not in the from database";
    EXPECT_EQ(scan(set->database(content_db::body), s, {"WIRE  transfer is ", "URGENT"}),
              (std::map<unsigned, int>{{4, 1}}));

    // A worker's scratch from a smaller generation is grown to fit this one.
    auto small = compile_ok({make_rule("tiny", "x")});
    hs_scratch_t* worker = small->alloc_scratch().release();
    set->fit_scratch(worker);
    size_t grown = 0;
    hs_scratch_size(worker, &grown);
    EXPECT_GE(grown, set->scratch_size());
    EXPECT_EQ(scan(set->database(content_db::body), worker, {"wire transfer urgent"}),
              (std::map<unsigned, int>{{4, 1}}));
    hs_free_scratch(worker);
}

// A generation's working sets (content_scan_states): one per worker it was built for, each with
// a scratch and streams of its own (two workers never share one), none beyond; each scans with
// the generation's databases; and they keep that rule set alive as long as they live, whatever
// happens to the other references to it.
TEST(content_scan_states, one_working_set_per_worker_on_the_generations_databases) {
    auto set = compile_ok({make_rule("e", "^EHLO \\[", content_target::envelope), make_rule("b", "wire transfer")});
    const std::weak_ptr<const content_rule_set> alive = set;
    auto states = std::make_unique<content_scan_states>(set, 3);
    set.reset();
    ASSERT_EQ(states->workers(), 3u);
    EXPECT_EQ(states->for_worker(3), nullptr);
    std::set<const void*> distinct;
    for (unsigned w = 0; w < 3; ++w) {
        content_scan_state* ws = states->for_worker(w);
        ASSERT_NE(ws, nullptr);
        const auto envelope = static_cast<unsigned>(content_db::envelope);
        ASSERT_NE(ws->streams[envelope], nullptr);
        EXPECT_EQ(ws->streams[static_cast<unsigned>(content_db::headers)], nullptr) << "no headers rules";
        EXPECT_TRUE(distinct.insert(ws->scratch.get()).second) << "worker " << w;
        EXPECT_TRUE(distinct.insert(ws->streams[envelope].get()).second) << "worker " << w;
        for (const auto& slot : ws->body_slots) EXPECT_TRUE(distinct.insert(slot.stream.get()).second);
        unsigned fired = 0;
        auto count = [](unsigned, unsigned long long, unsigned long long, unsigned, void* n) -> int {
            ++*static_cast<unsigned*>(n);
            return 0;
        };
        const std::string text = "a wire transfer";
        EXPECT_EQ(hs_scan_stream(ws->body_slots[w].stream.get(), text.data(), static_cast<unsigned>(text.size()), 0,
                                 ws->scratch.get(), count, &fired),
                  HS_SUCCESS);
        EXPECT_EQ(fired, 1u) << "worker " << w;
    }
    EXPECT_FALSE(alive.expired()) << "the working sets keep their databases alive";
    states.reset();
    EXPECT_TRUE(alive.expired());
}

TEST(content_rules, stream_state_size_reported) {
    auto set = compile_ok({
        make_rule("e", "EHLO [0-9.]+\\r?$", content_target::envelope),
        make_rule("h", "Subject: .*(loan|credit)", content_target::headers),
        header_rule("s1", "^re: ", "subject"),
        header_rule("s2", "[a-z]{40}", "message-id"),
        make_rule("b1", "bitcoin.{0,100}wallet"),
        make_rule("b2", "act now"),
    });
    for (auto d : {content_db::envelope, content_db::headers, content_db::body}) {
        size_t expect = 0;
        ASSERT_EQ(hs_stream_size(set->database(d), &expect), HS_SUCCESS);
        EXPECT_EQ(set->stream_size(d), expect);
        EXPECT_GT(set->stream_size(d), 0u);
        EXPECT_GT(set->database_size(d), 0u);
    }
    size_t max_header = 0;
    for (unsigned i = 0; i < set->header_count(); ++i) max_header = std::max(max_header, set->header_stream_size(i));
    EXPECT_EQ(set->max_header_stream_size(), max_header);
    EXPECT_EQ(set->flow_stream_bytes(), set->stream_size(content_db::envelope) +
                                            set->stream_size(content_db::headers) +
                                            set->stream_size(content_db::body) + max_header);
    EXPECT_GT(set->compile_ns(), 0u);
}

// ---- the YAML list reader --------------------------------------------------

std::vector<content_rule> parse(const std::string& text, strings& errors) {
    const yaml::document doc = yaml::document::parse(text);
    return parse_content_rules(doc.root()["rules"], "p.yaml", errors);
}

TEST(content_rules_yaml, full_rules) {
    strings errors;
    const auto rules = parse(R"(rules:
  - id: jp-mishoudaku
    pattern: "未承諾広告"
    flags: [utf8]
    where: header:Subject
    score: 5
    action: tempfail
  - id: pills
    pattern: "v[i1]agra"
    flags: caseless
    score: 3
  - id: bulk-mailer
    pattern: "^X-Mailer: .*bulk"
    flags: [caseless, multiline, dotall]
    where: headers
    action: event
  - id: ehlo-ip
    pattern: "^EHLO \\[?[0-9.]+\\]?\r?$"
    where: envelope
    score: -2
)", errors);
    ASSERT_TRUE(errors.empty()) << errors.front();
    ASSERT_EQ(rules.size(), 4u);
    EXPECT_EQ(rules[0].id, "jp-mishoudaku");
    EXPECT_EQ(rules[0].pattern, "未承諾広告");
    EXPECT_TRUE(rules[0].utf8);
    EXPECT_FALSE(rules[0].caseless);
    EXPECT_EQ(rules[0].where, content_target::header);
    EXPECT_EQ(rules[0].header, "subject");
    EXPECT_EQ(rules[0].score, 5);
    EXPECT_EQ(rules[0].action, content_action::tempfail);
    EXPECT_EQ(rules[0].line, 2);
    EXPECT_EQ(rules[1].where, content_target::body);
    EXPECT_TRUE(rules[1].caseless);
    EXPECT_EQ(rules[1].action, content_action::none);
    EXPECT_EQ(rules[1].line, 8);
    EXPECT_TRUE(rules[2].caseless && rules[2].multiline && rules[2].dotall);
    EXPECT_EQ(rules[2].where, content_target::headers);
    EXPECT_EQ(rules[2].score, 0);
    EXPECT_EQ(rules[3].where, content_target::envelope);
    EXPECT_EQ(rules[3].score, -2);

    auto set = compile_content_rules(rules, "p.yaml", errors);
    ASSERT_NE(set, nullptr) << errors.front();
    EXPECT_EQ(set->header_index("subject"), 0);
}

TEST(content_rules_yaml, errors_name_file_line_and_key) {
    strings errors;
    const auto rules = parse(R"(rules:
  - id: ok
    pattern: fine
    score: 1
  - id: ok
    pattern: "(?<=a)b"
    score: 1
  - id: bad
    pattern: "(x)\\1"
    flags: [caseless, bogus]
    score: 1
  - id: backref
    pattern: "(x)\\1"
    score: 1
  - id: "has space"
    pattern: x
    where: "header:"
    score: 99999
    colour: red
  - pattern: x
    where: attachments
  - just a string
  - id: nothing
    pattern: x
)", errors);
    EXPECT_EQ(errors, (strings{
                          "p.yaml:5: rules[1].id: 'ok' is already the id of the rule at line 2",
                          "p.yaml:10: rules[2].flags: 'bogus' is not one of: caseless, utf8, dotall, multiline",
                          "p.yaml:12: rules[3] (id backref): Hyperscan: Back-references are unsupported.",
                          "p.yaml:19: rules[4].colour: unknown key (expected one of: id, pattern, flags, where, "
                          "score, action)",
                          "p.yaml:15: rules[4].id: 'has space': use at most 63 letters, digits, '_', '-' and '.'",
                          "p.yaml:17: rules[4].where: 'header:': header:NAME takes a field name (printable ASCII, "
                          "no ':', at most 64), e.g. header:subject",
                          "p.yaml:18: rules[4].score: 99999 is out of range (-1000 to 1000)",
                          "p.yaml:20: rules[5]: needs an id",
                          "p.yaml:21: rules[5].where: 'attachments' is not one of: envelope, headers, header:NAME, "
                          "body",
                          "p.yaml:20: rules[5]: needs a score or an action",
                          "p.yaml:22: rules[6]: expected a mapping of keys to values",
                          "p.yaml:23: rules[7]: needs a score or an action",
                      }));
    ASSERT_EQ(rules.size(), 1u);
    EXPECT_EQ(rules[0].id, "ok");
}

// Every problem of every rule, each reported where it is; a rule with a problem that refuses it
// is dropped, one whose problem does not (a flag listed twice, flags that are no list, the list's
// header:NAME fields over the limit) is kept.
TEST(content_rules_yaml, every_problem_reported_a_rule_kept_only_without_a_refusing_one) {
    std::string text = "rules:\n"
                       "  - {id: twice, pattern: a, flags: [caseless, caseless], score: 1}\n"
                       "  - {id: flagmap, pattern: b, flags: {x: 1}, score: 1}\n"
                       "  - {id: flagone, pattern: c, flags: utf8, score: 1}\n"
                       "  - {id: flagnested, pattern: d, flags: [[x]], score: 1}\n"
                       "  - {id: nul, pattern: \"a\\0b\", score: 1}\n"
                       "  - {id: long, pattern: " + std::string(content_pattern_max + 1, 'x') + ", score: 1}\n"
                       "  - {id: patlist, pattern: [a], score: 1}\n"
                       "  - {id: [x], pattern: e, score: 1}\n"
                       "  - {id: scoreword, pattern: f, score: abc}\n"
                       "  - {id: scorelist, pattern: g, score: [1]}\n"
                       "  - {id: scoretail, pattern: h, score: 1x}\n"
                       "  - {id: actionbad, pattern: i, action: bogus}\n"
                       "  - {id: actionlist, pattern: j, action: [event]}\n"
                       "  - {id: wheremap, pattern: k, where: {a: b}, score: 1}\n"
                       "  - {id: UPPER.id-ok_1, pattern: l, where: \"header:X-Mailer\", action: tempfail}\n";
    for (int k = 0; k < 66; ++k)  // with X-Mailer, 67 distinct fields: h63's is the 65th, at line 80
        text += "  - {id: h" + std::to_string(k) + ", pattern: m, where: \"header:h" + std::to_string(k) + "\", score: 1}\n";
    strings errors;
    const auto rules = parse(text, errors);
    EXPECT_EQ(errors, (strings{
                          "p.yaml:2: rules[0].flags: 'caseless' is listed twice",
                          "p.yaml:3: rules[1].flags: expected a list of flags, e.g. [caseless, utf8]",
                          "p.yaml:5: rules[3].flags: value is not one of: caseless, utf8, dotall, multiline",
                          "p.yaml:6: rules[4].pattern: contains a NUL byte (write \\x00)",
                          "p.yaml:7: rules[5].pattern: 16385 bytes; at most 16384",
                          "p.yaml:8: rules[6].pattern: expected a pattern (a string)",
                          "p.yaml:9: rules[7].id: expected a rule id",
                          "p.yaml:10: rules[8].score: 'abc' is not an integer",
                          "p.yaml:11: rules[9].score: value is not an integer",
                          "p.yaml:12: rules[10].score: '1x' is not an integer",
                          "p.yaml:13: rules[11].action: 'bogus' is not one of: event, tighten, tempfail, reset, quarantine",
                          "p.yaml:14: rules[12].action: value is not one of: event, tighten, tempfail, reset, quarantine",
                          "p.yaml:15: rules[13].where: value is not one of: envelope, headers, header:NAME, body",
                          "p.yaml:80: rules: 67 distinct header:NAME fields; at most 64",
                      }));
    ASSERT_EQ(rules.size(), 4u + 66u);
    EXPECT_EQ(rules[0].id, "twice");
    EXPECT_TRUE(rules[0].caseless);
    EXPECT_EQ(rules[1].id, "flagmap");
    EXPECT_TRUE(rules[2].utf8);
    EXPECT_EQ(rules[3].id, "UPPER.id-ok_1");
    EXPECT_EQ(rules[3].where, content_target::header);
    EXPECT_EQ(rules[3].header, "x-mailer");
    EXPECT_EQ(rules[3].action, content_action::tempfail);
    EXPECT_EQ(rules[3].line, 16);
    EXPECT_EQ(rules.back().id, "h65");
}

TEST(content_rules_yaml, more_rules_than_the_limit) {
    std::string text = "rules:\n";
    for (size_t k = 0; k <= content_rules_max; ++k) text += "  - {id: r" + std::to_string(k) + ", pattern: x, score: 1}\n";
    strings errors;
    EXPECT_TRUE(parse(text, errors).empty());
    EXPECT_EQ(errors, strings{"p.yaml:2: rules: 8193 rules; at most 8192"});
}

TEST(content_rules_yaml, not_a_list) {
    strings errors;
    parse("rules: {id: x}\n", errors);
    ASSERT_EQ(errors.size(), 1u);
    EXPECT_EQ(errors[0].rfind("p.yaml:1: rules: expected a list of rules", 0), 0u) << errors[0];
}

}  // namespace
}  // namespace sekisho
