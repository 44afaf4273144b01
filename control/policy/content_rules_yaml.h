// The policy's content rules as YAML: the list reader the policy reader calls.
//
//   - id: jp-unsolicited          # letters, digits, '_', '-', '.'; at most 63; unique
//     pattern: "未承諾広告"        # the Hyperscan PCRE subset, without delimiters
//     flags: [utf8]               # caseless, utf8, dotall, multiline (list or one word)
//     where: header:subject       # envelope | headers | header:NAME | body (default body)
//     score: 5                    # -1000 to 1000 (default 0)
//     action: tempfail            # event | tighten | tempfail | reset | quarantine (optional)
//
// A rule needs a score or an action. Errors are appended in the policy's style,
// "file:line: rules[2].pattern: ...", every problem of the list at once; a
// pattern Hyperscan cannot take is reported as
// "file:line: rules[2] (id X): Hyperscan: <message>" (the same check the
// compiler makes, so the policy is refused at load, not at apply).
// `list_path` is how messages name the list ("rules", "content.rules", ...).
#pragma once

#include "control/policy/yaml_tree.h"

#include <string>
#include <vector>

#include "dataplane/inspect/content_rules.h"

namespace sekisho {

std::vector<content_rule> parse_content_rules(const yaml::node& list, const std::string& file,
                                              std::vector<std::string>& errors,
                                              const std::string& list_path = "rules");

}  // namespace sekisho
