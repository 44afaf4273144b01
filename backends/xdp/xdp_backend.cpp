#include "backends/xdp/xdp_backend.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_link.h>
#include <linux/magic.h>
#include <net/if.h>
#include <fcntl.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <thread>

// The generated skeleton embeds the BPF object as one string literal (~100 KB),
// longer than -Wpedantic's portable limit (clang warns; gcc does not).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Woverlength-strings"
#include "sekisho_xdp.skel.h"
#pragma GCC diagnostic pop

namespace sekisho {

// The program's enumerations are the DPDK data plane's, value for value.
static_assert(SX_ERR_COUNT == parse_error_count);
static_assert(SX_KIND_IP_FIRST_FRAGMENT_INCOMPLETE == static_cast<int>(frame_kind::ip_first_fragment_incomplete));
static_assert(SX_ERR_TCP_FRAGMENT_OVERLAP == static_cast<int>(parse_error::tcp_fragment_overlap));
static_assert(SX_MAX_IPV6_EXTENSION_HEADERS == max_ipv6_extension_headers);
static_assert(SX_MAX_VLAN_TAGS == max_vlan_tags);
static_assert(SX_INGRESS_COUNT == ingress_count);
static_assert(SX_REASON_COUNT == block_reason_count);
static_assert(SX_REASON_INCOMPLETE_FRAGMENT == static_cast<int>(block_reason::op25b_incomplete_fragment));
static_assert(SX_MAX_LIMITS == max_limits);
static_assert(SX_LIMIT_DROP_SYN == static_cast<int>(limit_action::drop_syn));
static_assert(SX_LIMIT_RESET == static_cast<int>(limit_action::reset));
static_assert(SX_LIMIT_TEMPFAIL == static_cast<int>(limit_action::tempfail));
static_assert(SX_LIMIT_MONITOR == static_cast<int>(limit_action::monitor));
static_assert(SX_ACTION_RESET == static_cast<int>(op25b_action::reset));
static_assert(SX_EVENT_LIMIT_EXCEEDED == static_cast<int>(event_type::limit_exceeded));

const char* to_string(xdp_attach_mode m) { return m == xdp_attach_mode::native ? "native" : "generic"; }

namespace {

std::runtime_error failure(const std::string& what, int err) {
    return std::runtime_error("xdp: " + what + ": " + std::strerror(err < 0 ? -err : err));
}

uint64_t clock_ns(clockid_t id) {
    timespec ts{};
    clock_gettime(id, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
}

// LPM key bytes: prefixlen (8 + length), the set, the address bytes.
std::vector<uint8_t> lpm_key(const xdp_prefix_entry& e, uint32_t set) {
    const size_t addr_len = e.family == 4 ? 4 : 16;
    std::vector<uint8_t> k(sizeof(__u32) + 1 + addr_len, 0);
    const __u32 prefixlen = 8u + e.length;
    std::memcpy(k.data(), &prefixlen, sizeof prefixlen);
    k[4] = static_cast<uint8_t>(set);
    std::memcpy(k.data() + 5, e.addr.data(), addr_len);
    return k;
}

int on_event(void* ctx, void* data, size_t size) {
    if (size < sizeof(sx_event)) return 0;
    auto* sink = static_cast<std::function<void(const sx_event&)>*>(ctx);
    if (!*sink) return 0;
    sx_event e;
    std::memcpy(&e, data, sizeof e);
    (*sink)(e);
    return 0;
}

// Creates `dir` (and its parents) and checks that it is on a BPF file system.
void make_pin_dir(const std::string& dir) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) throw std::runtime_error("xdp: cannot create the pin directory " + dir + ": " + ec.message());
    struct statfs st {};
    if (statfs(dir.c_str(), &st) != 0) throw failure("cannot stat the pin directory " + dir, errno);
    if (st.f_type != BPF_FS_MAGIC)
        throw std::runtime_error("xdp: the pin directory " + dir +
                                 " is not on a BPF file system (mount -t bpf bpf /sys/fs/bpf)");
}

}  // namespace

xdp_backend::xdp_backend(uint32_t buckets, const std::string& pin_dir) : pin_dir_(pin_dir) {
    libbpf_set_print([](libbpf_print_level level, const char* fmt, va_list args) {
        return level == LIBBPF_WARN ? vfprintf(stderr, fmt, args) : 0;
    });
    const int ncpus = libbpf_num_possible_cpus();
    if (ncpus <= 0) throw failure("cannot count the possible CPUs", ncpus);
    cpus_ = static_cast<unsigned>(ncpus);
    if (buckets == 0) buckets = 1;
    try {
        load_and_adopt(buckets);
    } catch (...) {
        // The destructor does not run for a constructor that throws.
        if (ring_) ring_buffer__free(ring_);
        if (skel_) sekisho_xdp__destroy(skel_);
        if (previous_program_fd_ >= 0) close(previous_program_fd_);
        throw;
    }
}

// The pin directory, the program, the ring buffer and what the pinned maps hold.
void xdp_backend::load_and_adopt(uint32_t buckets) {
    if (!pin_dir_.empty()) {
        make_pin_dir(pin_dir_);
        // The program an earlier run pinned: the handle attach() replaces it
        // by (opening it by its id instead would need CAP_SYS_ADMIN). Taken
        // before the load, which may replace stale pins.
        const std::string path = program_pin_path();
        if (access(path.c_str(), F_OK) == 0) previous_program_fd_ = bpf_obj_get(path.c_str());
    }
    try {
        load(buckets);
    } catch (const std::runtime_error&) {
        if (maps_taken_over_ == 0) throw;
        // Pins of another build (a map's type, sizes or capacity differ;
        // libbpf named the map above): the program still attached keeps its
        // own maps until it is replaced. Any other load failure fails again
        // below and is thrown.
        std::cerr << "sekishod: xdp: the maps pinned in " << pin_dir_
                  << " do not fit this program (libbpf's reason above); starting with fresh maps: counters and "
                     "limit state restart"
                  << std::endl;
        remove_pins();
        load(buckets);
    }
    ring_ = ring_buffer__new(bpf_map__fd(skel_->maps.events), on_event, &raw_sink_, nullptr);
    if (ring_ == nullptr) throw failure("cannot open the event ring buffer", errno);
    monotonic_to_realtime_ns_ =
        static_cast<int64_t>(clock_ns(CLOCK_REALTIME)) - static_cast<int64_t>(clock_ns(CLOCK_MONOTONIC));
    if (maps_taken_over_ > 0) adopt_pinned_sets();
}

// Opens and loads the object into skel_, each map pinned in pin_dir_ (re-used
// when a pin is there). Sets maps_taken_over_ to the pins found.
void xdp_backend::load(uint32_t buckets) {
    maps_taken_over_ = 0;
    skel_ = sekisho_xdp__open();
    if (skel_ == nullptr) throw failure("cannot open the BPF object", errno);
    int err = bpf_map__set_max_entries(skel_->maps.syn_buckets, buckets);
    map_names_.clear();
    bpf_map* map = nullptr;
    bpf_object__for_each_map(map, skel_->obj) {
        if (err || pin_dir_.empty() || bpf_map__is_internal(map)) continue;
        map_names_.emplace_back(bpf_map__name(map));
        const std::string path = pin_dir_ + "/" + map_names_.back();
        if (access(path.c_str(), F_OK) == 0) ++maps_taken_over_;
        err = bpf_map__set_pin_path(map, path.c_str());
    }
    if (err == 0) err = sekisho_xdp__load(skel_);
    if (err) {
        sekisho_xdp__destroy(skel_);
        skel_ = nullptr;
        throw failure("cannot load the XDP program (the verifier log is above; needs root, kernel >= 6.0 with BTF)",
                      err);
    }
}

// The state an earlier run left in the pinned maps: which set is active, and
// every LPM key of both sets (so the next apply clears what it replaces).
void xdp_backend::adopt_pinned_sets() {
    const __u32 zero = 0;
    __u32 active = 0;
    if (bpf_map_lookup_elem(bpf_map__fd(skel_->maps.active_set), &zero, &active) != 0)
        throw failure("cannot read the pinned active set", errno);
    active &= 1;
    auto running = std::make_unique<sx_policy_set>();
    if (bpf_map_lookup_elem(bpf_map__fd(skel_->maps.policy_sets), &active, running.get()) != 0)
        throw failure("cannot read the pinned policy set", errno);
    if (running->generation != 0) {
        // The earlier run may have flipped just before it stopped.
        active_ = active;
        have_active_ = true;
        flipped_at_ = std::chrono::steady_clock::now();
    }
    bpf_map* const maps[4] = {skel_->maps.subscribers4, skel_->maps.subscribers6, skel_->maps.relays4,
                              skel_->maps.relays6};
    for (int m = 0; m < 4; ++m) {
        const int fd = bpf_map__fd(maps[m]);
        std::vector<uint8_t> key(bpf_map__key_size(maps[m])), next(key.size());
        const void* previous = nullptr;
        while (bpf_map_get_next_key(fd, previous, next.data()) == 0) {
            keys_[next[4] & 1][m].push_back(next);
            key = next;
            previous = key.data();
        }
    }
}

void xdp_backend::remove_pins() {
    for (const std::string& name : map_names_) unlink((pin_dir_ + "/" + name).c_str());
    unlink(program_pin_path().c_str());
}

std::string xdp_backend::program_pin_path() const { return pin_dir_ + "/program"; }

// An fd of the program `id` attached to `ifname`, or -1 when it is not a
// sekisho_xdp program (`name` receives its name).
int xdp_backend::open_attached_program(__u32 id, const std::string& ifname, std::string& name) const {
    if (previous_program_fd_ >= 0) {
        bpf_prog_info info{};
        __u32 info_len = sizeof info;
        if (bpf_obj_get_info_by_fd(previous_program_fd_, &info, &info_len) == 0 && info.id == id)
            return fcntl(previous_program_fd_, F_DUPFD_CLOEXEC, 0);
    }
    const int fd = bpf_prog_get_fd_by_id(id);
    if (fd < 0)
        throw failure("cannot open the XDP program attached to " + ifname + " (id " + std::to_string(id) +
                          (errno == EPERM ? "; not the one pinned in the pin directory, and opening another by "
                                            "its id needs CAP_SYS_ADMIN)"
                                          : ")"),
                      errno);
    bpf_prog_info info{};
    __u32 info_len = sizeof info;
    if (bpf_obj_get_info_by_fd(fd, &info, &info_len) == 0) name.assign(info.name, strnlen(info.name, sizeof info.name));
    if (name == "sekisho_xdp") return fd;
    close(fd);
    return -1;
}

void xdp_backend::unpin() {
    if (pin_dir_.empty()) return;
    remove_pins();
    rmdir(pin_dir_.c_str());   // stays if something else is in it
}

xdp_backend::~xdp_backend() {
    if (previous_program_fd_ >= 0) close(previous_program_fd_);
    detach_all();
    if (ring_) ring_buffer__free(ring_);
    sekisho_xdp__destroy(skel_);
}

int xdp_backend::program_fd() const { return bpf_program__fd(skel_->progs.sekisho_xdp); }

void xdp_backend::write_prefixes(int fd, const std::vector<xdp_prefix_entry>& entries, uint8_t family, uint32_t set,
                                 std::vector<std::vector<uint8_t>>& written, const char* table) {
    for (const xdp_prefix_entry& e : entries) {
        if (e.family != family) continue;
        std::vector<uint8_t> key = lpm_key(e, set);
        const __u8 value = e.value;
        if (bpf_map_update_elem(fd, key.data(), &value, BPF_ANY) != 0) {
            const int err = errno;
            ip_prefix p;
            p.family = e.family;
            p.length = e.length;
            p.bytes = e.addr;
            throw failure(std::string("cannot add ") + p.to_string() + " to " + table +
                              (err == ENOSPC || err == E2BIG ? " (table full)" : ""),
                          err);
        }
        written.push_back(std::move(key));
    }
}

void xdp_backend::clear_set(uint32_t set) {
    const int fds[4] = {bpf_map__fd(skel_->maps.subscribers4), bpf_map__fd(skel_->maps.subscribers6),
                        bpf_map__fd(skel_->maps.relays4), bpf_map__fd(skel_->maps.relays6)};
    for (int m = 0; m < 4; ++m) {
        for (const auto& k : keys_[set][m]) bpf_map_delete_elem(fds[m], k.data());
        keys_[set][m].clear();
    }
}

uint64_t xdp_backend::apply(const policy& pol, std::vector<std::string>* skipped) {
    const uint64_t next_generation = generation_ + 1;
    const xdp_policy_image img = build_xdp_policy_image(pol, next_generation);
    if (skipped) *skipped = img.skipped_limits;
    const uint32_t next = have_active_ ? 1 - active_ : 0;

    // The set about to be overwritten was left at the last flip: wait until
    // no program run can still be reading it.
    if (have_active_) {
        const auto since = std::chrono::steady_clock::now() - flipped_at_;
        if (since < xdp_grace_period) std::this_thread::sleep_for(xdp_grace_period - since);
    }
    clear_set(next);
    try {
        write_prefixes(bpf_map__fd(skel_->maps.subscribers4), img.subscribers, 4, next, keys_[next][0],
                       "subscribers4");
        write_prefixes(bpf_map__fd(skel_->maps.subscribers6), img.subscribers, 6, next, keys_[next][1],
                       "subscribers6");
        write_prefixes(bpf_map__fd(skel_->maps.relays4), img.relays, 4, next, keys_[next][2], "relays4");
        write_prefixes(bpf_map__fd(skel_->maps.relays6), img.relays, 6, next, keys_[next][3], "relays6");
        if (bpf_map_update_elem(bpf_map__fd(skel_->maps.policy_sets), &next, &img.settings, BPF_ANY) != 0)
            throw failure("cannot write policy set " + std::to_string(next), errno);
    } catch (...) {
        clear_set(next);
        throw;
    }
    // The switch: one array element.
    const __u32 zero = 0;
    if (bpf_map_update_elem(bpf_map__fd(skel_->maps.active_set), &zero, &next, BPF_ANY) != 0) {
        const int err = errno;
        clear_set(next);
        throw failure("cannot switch to policy set " + std::to_string(next), err);
    }
    flipped_at_ = std::chrono::steady_clock::now();
    active_ = next;
    have_active_ = true;
    generation_ = next_generation;
    return generation_;
}

void xdp_backend::set_interface_role(uint32_t ifindex, ingress role) {
    const __u32 v = static_cast<__u32>(role);
    if (bpf_map_update_elem(bpf_map__fd(skel_->maps.interface_roles), &ifindex, &v, BPF_ANY) != 0)
        throw failure("cannot record the role of interface " + std::to_string(ifindex), errno);
}

bool xdp_backend::attach(const std::string& ifname, ingress role, xdp_attach_mode mode) {
    const unsigned ifindex = if_nametoindex(ifname.c_str());
    if (ifindex == 0) throw failure("interface '" + ifname + "'", errno);
    set_interface_role(ifindex, role);
    const uint32_t mode_flag = mode == xdp_attach_mode::native ? XDP_FLAGS_DRV_MODE : XDP_FLAGS_SKB_MODE;
    // A sekisho_xdp program an earlier run left attached in this mode is
    // replaced in one step: no packet between the two goes unjudged.
    __u32 old_id = 0;
    if (bpf_xdp_query_id(static_cast<int>(ifindex), static_cast<int>(mode_flag), &old_id) != 0) old_id = 0;
    int err = 0;
    if (old_id != 0) {
        std::string name;
        const int old_fd = open_attached_program(old_id, ifname, name);
        if (old_fd < 0)
            throw std::runtime_error("xdp: cannot attach to " + ifname + ": another XDP program ('" + name +
                                     "', id " + std::to_string(old_id) + ") is attached");
        bpf_xdp_attach_opts opts{};
        opts.sz = sizeof opts;
        opts.old_prog_fd = old_fd;
        err = bpf_xdp_attach(static_cast<int>(ifindex), program_fd(), mode_flag | XDP_FLAGS_REPLACE, &opts);
        close(old_fd);
    } else {
        err = bpf_xdp_attach(static_cast<int>(ifindex), program_fd(), mode_flag | XDP_FLAGS_UPDATE_IF_NOEXIST,
                             nullptr);
    }
    if (err)
        throw failure("cannot attach to " + ifname + " in " + to_string(mode) + " mode" +
                          (err == -EBUSY || err == -EEXIST ? " (another XDP program is attached)" : "") +
                          (err == -EOPNOTSUPP && mode == xdp_attach_mode::native
                               ? " (the driver has no native XDP: use --xdp-mode generic)"
                               : ""),
                      err);
    attached_.push_back({static_cast<int>(ifindex), mode_flag, ifname});
    if (!pin_dir_.empty()) {
        // The next start replaces this program by this pin.
        const std::string path = program_pin_path();
        unlink(path.c_str());
        const int pin_err = bpf_program__pin(skel_->progs.sekisho_xdp, path.c_str());
        if (pin_err) throw failure("cannot pin the program as " + path, pin_err);
    }
    return old_id != 0;
}

void xdp_backend::detach_all() {
    for (const attachment& a : attached_) {
        // Only our program: an operator's replacement stays.
        bpf_xdp_attach_opts opts{};
        opts.sz = sizeof opts;
        opts.old_prog_fd = program_fd();
        if (bpf_xdp_detach(a.ifindex, a.flags | XDP_FLAGS_REPLACE, &opts) != 0)
            bpf_xdp_detach(a.ifindex, a.flags, nullptr);
        bpf_map_delete_elem(bpf_map__fd(skel_->maps.interface_roles), &a.ifindex);
    }
    attached_.clear();
}

std::vector<sx_counters> xdp_backend::read_counters() const {
    // Per-CPU values come rounded up to 8 bytes each.
    const size_t stride = (sizeof(sx_counters) + 7) / 8 * 8;
    std::vector<uint8_t> raw(stride * cpus_);
    const __u32 zero = 0;
    if (bpf_map_lookup_elem(bpf_map__fd(skel_->maps.counters), &zero, raw.data()) != 0)
        throw failure("cannot read the counters", errno);
    std::vector<sx_counters> out(cpus_);
    for (unsigned c = 0; c < cpus_; ++c) std::memcpy(&out[c], raw.data() + c * stride, sizeof(sx_counters));
    return out;
}

size_t xdp_backend::drain_events(const std::function<void(const event_record&)>& sink) {
    static_assert(sizeof(event_record::src) == sizeof(sx_event::src));
    size_t n = 0;
    std::function<void(const sx_event&)> convert = [&](const sx_event& x) {
        event_record e{};
        e.time_ns = static_cast<uint64_t>(static_cast<int64_t>(x.time_ns) + monotonic_to_realtime_ns_);
        e.generation = x.generation;
        e.type = static_cast<event_type>(x.type);
        e.reason = x.reason;
        e.ip_version = x.ip_version;
        e.ingress = x.ingress;
        e.action = x.action;
        e.worker = x.cpu;
        e.tcp_flags = x.tcp_flags;
        e.src_port = x.src_port;
        e.dst_port = x.dst_port;
        std::memcpy(e.src, x.src, sizeof e.src);
        std::memcpy(e.dst, x.dst, sizeof e.dst);
        sink(e);
        ++n;
    };
    raw_sink_ = std::move(convert);
    const int err = ring_buffer__consume(ring_);
    raw_sink_ = nullptr;
    if (err < 0) throw failure("cannot read the event ring buffer", err);
    return n;
}

}  // namespace sekisho
