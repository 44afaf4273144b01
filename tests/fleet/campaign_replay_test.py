#!/usr/bin/python3
"""The 30-bot campaign over three gateways, through the real sekishod in
replay mode and a real Redis: one message, 10 distinct subscribers behind each
gateway, threshold inspection.campaign.subscribers 25. Replayed one gateway
after the other with --fleet, the third gateway's events hold the campaign
verdicts; the same three replays without --fleet hold none. Replaying a
gateway again changes nothing in Redis (SETBIT is a union); with Redis
unreachable, a replay still completes, counting locally, and says so.

Run through with_fleet_stores.sh (SEKISHO_TEST_REDIS, SEKISHO_TEST_REDIS_PASSWORD_FILE).
usage: campaign_replay_test.py SEKISHOD SOURCE_ROOT
"""
import json
import os
import subprocess
import sys
import tempfile
import unittest

SEKISHOD = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else None
ROOT = os.path.abspath(sys.argv[2]) if len(sys.argv) > 2 else None
del sys.argv[1:]
sys.path.insert(0, os.path.join(ROOT or ".", "tests", "replay"))
from replay_test import smtp_session, MX4  # noqa: E402  (the replay tests' SMTP session builder)
from scapy.all import wrpcap  # noqa: E402

REDIS = os.environ.get("SEKISHO_TEST_REDIS", "")
REDIS_PASSWORD = os.environ.get("SEKISHO_TEST_REDIS_PASSWORD_FILE", "")

POLICY = """version: 1
ports:
  smtp: [25]
  submission: [587, 465]
subscribers:
  dynamic: [198.51.100.0/24, "2001:db8:100::/40"]
  static: [198.51.100.128/28, "2001:db8:1ff::/48"]
relays: [203.0.113.10/32]
events:
  aggregate_window: 0s
inspection:
  campaign:
    subscribers: {max: 25, window: 1h, score: 5}
  message_actions:
    - {score: 5, action: event}
"""

BODY = (b"Subject: =?UTF-8?B?5b2T6YG444GK44KB44Gn44Go44GG?=\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        b"Congratulations! You have been selected to receive a special reward.\r\n"
        b"Claim it today at http://reward.example.com/claim before it expires.\r\n.\r\n")
T0 = 1_800_000_000 // 3600 * 3600 + 600   # ten minutes into an hour: every message in one window


def capture(path, gateway):
    """Gateway 0, 1, 2: its 10 bots (198.51.100.10+10*gateway+i), one message each, in turn."""
    frames = []
    for i in range(10):
        bot = f"198.51.100.{10 + 10 * gateway + i}"
        frames += smtp_session(bot, 40000 + i, MX4, T0 + 60 * gateway + 5 * i, isn=1000 + i,
                               port=587, rcpts=2, body=(BODY,))
    wrpcap(path, frames)


def redis_cli(*args):
    with open(REDIS_PASSWORD) as f:
        password = f.read().strip()
    return subprocess.run(["redis-cli", "-s", REDIS[len("unix:"):], *args], capture_output=True, text=True,
                          env=dict(os.environ, REDISCLI_AUTH=password), timeout=10, check=True).stdout


class CampaignAcrossTheFleet(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not REDIS:
            raise unittest.SkipTest("run through with_fleet_stores.sh")
        cls.tmp = tempfile.TemporaryDirectory(prefix="sekisho-campaign-replay-")
        d = cls.tmp.name
        cls.policy = os.path.join(d, "policy.yaml")
        with open(cls.policy, "w") as f:
            f.write(POLICY)
        cls.captures = []
        for g in range(3):
            cls.captures.append(os.path.join(d, f"gw{g}.pcap"))
            capture(cls.captures[-1], g)
        cls.fleet = []
        for g in range(3):
            cls.fleet.append(os.path.join(d, f"fleet{g}.yaml"))
            with open(cls.fleet[-1], "w") as f:
                f.write(f"gateway: edge-{g}\nredis:\n  address: {REDIS}\n  password_file: {REDIS_PASSWORD}\n"
                        "sync_interval: 50ms\n")

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def replay(self, g, name, fleet=None):
        out = os.path.join(self.tmp.name, name)
        cmd = [SEKISHOD, "--replay", self.captures[g], "--policy", self.policy, "--out", out]
        if fleet:
            cmd += ["--fleet", fleet]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        self.assertEqual(proc.returncode, 0, f"{cmd}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
        with open(os.path.join(out, "events.jsonl")) as f:
            events = [json.loads(l) for l in f if l.strip()]
        with open(os.path.join(out, "summary.json")) as f:
            summary = json.load(f)
        self.assertEqual(summary["smtp"]["messages"], 10, summary["smtp"])
        campaign = [e for e in events if e["type"] == "content_verdict" and e["score"] == 5]
        self.assertEqual(len(campaign), summary["inspection"]["campaign_subscribers"])
        return campaign, summary, proc

    def test_1_not_detected_per_gateway(self):
        for g in range(3):
            campaign, _, _ = self.replay(g, f"alone{g}")
            self.assertEqual(campaign, [], f"gateway {g} alone saw a campaign")

    def test_2_detected_fleet_wide(self):
        a, sa, _ = self.replay(0, "fleet0", self.fleet[0])
        b, sb, _ = self.replay(1, "fleet1", self.fleet[1])
        c, sc, _ = self.replay(2, "fleet2", self.fleet[2])
        self.assertEqual(a, [], "the first gateway had only its own 10")
        self.assertEqual(b, [], "the second gateway had 20")
        self.assertGreater(len(c), 0, "the third gateway did not see the fleet's campaign")
        self.assertLessEqual(len(c), 5, "detected before 26 distinct subscribers had sent")
        for e in c:
            self.assertEqual(e["recipients"], 2)
            self.assertTrue(e["fingerprint"])
        self.assertEqual(len({e["fingerprint"] for e in c}), 1)
        for s in (sa, sb, sc):
            self.assertTrue(s["fleet"]["pulled"] and s["fleet"]["pushed"], s["fleet"])
            self.assertTrue(s["fleet"]["campaign"]["link_up"], s["fleet"])
        self.assertGreater(sb["fleet"]["campaign"]["merges"], 0, "the second gateway merged nothing")
        self.assertGreater(sc["fleet"]["campaign"]["merges"], 0, "the third gateway merged nothing")
        # Redis holds the fleet's bitmap of the message: 30 subscribers, give or take a shared bit.
        keys = [k for k in redis_cli("--scan", "--pattern", "sekisho:campaign:3600s:*").split()
                if not k.endswith(":hot") and not k.endswith(":rcpt")]
        self.assertEqual(len(keys), 1, keys)
        bits = int(redis_cli("BITCOUNT", keys[0]))
        self.assertGreaterEqual(bits, 26)
        self.assertLessEqual(bits, 30)
        # Each replay's recipients of the message (10 subscribers, 2 recipients each) in its
        # gateway's fixed replay field.
        def recipients():
            words = redis_cli("HGETALL", keys[0] + ":rcpt").split()
            return dict(zip(words[0::2], words[1::2]))
        self.assertEqual(recipients(), {"edge-0/replay": "20", "edge-1/replay": "20", "edge-2/replay": "20"})
        # The same gateway replayed again: everything resent, nothing changes (bits and recipients).
        before = redis_cli("--no-raw", "GET", keys[0])
        self.replay(0, "fleet0-again", self.fleet[0])
        self.assertEqual(redis_cli("--no-raw", "GET", keys[0]), before)
        self.assertEqual(recipients(), {"edge-0/replay": "20", "edge-1/replay": "20", "edge-2/replay": "20"})

    def test_3_redis_unreachable_counts_locally(self):
        dead = os.path.join(self.tmp.name, "dead.yaml")
        with open(dead, "w") as f:
            f.write(f"gateway: edge-dead\nredis:\n  address: unix:{self.tmp.name}/no-redis.sock\n")
        campaign, summary, proc = self.replay(2, "dead", dead)
        self.assertEqual(campaign, [])
        self.assertFalse(summary["fleet"]["pulled"])
        self.assertFalse(summary["fleet"]["campaign"]["link_up"])
        self.assertIn("counts locally only", proc.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
