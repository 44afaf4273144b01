// The XDP backend's loader: owns the libbpf skeleton of bpf/sekisho_xdp.bpf.c,
// writes policy generations into its maps, attaches it to interfaces, reads
// its per-CPU counters and drains its event ring buffer.
//
// Generation switch: the maps hold two sets (policy_sets[0|1], LPM entries
// whose first key byte is the set). apply() fills the inactive set, then
// flips active_set[0] with one map update: a packet reads the index once and
// is judged by exactly one generation. The set just left is only cleared at
// the next apply, and not before xdp_grace_period has passed since the flip
// (XDP programs run to completion in far less).
//
// Restart without a gap (pin_dir): every map is pinned as pin_dir/<map name>
// on a BPF file system. A backend that finds pins there re-uses those maps
// (policy sets, counters, SYN buckets, the event ring: a restart continues
// them), and attach() replaces a sekisho_xdp program already attached to the
// interface in one kernel operation (XDP_FLAGS_REPLACE), so every packet is
// judged by the old program or the new one, both reading the same maps. The
// attached program is pinned too (pin_dir/program): the next start finds the
// program to replace by it, which needs no CAP_SYS_ADMIN.
// leave_attached() lets the program go on enforcing after this process ends;
// unpin() removes the pins when it is not to be taken over. Pins whose maps do
// not match this program (another build) are replaced by fresh maps, said on
// standard error: counters and limit state then restart.
//
// Control thread only. Throws std::runtime_error with the failing step and
// errno text.
#pragma once

#include <linux/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "dataplane/event_ring.h"
#include "dataplane/op25b_classifier.h"
#include "control/policy/policy.h"
#include "sekisho_xdp.h"
#include "backends/xdp/xdp_policy.h"

struct sekisho_xdp;
struct ring_buffer;

namespace sekisho {

enum class xdp_attach_mode : uint8_t { native, generic };
const char* to_string(xdp_attach_mode m);

constexpr std::chrono::milliseconds xdp_grace_period{50};

class xdp_backend {
public:
    // Opens and loads the program (needs CAP_BPF/CAP_NET_ADMIN). `buckets`:
    // capacity of the SYN token-bucket table (LRU). `pin_dir`: empty, or a
    // directory on a BPF file system (created) where the maps are pinned and
    // re-used from.
    explicit xdp_backend(uint32_t buckets = 262144, const std::string& pin_dir = "");
    ~xdp_backend();   // detaches from every interface it attached to, unless leave_attached()
    xdp_backend(const xdp_backend&) = delete;
    xdp_backend& operator=(const xdp_backend&) = delete;

    // Writes `pol` as the next generation and switches to it. Returns the new
    // generation. On failure (a table full, policy_error from the image) the
    // running generation stays in place. `skipped` receives the limits the
    // XDP path does not enforce.
    uint64_t apply(const policy& pol, std::vector<std::string>* skipped = nullptr);
    uint64_t generation() const { return generation_; }
    // Before this object's first apply() (also over pinned maps taken over):
    // generations continue after `last` (the policy history's numbers, so
    // that they keep increasing across restarts).
    void continue_generations_after(uint64_t last) {
        if (generation_ == 0) generation_ = last;
    }

    // Attaches to `ifname` as `role`; detach_all() undoes every attach. A
    // sekisho_xdp program attached there in `mode` (left by an earlier run) is
    // replaced atomically; returns true then. Any other program: refused.
    bool attach(const std::string& ifname, ingress role, xdp_attach_mode mode);
    void detach_all();
    // Forgets the attachments: the program stays attached and enforcing, with
    // its pinned maps, after this object and the process are gone.
    void leave_attached() { attached_.clear(); }
    // Removes the pins (and pin_dir when empty); the maps live on while the
    // program holds them. No-op without pin_dir.
    void unpin();
    // How many pinned maps this backend took over at load (0: fresh maps).
    size_t maps_taken_over() const { return maps_taken_over_; }
    const std::string& pin_dir() const { return pin_dir_; }
    // Declares which side frames from `ifindex` come from (attach() does it;
    // tests use it for BPF_PROG_TEST_RUN, whose frames come from lo).
    void set_interface_role(uint32_t ifindex, ingress role);

    // The program, for BPF_PROG_TEST_RUN.
    int program_fd() const;
    // The counters of each possible CPU.
    std::vector<sx_counters> read_counters() const;
    // Moves what the ring buffer holds into `sink` (time in CLOCK_REALTIME ns).
    size_t drain_events(const std::function<void(const event_record&)>& sink);

private:
    void write_prefixes(int fd, const std::vector<xdp_prefix_entry>& entries, uint8_t family, uint32_t set,
                        std::vector<std::vector<uint8_t>>& written, const char* table);
    void clear_set(uint32_t set);
    void load_and_adopt(uint32_t buckets);
    void load(uint32_t buckets);
    void adopt_pinned_sets();
    void remove_pins();
    std::string program_pin_path() const;
    int open_attached_program(__u32 id, const std::string& ifname, std::string& name) const;

    sekisho_xdp* skel_ = nullptr;
    ring_buffer* ring_ = nullptr;
    uint64_t generation_ = 0;
    uint32_t active_ = 0;
    bool have_active_ = false;
    std::chrono::steady_clock::time_point flipped_at_{};
    // LPM keys written per set and map (subscribers4, subscribers6, relays4, relays6).
    std::vector<std::vector<uint8_t>> keys_[2][4];
    struct attachment {
        int ifindex;
        uint32_t flags;
        std::string name;
    };
    std::vector<attachment> attached_;
    int64_t monotonic_to_realtime_ns_ = 0;
    std::function<void(const sx_event&)> raw_sink_;   // set during drain_events()
    unsigned cpus_ = 1;
    std::string pin_dir_;
    std::vector<std::string> map_names_;   // the pinned maps, by name
    size_t maps_taken_over_ = 0;
    int previous_program_fd_ = -1;   // the program an earlier run pinned, if any
};

}  // namespace sekisho
