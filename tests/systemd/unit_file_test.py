#!/usr/bin/python3
"""The shipped systemd unit (configs/systemd/sekishod.service):

- `systemd-analyze verify` accepts it without a single warning (it exits 0 on
  unknown keys and bad values, so any output fails the test), with ExecStart's
  /usr/bin/sekishod replaced by the binary just built;
- the directories it declares, as systemd 252 creates them (systemd.exec(5):
  the innermost RuntimeDirectory=, StateDirectory=, LogsDirectory= directory is
  owned by the service's User= and Group=, root when unset, with the matching
  ...DirectoryMode=, 0755 when unset), are built here with those owners and
  modes, and real processes under other credentials (setpriv) try them: a
  member of the API group connects to the API socket (0660, --api-group, as
  sekishod makes it) and reads the event log (0640 less UMask=, group of the
  process); a user outside the group does neither and lists no directory.

usage: unit_file_test.py SOURCE_ROOT SEKISHOD
"""
import os
import re
import shlex
import socket
import stat
import subprocess
import sys
import tempfile
import unittest

ROOT = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else None
SEKISHOD = os.path.abspath(sys.argv[2]) if len(sys.argv) > 2 else None
del sys.argv[1:]
UNIT = os.path.join(ROOT or ".", "configs/systemd/sekishod.service")

NOBODY = 65534
TEST_GID = 64999   # stands for the API group: setpriv takes a number, /etc/group need not know it


def service_section(path):
    """[Service] as {key: [values]}, continuation lines joined, comments dropped."""
    keys, section, pending = {}, None, ""
    with open(path) as f:
        for raw in f:
            line = raw.rstrip("\n")
            if not pending and line.lstrip().startswith(("#", ";")):
                continue
            if line.endswith("\\"):
                pending += line[:-1] + " "
                continue
            line, pending = pending + line, ""
            if re.fullmatch(r"\s*\[.*\]\s*", line):
                section = line.strip()
                continue
            if section == "[Service]" and "=" in line:
                k, v = line.split("=", 1)
                keys.setdefault(k.strip(), []).append(v.strip())
    return keys


def option(argv, name):
    for i, a in enumerate(argv):
        if a == name and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return None


class Unit:
    """What systemd makes of the unit's directory settings."""

    def __init__(self, path):
        self.keys = service_section(path)
        self.argv = shlex.split(self.keys["ExecStart"][-1])
        self.group = self.one("Group") or "root"
        self.umask = int(self.one("UMask") or "0022", 8)

    def one(self, key):
        values = self.keys.get(key)
        return values[-1] if values else None

    def directory(self, kind, base):
        """(path, owning group name, mode) of RuntimeDirectory= and its kin."""
        name = self.one(kind + "Directory")
        if name is None:
            return None
        return os.path.join(base, name.split()[-1]), self.group, int(self.one(kind + "DirectoryMode") or "0755", 8)


def gid_of(group, api_group="sekisho"):
    """The number a group name stands for here: root is 0, the API group TEST_GID."""
    return {"root": 0, api_group: TEST_GID}.get(group, TEST_GID + 1)


def as_user(groups, code):
    """Runs python `code` as uid/gid nobody with exactly `groups`: its exit code."""
    creds = ["--groups", ",".join(map(str, groups))] if groups else ["--clear-groups"]
    return subprocess.run(["setpriv", "--reuid", str(NOBODY), "--regid", str(NOBODY), *creds,
                           "/usr/bin/python3", "-c", code], capture_output=True, text=True, timeout=30)


class Verify(unittest.TestCase):
    def test_systemd_analyze_verify_is_silent(self):
        with open(UNIT) as f:
            text = f.read()
        self.assertIn("/usr/bin/sekishod ", text)
        with tempfile.TemporaryDirectory() as tmp:
            copy = os.path.join(tmp, "sekishod.service")
            with open(copy, "w") as f:
                f.write(text.replace("/usr/bin/sekishod ", SEKISHOD + " "))
            proc = subprocess.run(["systemd-analyze", "--man=no", "verify", copy],
                                  capture_output=True, text=True, timeout=60)
            self.assertEqual(proc.returncode, 0, proc.stderr)
            self.assertEqual((proc.stdout + proc.stderr).strip(), "", "verify warned")

    def test_the_check_fails_on_a_bad_unit(self):
        # The verify check itself: an unknown key and a bad mode are only warnings.
        with tempfile.TemporaryDirectory() as tmp:
            copy = os.path.join(tmp, "bad.service")
            with open(copy, "w") as f:
                f.write("[Service]\nExecStart=/bin/true\nRuntimeDirectoryMode=0999\nColour=blue\n")
            proc = subprocess.run(["systemd-analyze", "--man=no", "verify", copy],
                                  capture_output=True, text=True, timeout=60)
            self.assertNotEqual((proc.stdout + proc.stderr).strip(), "")


@unittest.skipUnless(os.geteuid() == 0, "needs root: chown and setpriv")
class Directories(unittest.TestCase):
    def setUp(self):
        self.unit = Unit(UNIT)
        self.tmp = tempfile.TemporaryDirectory()
        os.chmod(self.tmp.name, 0o755)
        self.base = self.tmp.name

    def tearDown(self):
        self.tmp.cleanup()

    def make(self, kind, base):
        d = self.unit.directory(kind, os.path.join(self.base, base.strip("/")))
        self.assertIsNotNone(d, f"{kind}Directory= missing")
        path, group, mode = d
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        os.mkdir(path)
        os.chown(path, 0, gid_of(group))
        os.chmod(path, mode)
        return path, group, mode

    def test_the_api_group_reaches_the_socket_and_nobody_else(self):
        api_group = option(self.unit.argv, "--api-group")
        api_socket = option(self.unit.argv, "--api-socket")
        self.assertEqual(api_group, "sekisho")
        run_dir, group, mode = self.make("Runtime", "/run")
        self.assertEqual(os.path.dirname(api_socket), "/run/" + os.path.basename(run_dir),
                         "the socket is in RuntimeDirectory=")
        # The socket as sekishod leaves it: group --api-group, mode 0660.
        path = os.path.join(run_dir, os.path.basename(api_socket))
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(listener.close)
        listener.bind(path)
        listener.listen(4)
        os.chown(path, 0, TEST_GID)
        os.chmod(path, 0o660)
        connect = f"import socket; socket.socket(socket.AF_UNIX).connect({path!r})"
        member = as_user([TEST_GID], connect)
        self.assertEqual(member.returncode, 0,
                         f"a member of {api_group} cannot reach {api_socket}: the directory is "
                         f"root:{group} {mode:04o}\n{member.stderr}")
        other = as_user([], connect)
        self.assertNotEqual(other.returncode, 0, "a user outside the group connected")
        self.assertIn("PermissionError", other.stderr)

    def test_the_event_log_is_the_groups_and_nobody_elses(self):
        events = option(self.unit.argv, "--events")
        log_dir, group, mode = self.make("Logs", "/var/log")
        self.assertEqual(os.path.dirname(events), "/var/log/" + os.path.basename(log_dir),
                         "the event log is in LogsDirectory=")
        self.assertEqual(mode & 0o007, 0, f"LogsDirectory mode {mode:04o} lets everyone in")
        # The file as sekishod creates it: 0640 less the umask, group of the process (Group=).
        path = os.path.join(log_dir, os.path.basename(events))
        with open(path, "w") as f:
            f.write('{"type":"op25b_block","count":1}\n')
        os.chown(path, 0, gid_of(self.unit.group))
        os.chmod(path, 0o640 & ~self.unit.umask)
        read = f"import os; os.listdir({log_dir!r}); open({path!r}).read()"
        member = as_user([TEST_GID], read)
        self.assertEqual(member.returncode, 0, f"the group cannot read {events}: the directory is "
                         f"root:{group} {mode:04o}\n{member.stderr}")
        other = as_user([], read)
        self.assertNotEqual(other.returncode, 0, "a user outside the group read the event log")

    def test_the_binding_history_is_nobody_elses(self):
        state_dir, group, mode = self.make("State", "/var/lib")
        self.assertEqual(mode & 0o007, 0, f"StateDirectory mode {mode:04o} lets everyone in")
        other = as_user([], f"import os; os.listdir({state_dir!r})")
        self.assertNotEqual(other.returncode, 0)
        self.assertEqual(self.unit.umask & 0o007, 0o007, "UMask= leaves new files world-accessible")


if __name__ == "__main__":
    unittest.main(verbosity=2)
