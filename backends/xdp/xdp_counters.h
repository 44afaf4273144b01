// The XDP program's per-CPU counters as worker_counters blocks, one per CPU,
// so that metrics, summary.json and the human summary read the XDP backend
// exactly as they read the DPDK workers (same names, same meaning).
#pragma once

#include <linux/types.h>

#include "sekisho_xdp.h"
#include "dataplane/worker_counters.h"

namespace sekisho {

// Overwrites every counter of `to` that the XDP program keeps with its value
// in `from`; the others (SMTP tracking, content inspection) are left alone.
void copy_xdp_counters(const sx_counters& from, worker_counters& to);

}  // namespace sekisho
