#!/usr/bin/python3
"""Replay acceptance tests: sekishod --replay over the shipped demo capture and
over an evasion capture generated here, checked frame by frame against an
independent expectation computed with scapy.

usage: replay_test.py SEKISHOD SOURCE_ROOT
"""
import json
import os
import struct
import subprocess
import sys
import tempfile
import unittest

from scapy.all import (ARP, Dot1Q, Ether, IP, IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment,
                       IPv6ExtHdrHopByHop, IPv6ExtHdrRouting, PPPoE, PPP, Raw, TCP, UDP, rdpcap, wrpcap)
from scapy.utils import PcapReader
import ipaddress

SEKISHOD = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else None
ROOT = os.path.abspath(sys.argv[2]) if len(sys.argv) > 2 else None
del sys.argv[1:]

DYNAMIC = [ipaddress.ip_network("198.51.100.0/24"), ipaddress.ip_network("2001:db8:100::/40")]
STATIC = [ipaddress.ip_network("198.51.100.128/28"), ipaddress.ip_network("2001:db8:1ff::/48")]
RELAYS = [ipaddress.ip_network("203.0.113.10/32"), ipaddress.ip_network("2001:db8:25::10/128")]


def in_any(addr, nets):
    a = ipaddress.ip_address(addr)
    return any(a.version == n.version and a in n for n in nets)


def source_of(pkt):
    for layer in (IP, IPv6):
        if layer in pkt:
            return pkt[layer].src
    return None


def from_access(pkt):
    src = source_of(pkt)
    return src is None or in_any(src, DYNAMIC) or in_any(src, STATIC)


def op25b_blocks(pkt):
    """The issue's rule, written independently of the C++ classifier, for
    well-formed frames: access->core TCP to port 25 from a dynamic, non-static
    source to a non-relay destination."""
    if TCP not in pkt or not from_access(pkt):
        return False
    src = source_of(pkt)
    dst = pkt[IP].dst if IP in pkt else pkt[IPv6].dst
    dynamic = in_any(src, DYNAMIC) and not in_any(src, STATIC)
    return pkt[TCP].dport == 25 and dynamic and not in_any(dst, RELAYS)


def run_replay(capture, policy, out, workers=1, expect_rc=0):
    proc = subprocess.run([SEKISHOD, "--replay", capture, "--policy", policy, "--out", out,
                           "--workers", str(workers)], capture_output=True, text=True, timeout=120)
    if proc.returncode != expect_rc:
        raise AssertionError(f"sekishod exited {proc.returncode}, expected {expect_rc}\n"
                             f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def frames(path):
    with PcapReader(path) as r:
        return [bytes(p) for p in r]


frames_of = frames


class DemoReplay(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.capture = os.path.join(ROOT, "tests/data/demo.pcap")
        cls.packets = rdpcap(cls.capture)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def policy(self, name):
        return os.path.join(ROOT, "configs", name)

    def replay(self, policy, workers=1):
        out = tempfile.mkdtemp(dir=self.tmp.name)
        proc = run_replay(self.capture, self.policy(policy), out, workers)
        with open(os.path.join(out, "summary.json")) as f:
            summary = json.load(f)
        return out, summary, proc

    def test_enforce_reset(self):
        out, s, proc = self.replay("op25b-enforce.yaml")
        access = [p for p in self.packets if from_access(p)]
        core = [p for p in self.packets if not from_access(p)]
        blocked = [p for p in access if op25b_blocks(p)]
        self.assertGreater(len(blocked), 0, "the demo capture must contain OP25B traffic")
        self.assertEqual(s["frames_in"], len(self.packets))
        self.assertEqual(s["ports"]["access"]["rx_packets"], len(access))
        self.assertEqual(s["ports"]["core"]["rx_packets"], len(core))
        self.assertEqual(s["blocked"], len(blocked))
        self.assertEqual(s["blocked_by_reason"], {"op25b_port": len(blocked)})
        self.assertEqual(s["op25b_by_dst_port"], {"25": len(blocked)})
        self.assertEqual(s["forwarded"], len(self.packets) - len(blocked))
        self.assertEqual(s["resets_sent"], len(blocked))  # none of the blocked segments is a RST
        self.assertIn("blocked", proc.stdout)

        # Bump in the wire: what passes leaves byte for byte, in order.
        to_core = frames(os.path.join(out, "to-core.pcap"))
        self.assertEqual(to_core, [bytes(p) for p in access if not op25b_blocks(p)])
        to_access = frames(os.path.join(out, "to-access.pcap"))
        passed_core = [bytes(p) for p in core]
        self.assertEqual([f for f in to_access if f in passed_core], passed_core)
        resets = [Ether(f) for f in to_access if f not in passed_core]
        self.assertEqual(len(resets), len(blocked))
        for rst, orig in zip(resets, blocked):
            ip_layer = IP if IP in orig else IPv6
            self.assertTrue(rst[TCP].flags.R)
            self.assertEqual(rst[ip_layer].src, orig[ip_layer].dst)
            self.assertEqual(rst[ip_layer].dst, orig[ip_layer].src)
            self.assertEqual((rst[TCP].sport, rst[TCP].dport), (orig[TCP].dport, orig[TCP].sport))
            self.assertEqual(rst[Ether].dst, orig[Ether].src)
            # checksums as the receiver will verify them
            fresh = Ether(bytes(rst))
            del fresh[TCP].chksum
            self.assertEqual(Ether(bytes(fresh))[TCP].chksum, rst[TCP].chksum)

        # One event per blocked frame, carrying the 5-tuple and no payload.
        with open(os.path.join(out, "events.jsonl")) as f:
            events = [json.loads(line) for line in f]
        # The sessions OP25B let through (relay, submission) report what they carried.
        sessions = [e for e in events if e["type"] == "mail_session"]
        self.assertGreater(len(sessions), 0)
        self.assertEqual(sum(e["messages"] for e in sessions), s["smtp"]["messages"])
        self.assertEqual(sum(e["recipients"] for e in sessions), s["smtp"]["recipients"])
        events = [e for e in events if e["type"] != "mail_session"]
        self.assertEqual(len(events), len(blocked))
        self.assertEqual({e["type"] for e in events}, {"op25b_block"})
        self.assertEqual({(e["src"], e["dst"], e["dst_port"]) for e in events},
                         {(source_of(p), (p[IP].dst if IP in p else p[IPv6].dst), 25) for p in blocked})
        self.assertEqual(events[0]["time_ns"], int(blocked[0].time * 1_000_000) * 1000,
                         "replay uses the capture's timestamps as the clock")

    def test_monitor_forwards_everything(self):
        out, s, _ = self.replay("op25b-monitor.yaml")
        blocked = [p for p in self.packets if op25b_blocks(p)]
        self.assertEqual(s["blocked"], 0)
        self.assertEqual(s["monitored"], len(blocked))
        self.assertEqual(s["resets_sent"], 0)
        self.assertEqual(s["forwarded"], len(self.packets))
        to_core = frames(os.path.join(out, "to-core.pcap"))
        self.assertEqual(to_core, [bytes(p) for p in self.packets if from_access(p)])
        with open(os.path.join(out, "events.jsonl")) as f:
            # monitor lets port 25 through: those sessions are followed and reported too
            self.assertEqual({json.loads(l)["type"] for l in f}, {"op25b_monitor", "mail_session"})

    def test_drop_sends_no_reset(self):
        out, s, _ = self.replay("op25b-drop.yaml")
        blocked = [p for p in self.packets if op25b_blocks(p)]
        self.assertEqual(s["blocked"], len(blocked))
        self.assertEqual(s["resets_sent"], 0)
        self.assertEqual(len(frames(os.path.join(out, "to-access.pcap"))),
                         len([p for p in self.packets if not from_access(p)]))

    def test_two_workers_same_verdicts(self):
        _, one, _ = self.replay("op25b-enforce.yaml", workers=1)
        _, two, _ = self.replay("op25b-enforce.yaml", workers=2)
        for key in ("frames_in", "forwarded", "blocked", "resets_sent", "blocked_by_reason",
                    "op25b_by_dst_port", "malformed_by_reason"):
            self.assertEqual(one[key], two[key], key)
        self.assertEqual(two["workers"], 2)


def evasion_frames():
    """Frames for every encapsulation and evasion case, each tagged with the
    verdict the issue asks for: (name, frame, blocked?)."""
    mac = dict(src="00:00:5e:00:53:01", dst="00:00:5e:00:53:02")
    dyn4, stat4, mx4, relay4 = "198.51.100.7", "198.51.100.130", "203.0.113.25", "203.0.113.10"
    dyn6, stat6, mx6 = "2001:db8:100::7", "2001:db8:1ff::130", "2001:db8:25::25"
    syn25 = TCP(sport=40000, dport=25, flags="S", seq=1000)
    out = []

    def add(name, pkt, blocked):
        out.append((name, pkt, blocked))

    add("ipv4 dynamic syn", Ether(**mac) / IP(src=dyn4, dst=mx4) / syn25, True)
    add("ipv4 dynamic ack data", Ether(**mac) / IP(src=dyn4, dst=mx4) /
        TCP(sport=40000, dport=25, flags="PA", seq=5, ack=9) / Raw(b"EHLO x\r\n"), True)
    add("ipv4 static", Ether(**mac) / IP(src=stat4, dst=mx4) / syn25, False)
    add("ipv4 relay", Ether(**mac) / IP(src=dyn4, dst=relay4) / syn25, False)
    add("ipv4 submission", Ether(**mac) / IP(src=dyn4, dst=mx4) / TCP(dport=587, flags="S"), False)
    add("ipv4 options", Ether(**mac) / IP(src=dyn4, dst=mx4, options=b"\x01\x01\x01\x00") / syn25, True)
    add("802.1q", Ether(**mac) / Dot1Q(vlan=10) / IP(src=dyn4, dst=mx4) / syn25, True)
    add("qinq 88a8", Ether(type=0x88a8, **mac) / Dot1Q(vlan=100) / Dot1Q(vlan=10) / IP(src=dyn4, dst=mx4) / syn25, True)
    add("qinq 8100", Ether(**mac) / Dot1Q(vlan=100) / Dot1Q(vlan=10) / IP(src=dyn4, dst=mx4) / syn25, True)
    add("pppoe ipv4", Ether(**mac) / PPPoE(sessionid=7) / PPP(proto=0x0021) / IP(src=dyn4, dst=mx4) / syn25, True)
    add("pppoe ipv6", Ether(**mac) / PPPoE(sessionid=7) / PPP(proto=0x0057) / IPv6(src=dyn6, dst=mx6) / syn25, True)
    add("vlan pppoe ipv4", Ether(**mac) / Dot1Q(vlan=20) / PPPoE(sessionid=9) / PPP(proto=0x0021) /
        IP(src=dyn4, dst=mx4) / syn25, True)
    # IPv4 first fragment carrying the TCP header: blocked.
    first = IP(src=dyn4, dst=mx4, flags="MF", frag=0, proto=6) / Raw(bytes(syn25 / Raw(b"x" * 20))[:24])
    add("ipv4 first fragment", Ether(**mac) / first, True)
    # IPv4 tiny first fragment: only 8 bytes of TCP header.
    tiny = IP(src=dyn4, dst=mx4, flags="MF", frag=0, proto=6) / Raw(bytes(syn25)[:8])
    add("ipv4 tiny fragment dynamic", Ether(**mac) / tiny, True)
    tiny_static = IP(src=stat4, dst=mx4, flags="MF", frag=0, proto=6) / Raw(bytes(syn25)[:8])
    add("ipv4 tiny fragment static", Ether(**mac) / tiny_static, False)
    later = IP(src=dyn4, dst=mx4, frag=3, proto=6) / Raw(b"y" * 16)
    add("ipv4 later fragment", Ether(**mac) / later, False)
    overlap = IP(src=dyn4, dst=mx4, frag=1, proto=6) / Raw(b"z" * 16)
    add("ipv4 overlapping fragment (RFC 1858)", Ether(**mac) / overlap, True)
    add("ipv6 dynamic syn", Ether(**mac) / IPv6(src=dyn6, dst=mx6) / syn25, True)
    add("ipv6 static", Ether(**mac) / IPv6(src=stat6, dst=mx6) / syn25, False)
    add("ipv6 relay", Ether(**mac) / IPv6(src=dyn6, dst="2001:db8:25::10") / syn25, False)
    add("ipv6 ext chain", Ether(**mac) / IPv6(src=dyn6, dst=mx6) / IPv6ExtHdrHopByHop() /
        IPv6ExtHdrDestOpt() / IPv6ExtHdrRouting() / syn25, True)
    add("ipv6 first fragment whole chain", Ether(**mac) / IPv6(src=dyn6, dst=mx6) /
        IPv6ExtHdrFragment(m=1, offset=0, nh=6) / Raw(bytes(syn25)), True)
    # RFC 7112: the first fragment stops inside the header chain.
    split = IPv6(src=dyn6, dst=mx6) / IPv6ExtHdrFragment(m=1, offset=0, nh=60) / Raw(bytes(IPv6ExtHdrDestOpt(nh=6, len=1))[:8])
    add("ipv6 first fragment without tcp dynamic", Ether(**mac) / split, True)
    split_static = IPv6(src=stat6, dst=mx6) / IPv6ExtHdrFragment(m=1, offset=0, nh=60) / Raw(bytes(IPv6ExtHdrDestOpt(nh=6, len=1))[:8])
    add("ipv6 first fragment without tcp static", Ether(**mac) / split_static, False)
    add("ipv6 later fragment", Ether(**mac) / IPv6(src=dyn6, dst=mx6) /
        IPv6ExtHdrFragment(m=0, offset=10, nh=6) / Raw(b"q" * 16), False)
    long_chain = IPv6(src=dyn6, dst=mx6)
    for _ in range(12):
        long_chain = long_chain / IPv6ExtHdrDestOpt()
    add("ipv6 chain of 12 headers", Ether(**mac) / long_chain / syn25, True)
    add("arp", Ether(dst="ff:ff:ff:ff:ff:ff", src=mac["src"]) / ARP(psrc=dyn4, pdst=mx4), False)
    add("udp 53", Ether(**mac) / IP(src=dyn4, dst=mx4) / UDP(dport=53), False)
    add("truncated ipv4", Ether(**mac, type=0x0800) / Raw(bytes(IP(src=dyn4, dst=mx4) / syn25)[:12]), True)
    return out


class EvasionReplay(unittest.TestCase):
    def test_each_case(self):
        policy = os.path.join(ROOT, "configs", "op25b-enforce.yaml")
        with tempfile.TemporaryDirectory() as tmp:
            for name, pkt, blocked in evasion_frames():
                with self.subTest(case=name):
                    cap = os.path.join(tmp, "case.pcap")
                    wrpcap(cap, [pkt])
                    out = os.path.join(tmp, "out")
                    run_replay(cap, policy, out)
                    with open(os.path.join(out, "summary.json")) as f:
                        s = json.load(f)
                    stopped = s["blocked"] + s["malformed_dropped"]
                    self.assertEqual(stopped, 1 if blocked else 0, f"{name}: {json.dumps(s)}")
                    self.assertEqual(len(frames(os.path.join(out, "to-core.pcap"))), 0 if blocked else 1)


class BadInput(unittest.TestCase):
    def test_bad_policy_names_file_and_line(self):
        with tempfile.TemporaryDirectory() as tmp:
            policy = os.path.join(tmp, "bad.yaml")
            with open(policy, "w") as f:
                f.write("version: 1\nsubscribers:\n  dynamic: [198.51.100.1/24]\n")
            proc = run_replay(os.path.join(ROOT, "tests/data/demo.pcap"), policy, os.path.join(tmp, "o"),
                              expect_rc=2)
            self.assertIn(f"{policy}:3: subscribers.dynamic[0]", proc.stderr)
            self.assertIn("host bits", proc.stderr)

    def test_missing_capture(self):
        with tempfile.TemporaryDirectory() as tmp:
            proc = run_replay(os.path.join(tmp, "nope.pcap"), os.path.join(ROOT, "configs/op25b-enforce.yaml"),
                              os.path.join(tmp, "o"), expect_rc=1)
            self.assertIn("nope.pcap", proc.stderr)

    def test_not_a_capture(self):
        with tempfile.TemporaryDirectory() as tmp:
            bogus = os.path.join(tmp, "bogus.pcap")
            with open(bogus, "wb") as f:
                f.write(b"this is not a pcap file at all")
            proc = run_replay(bogus, os.path.join(ROOT, "configs/op25b-enforce.yaml"),
                              os.path.join(tmp, "o"), expect_rc=1)
            self.assertIn("bogus.pcap", proc.stderr)


def pcap_records(path):
    """A classic pcap file as (file header, [(offset, record bytes)]): the
    record header (16 bytes, little-endian here) and its data."""
    with open(path, "rb") as f:
        data = f.read()
    assert struct.unpack_from("<I", data)[0] == 0xA1B2C3D4, "a little-endian microsecond pcap"
    records, at = [], 24
    while at < len(data):
        caplen = struct.unpack_from("<I", data, at + 8)[0]
        records.append((at, data[at:at + 16 + caplen]))
        at += 16 + caplen
    return data[:24], records


def pcapng_block(block_type, body):
    body += b"\0" * (-len(body) % 4)
    length = 12 + len(body)
    return struct.pack("<II", block_type, length) + body + struct.pack("<I", length)


def pcapng_of(header, records, between=None):
    """The same frames as a pcapng file (section header, one Ethernet interface
    with the pcap's snapshot length, microsecond timestamps, one enhanced
    packet block per record), and the offset of each packet block.
    `between`: {i: bytes} puts extra blocks before packet block i (from 0)."""
    snaplen = struct.unpack_from("<I", header, 16)[0]
    out = pcapng_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    out += pcapng_block(1, struct.pack("<HHI", 1, 0, snaplen))
    offsets = []
    for i, (_, rec) in enumerate(records):
        out += (between or {}).get(i, b"")
        sec, usec, caplen, length = struct.unpack_from("<IIII", rec)
        ts = sec * 1000000 + usec
        offsets.append(len(out))
        out += pcapng_block(6, struct.pack("<IIIII", 0, ts >> 32, ts & 0xFFFFFFFF, caplen, length) + rec[16:])
    return out, offsets


class CorruptCapture(unittest.TestCase):
    """A capture that cannot be read to its end is refused before anything is
    replayed: exit 1, the record (from 1) and the byte offset where it starts,
    libpcap's reason, and no summary.json. Net_pcap alone would take libpcap's
    read error for the end of the file and replay the records before it."""

    @classmethod
    def setUpClass(cls):
        cls.header, cls.records = pcap_records(os.path.join(ROOT, "tests/data/demo.pcap"))
        cls.policy = os.path.join(ROOT, "configs/op25b-enforce.yaml")

    def refused(self, content, name, record, offset, reason):
        with tempfile.TemporaryDirectory() as tmp:
            capture = os.path.join(tmp, name)
            with open(capture, "wb") as f:
                f.write(content)
            out = os.path.join(tmp, "out")
            proc = run_replay(capture, self.policy, out, expect_rc=1)
            self.assertIn(f"{capture}: record {record} at offset {offset}: ", proc.stderr)
            self.assertIn(reason, proc.stderr)
            self.assertFalse(os.path.exists(os.path.join(out, "summary.json")), "no summary for a partial capture")
            self.assertFalse(os.path.exists(os.path.join(out, "to-core.pcap")), "nothing replayed")
            self.assertNotIn("frames in", proc.stdout)
            return proc.stderr

    def first(self, n):
        return self.header + b"".join(rec for _, rec in self.records[:n])

    def test_caplen_larger_than_the_snapshot_length(self):
        # The probe: three good frames, then a record claiming 0x7fffffff bytes.
        bad = struct.pack("<IIII", 1795438783, 0, 0x7FFFFFFF, 0x7FFFFFFF) + b"\0" * 64
        self.refused(self.first(3) + bad, "caplen.pcap", 4, self.records[3][0], "2147483647")

    def test_truncated_record_header(self):
        self.refused(self.first(3) + self.records[3][1][:10], "header.pcap", 4, self.records[3][0], "truncated")

    def test_truncated_record_data(self):
        self.refused(self.first(3) + self.records[3][1][:16 + 20], "data.pcap", 4, self.records[3][0], "truncated")

    def test_last_record_cut_short(self):
        whole = self.first(len(self.records))
        self.refused(whole[:-1], "last.pcap", len(self.records), self.records[-1][0], "truncated")

    def test_frame_longer_than_net_pcap_carries(self):
        # libpcap reads it (within the 262144 snapshot length); net_pcap's
        # 16-bit length cannot carry it.
        sec, usec, _, _ = struct.unpack_from("<IIII", self.records[3][1])
        big = struct.pack("<IIII", sec, usec, 70000, 70000) + self.records[3][1][16:] + b"\0" * (70000 - len(self.records[3][1]) + 16)
        self.refused(self.first(3) + big + b"".join(r for _, r in self.records[4:]), "big.pcap", 4,
                     self.records[3][0], "70000")

    def test_truncated_pcapng_block(self):
        ng, offsets = pcapng_of(self.header, self.records[:4])
        self.refused(ng[:offsets[3] + 20], "cut.pcapng", 4, offsets[3], "truncated")
        self.refused(ng[:offsets[3] + 6], "cuthead.pcapng", 4, offsets[3], "truncated")

    def test_pcapng_block_with_a_bad_length(self):
        # A name resolution block (valid, skipped by libpcap) before the bad
        # packet block: the offset is the packet block's, not where reading began.
        nrb = pcapng_block(4, struct.pack("<HH", 0, 0))
        ng, offsets = pcapng_of(self.header, self.records, between={3: nrb})
        for length in (0x7FFFFFF0, 13, 8):
            bad = bytearray(ng)
            struct.pack_into("<I", bad, offsets[3] + 4, length)
            self.refused(bytes(bad), f"length{length}.pcapng", 4, offsets[3], str(length))

    def test_clean_pcapng_replays_like_the_pcap(self):
        nrb = pcapng_block(4, struct.pack("<HH", 0, 0))
        ng, _ = pcapng_of(self.header, self.records, between={3: nrb})
        with tempfile.TemporaryDirectory() as tmp:
            outputs = []
            for name, content in (("demo.pcap", self.first(len(self.records))), ("demo.pcapng", ng)):
                capture = os.path.join(tmp, name)
                with open(capture, "wb") as f:
                    f.write(content)
                out = os.path.join(tmp, name + ".out")
                run_replay(capture, self.policy, out)
                with open(os.path.join(out, "summary.json")) as f:
                    summary = json.load(f)
                with open(os.path.join(out, "events.jsonl")) as f:
                    events = f.read()
                outputs.append((summary, frames(os.path.join(out, "to-core.pcap")),
                                frames(os.path.join(out, "to-access.pcap")), events))
            (s1, core1, access1, ev1), (s2, core2, access2, ev2) = outputs
            self.assertEqual(s1["frames_in"], len(self.records))
            self.assertEqual(s2["frames_in"], len(self.records))
            self.assertGreater(s1["blocked"], 0)
            for key in ("forwarded", "blocked", "resets_sent", "ports", "events"):
                self.assertEqual(s1[key], s2[key], key)
            self.assertEqual(core1, core2)
            self.assertEqual(access1, access2)
            self.assertEqual(ev1, ev2)

    def test_a_failed_replay_leaves_no_earlier_summary_behind(self):
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "out")
            run_replay(os.path.join(ROOT, "tests/data/demo.pcap"), self.policy, out)
            self.assertTrue(os.path.exists(os.path.join(out, "summary.json")))
            capture = os.path.join(tmp, "cut.pcap")
            with open(capture, "wb") as f:
                f.write(self.first(3) + self.records[3][1][:10])
            proc = run_replay(capture, self.policy, out, expect_rc=1)
            self.assertIn("record 4", proc.stderr)
            self.assertFalse(os.path.exists(os.path.join(out, "summary.json")))


LIMITS_POLICY = """version: 1
ports:
  smtp: [25]
  submission: [587, 465]
subscribers:
  dynamic: [198.51.100.0/24, "2001:db8:100::/40"]
  static: [198.51.100.128/28, "2001:db8:1ff::/48"]
  bindings:
    - {prefix: 198.51.100.7, account: alice@example.jp}
    - {prefix: 198.51.100.8, account: alice@example.jp}
relays: [203.0.113.10/32]
limits:
  - name: msgs-per-account
    scope: account
    measure: messages
    max: 5
    window: 1h
    action: tempfail
"""


CMAC, SMAC = "00:00:5e:00:53:01", "00:00:5e:00:53:02"   # subscriber side, server side


def smtp_session(client, client_port, server, t0, isn=1000, server_isn=5000, *, port=587, messages=1,
                 rcpts=1, rcpt_replies=(), body=(b"Subject: hello\r\n\r\nbody\r\n.\r\n",), starttls=False,
                 gap=None, stop_after=None, ehlo=b"client.example.jp", senders=None):
    """One complete SMTP session (SYN, greeting ... 221 and FIN), with correct
    sequence numbers, as a list of frames carrying their capture time (.time).
    IPv6 when `client` is an IPv6 address.

    port: the server port (465: implicit TLS, the same bytes as if they were
      inside TLS: Sekisho must not parse them).
    messages, rcpts: messages in the session, RCPT TO per message.
    rcpt_replies: the server's reply to each RCPT of a message (default 250);
      a message without an accepted recipient is abandoned with RSET.
    body: the message content, one client segment per item.
    starttls: EHLO advertises STARTTLS, the client sends it, the server
      answers 220; the rest of the dialogue goes on as if inside TLS.
    gap: the first client segment whose payload starts with these bytes is
      left out of the capture; its sequence space is still used (a lost segment).
    stop_after: the session ends after the first frame whose payload starts
      with these bytes (what a limit's action replaces is not generated).
    ehlo: the EHLO argument.
    senders: per message, the MAIL FROM line as a tuple of client segments
      (default: one segment, <a@example.jp>).
    """
    ip = IPv6 if ":" in client else IP
    c_seq, s_seq = isn, server_isn
    out = []
    t = t0
    done = False
    gap_left = gap

    def emit(frame, data):
        nonlocal done
        if done:
            return
        frame.time = t
        out.append(frame)
        if stop_after is not None and data.startswith(stop_after):
            done = True

    def c(flags, data=b""):
        nonlocal c_seq, t, gap_left
        t += 0.001
        pkt = Ether(src=CMAC, dst=SMAC) / ip(src=client, dst=server) / \
            TCP(sport=client_port, dport=port, flags=flags, seq=c_seq, ack=s_seq if "A" in flags else 0)
        if gap_left is not None and data.startswith(gap_left):
            gap_left = None  # lost: never seen by the gateway
        else:
            emit(pkt / Raw(data) if data else pkt, data)
        c_seq += len(data) + (1 if "S" in flags or "F" in flags else 0)

    def s(flags, data=b""):
        nonlocal s_seq, t
        t += 0.001
        pkt = Ether(src=SMAC, dst=CMAC) / ip(src=server, dst=client) / \
            TCP(sport=port, dport=client_port, flags=flags, seq=s_seq, ack=c_seq)
        emit(pkt / Raw(data) if data else pkt, data)
        s_seq += len(data) + (1 if "S" in flags or "F" in flags else 0)

    t -= 0.001  # the SYN is at t0
    c("S")
    s("SA")
    c("A")
    s("PA", b"220 mx.example.net ESMTP\r\n")
    c("PA", b"EHLO " + ehlo + b"\r\n")
    s("PA", b"250-mx.example.net\r\n250-PIPELINING\r\n250 STARTTLS\r\n" if starttls
      else b"250-mx.example.net\r\n250 PIPELINING\r\n")
    if starttls:
        c("PA", b"STARTTLS\r\n")
        s("PA", b"220 2.0.0 Ready to start TLS\r\n")
    for m in range(messages):
        for segment in (senders[m] if senders else (b"MAIL FROM:<a@example.jp>\r\n",)):
            c("PA", segment)
        s("PA", b"250 2.1.0 Ok\r\n")
        accepted = 0
        for r in range(rcpts):
            c("PA", b"RCPT TO:<r%d@example.net>\r\n" % (r + 1))
            reply = rcpt_replies[r] if r < len(rcpt_replies) else b"250 2.1.5 Ok\r\n"
            s("PA", reply)
            accepted += reply.startswith(b"2")
        if accepted:
            c("PA", b"DATA\r\n")
            s("PA", b"354 End data with <CR><LF>.<CR><LF>\r\n")
            for segment in body:
                c("PA", segment)
            s("PA", b"250 2.0.0 Ok: queued\r\n")
        else:
            c("PA", b"RSET\r\n")
            s("PA", b"250 2.0.0 Ok\r\n")
    c("PA", b"QUIT\r\n")
    s("PA", b"221 2.0.0 Bye\r\n")
    c("FA")
    s("FA")
    c("A")
    return out


def follow(frame, flags, seq, ack, data=b"", t=None):
    """A frame from the sender of `frame`, in the same connection, at t
    (default: 1 ms after `frame`)."""
    ip = IP if IP in frame else IPv6
    pkt = Ether(src=frame[Ether].src, dst=frame[Ether].dst) / ip(src=frame[ip].src, dst=frame[ip].dst) / \
        TCP(sport=frame[TCP].sport, dport=frame[TCP].dport, flags=flags, seq=seq, ack=ack)
    if data:
        pkt = pkt / Raw(data)
    pkt.time = frame.time + 0.001 if t is None else t
    return pkt


class LimitsReplay(unittest.TestCase):
    """Limits judged on the capture's clock: the same counts with 1 and 2
    workers, and a new window allows again."""

    def run_case(self, workers):
        frames = []
        t0 = 1795400000.0
        # 8 messages in the first hour, alternating alice's two addresses,
        # then 2 more in the next hour.
        for i in range(8):
            frames += smtp_session("198.51.100.7" if i % 2 == 0 else "198.51.100.8", 40000 + i,
                                   "203.0.113.25", t0 + 60 * i)
        for i in range(2):
            frames += smtp_session("198.51.100.8", 41000 + i, "203.0.113.25", t0 + 3600 + 60 * i)
        r = Run(frames, LIMITS_POLICY, workers)
        self.last_run = r
        return (r.summary, r.hits, [Ether(b) for b in r.to_access], [Ether(b) for b in r.to_core], frames)

    def test_account_limit_over_two_addresses(self):
        s, events, to_access, to_core, frames = self.run_case(1)
        self.assertEqual(s["smtp"]["messages"], 10)
        self.assertEqual(s["smtp"]["tempfails_sent"], 3, "messages 6, 7, 8 of the first hour")
        self.assertEqual([e["measured"] for e in events], [6, 6, 6])
        self.assertEqual({e["account"] for e in events}, {"alice@example.jp"})
        tempfails = [p for p in to_access if Raw in p and p[Raw].load.startswith(b"421 4.7.0")]
        self.assertEqual(len(tempfails), 3)
        for p in tempfails:
            # Answers the refused MAIL FROM in the server's name: its seq is the
            # client's ack, its ack covers the MAIL FROM line, and it closes.
            mail = [f for f in frames if TCP in f and f[TCP].sport == p[TCP].dport and Raw in f
                    and f[Raw].load.startswith(b"MAIL FROM")][0]
            self.assertEqual(p[TCP].seq, mail[TCP].ack)
            self.assertEqual(p[TCP].ack, mail[TCP].seq + len(mail[Raw].load))
            self.assertTrue(p[TCP].flags.F)
            self.assertEqual((p[IP].src, p[IP].dst), (mail[IP].dst, mail[IP].src))
        resets = [p for p in to_core if p[TCP].flags.R]
        self.assertEqual(len(resets), 3)
        # Nothing of a refused MAIL FROM reaches the server.
        self.assertEqual(len([p for p in to_core if Raw in p and p[Raw].load.startswith(b"MAIL FROM")]), 7)

    def test_sessions_report_what_they_carried(self):
        # One mail_session event per connection (replay does not aggregate),
        # with its MAIL FROMs (refused ones too: they were attempted) and
        # recipients, under the account that held the address.
        self.run_case(1)
        sessions = self.last_run.sessions
        self.assertEqual(len(sessions), 10, sessions)
        by_subscriber = {}
        for e in sessions:
            by_subscriber[e["subscriber"]] = by_subscriber.get(e["subscriber"], 0) + 1
            self.assertIn((e["messages"], e["recipients"], e["rejected_recipients"], e["tls"]),
                          [(1, 1, 0, False), (1, 0, 0, False)], e)
            self.assertEqual(e["account"], "alice@example.jp")
            self.assertNotIn("server", e, "a session line is the subscriber's activity, not a 5-tuple")
        self.assertEqual(by_subscriber, {"198.51.100.7": 4, "198.51.100.8": 6})
        # the three tempfailed sessions ended at their MAIL FROM: no recipient
        self.assertEqual(sum(e["recipients"] for e in sessions), 7)
        self.assertEqual(sum(e["messages"] for e in sessions), self.last_run.summary["smtp"]["messages"])

    def test_two_workers_count_the_same(self):
        one = self.run_case(1)[0]
        two = self.run_case(2)[0]
        for key in ("frames_in", "forwarded", "limited", "smtp", "limit_hits_by_index"):
            self.assertEqual(one[key], two[key], key)


# --- Limit actions, frame by frame -------------------------------------------

BASE = 1795399200.0  # an hour boundary, so a multiple of every window used below
MX4, MX6 = "203.0.113.25", "2001:db8:25::25"
TEMPFAIL = b"421 4.7.0 Too much mail from your connection, try again later\r\n"
REJECT = b"550 5.1.1 <r%d@example.net>: Recipient address rejected\r\n"


def limits_policy(limits, bindings=(), groups=None):
    """The lab's subscriber ranges with these limits (dicts), static bindings
    ((prefix, account) pairs) and account groups. JSON is YAML."""
    lines = ["version: 1", "ports:", "  smtp: [25]", "  submission: [587, 465]", "subscribers:",
             '  dynamic: [198.51.100.0/24, "2001:db8:100::/40"]',
             '  static: [198.51.100.128/28, "2001:db8:1ff::/48"]', "  ipv6_prefix_length: 56"]
    if bindings:
        lines.append("  bindings:")
        lines += ["    - " + json.dumps({"prefix": p, "account": a}) for p, a in bindings]
    lines.append("relays: [203.0.113.10/32]")
    if groups:
        lines.append("account_groups:")
        lines += [f"  {g}: {json.dumps(m)}" for g, m in groups.items()]
    lines.append("limits:")
    lines += ["  - " + json.dumps(l) for l in limits]
    return "\n".join(lines) + "\n"


class Scenario:
    """A capture and the limits it exercises. `bind`: the subscriber prefixes
    the mixed run binds to accounts of a group of its own, so that in a capture
    mixing every scenario each limit governs only its own scenario's traffic."""

    def __init__(self, name, limits, frames, bind=(), bindings=(), groups=None, **marks):
        self.name, self.limits, self.frames = name, limits, frames
        self.bind, self.bindings, self.groups = list(bind), list(bindings), dict(groups or {})
        self.marks = marks

    def policy(self):
        return limits_policy(self.limits, self.bindings, self.groups)


def first(frames, prefix, sport=None):
    """The first frame whose payload starts with prefix (from port sport)."""
    return next(f for f in frames if Raw in f and f[Raw].load.startswith(prefix)
                and (sport is None or f[TCP].sport == sport))


def scenario_conn_drop():
    c = "198.51.100.11"
    frames, dropped = [], []
    # 5 connections within 0.5 s (3 allowed: the burst), then 4 more 11 s
    # later, when the bucket has refilled: 3 pass again.
    for phase, (t, n) in enumerate(((BASE + 100, 5), (BASE + 111, 4))):
        for i in range(n):
            s = smtp_session(c, 40100 + 10 * phase + i, MX4, t + 0.1 * i)
            if i >= 3:  # the client's SYN is dropped: no answer, nothing else
                s = s[:1]
                dropped.append(s[0])
            frames += s
    return Scenario("conn_drop", [{"name": "conn-drop", "measure": "connections", "max": 3, "window": "10s",
                                   "burst": 3, "action": "drop-syn"}], frames, bind=[c], dropped=dropped)


def scenario_conn_reset():
    c = "198.51.100.12"
    ok = smtp_session(c, 40200, MX4, BASE + 200)
    syn = smtp_session(c, 40201, MX4, BASE + 200.5)[0]
    return Scenario("conn_reset", [{"name": "conn-reset", "measure": "connections", "max": 1, "window": "10s",
                                    "action": "reset"}], ok + [syn], bind=[c], syn=syn)


def scenario_conn_tempfail():
    c = "198.51.100.13"
    ok = smtp_session(c, 40300, MX4, BASE + 300)
    refused = smtp_session(c, 40301, MX4, BASE + 300.5, stop_after=b"220 ")
    syn, greeting = refused[0], refused[-1]
    # The client got the 421 and a FIN: it acknowledges both and closes.
    fin = follow(refused[2], "FA", seq=refused[2][TCP].seq, ack=greeting[TCP].seq + len(TEMPFAIL) + 1,
                 t=greeting.time + 0.001)
    return Scenario("conn_tempfail", [{"name": "conn-tempfail", "measure": "connections", "max": 1,
                                       "window": "10s", "action": "tempfail"}],
                    ok + refused + [fin], bind=[c], greeting=greeting, fin=fin)


def scenario_rcpt_per_message():
    c = "198.51.100.14"
    ok = smtp_session(c, 40400, MX4, BASE + 400, messages=2, rcpts=2)   # 2 per message: fine
    refused = smtp_session(c, 40401, MX4, BASE + 401, rcpts=3, stop_after=b"RCPT TO:<r3@")
    return Scenario("rcpt_per_message", [{"name": "rcpt-per-msg", "measure": "recipients_per_message", "max": 2}],
                    ok + refused, bind=[c], rcpt=refused[-1])


def scenario_rejected():
    c = "198.51.100.15"
    s = smtp_session(c, 40500, MX4, BASE + 500, rcpts=2, rcpt_replies=[REJECT % 1, REJECT % 2],
                     stop_after=(REJECT % 2)[:14])
    return Scenario("rejected", [{"name": "rejected", "measure": "rejected_recipients", "max": 1, "window": "1h"}],
                    s, bind=[c], first_550=first(s, (REJECT % 1)[:14]), reply=s[-1])


def scenario_rcpt_reset():
    c = "198.51.100.16"
    ok = smtp_session(c, 40600, MX4, BASE + 600, rcpts=2)
    refused = smtp_session(c, 40601, MX4, BASE + 601, stop_after=b"RCPT TO:")   # the window's third
    return Scenario("rcpt_reset", [{"name": "rcpt-reset", "measure": "recipients", "scope": "address", "max": 2,
                                    "window": "1h", "action": "reset"}], ok + refused, bind=[c], rcpt=refused[-1])


def scenario_monitor():
    c = "198.51.100.17"
    frames = [f for i in range(3) for f in smtp_session(c, 40700 + i, MX4, BASE + 700 + i)]
    return Scenario("monitor", [{"name": "msgs-monitor", "measure": "messages", "max": 1, "window": "1h",
                                 "action": "monitor"}], frames, bind=[c])


def scenario_cooldown():
    c, hour = "198.51.100.18", BASE + 3600
    a = smtp_session(c, 40800, MX4, hour - 120)
    b = smtp_session(c, 40801, MX4, hour - 60, stop_after=b"MAIL")  # the hit: cooldown until hour + 540
    d = smtp_session(c, 40802, MX4, hour + 60, stop_after=b"MAIL")  # new window, still cooling down
    e = smtp_session(c, 40803, MX4, hour + 720)                      # 10 min after either refusal
    f = smtp_session(c, 40804, MX4, hour + 780, stop_after=b"MAIL")  # the window's second
    return Scenario("cooldown", [{"name": "msgs-cooldown", "measure": "messages", "scope": "account", "max": 1,
                                  "window": "1h", "cooldown": "10m"}], a + b + d + e + f, bind=[c],
                    refused=[b[-1], d[-1], f[-1]], passed=[first(a, b"MAIL"), first(e, b"MAIL")])


def scenario_ipv6_prefix():
    a1, a2, other = "2001:db8:100:1::7", "2001:db8:100:2::8", "2001:db8:100:100::9"   # a1, a2: one /56
    s1 = smtp_session(a1, 40900, MX6, BASE + 900)
    s2 = smtp_session(a2, 40901, MX6, BASE + 901)
    s3 = smtp_session(a1, 40902, MX6, BASE + 902, stop_after=b"MAIL")
    s4 = smtp_session(other, 40903, MX6, BASE + 903)
    return Scenario("ipv6_prefix", [{"name": "msgs-prefix", "measure": "messages", "scope": "prefix", "max": 2,
                                     "window": "1h"}], s1 + s2 + s3 + s4,
                    bind=["2001:db8:100::/56", "2001:db8:100:100::/56"], mail=s3[-1], a1=a1, other=other)


def scenario_groups():
    bob, carol = "198.51.100.131", "198.51.100.132"   # static customers, port 25
    frames = []
    for i in range(4):   # the bulk group's own limit: 3 per hour
        frames += smtp_session(bob, 41000 + i, MX4, BASE + 1000 + i, port=25,
                               stop_after=b"MAIL" if i == 3 else None)
    for i in range(2):   # the class limit: 1 per hour
        frames += smtp_session(carol, 41010 + i, MX4, BASE + 1010 + i, port=25,
                               stop_after=b"MAIL" if i == 1 else None)
    return Scenario("groups", [
        {"name": "msgs-static", "applies_to": "static", "scope": "account", "measure": "messages", "max": 1,
         "window": "1h"},
        {"name": "msgs-bulk", "applies_to": "group:bulk", "scope": "account", "measure": "messages", "max": 3,
         "window": "1h"}], frames,
        bindings=[(bob, "bob@example.jp"), (carol, "carol@example.jp")], groups={"bulk": ["bob@example.jp"]},
        bob=bob, carol=carol)


def scenario_uninspectable():
    gap, tls, implicit = "198.51.100.19", "198.51.100.20", "198.51.100.21"
    frames = smtp_session(gap, 41100, MX4, BASE + 1100, messages=2, gap=b"Subject:",
                          body=(b"Subject: hello\r\n\r\n", b"body\r\n.\r\n"))
    frames += smtp_session(tls, 41101, MX4, BASE + 1101, messages=2, starttls=True)
    frames += smtp_session(implicit, 41102, MX4, BASE + 1102, messages=2, port=465)
    # A limit that two counted messages of one subscriber would trip.
    return Scenario("uninspectable", [{"name": "msgs-seen", "measure": "messages", "scope": "account", "max": 1,
                                       "window": "1h", "action": "monitor"}], frames, bind=[gap, tls, implicit])


SCENARIOS = [scenario_conn_drop, scenario_conn_reset, scenario_conn_tempfail, scenario_rcpt_per_message,
             scenario_rejected, scenario_rcpt_reset, scenario_monitor, scenario_cooldown, scenario_ipv6_prefix,
             scenario_groups, scenario_uninspectable]


def mixed_scenario(scenarios):
    """Every scenario in one capture (frames interleaved by time) under one
    policy: each scenario's subscribers bound to accounts of its own group,
    each limit applying to that group only (unless it says otherwise)."""
    limits, bindings, groups, frames = [], [], {}, []
    for sc in scenarios:
        bindings += sc.bindings
        groups.update(sc.groups)
        if sc.bind:
            members = [f"{sc.name}-{i}@example.jp" for i in range(len(sc.bind))]
            bindings += list(zip(sc.bind, members))
            groups[sc.name] = members
        limits += [l if "applies_to" in l else dict(l, applies_to="group:" + sc.name) for l in sc.limits]
        frames += sc.frames
    frames.sort(key=lambda f: float(f.time))
    return Scenario("mixed", limits, frames, bindings=bindings, groups=groups)


class Run:
    """One replay: summary, limit events, output frames (bytes)."""

    def __init__(self, frames, policy_text, workers):
        self.frames = frames
        with tempfile.TemporaryDirectory() as tmp:
            policy = os.path.join(tmp, "policy.yaml")
            with open(policy, "w") as f:
                f.write(policy_text)
            cap = os.path.join(tmp, "in.pcap")
            wrpcap(cap, frames)
            out = os.path.join(tmp, "out")
            run_replay(cap, policy, out, workers)
            with open(os.path.join(out, "summary.json")) as f:
                self.summary = json.load(f)
            with open(os.path.join(out, "events.jsonl")) as f:
                self.events = [json.loads(l) for l in f]
            self.to_access = frames_of(os.path.join(out, "to-access.pcap"))
            self.to_core = frames_of(os.path.join(out, "to-core.pcap"))
        self.hits = [e for e in self.events if e["type"] == "limit_exceeded"]
        self.sessions = [e for e in self.events if e["type"] == "mail_session"]
        self.smtp = self.summary["smtp"]


_runs = {}


def replay_scenario(sc, workers=1):
    key = (sc.name, workers)
    if key not in _runs:
        _runs[key] = Run(sc.frames, sc.policy(), workers)
    return _runs[key]


_scenarios = {}


def scenario(make):
    if make not in _scenarios:
        _scenarios[make] = make()
    return _scenarios[make]


def payload_of(pkt):
    tcp = pkt[TCP]
    l4 = pkt[IP].len - pkt[IP].ihl * 4 if IP in pkt else pkt[IPv6].plen
    return bytes(tcp)[tcp.dataofs * 4:l4]


class LimitActionsReplay(unittest.TestCase):
    """Each limit action on generated SMTP sessions, checked in summary.json,
    events.jsonl and both output captures frame by frame."""

    maxDiff = None

    # -- helpers ---------------------------------------------------------------

    def run_scenario(self, make, workers=1):
        sc = scenario(make)
        r = replay_scenario(sc, workers)
        s = r.summary
        self.assertEqual(s["frames_in"], len(sc.frames))
        self.assertEqual(s["blocked"] + s["malformed_dropped"], 0)
        self.assertEqual(s["forwarded"] + s["limited"], s["frames_in"], "every frame forwarded or limited")
        return sc, r

    def assert_hits(self, r, expected, limits):
        """expected: (limit, action, subscriber, account, count or None)."""
        got = [(e["limit"], e["action"], e["subscriber"], e["account"], e["measured"]) for e in r.hits]
        self.assertEqual(len(got), len(expected), got)
        for g, w in zip(got, expected):
            self.assertEqual(g[:4], w[:4])
            if w[4] is not None:
                self.assertEqual(g[4], w[4], g)
        by_index = [sum(1 for e in expected if e[0] == l["name"]) for l in limits]
        self.assertEqual(r.summary["limit_hits_by_index"][:len(limits)], by_index)
        self.assertEqual(sum(r.summary["limit_hits_by_index"]), len(expected))

    def assert_wire(self, r, drop=(), to_access=(), to_core=()):
        """Frame by frame: every captured frame not in `drop` leaves on the
        other side byte for byte, in capture order, and the only other frames
        are the injections listed as (trigger frame, expected fields), each
        right after what was forwarded before its trigger."""
        dropped = {id(f) for f in drop}
        index = {id(f): i for i, f in enumerate(r.frames)}
        inputs = {bytes(f) for f in r.frames}
        self.assertEqual(r.summary["limited"], len(dropped))
        for name, actual, from_subscriber, injections in (("to-core", r.to_core, True, to_core),
                                                          ("to-access", r.to_access, False, to_access)):
            expect = [bytes(f) for f in r.frames if from_access(f) == from_subscriber and id(f) not in dropped]
            passed, injected = [], []
            for b in actual:
                if b in inputs:
                    passed.append(b)
                else:
                    injected.append((len(passed), Ether(b)))
            if passed != expect:
                i = next((k for k, (a, e) in enumerate(zip(passed, expect)) if a != e), min(len(passed), len(expect)))
                self.fail(f"{name}: forwarded frames differ at {i} of {len(expect)} expected, {len(passed)} sent: "
                          f"{Ether(passed[i]).summary() if i < len(passed) else '-'} / "
                          f"{Ether(expect[i]).summary() if i < len(expect) else '-'}")
            self.assertEqual(len(injected), len(injections),
                             f"{name}: injected {[p.summary() for _, p in injected]}")
            for (pos, pkt), (trigger, want) in zip(injected, injections):
                before = [f for f in r.frames[:index[id(trigger)]]
                          if from_access(f) == from_subscriber and id(f) not in dropped]
                self.assertEqual(pos, len(before), f"{name}: {pkt.summary()} out of place")
                self.check_segment(pkt, trigger, **want)

    def check_segment(self, pkt, trigger, to_client, seq, ack, flags, payload=b""):
        ip = IP if IP in trigger else IPv6
        self.assertIn(ip, pkt)
        if from_access(trigger):
            client, server = (trigger[ip].src, trigger[TCP].sport), (trigger[ip].dst, trigger[TCP].dport)
        else:
            client, server = (trigger[ip].dst, trigger[TCP].dport), (trigger[ip].src, trigger[TCP].sport)
        src, dst = (server, client) if to_client else (client, server)
        self.assertEqual(((pkt[ip].src, pkt[TCP].sport), (pkt[ip].dst, pkt[TCP].dport)), (src, dst))
        self.assertEqual((pkt[Ether].src, pkt[Ether].dst), (SMAC, CMAC) if to_client else (CMAC, SMAC))
        self.assertEqual(set(str(pkt[TCP].flags)), set(flags), pkt.summary())
        self.assertEqual((pkt[TCP].seq, pkt[TCP].ack), (seq, ack), pkt.summary())
        self.assertEqual(payload_of(pkt), payload)
        fresh = Ether(bytes(pkt))
        del fresh[TCP].chksum
        if ip is IP:
            del fresh[IP].chksum
            self.assertEqual(Ether(bytes(fresh))[IP].chksum, pkt[IP].chksum, "IPv4 checksum")
        self.assertEqual(Ether(bytes(fresh))[TCP].chksum, pkt[TCP].chksum, "TCP checksum")

    @staticmethod
    def tempfail_for_client_segment(seg):
        """The 421 that answers a refused client segment in the server's name,
        and the RST that ends the server's side."""
        n = len(seg[Raw].load)
        return ((seg, dict(to_client=True, seq=seg[TCP].ack, ack=seg[TCP].seq + n, flags="FPA", payload=TEMPFAIL)),
                (seg, dict(to_client=False, seq=seg[TCP].seq, ack=0, flags="R")))

    # -- 1-3: connections ------------------------------------------------------

    def test_connections_drop_syn(self):
        sc, r = self.run_scenario(scenario_conn_drop)
        dropped = sc.marks["dropped"]
        self.assertEqual(len(dropped), 3)
        self.assert_wire(r, drop=dropped)   # no RST: nothing injected anywhere
        self.assertEqual(r.smtp["syns_dropped"], 3)
        self.assertEqual((r.smtp["resets_sent"], r.summary["resets_sent"], r.smtp["tempfails_sent"]), (0, 0, 0))
        self.assertEqual(r.smtp["messages"], 6, "the 3 + 3 connections allowed each send their message")
        self.assert_hits(r, [("conn-drop", "drop-syn", "198.51.100.11", None, None)] * 3, sc.limits)
        syns = [f for f in (Ether(b) for b in r.to_core) if f[TCP].flags == "S"]
        self.assertEqual([f[TCP].sport for f in syns], [40100, 40101, 40102, 40110, 40111, 40112])

    def test_connections_reset(self):
        sc, r = self.run_scenario(scenario_conn_reset)
        syn = sc.marks["syn"]
        self.assert_wire(r, drop=[syn], to_access=[(syn, dict(to_client=True, seq=0, ack=syn[TCP].seq + 1,
                                                              flags="RA"))])
        self.assertEqual((r.smtp["resets_sent"], r.smtp["syns_dropped"]), (1, 0))
        self.assert_hits(r, [("conn-reset", "reset", "198.51.100.12", None, None)], sc.limits)

    def test_connections_tempfail_replaces_greeting(self):
        sc, r = self.run_scenario(scenario_conn_tempfail)
        g, fin = sc.marks["greeting"], sc.marks["fin"]
        # SYN, SYN-ACK and ACK pass; the greeting becomes the 421 at its
        # sequence number; the server is reset; the client's closing FIN is
        # answered by an RST (its server side is gone) and goes no further.
        self.assert_wire(r, drop=[g, fin],
                         to_access=[(g, dict(to_client=True, seq=g[TCP].seq, ack=g[TCP].ack, flags="FPA",
                                             payload=TEMPFAIL)),
                                    (fin, dict(to_client=True, seq=fin[TCP].ack, ack=0, flags="R"))],
                         to_core=[(g, dict(to_client=False, seq=g[TCP].ack, ack=0, flags="R"))])
        self.assertEqual(r.smtp["tempfails_sent"], 1)
        self.assert_hits(r, [("conn-tempfail", "tempfail", "198.51.100.13", None, None)], sc.limits)

    def test_syn_retransmission_is_not_a_new_connection(self):
        # A retransmission of a tracked connection's SYN (same 4-tuple, same
        # ISN: a lost SYN-ACK, or a server slower than the client's 1 s RTO) is
        # the same connection: not charged to the connections limit again.
        # (It once was, and the subscriber's only connection was refused.)
        c = "198.51.100.22"
        s = smtp_session(c, 42000, MX4, BASE + 1201)
        syn = s[0].copy()
        syn.time = BASE + 1200   # the original; s[0] is its retransmission 1 s later
        frames = [syn] + s
        limits = [{"name": "conn-reset", "measure": "connections", "max": 1, "window": "10s", "action": "reset"}]
        r = Run(frames, limits_policy(limits), 1)
        self.assertEqual(r.hits, [])
        self.assert_wire(r)
        self.assertEqual(r.smtp["messages"], 1)

    # -- 4-6: recipients -------------------------------------------------------

    def test_recipients_per_message_tempfail(self):
        sc, r = self.run_scenario(scenario_rcpt_per_message)
        rcpt = sc.marks["rcpt"]
        to_client, to_server = self.tempfail_for_client_segment(rcpt)
        self.assert_wire(r, drop=[rcpt], to_access=[to_client], to_core=[to_server])
        sent = [p[Raw].load for p in (Ether(b) for b in r.to_core) if Raw in p and p[TCP].sport == 40401]
        self.assertIn(b"RCPT TO:<r1@example.net>\r\n", sent)
        self.assertIn(b"RCPT TO:<r2@example.net>\r\n", sent)
        self.assertEqual((r.smtp["recipients"], r.smtp["tempfails_sent"]), (7, 1))
        self.assert_hits(r, [("rcpt-per-msg", "tempfail", "198.51.100.14", None, 3)], sc.limits)

    def test_rejected_recipients_replaces_the_550(self):
        sc, r = self.run_scenario(scenario_rejected)
        reply = sc.marks["reply"]
        self.assertIn(bytes(sc.marks["first_550"]), r.to_access)
        self.assert_wire(r, drop=[reply],
                         to_access=[(reply, dict(to_client=True, seq=reply[TCP].seq, ack=reply[TCP].ack,
                                                 flags="FPA", payload=TEMPFAIL))],
                         to_core=[(reply, dict(to_client=False, seq=reply[TCP].ack, ack=0, flags="R"))])
        self.assertEqual((r.smtp["rejected_recipients"], r.smtp["tempfails_sent"]), (2, 1))
        self.assert_hits(r, [("rejected", "tempfail", "198.51.100.15", None, 2)], sc.limits)

    def test_recipients_window_reset_both_ends(self):
        sc, r = self.run_scenario(scenario_rcpt_reset)
        rcpt = sc.marks["rcpt"]
        self.assert_wire(r, drop=[rcpt],
                         to_access=[(rcpt, dict(to_client=True, seq=rcpt[TCP].ack, ack=0, flags="R"))],
                         to_core=[(rcpt, dict(to_client=False, seq=rcpt[TCP].seq, ack=0, flags="R"))])
        self.assertEqual((r.smtp["resets_sent"], r.smtp["tempfails_sent"]), (1, 0))
        self.assert_hits(r, [("rcpt-reset", "reset", "198.51.100.16", None, 3)], sc.limits)

    # -- 7-8: monitor, cooldown ------------------------------------------------

    def test_monitor_forwards_byte_for_byte(self):
        sc, r = self.run_scenario(scenario_monitor)
        self.assert_wire(r)
        self.assertEqual(r.to_core, [bytes(f) for f in sc.frames if from_access(f)])
        self.assertEqual(r.to_access, [bytes(f) for f in sc.frames if not from_access(f)])
        self.assertEqual(r.smtp["messages"], 3)
        self.assertEqual((r.smtp["tempfails_sent"], r.smtp["resets_sent"], r.summary["limited"]), (0, 0, 0))
        # One event per message over the limit. Their count is not checked past
        # the first: a monitored message is not booked in the window (as a
        # refused one is not), so every hit reports max + 1.
        self.assert_hits(r, [("msgs-monitor", "monitor", "198.51.100.17", None, 2),
                             ("msgs-monitor", "monitor", "198.51.100.17", None, None)], sc.limits)

    def test_cooldown_outlasts_the_window(self):
        sc, r = self.run_scenario(scenario_cooldown)
        refused = sc.marks["refused"]
        to_access, to_core = [], []
        for mail in refused:
            a, c = self.tempfail_for_client_segment(mail)
            to_access.append(a)
            to_core.append(c)
        self.assert_wire(r, drop=refused, to_access=to_access, to_core=to_core)
        for mail in sc.marks["passed"]:
            self.assertIn(bytes(mail), r.to_core)
        self.assertEqual((r.smtp["messages"], r.smtp["tempfails_sent"]), (5, 3))
        # The refusal in the new window comes from the cooldown alone: its
        # window had counted nothing yet.
        self.assert_hits(r, [("msgs-cooldown", "tempfail", "198.51.100.18", None, 2),
                             ("msgs-cooldown", "tempfail", "198.51.100.18", None, None),
                             ("msgs-cooldown", "tempfail", "198.51.100.18", None, 2)], sc.limits)
        self.assertEqual([e["time_ns"] for e in r.hits], [int(round(float(m.time) * 1e6)) * 1000 for m in refused])

    # -- 9-10: scopes and targets ----------------------------------------------

    def test_ipv6_prefix_scope(self):
        sc, r = self.run_scenario(scenario_ipv6_prefix)
        mail = sc.marks["mail"]
        to_client, to_server = self.tempfail_for_client_segment(mail)
        self.assert_wire(r, drop=[mail], to_access=[to_client], to_core=[to_server])
        self.assertEqual(r.smtp["messages"], 4)
        self.assert_hits(r, [("msgs-prefix", "tempfail", sc.marks["a1"], None, 3)], sc.limits)
        other = [p for p in (Ether(b) for b in r.to_core) if p[IPv6].src == sc.marks["other"] and Raw in p]
        self.assertIn(b"MAIL FROM:<a@example.jp>\r\n", [p[Raw].load for p in other])

    def test_group_limit_replaces_class_limit(self):
        sc, r = self.run_scenario(scenario_groups)
        bob, carol = sc.marks["bob"], sc.marks["carol"]
        mails = [f for f in sc.frames if Raw in f and f[Raw].load.startswith(b"MAIL")]
        refused = [mails[3], mails[5]]
        to_access, to_core = zip(*(self.tempfail_for_client_segment(m) for m in refused))
        self.assert_wire(r, drop=refused, to_access=to_access, to_core=to_core)
        self.assertEqual(r.summary["blocked"], 0, "static: not subject to OP25B on port 25")
        self.assertEqual(r.smtp["messages"], 6)
        # bob (group bulk): 3 messages pass although the class limit is 1;
        # the 4th trips the group's limit. carol: the class limit.
        self.assert_hits(r, [("msgs-bulk", "tempfail", bob, "bob@example.jp", 4),
                             ("msgs-static", "tempfail", carol, "carol@example.jp", 2)], sc.limits)

    # -- 11: what cannot be inspected is not counted ---------------------------

    def test_uninspectable_and_tls_not_counted(self):
        sc, r = self.run_scenario(scenario_uninspectable)
        self.assert_wire(r)   # fail open: everything forwarded as is
        self.assertEqual(r.smtp["uninspectable"], 1, "the sequence gap")
        self.assertEqual(r.smtp["tls"], 2, "STARTTLS and port 465")
        # gap session: EHLO, MAIL, RCPT, DATA before the gap, nothing after;
        # STARTTLS session: EHLO, STARTTLS; port 465: nothing.
        self.assertEqual((r.smtp["commands"], r.smtp["messages"], r.smtp["recipients"]), (6, 1, 1))
        self.assertEqual(r.hits, [], "the second message of each session was not counted")
        self.assertEqual(r.smtp["flows_created"], 3)

    # -- 12: workers ------------------------------------------------------------

    def test_mixed_capture_one_and_two_workers(self):
        scenarios = [scenario(make) for make in SCENARIOS]
        mixed = mixed_scenario(scenarios)
        one, two = Run(mixed.frames, mixed.policy(), 1), Run(mixed.frames, mixed.policy(), 2)
        self.assertEqual(two.summary["workers"], 2)
        # flows_expired depends on when each worker's sweep runs.
        smtp = lambda r: {k: v for k, v in r.smtp.items() if k != "flows_expired"}
        for key in ("frames_in", "forwarded", "limited", "blocked", "resets_sent", "limit_hits_by_index"):
            self.assertEqual(one.summary[key], two.summary[key], key)
        self.assertEqual(smtp(one), smtp(two))
        strip = lambda r: sorted(json.dumps({k: v for k, v in e.items() if k != "worker"}, sort_keys=True)
                                 for e in r.events)
        self.assertEqual(strip(one), strip(two))
        self.assertEqual(sorted(one.to_core), sorted(two.to_core))
        self.assertEqual(sorted(one.to_access), sorted(two.to_access))
        # Each limit governed only its own scenario: the mix adds up to the
        # scenarios replayed alone.
        alone = [replay_scenario(sc) for sc in scenarios]
        key = lambda e: (e["limit"], e["action"], e["subscriber"], e["measured"])
        self.assertEqual(sorted(map(key, one.hits)), sorted(key(e) for a in alone for e in a.hits))
        for k in smtp(one):
            if k not in ("flows_ended",):
                self.assertEqual(one.smtp[k], sum(a.smtp[k] for a in alone), k)
        self.assertEqual(one.summary["limited"], sum(a.summary["limited"] for a in alone))
        self.assertEqual(sorted(one.to_core), sorted(b for a in alone for b in a.to_core))
        self.assertEqual(sorted(one.to_access), sorted(b for a in alone for b in a.to_access))


CONTENT_POLICY = """version: 1
ports:
  smtp: [25]
  submission: [587, 465]
subscribers:
  dynamic: [198.51.100.0/24, "2001:db8:100::/40"]
  static: [198.51.100.128/28, "2001:db8:1ff::/48"]
relays: [203.0.113.10/32]
inspection:
  max_body_bytes: 65536
  rules:
    - {id: blackword-deai, pattern: "出会い", flags: [utf8], where: body, score: 10}
    - {id: subject-unsolicited, pattern: "未承諾広告", flags: [utf8], where: "header:subject", score: 10}
  message_actions:
    - {score: 10, action: tempfail}
"""


def b64(data):
    import base64
    return base64.b64encode(data).decode()


class ContentReplay(unittest.TestCase):
    """Content rules on decoded messages: ISO-2022-JP in RFC 2047 and base64,
    UTF-8 quoted-printable; the end-of-data marker of a refused message never
    reaches the server; a clean message passes untouched."""

    def test_japanese_blackwords_decoded(self):
        import quopri
        subject = "=?ISO-2022-JP?B?" + b64("【未承諾広告】お得な情報".encode("iso-2022-jp")) + "?="
        messages = {
            "iso2022-subject": (f"Subject: {subject}\r\nFrom: a@example.jp\r\n\r\nhello\r\n").encode(),
            "utf8-qp-body": (b"Subject: hi\r\nFrom: a@example.jp\r\nMIME-Version: 1.0\r\n"
                             b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
                             + quopri.encodestring("素敵な出会いがあります".encode("utf-8")) + b"\r\n"),
            "iso2022-b64-body": (b"Subject: hi\r\nFrom: a@example.jp\r\nMIME-Version: 1.0\r\n"
                                 b"Content-Type: text/plain; charset=ISO-2022-JP\r\nContent-Transfer-Encoding: base64\r\n\r\n"
                                 + b64("今すぐ出会い系へ".encode("iso-2022-jp")).encode() + b"\r\n"),
            "clean": (b"Subject: meeting\r\nFrom: a@example.jp\r\n\r\nSee you at ten.\r\n"),
        }
        frames = []
        for i, (name, content) in enumerate(messages.items()):
            frames += smtp_session("198.51.100.7", 45000 + i, MX4, BASE + 10 * i, body=(content, b".\r\n"))
        r = Run(frames, CONTENT_POLICY, 1)
        s, events = r.summary, r.events
        to_core, to_access = [Ether(b) for b in r.to_core], [Ether(b) for b in r.to_access]
        verdicts = {e["subscriber_port"]: e for e in events if e["type"] == "content_verdict"}
        self.assertEqual(sorted(verdicts), [45000, 45001, 45002], events)
        self.assertEqual(verdicts[45000]["rules"], ["subject-unsolicited"])
        self.assertEqual(verdicts[45001]["rules"], ["blackword-deai"])
        self.assertEqual(verdicts[45002]["rules"], ["blackword-deai"])
        for v in verdicts.values():
            self.assertEqual((v["score"], v["action"]), (10, "tempfail"))
            self.assertRegex(v["fingerprint"], "^[0-9a-f]{16}$")
        # The refused messages' end-of-data marker never reached the server;
        # the clean one's did, and the client of each refused one got the 421.
        ends = [p[TCP].sport for p in to_core if Raw in p and p[Raw].load == b".\r\n"]
        self.assertEqual(ends, [45003])
        refusals = [p[TCP].dport for p in to_access if Raw in p and p[Raw].load.startswith(b"421 4.7.0")]
        self.assertEqual(sorted(refusals), [45000, 45001, 45002])
        self.assertEqual(s["smtp"]["tempfails_sent"], 3)
        self.assertEqual(s["inspection"]["messages"], 4)
        # Nothing of the message text is in the events.
        text = json.dumps(events, ensure_ascii=False)
        for word in ("出会い", "未承諾", "hello", "ten."):
            self.assertNotIn(word, text)

    def test_envelope_rules(self):
        # The EHLO rule counts for both messages of the session; the MAIL FROM
        # rule for the first only, even with its line split across segments.
        policy = CONTENT_POLICY.replace(
            "  message_actions:\n    - {score: 10, action: tempfail}\n",
            '    - {id: ehlo-dynamic, pattern: "^EHLO [^ ]*\\\\.dyn\\\\.", where: envelope, score: 3}\n'
            '    - {id: sender-spam, pattern: "^MAIL FROM:<[^>]*@spam\\\\.example>", flags: [caseless], '
            'where: envelope, score: 5}\n'
            "  message_actions:\n    - {score: 100, action: tempfail}\n")
        frames = smtp_session("198.51.100.7", 46000, MX4, BASE, messages=2, ehlo=b"pc-42.dyn.example.jp",
                              senders=[(b"MAIL FROM:<bot@SP", b"AM.example>\r\n"), (b"MAIL FROM:<a@example.jp>\r\n",)])
        frames += smtp_session("198.51.100.8", 46001, MX4, BASE + 10)   # neither rule
        r = Run(frames, policy, 1)
        verdicts = [e for e in r.events if e["type"] == "content_verdict"]
        self.assertEqual([(v["subscriber_port"], sorted(v["rules"]), v["score"]) for v in verdicts],
                         [(46000, ["ehlo-dynamic", "sender-spam"], 8), (46000, ["ehlo-dynamic"], 3)], verdicts)
        # EHLO + 2 × (MAIL, RCPT), then EHLO, MAIL, RCPT
        self.assertEqual(r.summary["inspection"]["envelope_lines"], 5 + 3)
        self.assertNotIn("spam.example", json.dumps(r.events).lower())

    def test_from_mismatch_signal(self):
        policy_text = CONTENT_POLICY.replace("  message_actions:", "  signals:\n    from_mismatch: 3\n  message_actions:")
        frames = smtp_session("198.51.100.7", 47000, MX4, BASE,
                              body=(b"Subject: x\r\nFrom: Bank <support@bank.example.org>\r\n\r\nhi\r\n", b".\r\n"))
        frames += smtp_session("198.51.100.7", 47001, MX4, BASE + 10,
                               body=(b"Subject: x\r\nFrom: A <a@example.jp>\r\n\r\nhi\r\n", b".\r\n"))
        verdicts = [e for e in Run(frames, policy_text, 1).events if e["type"] == "content_verdict"]
        # MAIL FROM is a@example.jp: the forged From scores, the aligned one does not.
        self.assertEqual([(v["subscriber_port"], v["signals"], v["score"]) for v in verdicts],
                         [(47000, ["from_mismatch"], 3)])

    def test_inspection_off_reads_nothing(self):
        policy_text = CONTENT_POLICY.replace("inspection:\n", "inspection:\n  enabled: false\n")
        frames = smtp_session("198.51.100.7", 46000, MX4, BASE,
                              body=("Subject: x\r\n\r\n出会い\r\n".encode("utf-8"), b".\r\n"))
        s = Run(frames, policy_text, 1).summary
        self.assertEqual(s["inspection"]["messages"], 0)
        self.assertEqual(s["smtp"]["tempfails_sent"], 0)


class CheckPolicy(unittest.TestCase):
    def test_shipped_policies_are_valid(self):
        # --check-policy also checks the files a policy names; the shipped ones name the
        # installed paths, staged here: /etc/sekisho with the example clients file,
        # /var/lib/sekisho empty.
        with tempfile.TemporaryDirectory() as tmp:
            etc, lib = os.path.join(tmp, "etc"), os.path.join(tmp, "lib")
            os.makedirs(etc)
            os.makedirs(lib)
            with open(os.path.join(ROOT, "configs", "radius", "clients.example.yaml")) as src, \
                    open(os.path.join(etc, "radius-clients.yaml"), "w") as dst:
                dst.write(src.read())
            for name in sorted(os.listdir(os.path.join(ROOT, "configs"))):
                if name.endswith(".yaml"):
                    with open(os.path.join(ROOT, "configs", name)) as f:
                        text = f.read().replace("/etc/sekisho/", etc + "/").replace("/var/lib/sekisho/", lib + "/")
                    path = os.path.join(tmp, name)
                    with open(path, "w") as f:
                        f.write(text)
                    proc = subprocess.run([SEKISHOD, "--check-policy", path], capture_output=True, text=True)
                    self.assertEqual(proc.returncode, 0, name + ": " + proc.stderr)
                    self.assertIn(": ok", proc.stdout)

    def test_files_the_policy_names_are_checked(self):
        # What start would read is checked by --check-policy (the systemd unit's ExecStartPre):
        # a missing or malformed RADIUS clients file, a history that is not SQLite, an event log
        # that is not one, each named with the policy's file:line.
        with tempfile.TemporaryDirectory() as tmp:
            bad_clients = os.path.join(tmp, "clients.yaml")
            with open(bad_clients, "w") as f:
                f.write("clients:\n  - address: 192.0.2.1\n")
            not_a_log = os.path.join(tmp, "passwd")
            with open(not_a_log, "w") as f:
                f.write("root:x:0:0:root:/root:/bin/bash\n")
            cases = [
                ("radius:\n  listen: 127.0.0.1:1813\n  clients_file: %s/none.yaml\n" % tmp,
                 ":4: radius.clients_file: '%s/none.yaml' does not exist" % tmp),
                ("radius:\n  listen: 127.0.0.1:1813\n  clients_file: %s\n" % bad_clients,
                 "%s:2: clients[0].secret: missing" % bad_clients),
                ("radius:\n  listen: 127.0.0.1:1813\n  clients_file: /dev/zero\n",
                 ":4: radius.clients_file: '/dev/zero' is not a regular file"),
                ("history:\n  database: /dev/null\n", ":3: history.database: '/dev/null' is not a regular file"),
                ("history:\n  database: %s\n" % not_a_log, ":3: history.database: '%s' exists and is not an SQLite" % not_a_log),
                ("history:\n  database: %s/no/such/dir/h.sqlite\n" % tmp, ":3: history.database: '%s/no/such/dir/h.sqlite': the directory" % tmp),
                ("events:\n  file: %s\n" % not_a_log, ":3: events.file: '%s' exists and is not an event log" % not_a_log),
            ]
            for body, want in cases:
                path = os.path.join(tmp, "p.yaml")
                with open(path, "w") as f:
                    f.write("version: 1\n" + body)
                proc = subprocess.run([SEKISHOD, "--check-policy", path], capture_output=True, text=True)
                self.assertEqual(proc.returncode, 2, body + proc.stdout)
                self.assertIn(want, proc.stderr, body)

    def test_duplicate_keys_are_refused(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "p.yaml")
            with open(path, "w") as f:
                f.write("version: 1\nop25b:\n  mode: enforce\nop25b:\n  mode: monitor\n"
                        "limits:\n  - {name: a, measure: messages, max: 1, max: 2, window: 1h}\n")
            proc = subprocess.run([SEKISHOD, "--check-policy", path], capture_output=True, text=True)
            self.assertEqual(proc.returncode, 2)
            self.assertIn(f"{path}:4: op25b: duplicate key (first at line 2)", proc.stderr)
            self.assertIn(f"{path}:7: limits[0].max: duplicate key (first at line 7)", proc.stderr)

    def test_errors_are_collected_with_lines(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "p.yaml")
            with open(path, "w") as f:
                f.write("version: 1\nports:\n  smtp: [25, 99999]\nop25b:\n  mode: block\nrelay: []\n")
            proc = subprocess.run([SEKISHOD, "--check-policy", path], capture_output=True, text=True)
            self.assertEqual(proc.returncode, 2)
            self.assertIn(f"{path}:3: ports.smtp[1]: 99999 is out of range", proc.stderr)
            self.assertIn(f"{path}:5: op25b.mode: 'block' is not one of: enforce, monitor", proc.stderr)
            self.assertIn(f"{path}:6: relay: unknown key", proc.stderr)


class OverloadReplay(unittest.TestCase):
    """Tables and rings driven past their sizes, deterministically: OP25B is
    still enforced, other traffic still forwarded byte for byte, what cannot be
    tracked fails open, and every overflow is counted (docs/reliability.md)."""

    def udp(self, src, t, i):
        f = Ether(src=CMAC, dst=SMAC) / IP(src=src, dst=MX4) / UDP(sport=5000 + i, dport=53) / Raw(b"q%d" % i)
        f.time = t
        return f

    def syn25(self, src, sport, t):
        f = Ether(src=CMAC, dst=SMAC) / IP(src=src, dst=MX4) / TCP(sport=sport, dport=25, flags="S", seq=1)
        f.time = t
        return f

    def test_event_ring_full(self):
        # A ring of one event and 3000 OP25B blocks between drains: most events
        # are lost, each counted; every block still happens.
        policy = limits_policy([]).replace("limits:\n", "") + "events:\n  ring_size: 1\n"
        frames = []
        for i in range(3000):
            frames.append(self.syn25("198.51.100.7", 20000 + i, BASE + i * 1e-4))
            if i % 10 == 0:
                frames.append(self.udp("198.51.100.7", BASE + i * 1e-4 + 5e-5, i))
        r = Run(frames, policy, 1)
        s = r.summary
        self.assertEqual(s["blocked"], 3000)
        blocks = [e for e in r.events if e["type"] == "op25b_block"]
        self.assertGreater(s["events"]["ring_full"], 0)
        self.assertEqual(len(blocks), s["events"]["emitted"])
        self.assertEqual(s["events"]["emitted"] + s["events"]["ring_full"], 3000)
        print(f"\n  overload: events emitted {s['events']['emitted']}, ring_full {s['events']['ring_full']} of 3000",
              file=sys.stderr)
        udp_in = [bytes(f) for f in frames if UDP in f]
        self.assertEqual([f for f in r.to_core if Ether(f).haslayer(UDP)], udp_in)

    def test_flow_and_subscriber_tables_full(self):
        # 64 flows and 64 subscriber records per worker; 100 subscribers open
        # an SMTP session each at once, then a second one: a 1-per-hour
        # connection limit stops the second of those that have a record, the
        # rest pass (fail open) and are counted; port 25 stays blocked.
        policy = limits_policy([{"name": "one-per-hour", "scope": "address", "measure": "connections", "max": 1,
                                 "window": "1h", "burst": 1, "action": "drop-syn"}])
        policy = policy.replace("relays:", "tracking:\n  flows_per_worker: 64\n  subscribers_per_worker: 64\nrelays:")
        frames = []
        clients = ["198.51.100.%d" % (10 + i) for i in range(100)]
        for rnd in range(2):
            for i, c in enumerate(clients):
                frames += smtp_session(c, 41000 + rnd, MX4, BASE + rnd * 10 + i * 1e-5)  # all open at once
        for i, c in enumerate(clients[:5]):
            frames.append(self.syn25(c, 42000, BASE + 30 + i * 1e-3))
            frames.append(self.udp(c, BASE + 30.5 + i * 1e-3, i))
        frames.sort(key=lambda f: f.time)
        r = Run(frames, policy, 1)
        s = r.summary
        self.assertEqual(s["blocked"], 5, "OP25B still enforced")
        self.assertGreater(s["smtp"]["flow_table_full"], 0)
        self.assertGreater(s["smtp"]["subscriber_state_full"], 0)
        limited = s["limit_hits_by_index"][0]
        self.assertGreater(limited, 0, "subscribers with a record are limited")
        self.assertLess(limited, 100, "subscribers without one pass (fail open)")
        print(f"\n  overload: flow_table_full {s['smtp']['flow_table_full']}, subscriber_state_full "
              f"{s['smtp']['subscriber_state_full']}, limited {limited} of 100", file=sys.stderr)
        udp_in = [bytes(f) for f in frames if UDP in f]
        self.assertEqual([f for f in r.to_core if Ether(f).haslayer(UDP)], udp_in)

    def test_stream_state_exhausted(self):
        # 100 rules with a bounded repeat each (q<i>, then 100-900 of anything, then z): a body
        # naming every q<i> leaves that many repeats open, and the compressed body stream (what a
        # message keeps between segments) outgrows its 1024-byte record. That message's body is
        # not scanned further (fail open: its blackword in the next segment is missed, its end
        # marker is forwarded) and the overflow is counted; the next message, whose stream stays
        # small, is inspected and refused as usual; port 25 stays blocked.
        rules = "".join('    - {id: open-%d, pattern: "q%d.{100,900}z", flags: [dotall], where: body, score: 1}\n'
                        % (i, i) for i in range(100))
        policy = CONTENT_POLICY.replace("  rules:\n", "  rules:\n" + rules)
        head = b"Subject: x\r\nFrom: a@example.jp\r\n\r\n"
        many_open = " ".join("q%d" % i for i in range(100)).encode() + b"\r\n"
        frames = smtp_session("198.51.100.7", 48000, MX4, BASE,
                              body=(head + many_open, "続きは出会いで\r\n".encode("utf-8"), b".\r\n"))
        frames += smtp_session("198.51.100.7", 48001, MX4, BASE + 10,
                               body=(head + b"short\r\n", "続きは出会いで\r\n".encode("utf-8"), b".\r\n"))
        frames.append(self.syn25("198.51.100.7", 48002, BASE + 20))
        r = Run(frames, policy, 1)
        s = r.summary
        self.assertEqual(s["inspection"]["stream_overflow"], 1, s["inspection"])
        self.assertEqual(s["inspection"]["messages"], 2)
        verdicts = {e["subscriber_port"]: e for e in r.events if e["type"] == "content_verdict"}
        self.assertEqual(sorted(verdicts), [48001], r.events)
        self.assertEqual((verdicts[48001]["rules"], verdicts[48001]["action"]), (["blackword-deai"], "tempfail"))
        ends = [Ether(b)[TCP].sport for b in r.to_core if Ether(b).haslayer(Raw) and Ether(b)[Raw].load == b".\r\n"]
        self.assertEqual(ends, [48000], "the overflowed message is forwarded, the other refused")
        self.assertEqual(s["blocked"], 1, "OP25B still enforced")
        print(f"\n  overload: stream_overflow {s['inspection']['stream_overflow']} of 2 messages", file=sys.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
