#!/bin/bash
# Structured logging against a real systemd-journald, run in a private mount namespace so the
# host's /run is untouched: memtided's entries must arrive with MESSAGE, PRIORITY and the
# MEMTIDE_* fields; with the journal gone, the same messages must appear on stderr.
# Usage: journal_test.sh PATH/TO/memtided. Exits 77 (skipped) without root or journald.
set -euo pipefail
memtided=$1
journald=/lib/systemd/systemd-journald
if [ "$(id -u)" != 0 ] || [ ! -x "$journald" ] || ! command -v unshare >/dev/null; then
  echo "skipped: needs root, unshare and $journald"
  exit 77
fi

# Mount points must exist before the namespace can cover them; remove them afterwards if this
# test created them.
created=()
for d in /run/systemd/journal /run/log/journal; do
  if [ ! -d "$d" ]; then
    mkdir -p "$d"
    created+=("$d")
  fi
done
cleanup() { for d in "${created[@]}"; do rmdir "$d" 2>/dev/null || true; done; }
trap cleanup EXIT

unshare --mount --propagation private bash -s "$memtided" "$journald" <<'INNER'
set -euo pipefail
memtided=$1
journald=$2
work=$(mktemp -d)
mount -t tmpfs tmpfs /run/systemd/journal
mount -t tmpfs tmpfs /run/log/journal
printf 'daemon:\n  interval: 200ms\nhost:\n  swap_forecast: {window: 10s}\n' > "$work/memtide.yaml"

"$journald" & jpid=$!
for _ in $(seq 50); do [ -S /run/systemd/journal/socket ] && break; sleep 0.1; done
[ -S /run/systemd/journal/socket ] || { echo "FAIL: journald did not start"; exit 1; }

"$memtided" --config "$work/memtide.yaml" --log-target journal 2>"$work/err" & dpid=$!
sleep 1
kill -TERM "$dpid"
wait "$dpid" || { echo "FAIL: memtided exited non-zero"; exit 1; }
sleep 0.5
journalctl -D /run/log/journal --no-pager -o verbose SYSLOG_IDENTIFIER=memtided > "$work/journal"
fail=0
for want in 'MESSAGE=memtided .* started' 'PRIORITY=5' 'MEMTIDE_EVENT=started' \
            "MEMTIDE_CONFIG=$work/memtide.yaml" 'MEMTIDE_INTERVAL=200ms' 'MEMTIDE_EVENT=stopped'; do
  if ! grep -q -- "$want" "$work/journal"; then
    echo "FAIL: journal lacks $want"; fail=1
  fi
done
if grep -q 'started' "$work/err"; then
  echo "FAIL: with a journal, messages must not go to stderr"; fail=1
fi

# The journal goes away: messages must fall back to stderr, not be lost.
kill "$jpid"; wait "$jpid" 2>/dev/null || true
rm -f /run/systemd/journal/socket
"$memtided" --config "$work/memtide.yaml" --log-target journal 2>"$work/err2" & dpid=$!
sleep 0.5
kill -TERM "$dpid"
wait "$dpid" || { echo "FAIL: memtided exited non-zero without journal"; exit 1; }
if ! grep -q 'memtided: notice: memtided .* started .*MEMTIDE_EVENT=started' "$work/err2"; then
  echo "FAIL: no stderr fallback:"; cat "$work/err2"; fail=1
fi
rm -rf "$work"
[ "$fail" = 0 ] && echo "journal_test: 2 passed, 0 failed"
exit "$fail"
INNER
