# shellcheck shell=bash
# netlab.sh - network-namespace test lab for Sekisho (source this file; needs root).
#
#   sub (subscribers)            gw (sekishod or a Linux bridge)            up (Internet)
#   sub0 ====================== acc0          core0 ======================== up0
#   198.51.100.7/24   dynamic                                     203.0.113.25/24  MX
#   198.51.100.130/24 static (198.51.100.128/28)                  203.0.113.10/24  ISP relay
#   2001:db8:100::7/64 dynamic (2001:db8:100::/40)                2001:db8:25::25/64 MX
#   2001:db8:1ff::130/64 static (2001:db8:1ff::/48)               2001:db8:25::10/64 relay
#
# The gateway is a bump in the wire: sub and up share one L2 segment and reach each other
# through on-link routes only. No namespace has a default route, so nothing can leave the lab;
# only documentation addresses (RFC 5737, RFC 3849) and documentation MACs (RFC 7042) are used.
#
# Functions:
#   netlab_can_run              0 if a lab can be built here, else prints why (exit 77 to skip)
#   netlab_up [--gateway|--direct]  build the lab; --gateway (default) leaves acc0/core0 to
#                               sekishod; --direct also bridges them with a Linux bridge in gw
#                               (no sekishod needed; used for the demo capture)
#   netlab_bridge_up            add that Linux bridge to a lab that is already up
#   netlab_down                 kill recorded PIDs and everything left in the lab's namespaces,
#                               delete the namespaces (idempotent; safe from an EXIT trap)
#   netlab_exec_sub|gw|up CMD   run CMD in a namespace
#   netlab_spawn NS LOG CMD...  start CMD in the background in namespace NS (sub|gw|up), output to
#                               LOG, record its PID for netlab_down; the PID is left in NETLAB_LAST_PID
#   netlab_start_sinks          smtp-sink on the MX (25, 587) and relay (25), v4 and v6, and a
#                               line responder on 203.0.113.25:80 and [2001:db8:25::25]:80
#   netlab_wait_listen NS ADDR PORT [SECONDS]   wait until a TCP listener exists
#
# Names are unique per run (suffix NETLAB_ID, default $$) so parallel runs do not clash.

NETLAB_ID="${NETLAB_ID:-$$}"
NETLAB_NS_SUB="sekisho-sub-${NETLAB_ID}"
NETLAB_NS_GW="sekisho-gw-${NETLAB_ID}"
NETLAB_NS_UP="sekisho-up-${NETLAB_ID}"
NETLAB_PIDS=()
NETLAB_LOGDIR="${NETLAB_LOGDIR:-}"
NETLAB_LAST_PID=""

# Addresses (documentation ranges only).
NETLAB_SUB_V4_DYN=198.51.100.7
NETLAB_SUB_V4_STATIC=198.51.100.130
NETLAB_SUB_V6_DYN=2001:db8:100::7
NETLAB_SUB_V6_STATIC=2001:db8:1ff::130
NETLAB_MX_V4=203.0.113.25
NETLAB_RELAY_V4=203.0.113.10
NETLAB_MX_V6=2001:db8:25::25
NETLAB_RELAY_V6=2001:db8:25::10
# Documentation MACs (RFC 7042: 00-00-5E-00-53-00..FF) so captures are stable across runs.
NETLAB_MAC_SUB0=00:00:5e:00:53:07
NETLAB_MAC_ACC0=00:00:5e:00:53:a0
NETLAB_MAC_CORE0=00:00:5e:00:53:c0
NETLAB_MAC_UP0=00:00:5e:00:53:25

_netlab_log() { echo "netlab: $*" >&2; }

_netlab_ns() {
  case "$1" in
    sub) echo "$NETLAB_NS_SUB" ;;
    gw) echo "$NETLAB_NS_GW" ;;
    up) echo "$NETLAB_NS_UP" ;;
    *) _netlab_log "unknown namespace '$1'"; return 1 ;;
  esac
}

netlab_exec_sub() { ip netns exec "$NETLAB_NS_SUB" "$@"; }
netlab_exec_gw() { ip netns exec "$NETLAB_NS_GW" "$@"; }
netlab_exec_up() { ip netns exec "$NETLAB_NS_UP" "$@"; }

netlab_can_run() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "netlab: not root; network namespaces need root (skipping)" >&2
    return 1
  fi
  local t
  for t in ip ethtool; do
    if ! command -v "$t" >/dev/null 2>&1; then
      echo "netlab: '$t' not found (skipping)" >&2
      return 1
    fi
  done
  if ! ip netns list >/dev/null 2>&1; then
    echo "netlab: 'ip netns' does not work here (skipping)" >&2
    return 1
  fi
  local probe="sekisho-probe-$$-$RANDOM"
  if ! ip netns add "$probe" >/dev/null 2>&1; then
    echo "netlab: cannot create a network namespace (skipping)" >&2
    return 1
  fi
  if ! ip netns exec "$probe" ip link add p0 type veth peer name p1 >/dev/null 2>&1; then
    ip netns del "$probe" >/dev/null 2>&1
    echo "netlab: cannot create veth interfaces (skipping)" >&2
    return 1
  fi
  ip netns del "$probe" >/dev/null 2>&1
  return 0
}

# Fail loudly on the first setup error.
_netlab_run() {
  if ! "$@"; then
    _netlab_log "setup command failed: $*"
    return 1
  fi
}

netlab_up() {
  local direct=0
  case "${1:---gateway}" in
    --direct) direct=1 ;;
    --gateway) ;;
    *) _netlab_log "netlab_up: unknown mode '$1'"; return 1 ;;
  esac
  if [ -z "$NETLAB_LOGDIR" ]; then
    NETLAB_LOGDIR="$(mktemp -d "/tmp/sekisho-netlab-${NETLAB_ID}.XXXXXX")" || return 1
    NETLAB_OWN_LOGDIR=1
  fi
  mkdir -p "$NETLAB_LOGDIR"
  local ns
  for ns in "$NETLAB_NS_SUB" "$NETLAB_NS_GW" "$NETLAB_NS_UP"; do
    _netlab_run ip netns add "$ns" || return 1
    ip netns exec "$ns" ip link set lo up
    # Quiet IPv6 hosts: no router solicitations, no SLAAC.
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.default.accept_ra=0 net.ipv6.conf.all.accept_ra=0 \
      net.ipv6.conf.default.router_solicitations=0 net.ipv6.conf.all.router_solicitations=0 >/dev/null
  done
  # The gateway is L2 only: no IPv6 (no link-local, MLD or NDP traffic from gw ports).
  netlab_exec_gw sysctl -qw net.ipv6.conf.default.disable_ipv6=1 net.ipv6.conf.all.disable_ipv6=1 >/dev/null

  # Create each veth pair directly inside its namespaces: no names in the root namespace.
  _netlab_run ip link add sub0 netns "$NETLAB_NS_SUB" address "$NETLAB_MAC_SUB0" type veth \
    peer name acc0 netns "$NETLAB_NS_GW" address "$NETLAB_MAC_ACC0" || return 1
  _netlab_run ip link add up0 netns "$NETLAB_NS_UP" address "$NETLAB_MAC_UP0" type veth \
    peer name core0 netns "$NETLAB_NS_GW" address "$NETLAB_MAC_CORE0" || return 1

  # Senders: no TX checksum offload (else TCP forwarded by DPDK arrives with partial checksums),
  # and no segmentation offloads, so every frame on the wire is a real <= MTU frame.
  netlab_exec_sub ethtool -K sub0 tx off tso off gso off gro off >/dev/null 2>&1 || { _netlab_log "ethtool on sub0 failed"; return 1; }
  netlab_exec_up ethtool -K up0 tx off tso off gso off gro off >/dev/null 2>&1 || { _netlab_log "ethtool on up0 failed"; return 1; }
  netlab_exec_gw ethtool -K acc0 gro off gso off tso off >/dev/null 2>&1 || { _netlab_log "ethtool on acc0 failed"; return 1; }
  netlab_exec_gw ethtool -K core0 gro off gso off tso off >/dev/null 2>&1 || { _netlab_log "ethtool on core0 failed"; return 1; }

  # Subscriber side.
  _netlab_run netlab_exec_sub ip addr add "$NETLAB_SUB_V4_DYN/24" dev sub0 || return 1
  _netlab_run netlab_exec_sub ip addr add "$NETLAB_SUB_V4_STATIC/24" dev sub0 || return 1
  _netlab_run netlab_exec_sub ip -6 addr add "$NETLAB_SUB_V6_DYN/64" dev sub0 nodad || return 1
  _netlab_run netlab_exec_sub ip -6 addr add "$NETLAB_SUB_V6_STATIC/64" dev sub0 nodad || return 1
  # Upstream side.
  _netlab_run netlab_exec_up ip addr add "$NETLAB_MX_V4/24" dev up0 || return 1
  _netlab_run netlab_exec_up ip addr add "$NETLAB_RELAY_V4/24" dev up0 || return 1
  _netlab_run netlab_exec_up ip -6 addr add "$NETLAB_MX_V6/64" dev up0 nodad || return 1
  _netlab_run netlab_exec_up ip -6 addr add "$NETLAB_RELAY_V6/64" dev up0 nodad || return 1

  netlab_exec_sub ip link set sub0 up
  netlab_exec_up ip link set up0 up
  netlab_exec_gw ip link set acc0 up
  netlab_exec_gw ip link set core0 up

  # On-link routes across the bump in the wire. The default source is the dynamic address;
  # the static customer is chosen explicitly (swaks --local-interface, ping -I, nc -s).
  _netlab_run netlab_exec_sub ip route add 203.0.113.0/24 dev sub0 src "$NETLAB_SUB_V4_DYN" || return 1
  _netlab_run netlab_exec_sub ip -6 route add 2001:db8:25::/48 dev sub0 src "$NETLAB_SUB_V6_DYN" || return 1
  _netlab_run netlab_exec_up ip route add 198.51.100.0/24 dev up0 src "$NETLAB_MX_V4" || return 1
  _netlab_run netlab_exec_up ip -6 route add 2001:db8:100::/40 dev up0 src "$NETLAB_MX_V6" || return 1

  if [ "$direct" = 1 ]; then
    netlab_bridge_up || return 1
  fi
  return 0
}

# A plain Linux bridge joining acc0 and core0: the lab without sekishod.
netlab_bridge_up() {
  _netlab_run netlab_exec_gw ip link add br0 type bridge stp_state 0 mcast_snooping 0 || return 1
  netlab_exec_gw ip link set acc0 master br0
  netlab_exec_gw ip link set core0 master br0
  netlab_exec_gw ip link set br0 up
}

# netlab_spawn NS LOGFILE CMD... : background CMD in a namespace, stdin from /dev/null and all
# output to LOGFILE (so nothing keeps the caller's stdout open), PID recorded for cleanup.
netlab_spawn() {
  local ns
  ns="$(_netlab_ns "$1")" || return 1
  local log="$2"
  shift 2
  # 'ip netns exec' execs the command, so $! is the command's own PID.
  ip netns exec "$ns" "$@" </dev/null >"$log" 2>&1 &
  NETLAB_LAST_PID=$!
  NETLAB_PIDS+=("$NETLAB_LAST_PID")
}

# netlab_wait_listen NS ADDR PORT [SECONDS]
netlab_wait_listen() {
  local ns addr="$2" port="$3" secs="${4:-5}" i
  ns="$(_netlab_ns "$1")" || return 1
  for ((i = 0; i < secs * 10; i++)); do
    # ss prints IPv6 local addresses as [addr]:port.
    if ip netns exec "$ns" ss -Hltn "sport = :$port" 2>/dev/null |
      awk '{print $4}' | grep -qxF -e "$addr:$port" -e "[$addr]:$port"; then
      return 0
    fi
    sleep 0.1
  done
  _netlab_log "nothing listens on $addr port $port in $1 after ${secs}s"
  return 1
}

netlab_start_sinks() {
  local ep addr port name
  # smtp-sink takes one endpoint; IPv6 is written [addr]:port. As root it needs -u.
  for ep in "$NETLAB_MX_V4:25" "$NETLAB_MX_V4:587" "$NETLAB_RELAY_V4:25" \
    "[$NETLAB_MX_V6]:25" "[$NETLAB_MX_V6]:587" "[$NETLAB_RELAY_V6]:25"; do
    name="smtp-sink-$(echo "$ep" | tr -c 'A-Za-z0-9\n' '_')"
    netlab_spawn up "$NETLAB_LOGDIR/$name.log" /usr/sbin/smtp-sink -u nobody "$ep" 64 || return 1
  done
  # TCP/80: answer each connection with one line and log what the client sent
  # (openbsd nc: -l one connection per loop turn, -N shuts down the write side after the reply).
  for addr in "$NETLAB_MX_V4" "$NETLAB_MX_V6"; do
    name="nc80-$(echo "$addr" | tr -c 'A-Za-z0-9\n' '_')"
    # shellcheck disable=SC2016  # $1 expands in the inner shell
    netlab_spawn up "$NETLAB_LOGDIR/$name.log" bash -c \
      'while :; do echo "HELLO-FROM-UP $1" | nc -N -l "$1" 80 || sleep 0.2; done' nc80 "$addr" || return 1
  done
  for ep in "$NETLAB_MX_V4 25" "$NETLAB_MX_V4 587" "$NETLAB_RELAY_V4 25" "$NETLAB_MX_V6 25" \
    "$NETLAB_MX_V6 587" "$NETLAB_RELAY_V6 25" "$NETLAB_MX_V4 80" "$NETLAB_MX_V6 80"; do
    read -r addr port <<<"$ep"
    netlab_wait_listen up "$addr" "$port" 5 || return 1
  done
  return 0
}

# True while PID runs (a zombie counts as gone).
_netlab_alive() {
  local st
  st="$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" || return 1
  [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

# Kill PIDs: TERM all, up to 2 s grace, then KILL whatever is left.
_netlab_kill_pids() {
  local pid i left
  [ $# -gt 0 ] || return 0
  kill -TERM "$@" 2>/dev/null
  for ((i = 0; i < 20; i++)); do
    left=0
    for pid in "$@"; do
      _netlab_alive "$pid" && left=1
    done
    [ "$left" = 0 ] && return 0
    sleep 0.1
  done
  for pid in "$@"; do
    _netlab_alive "$pid" && kill -KILL "$pid" 2>/dev/null
  done
  return 0
}

netlab_down() {
  local pid ns pids saved_traps
  # Not interruptible: a second signal must not leave namespaces behind.
  saved_traps="$(trap -p INT TERM)"
  trap '' INT TERM
  _netlab_kill_pids "${NETLAB_PIDS[@]}"
  # Anything still running inside our own namespaces (e.g. children of the nc loops).
  for ns in "$NETLAB_NS_SUB" "$NETLAB_NS_GW" "$NETLAB_NS_UP"; do
    [ -e "/run/netns/$ns" ] || continue
    pids="$(ip netns pids "$ns" 2>/dev/null)"
    # shellcheck disable=SC2086
    [ -n "$pids" ] && _netlab_kill_pids $pids
  done
  for pid in "${NETLAB_PIDS[@]}"; do
    wait "$pid" 2>/dev/null
  done
  NETLAB_PIDS=()
  for ns in "$NETLAB_NS_SUB" "$NETLAB_NS_GW" "$NETLAB_NS_UP"; do
    [ -e "/run/netns/$ns" ] && ip netns del "$ns" 2>/dev/null
  done
  if [ "${NETLAB_OWN_LOGDIR:-0}" = 1 ] && [ -z "${NETLAB_KEEP_LOGS:-}" ]; then
    rm -rf "$NETLAB_LOGDIR"
    NETLAB_LOGDIR=""
    NETLAB_OWN_LOGDIR=0
  fi
  trap - INT TERM
  eval "$saved_traps"
  return 0
}
