// Compiles a policy's content rules with a time bound, on a thread of its own.
//
// Hyperscan's compile cannot be interrupted, and a large rule set takes tens of
// seconds (SpamAssassin's body rules: ~18 s). An apply must not hang the
// control API for that long, nor forever on a pathological pattern: the
// compile runs on its own thread and the caller waits at most
// `inspection.compile_timeout`. A compile that overruns is abandoned: the
// apply fails (the running policy stays), the thread finishes on its own and
// its result is dropped. While an abandoned compile still runs, a new compile
// is refused at once (busy): one runaway compile at a time, never a pile of
// them eating the control plane's CPU.
#pragma once

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "dataplane/inspect/content_rules.h"

namespace sekisho {

// The compile did not finish in time, or an abandoned one still runs.
class rule_compile_timeout : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

class content_rules_compiler {
public:
    content_rules_compiler() = default;
    content_rules_compiler(const content_rules_compiler&) = delete;
    content_rules_compiler& operator=(const content_rules_compiler&) = delete;

    // The compiled rules (null for an empty list). Throws policy_error with
    // each rule's id, file:line and Hyperscan's message if a rule does not
    // compile; rule_compile_timeout if the compile took longer than
    // timeout_ns or an abandoned compile is still running.
    std::shared_ptr<const content_rule_set> compile(const std::vector<content_rule>& rules,
                                                    const std::string& source, uint64_t timeout_ns);

    // An abandoned compile is still running.
    bool busy() const;

private:
    struct job;
    std::shared_ptr<job> abandoned_;
};

}  // namespace sekisho
