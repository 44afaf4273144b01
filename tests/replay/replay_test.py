#!/usr/bin/python3
"""Replay acceptance tests: sekishod --replay over the shipped demo capture and
over an evasion capture generated here, checked frame by frame against an
independent expectation computed with scapy.

usage: replay_test.py SEKISHOD SOURCE_ROOT
"""
import json
import os
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
            self.assertEqual({json.loads(l)["type"] for l in f}, {"op25b_monitor"})

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


def smtp_session(client, client_port, server, t0, isn=1000, server_isn=5000):
    """One complete SMTP session (greeting to 221 and FIN), with correct
    sequence numbers, as (timestamp, frame) pairs."""
    cmac, smac = "00:00:5e:00:53:01", "00:00:5e:00:53:02"
    c_seq, s_seq = isn, server_isn
    out = []
    t = t0

    def c(flags, data=b""):
        nonlocal c_seq, t
        t += 0.001
        out.append(Ether(src=cmac, dst=smac) / IP(src=client, dst=server) /
                   TCP(sport=client_port, dport=587, flags=flags, seq=c_seq, ack=s_seq) / Raw(data) if data else
                   Ether(src=cmac, dst=smac) / IP(src=client, dst=server) /
                   TCP(sport=client_port, dport=587, flags=flags, seq=c_seq, ack=s_seq))
        out[-1].time = t
        c_seq += len(data) + (1 if "S" in flags or "F" in flags else 0)

    def s(flags, data=b""):
        nonlocal s_seq, t
        t += 0.001
        pkt = Ether(src=smac, dst=cmac) / IP(src=server, dst=client) / \
            TCP(sport=587, dport=client_port, flags=flags, seq=s_seq, ack=c_seq)
        out.append(pkt / Raw(data) if data else pkt)
        out[-1].time = t
        s_seq += len(data) + (1 if "S" in flags or "F" in flags else 0)

    out.append(Ether(src=cmac, dst=smac) / IP(src=client, dst=server) /
               TCP(sport=client_port, dport=587, flags="S", seq=c_seq))
    out[-1].time = t
    c_seq += 1
    s("SA")
    c("A")
    s("PA", b"220 mx.example.net ESMTP\r\n")
    c("PA", b"EHLO client.example.jp\r\n")
    s("PA", b"250-mx.example.net\r\n250 PIPELINING\r\n")
    c("PA", b"MAIL FROM:<a@example.jp>\r\n")
    s("PA", b"250 2.1.0 Ok\r\n")
    c("PA", b"RCPT TO:<b@example.net>\r\n")
    s("PA", b"250 2.1.5 Ok\r\n")
    c("PA", b"DATA\r\n")
    s("PA", b"354 End data with <CR><LF>.<CR><LF>\r\n")
    c("PA", b"Subject: hello\r\n\r\nbody\r\n.\r\n")
    s("PA", b"250 2.0.0 Ok: queued\r\n")
    c("PA", b"QUIT\r\n")
    s("PA", b"221 2.0.0 Bye\r\n")
    c("FA")
    s("FA")
    c("A")
    return out


class LimitsReplay(unittest.TestCase):
    """Limits judged on the capture's clock: the same counts with 1 and 2
    workers, and a new window allows again."""

    def run_case(self, workers):
        with tempfile.TemporaryDirectory() as tmp:
            policy = os.path.join(tmp, "limits.yaml")
            with open(policy, "w") as f:
                f.write(LIMITS_POLICY)
            frames = []
            t0 = 1795400000.0
            # 8 messages in the first hour, alternating alice's two addresses,
            # then 2 more in the next hour.
            for i in range(8):
                frames += smtp_session("198.51.100.7" if i % 2 == 0 else "198.51.100.8", 40000 + i,
                                       "203.0.113.25", t0 + 60 * i)
            for i in range(2):
                frames += smtp_session("198.51.100.8", 41000 + i, "203.0.113.25", t0 + 3600 + 60 * i)
            cap = os.path.join(tmp, "limits.pcap")
            wrpcap(cap, frames)
            out = os.path.join(tmp, "out")
            run_replay(cap, policy, out, workers)
            with open(os.path.join(out, "summary.json")) as f:
                summary = json.load(f)
            with open(os.path.join(out, "events.jsonl")) as f:
                events = [json.loads(l) for l in f]
            to_access = [Ether(b) for b in frames_of(os.path.join(out, "to-access.pcap"))]
            to_core = [Ether(b) for b in frames_of(os.path.join(out, "to-core.pcap"))]
            return summary, events, to_access, to_core, frames

    def test_account_limit_over_two_addresses(self):
        s, events, to_access, to_core, frames = self.run_case(1)
        self.assertEqual(s["smtp"]["messages"], 10)
        self.assertEqual(s["smtp"]["tempfails_sent"], 3, "messages 6, 7, 8 of the first hour")
        self.assertEqual([e["count"] for e in events], [6, 6, 6])
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

    def test_two_workers_count_the_same(self):
        one = self.run_case(1)[0]
        two = self.run_case(2)[0]
        for key in ("frames_in", "forwarded", "limited", "smtp", "limit_hits_by_index"):
            self.assertEqual(one[key], two[key], key)


class CheckPolicy(unittest.TestCase):
    def test_shipped_policies_are_valid(self):
        for name in sorted(os.listdir(os.path.join(ROOT, "configs"))):
            if name.endswith(".yaml"):
                path = os.path.join(ROOT, "configs", name)
                proc = subprocess.run([SEKISHOD, "--check-policy", path], capture_output=True, text=True)
                self.assertEqual(proc.returncode, 0, proc.stderr)
                self.assertIn(": ok", proc.stdout)

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


if __name__ == "__main__":
    unittest.main(verbosity=2)
