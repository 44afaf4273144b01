#!/usr/bin/python3
"""RADIUS accounting from a real client: radclient (freeradius-utils) sends
Accounting-Requests to the listener (radius_listener_driver: listener +
binding history, as sekishod will run them); then the SQLite history and
the driver's counters are checked.

radclient itself verifies each Accounting-Response's Response Authenticator
(a wrong one is reported and treated as no reply), so "got a response" also
proves the authenticator.

usage: radclient_test.py DRIVER
"""
import ipaddress
import json
import os
import select
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import tempfile
import time
import unittest

DRIVER = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else None
del sys.argv[1:]

SECRET = "Kq7f9ZbX-radclient-test"
# A day ago: the listener refuses events more than a week old or minutes ahead (time sanity).
T0 = int(time.time()) - 86400
RADCLIENT = shutil.which("radclient")


class RadclientTest(unittest.TestCase):
    """The methods run in name order against one driver process."""

    driver = None

    @classmethod
    def setUpClass(cls):
        if RADCLIENT is None:
            raise unittest.SkipTest("radclient not installed (apt-get install freeradius-utils)")
        cls.tmp = tempfile.mkdtemp(prefix="sekisho-radius-")
        cls.db = os.path.join(cls.tmp, "bindings.db")
        clients = os.path.join(cls.tmp, "clients.yaml")
        with open(clients, "w") as f:
            f.write(f'clients:\n  - address: 127.0.0.1\n    secret: "{SECRET}"\n    name: radclient\n')
        cls.secret_file = os.path.join(cls.tmp, "secret")
        cls.wrong_secret_file = os.path.join(cls.tmp, "wrong-secret")
        with open(cls.secret_file, "w") as f:
            f.write(SECRET + "\n")
        with open(cls.wrong_secret_file, "w") as f:
            f.write("not-" + SECRET + "\n")
        cls.stderr = open(os.path.join(cls.tmp, "driver.log"), "w+")
        cls.driver = subprocess.Popen(
            [DRIVER, "--clients", clients, "--db", cls.db, "--listen", "127.0.0.1", "--port", "0",
             "--seconds", "100"],
            stdout=subprocess.PIPE, stderr=cls.stderr, text=True)
        ready, _, _ = select.select([cls.driver.stdout], [], [], 10)
        if not ready:
            cls.stop_driver()
            raise RuntimeError("the driver did not start within 10 s")
        line = cls.driver.stdout.readline()
        if not line:
            cls.stop_driver()
            raise RuntimeError("the driver exited: " + cls.driver_log())
        cls.port = json.loads(line)["port"]
        cls.counters = None

    @classmethod
    def stop_driver(cls):
        """SIGTERM by PID, then SIGKILL if it lingers; returns its stdout."""
        if cls.driver is None or cls.driver.returncode is not None:
            return ""
        os.kill(cls.driver.pid, signal.SIGTERM)
        try:
            out, _ = cls.driver.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(cls.driver.pid, signal.SIGKILL)
            out, _ = cls.driver.communicate()
        return out

    @classmethod
    def driver_log(cls):
        cls.stderr.flush()
        cls.stderr.seek(0)
        return cls.stderr.read()

    @classmethod
    def tearDownClass(cls):
        try:
            cls.stop_driver()
        finally:
            cls.stderr.close()
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def radclient(self, attributes, wrong_secret=False):
        proc = subprocess.run(
            [RADCLIENT, "-x", "-r", "1", "-t", "1", "-S",
             self.wrong_secret_file if wrong_secret else self.secret_file,
             f"127.0.0.1:{self.port}", "acct"],
            input=attributes, capture_output=True, text=True, timeout=30)
        return proc, proc.stdout + proc.stderr

    def send(self, attributes):
        proc, out = self.radclient(attributes)
        self.assertEqual(proc.returncode, 0, out + "\ndriver log:\n" + self.driver_log())
        self.assertIn("Received Accounting-Response", out)
        return out

    def test_01_start(self):
        self.send('Acct-Status-Type = Start, User-Name = "alice@example.jp", Acct-Session-Id = "s1", '
                  f'Framed-IP-Address = 198.51.100.7, NAS-IP-Address = 192.0.2.1, Event-Timestamp = {T0}')

    def test_02_interim(self):
        self.send('Acct-Status-Type = Interim-Update, User-Name = "alice@example.jp", Acct-Session-Id = "s1", '
                  'Framed-IP-Address = 198.51.100.7, NAS-IP-Address = 192.0.2.1, Acct-Session-Time = 300, '
                  f'Event-Timestamp = {T0 + 300}')

    def test_03_stop(self):
        self.send('Acct-Status-Type = Stop, User-Name = "alice@example.jp", Acct-Session-Id = "s1", '
                  'Framed-IP-Address = 198.51.100.7, NAS-IP-Address = 192.0.2.1, Acct-Session-Time = 3600, '
                  f'Event-Timestamp = {T0 + 3600}')

    def test_04_ipv6_prefixes(self):
        self.send('Acct-Status-Type = Start, User-Name = "bob@example.jp", Acct-Session-Id = "s2", '
                  'Framed-IP-Address = 198.51.100.8, Framed-IPv6-Prefix = 2001:db8:100:8::/64, '
                  'Delegated-IPv6-Prefix = 2001:db8:108::/56, NAS-IP-Address = 192.0.2.1, '
                  f'NAS-Identifier = "bng-1", Event-Timestamp = {T0 + 100}')

    def test_05_wrong_secret_gets_no_response(self):
        proc, out = self.radclient(
            'Acct-Status-Type = Start, User-Name = "mallory@example.jp", Acct-Session-Id = "s9", '
            f'Framed-IP-Address = 198.51.100.66, NAS-IP-Address = 192.0.2.1, Event-Timestamp = {T0}',
            wrong_secret=True)
        self.assertNotEqual(proc.returncode, 0, out)
        self.assertNotIn("Received Accounting-Response", out)
        self.assertIn("No reply from server", out)

    def test_06_accounting_on_closes_the_nas_sessions(self):
        self.send('Acct-Status-Type = Start, User-Name = "carol@example.jp", Acct-Session-Id = "s3", '
                  f'Framed-IP-Address = 198.51.100.9, NAS-IP-Address = 192.0.2.2, Event-Timestamp = {T0 + 200}')
        self.send(f'Acct-Status-Type = Accounting-On, NAS-IP-Address = 192.0.2.2, Event-Timestamp = {T0 + 5000}')

    def test_07_raw_garbage_is_dropped(self):
        """Not from radclient: a truncated datagram and an Access-Request."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.5)
            s.sendto(b"\x04\x01\x00", ("127.0.0.1", self.port))
            s.sendto(struct.pack(">BBH16s", 1, 7, 20, b"\0" * 16), ("127.0.0.1", self.port))
            with self.assertRaises(socket.timeout):
                s.recvfrom(4096)

    def test_99_counters_and_history(self):
        out = self.stop_driver()
        self.assertEqual(self.driver.returncode, 0, self.driver_log())
        counters = json.loads(out.strip().splitlines()[-1])
        log = self.driver_log()
        self.assertEqual(counters["accepted"], 6, counters)   # start, interim, stop, start, start, accounting-on
        self.assertEqual((counters["starts"], counters["interims"], counters["stops"], counters["accounting_ons"]),
                         (3, 1, 1, 1), counters)
        # radclient -r 1: one transmission, no retransmission.
        self.assertEqual(counters["bad_authenticator"], 1, counters)
        self.assertIn("the Request Authenticator does not match the client's shared secret", log)
        self.assertEqual(counters["malformed"], 1, counters)
        self.assertEqual(counters["unsupported_code"], 1, counters)
        self.assertEqual(counters["unknown_client"], 0, counters)
        self.assertEqual(counters["apply_failed"], 0, counters)
        self.assertEqual(counters["open_bindings"], 3, counters)   # bob: IPv4, /56, /64
        self.assertNotIn(SECRET, log)

        db = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)
        try:
            def who_held(address, t):
                """The history's rule: prefix containing the address, start <= t <= stop."""
                a = ipaddress.ip_address(address)
                rows = db.execute(
                    "SELECT family, prefix, prefix_length, account, session_id, start_time, stop_time, stop_cause "
                    "FROM sessions WHERE family = ? AND start_time <= ? AND (stop_time IS NULL OR stop_time >= ?)",
                    (a.version, t, t)).fetchall()
                held = []
                for family, prefix, length, account, session, start, stop, cause in rows:
                    net = ipaddress.ip_network((ipaddress.ip_address(prefix), length))
                    if a in net:
                        held.append((account, session, str(net), start, stop, cause))
                return held

            self.assertEqual(who_held("198.51.100.7", T0 + 1800),
                             [("alice@example.jp", "s1", "198.51.100.7/32", T0, T0 + 3600, "stop")])
            self.assertEqual(who_held("198.51.100.7", T0 + 3600)[0][0], "alice@example.jp")
            self.assertEqual(who_held("198.51.100.7", T0 + 3601), [])
            self.assertEqual(who_held("198.51.100.7", T0 - 1), [])
            self.assertEqual(who_held("2001:db8:108:42::25", T0 + 4000),
                             [("bob@example.jp", "s2", "2001:db8:108::/56", T0 + 100, None, None)])
            self.assertEqual(who_held("2001:db8:100:8::1", T0 + 4000)[0][0], "bob@example.jp")
            self.assertEqual(who_held("198.51.100.8", T0 + 99), [])
            self.assertEqual(who_held("198.51.100.9", T0 + 300),
                             [("carol@example.jp", "s3", "198.51.100.9/32", T0 + 200, T0 + 5000, "accounting-on")])
            self.assertEqual(who_held("198.51.100.9", T0 + 5001), [])
            self.assertEqual(who_held("198.51.100.66", T0), [], "the forged Start stored nothing")
            nas = db.execute("SELECT DISTINCT nas, nas_identifier FROM sessions WHERE account = 'bob@example.jp'").fetchall()
            self.assertEqual(nas, [("192.0.2.1", "bng-1")])
            self.assertEqual(db.execute("PRAGMA journal_mode").fetchone()[0], "wal")
        finally:
            db.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
