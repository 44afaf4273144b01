#!/usr/bin/python3
"""The shipped systemd unit (configs/systemd/sekishod.service) as `meson install` puts it:

- for the prefixes /usr and /usr/local, a fresh `meson setup --prefix P` and
  `meson install --tags system --destdir D` (nothing built) install the unit
  into systemd's unit directory under P with ExecStart=/ExecStartPre= naming
  P/bin/sekishod and the policy under P's sysconfdir, the sysusers.d file that
  creates the user and group sekisho, the bash completion and the example
  configurations (a second install keeps an edited file, the shipped one goes
  next to it as .dist);
- `systemd-analyze verify` accepts the installed unit without a single warning
  (it exits 0 on unknown keys and bad values, so any output fails the test),
  with P/bin/sekishod replaced by the binary just built (P/bin is not on this
  host);
- the unit runs hardened: User= sekisho, only CAP_NET_ADMIN, CAP_NET_RAW,
  CAP_BPF, CAP_PERFMON and CAP_IPC_LOCK, NoNewPrivileges=, ProtectSystem=strict, the address
  families the backends use, and `systemd-analyze security --offline` rates its
  exposure at most MAX_EXPOSURE;
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
import shutil
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

PREFIXES = {"/usr": "/etc", "/usr/local": "/usr/local/etc"}   # prefix: meson's sysconfdir for it
# The unit's capabilities; tests/e2e/xdp_e2e.sh and restart_e2e.sh run sekishod with exactly these.
CAPABILITIES = {"CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_BPF", "CAP_PERFMON", "CAP_IPC_LOCK"}
ADDRESS_FAMILIES = {"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK", "AF_PACKET", "AF_XDP"}
MAX_EXPOSURE = 5.0   # systemd-analyze security: 0 (locked down) .. 10 (root, unrestricted)
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


def meson_install(prefix, build, destdir):
    """meson setup --prefix PREFIX (no tests) and install what carries the tag 'system' into DESTDIR."""
    setup = subprocess.run(["meson", "setup", build, ROOT, "--prefix", prefix, "-Dtests=false"],
                           capture_output=True, text=True, timeout=120)
    if setup.returncode != 0:
        raise AssertionError("meson setup --prefix %s failed:\n%s%s" % (prefix, setup.stdout[-3000:], setup.stderr))
    install = subprocess.run(["meson", "install", "-C", build, "--destdir", destdir, "--tags", "system",
                              "--no-rebuild"], capture_output=True, text=True, timeout=120)
    if install.returncode != 0:
        raise AssertionError("meson install failed:\n%s%s" % (install.stdout[-3000:], install.stderr))
    return install.stdout


def installed(destdir, path):
    return os.path.join(destdir, path.lstrip("/"))


class Install(unittest.TestCase):
    """What meson install puts where, for each prefix, and the installed unit verified."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.dest = {}
        for prefix in PREFIXES:
            name = prefix.strip("/").replace("/", "_")
            cls.dest[prefix] = os.path.join(cls.tmp.name, "dest-" + name)
            meson_install(prefix, os.path.join(cls.tmp.name, "build-" + name), cls.dest[prefix])

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def unit_path(self, prefix):
        # systemd.pc's unit directory under the prefix (Debian: /usr/lib/systemd/system and
        # /usr/local/lib/systemd/system, both on systemd's unit search path).
        return installed(self.dest[prefix], prefix + "/lib/systemd/system/sekishod.service")

    def test_the_unit_names_the_binary_and_policy_of_its_prefix(self):
        for prefix, sysconfdir in PREFIXES.items():
            with self.subTest(prefix=prefix):
                unit = Unit(self.unit_path(prefix))
                policy = sysconfdir + "/sekisho/sekisho.yaml"
                self.assertEqual(unit.argv[0], prefix + "/bin/sekishod")
                self.assertEqual(option(unit.argv, "--policy"), policy)
                self.assertEqual(shlex.split(unit.one("ExecStartPre")),
                                 [prefix + "/bin/sekishod", "--check-policy", policy])
                with open(self.unit_path(prefix)) as f:
                    self.assertNotIn("@", f.read(), "a placeholder left unfilled")

    def test_systemd_analyze_verify_is_silent(self):
        for prefix in PREFIXES:
            with self.subTest(prefix=prefix):
                with open(self.unit_path(prefix)) as f:
                    text = f.read()
                with tempfile.TemporaryDirectory() as tmp:
                    copy = os.path.join(tmp, "sekishod.service")
                    with open(copy, "w") as f:
                        f.write(text.replace(prefix + "/bin/sekishod ", SEKISHOD + " "))
                    proc = subprocess.run(["systemd-analyze", "--man=no", "verify", copy],
                                          capture_output=True, text=True, timeout=60)
                    self.assertEqual(proc.returncode, 0, proc.stderr)
                    # verify also loads the units ours is ordered against (network-online.target
                    # and what hangs off it) and repeats the host's own warnings about them
                    # (Debian's freeradius.service: MemoryLimit=): those are not ours.
                    ours = [line for line in (proc.stdout + proc.stderr).splitlines()
                            if line.strip() and not self.host_unit_warning(line)]
                    self.assertEqual(ours, [], "verify warned")

    @staticmethod
    def host_unit_warning(line):
        """A warning verify prints about a unit file the host installed, not about ours."""
        host_dirs = ("/lib/systemd/system/", "/usr/lib/systemd/system/", "/etc/systemd/system/")
        return line.startswith(host_dirs) and "sekishod" not in line

    def test_the_unit_runs_hardened(self):
        unit = Unit(self.unit_path("/usr"))
        self.assertEqual(unit.one("User"), "sekisho")
        self.assertEqual(unit.one("Group"), "sekisho")
        self.assertEqual(set(unit.one("CapabilityBoundingSet").split()), CAPABILITIES)
        self.assertEqual(set(unit.one("AmbientCapabilities").split()), CAPABILITIES)
        self.assertEqual(set(unit.one("RestrictAddressFamilies").split()), ADDRESS_FAMILIES)
        for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
                           "PrivateTmp": "yes", "SystemCallArchitectures": "native"}.items():
            self.assertEqual(unit.one(key), value, key)
        with tempfile.TemporaryDirectory() as tmp:
            copy = os.path.join(tmp, "sekishod.service")
            shutil.copy(self.unit_path("/usr"), copy)
            proc = subprocess.run(["systemd-analyze", "--man=no", "security", "--offline=yes", copy],
                                  capture_output=True, text=True, timeout=60)
        level = re.search(r"Overall exposure level for sekishod.service: ([0-9.]+)", proc.stdout + proc.stderr)
        self.assertIsNotNone(level, proc.stdout + proc.stderr)
        self.assertLessEqual(float(level.group(1)), MAX_EXPOSURE, proc.stdout)

    def test_sysusers_creates_the_user_and_group(self):
        for prefix in PREFIXES:
            with self.subTest(prefix=prefix):
                with open(installed(self.dest[prefix], prefix + "/lib/sysusers.d/sekisho.conf")) as f:
                    lines = [l.split() for l in f if l.strip() and not l.startswith("#")]
                self.assertEqual([l[:3] for l in lines], [["u", "sekisho", "-"]])

    def test_the_completion_and_the_examples_are_installed(self):
        for prefix, sysconfdir in PREFIXES.items():
            with self.subTest(prefix=prefix):
                dest = self.dest[prefix]
                self.assertTrue(os.path.isfile(installed(
                    dest, prefix + "/share/bash-completion/completions/sekishoctl")))
                for name in ("sekisho.yaml", "op25b-enforce.yaml", "op25b-monitor.yaml", "op25b-drop.yaml",
                             "clients.example.yaml"):
                    self.assertTrue(os.path.isfile(installed(dest, sysconfdir + "/sekisho/" + name)), name)

    def test_a_reinstall_keeps_an_edited_policy(self):
        dest = self.dest["/usr/local"]
        policy = installed(dest, "/usr/local/etc/sekisho/sekisho.yaml")
        with open(policy, "a") as f:
            f.write("# edited by the operator\n")
        build = os.path.join(self.tmp.name, "build-usr_local")
        subprocess.run(["meson", "install", "-C", build, "--destdir", dest, "--tags", "system", "--no-rebuild"],
                       check=True, capture_output=True, timeout=120)
        with open(policy) as f:
            self.assertIn("# edited by the operator", f.read())
        with open(policy + ".dist") as f, open(os.path.join(ROOT, "configs/sekisho.yaml")) as shipped:
            self.assertEqual(f.read(), shipped.read())

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
