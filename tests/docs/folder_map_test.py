#!/usr/bin/python3
"""docs/architecture.md's folder map against the tree: every path it names exists, and every
folder that holds source (.cpp .h .c .py .sh) has a row of its own.

usage: folder_map_test.py SOURCE_ROOT
"""
import os
import re
import subprocess
import sys

root = os.path.abspath(sys.argv[1])
text = open(os.path.join(root, "docs", "architecture.md"), encoding="utf-8").read()
section = text.split("## Folder map", 1)[1].split("\n## ", 1)[0]
rows = [l for l in section.splitlines() if l.startswith("| `")]
failures = []
listed = set()
for row in rows:
    cells = row.split("|")
    folder = cells[1].strip().strip("`")
    listed.add(folder.rstrip("/"))
    if not os.path.isdir(os.path.join(root, folder)):
        failures.append("the map names %s, which is not a folder" % folder)
        continue
    # Every backticked name in the description is a file or folder under the row's folder (with
    # any extension), or a path from the root.
    for name in re.findall(r"`([^`]+)`", cells[2]):
        if " " in name or name.startswith("-"):
            continue
        candidates = [os.path.join(root, folder, name), os.path.join(root, name)]
        base = os.path.join(root, folder, name)
        stem_matches = [f for f in os.listdir(os.path.dirname(base)) if f.split(".")[0] == os.path.basename(name)] \
            if os.path.isdir(os.path.dirname(base)) else []
        if not any(os.path.exists(c) for c in candidates) and not stem_matches:
            failures.append("the map's row %s names %s, which does not exist" % (folder, name))
tracked = subprocess.check_output(["git", "-C", root, "ls-files"], text=True).split()
source_folders = {os.path.dirname(f) for f in tracked if re.search(r"\.(cpp|h|c|py|sh)$", f)}
for folder in sorted(source_folders):
    if folder not in listed:
        failures.append("%s holds source but has no row in the folder map" % folder)
for f in failures:
    print("FAIL:", f)
print("folder map: %d rows, %d source folders, %d problems" % (len(rows), len(source_folders), len(failures)))
sys.exit(1 if failures else 0)
