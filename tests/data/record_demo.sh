#!/usr/bin/env bash
# record_demo.sh - re-record tests/data/demo.pcap from real clients in the network-namespace lab.
#
# Usage (root): tests/data/record_demo.sh [OUTPUT.pcap]      (default: tests/data/demo.pcap)
#
# The lab runs in "direct" mode (a Linux bridge in gw joins acc0 and core0, no sekishod), and
# tcpdump records on acc0 in gw, i.e. the access side of the bump in the wire, both directions,
# classic pcap (not pcapng), Ethernet link type, full snap length. The capture holds, in order:
#   ping 198.51.100.7 -> 203.0.113.25 (with ARP)
#   1 SMTP 198.51.100.7   -> MX    203.0.113.25:25   (dynamic -> MX:25: what OP25B must block)
#   2 SMTP 198.51.100.7   -> relay 203.0.113.10:25   (allowed: ISP relay)
#   3 SMTP 198.51.100.7   -> MX    203.0.113.25:587  (allowed: submission)
#   4 SMTP 198.51.100.130 -> MX    203.0.113.25:25   (allowed: static customer)
#   ping 2001:db8:100::7 -> 2001:db8:25::25 (with NDP)
#   5-8 the same four over IPv6: 2001:db8:100::7 / 2001:db8:1ff::130 -> 2001:db8:25::25 / ::10
#   TCP/80 198.51.100.7 -> 203.0.113.25:80, one line each way (nc)
# Every SMTP session is complete (EHLO, MAIL, RCPT, DATA, QUIT) with fixed headers, so only
# timestamps, ephemeral ports and TCP sequence numbers change from one recording to the next.
# Only documentation addresses and MACs are used, only inside namespaces this script creates;
# they are removed on exit, even on failure.
set -u

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-$here/demo.pcap}"
# shellcheck source=SCRIPTDIR/../e2e/netlab.sh
source "$here/../e2e/netlab.sh"

if ! netlab_can_run; then
  exit 77
fi
for t in swaks tcpdump nc ping /usr/sbin/smtp-sink; do
  command -v "$t" >/dev/null 2>&1 || { echo "record_demo: '$t' not found" >&2; exit 77; }
done

work=""
cleanup() {
  trap '' INT TERM # finish cleaning up even if signalled again
  netlab_down
  [ -n "$work" ] && rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
work="$(mktemp -d /tmp/sekisho-demo.XXXXXX)" || exit 1
NETLAB_LOGDIR="$work/logs"

die() {
  echo "record_demo: $*" >&2
  for f in "$NETLAB_LOGDIR"/*.log; do
    [ -s "$f" ] && { echo "--- $f" >&2; tail -n 20 "$f" >&2; }
  done
  exit 1
}

netlab_up --direct || die "lab setup failed"
netlab_start_sinks || die "sinks did not start"
# Let the link-up chatter (IPv6 MLD reports) pass before recording.
sleep 2

# -Z root: Debian's tcpdump otherwise drops to user tcpdump before opening the output file.
netlab_spawn gw "$NETLAB_LOGDIR/tcpdump.log" tcpdump -i acc0 -n -U -s 0 -Z root -w "$work/demo.pcap"
tcpdump_pid=$NETLAB_LAST_PID
for ((i = 0; i < 50; i++)); do
  grep -q 'listening on' "$NETLAB_LOGDIR/tcpdump.log" 2>/dev/null && break
  sleep 0.1
done
grep -q 'listening on' "$NETLAB_LOGDIR/tcpdump.log" || die "tcpdump did not start"

n=0
smtp() { # smtp FAMILY SOURCE SERVER PORT
  local fam="$1" src="$2" server="$3" port="$4"
  n=$((n + 1))
  echo "record_demo: SMTP $n: $src -> $server port $port"
  netlab_exec_sub swaks "$fam" --server "$server" --port "$port" --local-interface "$src" \
    --helo client.example.com --from "sender@example.com" --to "rcpt@example.net" \
    --header "Date: Mon, 23 Nov 2026 00:00:00 +0000" \
    --header "Subject: sekisho demo $n" \
    --header "Message-Id: <demo-$n@client.example.com>" \
    --body "Sekisho demo message $n." \
    --timeout 10 --hide-all || die "swaks $n failed ($src -> $server:$port)"
}

netlab_exec_sub ping -c 2 -i 0.2 -W 2 -I "$NETLAB_SUB_V4_DYN" "$NETLAB_MX_V4" >/dev/null || die "ping failed"
smtp -4 "$NETLAB_SUB_V4_DYN" "$NETLAB_MX_V4" 25
smtp -4 "$NETLAB_SUB_V4_DYN" "$NETLAB_RELAY_V4" 25
smtp -4 "$NETLAB_SUB_V4_DYN" "$NETLAB_MX_V4" 587
smtp -4 "$NETLAB_SUB_V4_STATIC" "$NETLAB_MX_V4" 25
netlab_exec_sub ping -6 -c 2 -i 0.2 -W 2 -I "$NETLAB_SUB_V6_DYN" "$NETLAB_MX_V6" >/dev/null || die "ping -6 failed"
smtp -6 "$NETLAB_SUB_V6_DYN" "$NETLAB_MX_V6" 25
smtp -6 "$NETLAB_SUB_V6_DYN" "$NETLAB_RELAY_V6" 25
smtp -6 "$NETLAB_SUB_V6_DYN" "$NETLAB_MX_V6" 587
smtp -6 "$NETLAB_SUB_V6_STATIC" "$NETLAB_MX_V6" 25
reply="$(echo "GET-FROM-SUB" | netlab_exec_sub nc -N -w 3 -s "$NETLAB_SUB_V4_DYN" "$NETLAB_MX_V4" 80)"
[ "$reply" = "HELLO-FROM-UP $NETLAB_MX_V4" ] || die "nc to port 80 got '$reply'"

sleep 0.5
kill -INT "$tcpdump_pid"
wait "$tcpdump_pid" 2>/dev/null
cat "$NETLAB_LOGDIR/tcpdump.log"

# Sanity checks on what was recorded.
pcap="$work/demo.pcap"
count() { tcpdump -r "$pcap" -n "$@" 2>/dev/null | wc -l; }
magic="$(od -An -tx1 -N4 "$pcap" | tr -d ' ')"
[ "$magic" = "d4c3b2a1" ] || [ "$magic" = "a1b2c3d4" ] || die "not a classic pcap (magic $magic)"
tcpdump -r "$pcap" -c 1 2>&1 >/dev/null | grep -q 'EN10MB' || die "link type is not Ethernet"
[ "$(count 'tcp[tcpflags] & tcp-syn != 0 and tcp[tcpflags] & tcp-ack == 0 and tcp dst port 25')" -eq 3 ] || die "expected 3 IPv4 SYNs to port 25"
[ "$(count 'ip6 and tcp dst port 25 and ip6[53] & 0x12 == 0x02')" -eq 3 ] || die "expected 3 IPv6 SYNs to port 25"
[ "$(count "src host $NETLAB_MX_V4 and tcp src port 25 and dst host $NETLAB_SUB_V4_DYN")" -gt 0 ] || die "no server->client packets"
[ "$(count arp)" -gt 0 ] || die "no ARP"
[ "$(count 'icmp6 and ip6[40] == 135')" -gt 0 ] || die "no NDP neighbor solicitation"
[ "$(count 'icmp and icmp[icmptype] == icmp-echoreply')" -gt 0 ] || die "no ICMP echo reply"
[ "$(count 'icmp6 and ip6[40] == 129')" -gt 0 ] || die "no ICMPv6 echo reply"
size=$(stat -c %s "$pcap")
[ "$size" -lt 204800 ] || die "capture too large ($size bytes)"

mkdir -p "$(dirname "$out")"
{ cp "$pcap" "$out.tmp" && mv "$out.tmp" "$out"; } || die "cannot write $out"
echo "record_demo: wrote $out ($(count '') packets, $size bytes)"
