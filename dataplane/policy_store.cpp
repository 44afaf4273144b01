#include "dataplane/policy_store.h"

#include <rte_malloc.h>
#include <rte_rcu_qsbr.h>

#include <stdexcept>

namespace sekisho {

policy_store::policy_store(unsigned max_readers) {
    const size_t size = rte_rcu_qsbr_get_memsize(max_readers);
    qsbr_ = static_cast<rte_rcu_qsbr*>(rte_zmalloc("sk_policy_qsbr", size, RTE_CACHE_LINE_SIZE));
    if (qsbr_ == nullptr || rte_rcu_qsbr_init(qsbr_, max_readers) != 0)
        throw std::runtime_error("cannot initialise the policy RCU state");
}

policy_store::~policy_store() {
    delete current_.exchange(nullptr);
    rte_free(qsbr_);
}

std::unique_ptr<compiled_policy> policy_store::publish(std::unique_ptr<compiled_policy> next) {
    std::unique_ptr<compiled_policy> previous(current_.exchange(next.release(), std::memory_order_acq_rel));
    // Blocks only the control thread, until every online reader has finished
    // the burst it was in when the pointer changed.
    rte_rcu_qsbr_synchronize(qsbr_, RTE_QSBR_THRID_INVALID);
    return previous;
}

void policy_store::register_reader(unsigned reader_id) {
    rte_rcu_qsbr_thread_register(qsbr_, reader_id);
    rte_rcu_qsbr_thread_online(qsbr_, reader_id);
}

void policy_store::unregister_reader(unsigned reader_id) {
    rte_rcu_qsbr_thread_offline(qsbr_, reader_id);
    rte_rcu_qsbr_thread_unregister(qsbr_, reader_id);
}

void policy_store::quiescent(unsigned reader_id) { rte_rcu_qsbr_quiescent(qsbr_, reader_id); }

}  // namespace sekisho
