#include "control/policy/content_rules_compile.h"

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "control/policy/policy.h"

namespace sekisho {

struct content_rules_compiler::job {
    std::mutex m;
    std::condition_variable done_cv;
    bool done = false;
    std::shared_ptr<const content_rule_set> result;
    std::vector<std::string> errors;
    std::string failure;   // an exception other than a rule error
};

bool content_rules_compiler::busy() const {
    if (!abandoned_) return false;
    std::lock_guard<std::mutex> lock(abandoned_->m);
    return !abandoned_->done;
}

std::shared_ptr<const content_rule_set> content_rules_compiler::compile(const std::vector<content_rule>& rules,
                                                                        const std::string& source,
                                                                        uint64_t timeout_ns) {
    if (rules.empty()) return nullptr;
    if (busy())
        throw rule_compile_timeout("an earlier content rule compile that overran its compile_timeout is still "
                                   "running; try again when it has finished");
    abandoned_.reset();
    auto j = std::make_shared<job>();
    // The thread owns copies of everything it reads: it may outlive this call.
    std::thread([j, rules, source] {
        std::shared_ptr<const content_rule_set> result;
        std::vector<std::string> errors;
        std::string failure;
        try {
            result = compile_content_rules(rules, source, errors, "inspection.rules");
        } catch (const std::exception& e) {
            failure = e.what();
        }
        std::lock_guard<std::mutex> lock(j->m);
        j->result = std::move(result);
        j->errors = std::move(errors);
        j->failure = std::move(failure);
        j->done = true;
        j->done_cv.notify_all();
    }).detach();

    std::unique_lock<std::mutex> lock(j->m);
    if (!j->done_cv.wait_for(lock, std::chrono::nanoseconds(timeout_ns), [&] { return j->done; })) {
        abandoned_ = j;
        throw rule_compile_timeout("the content rules did not compile within inspection.compile_timeout (" +
                                   std::to_string(timeout_ns / 1'000'000) + " ms); compile abandoned");
    }
    if (!j->failure.empty()) throw std::runtime_error("content rules: " + j->failure);
    if (!j->result) throw policy_error(std::move(j->errors));
    return std::move(j->result);
}

}  // namespace sekisho
