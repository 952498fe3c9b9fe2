#!/bin/bash
# scripts/capture-host-fixture: the tree it captures from this host is one memtided reads, and
# reads as this host (the same MemTotal).
# Usage: capture_host_fixture_test.sh SOURCE_DIR MEMTIDED
set -euo pipefail
src=$1
memtided=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$src/scripts/capture-host-fixture" "$work/host"
test -s "$work/host/proc/meminfo"
test -s "$work/host/KERNEL"
"$memtided" --once --procfs "$work/host/proc" --sysfs "$work/host/sys" \
  --connect test:///default >"$work/once.json"
python3 - "$work/once.json" "$work/host/proc/meminfo" <<'PY'
import json, sys
snapshot = json.load(open(sys.argv[1]))
total_kib = next(int(l.split()[1]) for l in open(sys.argv[2]) if l.startswith("MemTotal:"))
text = json.dumps(snapshot)
assert str(total_kib * 1024) in text, "MemTotal of the captured tree not in the snapshot"
print("capture-host-fixture: memtided read the captured tree (MemTotal %d KiB)" % total_kib)
PY
