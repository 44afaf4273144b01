#!/usr/bin/python3
"""SpamAssassin's shipped body and header rules through Sekisho's rule compiler.

Reads the rule set of the Debian package `spamassassin` (/usr/share/spamassassin/*.cf),
converts each regex rule (body, rawbody, header) from Perl syntax to a Sekisho content
rule (pattern + flags + where), and compiles every one through dataplane/inspect/content_rules
via the driver sa_rule_compile (one rule at a time, then the accepted ones together per
target class, as a policy would). Reports how many Hyperscan accepts, groups the rest by
reason, writes the full per-rule list to <build dir>/spamassassin_rules.tsv and prints the
compile figures.

Perl -> Hyperscan: /i caseless, /s dotall, /m multiline, /x as an inline (?x) (Hyperscan
parses extended syntax), /g and /o have no effect on a match test and are dropped; any
other flag is reported. SpamAssassin's ReplaceTags (<A>, <inter W2>, ...) are expanded for
the rules listed in replace_rules, as SpamAssassin does. Rule text is bytes (the .cf files
carry Latin-1 and UTF-8 bytes): patterns are compiled without the utf8 flag, as Perl
matches them against bytes.

Passes when the compiler ran on every regex rule (one verdict each, no crash) and the
accepted count is at least MIN_ACCEPTED (a bit under what was measured, so regressions
fail). Exit status 1 otherwise.

usage: spamassassin_rules_test.py SA_RULE_COMPILE BUILD_DIR [RULES_DIR]
"""
import collections
import glob
import json
import os
import re
import subprocess
import sys

# Measured with SpamAssassin 4.0.1 (Debian 12, spamassassin 4.0.1-1~deb12u1): 1150 of 1367 regex rules
# accepted. Kept a little lower so a rule set update does not break the build; a compiler
# regression (a flag lost, a class of patterns refused) does.
MIN_ACCEPTED = 1100

PSEUDO_HEADERS = {
    b"ALL-TRUSTED", b"ALL-UNTRUSTED", b"ALL-INTERNAL", b"ALL-EXTERNAL", b"TOCC", b"ENVELOPEFROM",
    b"MESSAGEID",
}
FIELD_MODIFIERS = {b"raw", b"addr", b"name", b"host", b"domain", b"ip", b"revip", b"first", b"last"}
PAIRS = {b"{": b"}", b"(": b")", b"<": b">", b"[": b"]"}


def strip_comment(line):
    """SpamAssassin's Conf::Parser: an unescaped '#' starts a comment; '\\#' is a '#'."""
    line = re.sub(rb"(?<!\\)#.*$", b"", line)
    line = line.replace(b"\\#", b"#")
    return line.strip()


def split_regex(text):
    """'/re/flags', 'm{re}flags', 'm!re!flags' -> (re, flags) or None."""
    text = text.strip()
    if text.startswith(b"m") and len(text) > 1 and not text[1:2].isalnum() and not text[1:2].isspace():
        text = text[1:]
    if not text:
        return None
    open_ = text[0:1]
    if open_.isalnum() or open_.isspace() or open_ == b"\\":
        return None
    close = PAIRS.get(open_, open_)
    m = re.match(rb"^(.*)" + re.escape(close) + rb"([a-zA-Z]*)$", text[1:], re.S)
    if not m:
        return None
    return m.group(1), m.group(2)


class ReplaceTags:
    """SpamAssassin's Plugin::ReplaceTags, for the rules named in replace_rules."""

    def __init__(self):
        self.start, self.end = b"<", b">"
        self.tags, self.pre, self.inter, self.post = {}, {}, {}, {}
        self.rules = set()

    def directive(self, key, value):
        parts = value.split(None, 1)
        if key == b"replace_start":
            self.start = value.strip()
        elif key == b"replace_end":
            self.end = value.strip()
        elif key == b"replace_rules":
            self.rules.update(value.split())
        elif len(parts) == 2:
            table = {b"replace_tag": self.tags, b"replace_pre": self.pre,
                     b"replace_inter": self.inter, b"replace_post": self.post}[key]
            table[parts[0]] = parts[1].strip()

    def expand(self, name, regex):
        if name not in self.rules:
            return regex
        s, e = re.escape(self.start), re.escape(self.end)
        mods = {}
        for kind, table in ((b"pre", self.pre), (b"inter", self.inter), (b"post", self.post)):
            m = re.search(s + kind + rb"\s+(\S+?)" + e, regex)
            if m:
                mods[kind] = table.get(m.group(1), b"")
                regex = re.sub(s + kind + rb"\s+\S+?" + e, b"", regex)
        tag = s + rb"(\w+)" + e
        if mods.get(b"inter"):
            inter = mods[b"inter"]
            pair = re.compile(rb"(" + s + rb"\w+" + e + rb")(" + s + rb"\w+" + e + rb")")
            while True:
                regex, n = pair.subn(lambda m: m.group(1) + inter + m.group(2), regex, count=1)
                if not n:
                    break
        pre, post = mods.get(b"pre", b""), mods.get(b"post", b"")
        return re.sub(tag, lambda m: pre + self.tags[m.group(1)] + post if m.group(1) in self.tags
                      else m.group(0), regex)


def read_rules(rules_dir):
    """Every body/rawbody/header rule, in file order, as dicts; the last definition of a name wins."""
    files = sorted(glob.glob(os.path.join(rules_dir, "*.cf")))
    if not files:
        sys.exit(f"no SpamAssassin rules in {rules_dir}: apt-get install spamassassin (scripts/setup.sh)")
    tags = ReplaceTags()
    raw = []
    for path in files:
        with open(path, "rb") as f:
            for lineno, line in enumerate(f, 1):
                line = strip_comment(line.rstrip(b"\r\n"))
                if not line:
                    continue
                parts = line.split(None, 1)
                key = parts[0].lower()
                value = parts[1] if len(parts) > 1 else b""
                if key.startswith(b"replace_"):
                    tags.directive(key, value)
                elif key in (b"body", b"rawbody", b"header"):
                    nv = value.split(None, 1)
                    raw.append({"kind": key.decode(), "name": nv[0], "rest": nv[1] if len(nv) > 1 else b"",
                                "where_file": f"{os.path.basename(path)}:{lineno}"})
    by_name = collections.OrderedDict()
    duplicates = 0
    for r in raw:
        if r["name"] in by_name:
            duplicates += 1
            del by_name[r["name"]]
        by_name[r["name"]] = r
    return list(by_name.values()), tags, len(raw), duplicates


def convert(rule, tags):
    """Fills target/flags/pattern, or status 'skipped'/'unconvertible' with a reason;
    'note' says when the regex compiles but SpamAssassin's rule means more than it."""
    rest = rule["rest"].strip()
    rule["note"] = ""
    if rest.startswith(b"eval:") or rest.startswith(b"exists:"):
        rule["status"], rule["reason"] = "skipped", "not a regex (" + rest.split(b":")[0].decode() + ": Perl code)"
        return
    target = "body"
    if rule["kind"] == "header":
        m = re.match(rb"^(\S+?)\s*([=!])~\s*(.+?)\s*(?:\[if-unset:\s*(.*)\])?$", rest, re.S)
        if not m:
            rule["status"], rule["reason"] = "unconvertible", "header rule syntax not understood"
            return
        field, op, rest = m.group(1), m.group(2), m.group(3)
        name, *modifiers = field.split(b":")
        notes = []
        if op == b"!":
            notes.append("negated (!~): fires when the regex does not match")
        for modifier in modifiers:
            if modifier not in FIELD_MODIFIERS:
                notes.append(f"unknown field modifier :{modifier.decode(errors='replace')}")
            elif modifier != b"raw":
                notes.append(f"field modifier :{modifier.decode()} (part of the value) approximated by the "
                             "whole value")
        if name == b"ALL":
            target = "headers"
        elif name.upper() in PSEUDO_HEADERS or name.upper().startswith(b"X-SPAM-"):
            notes.append(f"SpamAssassin pseudo-header {name.decode()} (computed, not a field on the wire)")
            target = "headers"
        elif re.fullmatch(rb"[!-9;-~]{1,64}", name):
            target = "header:" + name.decode().lower()
        else:
            rule["status"], rule["reason"] = "unconvertible", f"header name {name!r} not a field name"
            return
        rule["note"] = "; ".join(notes)
    split = split_regex(rest)
    if split is None:
        rule["status"], rule["reason"] = "unconvertible", "regex delimiters not understood"
        return
    regex, perl_flags = split
    flags = ""
    for c in perl_flags.decode():
        if c == "i":
            flags += "i"
        elif c == "s":
            flags += "s"
        elif c == "m":
            flags += "m"
        elif c == "x":
            regex = b"(?x)" + regex   # Hyperscan takes extended syntax inline
        elif c in "go":
            pass                      # no effect on whether a rule matches
        else:
            rule["status"], rule["reason"] = "unconvertible", f"Perl regex flag /{c}"
            return
    regex = tags.expand(rule["name"], regex)
    rule.update(target=target, flags=flags or "-", pattern=regex, status="pending")


def normalise(message):
    """Groups the compiler's messages: drop the rule's name and the positions."""
    m = re.search(r"Hyperscan: (.*)$", message)
    text = "Hyperscan: " + m.group(1) if m else re.sub(r"^.*?\(id [^)]*\): ", "", message)
    text = re.sub(r" at index \d+", "", text)
    text = re.sub(r"\d+ bytes; at most", "N bytes; at most", text)
    text = re.sub(r"\\x\{?[0-9a-fA-F]+\}?", r"\\x..", text)
    return text.rstrip(".")


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    driver, build_dir = sys.argv[1], sys.argv[2]
    rules_dir = sys.argv[3] if len(sys.argv) > 3 else "/usr/share/spamassassin"
    rules, tags, definitions, duplicates = read_rules(rules_dir)
    for r in rules:
        convert(r, tags)
    to_compile = [r for r in rules if r["status"] == "pending"]

    stdin = b"".join(r["name"] + b"\t" + r["target"].encode() + b"\t" + r["flags"].encode() + b"\t" +
                     r["pattern"].hex().encode() + b"\n" for r in to_compile)
    proc = subprocess.run([driver], input=stdin, capture_output=True, timeout=900)
    out = proc.stdout.decode("utf-8", "replace").splitlines()
    if proc.returncode != 0:
        print(proc.stderr.decode("utf-8", "replace"))
        sys.exit(f"FAIL: the compiler driver exited with status {proc.returncode} "
                 f"after {len(out)} of {len(to_compile)} rules")
    if len(out) != len(to_compile) + 1:
        sys.exit(f"FAIL: {len(out) - 1} verdicts for {len(to_compile)} rules")
    for r, verdict in zip(to_compile, out):
        fields = verdict.split("\t", 2)
        if fields[0] == "OK" and len(fields) == 2:
            r["status"], r["reason"] = "accepted", ""
        elif fields[0] == "ERR" and len(fields) == 3:
            r["status"], r["reason"] = "rejected", normalise(fields[2])
            r["message"] = fields[2]
        else:
            sys.exit(f"FAIL: unexpected driver output {verdict!r}")
        r["compile_ms"] = float(fields[1])
    figures = json.loads(out[-1])

    counts = collections.Counter(r["status"] for r in rules)
    accepted = counts["accepted"]
    kinds = collections.Counter((r["kind"], r["status"]) for r in rules)
    print(f"SpamAssassin rules: {rules_dir} ({definitions} body/rawbody/header definitions, "
          f"{duplicates} redefinitions of a name, {len(rules)} distinct rules)")
    print(f"  not regexes (eval:/exists:, skipped): {counts['skipped']}")
    print(f"  regex rules compiled through content_rules: {len(to_compile)}")
    print(f"  ACCEPTED by Hyperscan: {accepted} of {len(to_compile)} "
          f"({100.0 * accepted / max(1, len(to_compile)):.1f}%)")
    for kind in ("body", "rawbody", "header"):
        print(f"    {kind:8s} accepted {kinds[(kind, 'accepted')]:5d}  rejected {kinds[(kind, 'rejected')]:4d}")
    print(f"  rejected by the compiler (Hyperscan, or Sekisho's own pattern limit): {counts['rejected']}, by reason:")
    for reason, n in collections.Counter(r["reason"] for r in rules if r["status"] == "rejected").most_common():
        print(f"    {n:5d}  {reason}")
    if counts["unconvertible"]:
        print(f"  not convertible from Perl: {counts['unconvertible']}, by reason:")
        for reason, n in collections.Counter(r["reason"] for r in rules
                                             if r["status"] == "unconvertible").most_common():
            print(f"    {n:5d}  {reason}")
    noted = [r for r in rules if r["status"] == "accepted" and r["note"]]
    print(f"  accepted, but SpamAssassin's rule means more than the regex (not expressible as is): {len(noted)}; "
          f"expressible as Sekisho rules: {accepted - len(noted)}")
    for reason, n in collections.Counter(re.sub(r"pseudo-header \S+", "pseudo-header", r["note"])
                                         for r in noted).most_common():
        print(f"    {n:5d}  {reason}")

    listing = os.path.join(build_dir, "spamassassin_rules.tsv")
    with open(listing, "w", encoding="utf-8") as f:
        f.write("# name\tkind\tsource\tstatus\ttarget\tflags\treason\tnote\n")
        for r in rules:
            f.write("\t".join([r["name"].decode("latin-1"), r["kind"], r["where_file"], r["status"],
                               r.get("target", ""), r.get("flags", ""), r.get("message", r.get("reason", "")),
                               r["note"]]) + "\n")
    print(f"  full list: {listing}")

    print("  compiled together (one stream database per target class):")
    for label in ("body_rules", "header_rules"):
        g = figures[label]
        if "errors" in g:
            print(f"    {label}: {g['rules']} rules: FAILED: {g['errors'][:3]}")
            continue
        dbs = ", ".join(f"{k} {g[k]['rules']} rules {g[k]['database_bytes'] / 1024:.0f} KiB db, "
                        f"stream state {g[k]['stream_state_bytes']} B"
                        for k in ("envelope", "headers", "body") if k in g)
        print(f"    {label}: {g['rules']} rules compiled in {g['compile_ms']:.0f} ms "
              f"({g['compile_cpu_ms']:.0f} ms CPU): {dbs}; "
              f"{g['header_field_databases']} header:NAME databases "
              f"({g['header_field_database_bytes'] / 1024:.0f} KiB, stream state max "
              f"{g['max_header_field_stream_state_bytes']} B); flow stream state "
              f"{g['flow_stream_state_bytes']} B; scratch {g['scratch_bytes'] / 1024:.0f} KiB")
    print(f"  one rule at a time: {figures['one_by_one_compile_ms'] / 1000:.1f} s for {len(to_compile)} compiles "
          f"on {figures['threads']} threads; slowest (CPU time):")
    for r in sorted(to_compile, key=lambda r: -r["compile_ms"])[:8]:
        print(f"    {r['compile_ms']:8.0f} ms  {r['name'].decode()} ({r['kind']}, {len(r['pattern'])} bytes, "
              f"{r['status']})")
    print(json.dumps({"test": "spamassassin_rules", "regex_rules": len(to_compile), "accepted": accepted,
                      "rejected": counts["rejected"], "skipped_not_regex": counts["skipped"],
                      "unconvertible": counts["unconvertible"], "figures": figures}))

    failures = []
    if accepted < MIN_ACCEPTED:
        failures.append(f"accepted {accepted} < {MIN_ACCEPTED} (the lower bound measured on this rule set)")
    for label in ("body_rules", "header_rules"):
        if "errors" in figures[label]:
            failures.append(f"the accepted {label} do not compile together: {figures[label]['errors'][:3]}")
    if failures:
        sys.exit("FAIL: " + "; ".join(failures))
    print("PASS")


if __name__ == "__main__":
    main()
