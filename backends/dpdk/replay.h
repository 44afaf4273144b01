// Replay mode: the live pipeline over net_pcap, for "what would this policy
// do to this traffic" before a rollout, and for our own acceptance checks.
//
//   sekishod --replay CAPTURE --policy POLICY --out DIR [--workers N] [--fleet FILE]
//
// CAPTURE holds both directions (a mirror port). A frame whose source address
// is in the policy's subscriber ranges (dynamic or static), or that carries no
// readable IP source, enters from the access side; every other frame from the
// core side. Writes DIR/to-core.pcap, DIR/to-access.pcap (every frame that
// left each port, injected RSTs included), DIR/summary.json and
// DIR/events.jsonl. Capture timestamps are the clock.
//
// The capture is read to its end once before anything is replayed: a record
// libpcap cannot read (cut short, an impossible length) or a frame net_pcap
// cannot carry is an error naming the record and its byte offset, so a
// corrupt capture never replays its first part as if it were the whole.
// summary.json exists only after a replay that read every record.
//
// --fleet FILE: the campaign bitmaps of the capture's windows come from the
// fleet's Redis before the first frame and go back after the last
// (campaign_sync.h), so replays of several gateways' captures, one after the
// other, count a campaign as the fleet did.
#pragma once

#include <string>
#include <vector>

namespace sekisho {

struct replay_options {
    std::string capture;
    std::string policy_path;
    std::string out_dir;
    unsigned workers = 1;
    std::vector<std::string> eal_args;   // replaces the default EAL arguments
    std::string fleet_path;              // --fleet: campaign counts shared through the fleet's Redis
};

// Returns the process exit code. Throws policy_error for a bad policy and
// std::runtime_error for anything else that stops the replay (a corrupt
// capture included). Removes DIR/summary.json first.
int run_replay(const replay_options& options);

}  // namespace sekisho
