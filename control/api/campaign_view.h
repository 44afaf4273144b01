// The campaign view (GET /v1/campaigns, sekishoctl campaigns): the current
// window's message fingerprints of the campaign table, most subscribers
// first, with this gateway's counts and, in fleet mode, the fleet's as
// campaign_sync last read them from Redis.
//
// Per fingerprint: the fingerprint (16 hex digits), `subscribers` (this
// gateway's own estimate: the table's bitmap without the bits the fleet
// alone brought, campaign_fleet_figure::merged; a lower bound),
// `recipients` (this gateway's, exact), in fleet mode `fleet_subscribers`
// (the estimate of the fleet's ORed bitmap) and `fleet_recipients` (every
// gateway's counts summed; null: not read back yet), and
// `over_subscribers` (the table's estimate, fleet bits merged in, is over
// inspection.campaign.subscribers: what the workers flag). Most
// subscribers first: the largest of the three estimates. The per-subscriber recipients threshold
// (inspection.campaign.recipients) is per (fingerprint, subscriber) and not
// listed: the view names no subscriber. Only fingerprints and counts: no
// address, account or message text (docs/inspection.md).
//
// Bounded: reads the table once (campaign_table::for_each_active: relaxed
// atomic reads, never waits on a worker) and answers at most `n` rows.
// Control thread (or any thread: it only reads).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <vector>

#include "control/fleet/campaign_sync.h"
#include "dataplane/inspect/campaign_table.h"
#include "dataplane/inspect/inspection_policy.h"

namespace sekisho {

// `fleet` null: not in fleet mode (no fleet columns). Without campaign
// counting in the policy, an empty list with "counting": false.
nlohmann::json campaign_view(const campaign_table& table, const inspection_settings& inspection, uint64_t now_ns,
                             const std::vector<campaign_fleet_figure>* fleet, uint64_t n, uint32_t min_subscribers);

}  // namespace sekisho
