#!/bin/bash
# The PSI trigger, for real: memtided ticks every 20 minutes, so only a memory-pressure event from
# /proc/pressure/memory can make it act again. Readers in an 8 MiB memory cgroup stream a
# 512 MiB file with the page cache dropped between passes, which makes them stall in memcg
# reclaim (counted as memory pressure) without any swap. memtided must log a balloon command
# for libvirt's test-driver guest (kept short of memory by the config) within 1 s of the event.
# Usage: psi_trigger_test.sh PATH/TO/memtided. Exits 77 (skipped) without root, PSI, a memory
# cgroup or a writable /proc/sys/vm/drop_caches.
set -euo pipefail
memtided=$1
cgroup_root=/sys/fs/cgroup/memory
limit_file=memory.limit_in_bytes
if [ ! -d "$cgroup_root" ]; then
  cgroup_root=/sys/fs/cgroup  # cgroup v2
  limit_file=memory.max
fi
if [ "$(id -u)" != 0 ] || [ ! -r /proc/pressure/memory ] || [ ! -w /proc/sys/vm/drop_caches ] ||
  [ ! -e "$cgroup_root/cgroup.procs" ]; then
  echo "skipped: needs root, /proc/pressure/memory, a memory cgroup and drop_caches"
  exit 77
fi

work=$(mktemp -d /var/tmp/memtide-psi-XXXXXX)  # on disk: tmpfs pages would not be reclaimable
group="$cgroup_root/memtide-psi-test-$$"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  # The readers' children (cat) are in the cgroup too: kill everything in it, then remove it
  # once it is empty.
  if [ -d "$group" ]; then
    for _ in $(seq 50); do
      procs=$(cat "$group/cgroup.procs" 2>/dev/null || true)
      [ -z "$procs" ] && break
      # shellcheck disable=SC2086
      kill -9 $procs 2>/dev/null || true
      sleep 0.1
    done
    rmdir "$group" 2>/dev/null || echo "warning: could not remove $group"
  fi
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

cat >"$work/memtide.yaml" <<'YAML'
daemon:
  interval: 20m
  on_stop: keep
  log_level: debug
host:
  swap_forecast: {window: 1h}
  # The pressure this test makes must wake the loop, not change the decision: with no reserve
  # and PSI limits out of reach the host never counts as pressed, so every tick grows the
  # guest (short of memory, or stale) from host room, and the first command shows the reaction.
  reserve: 0
  pressure: {psi_some_avg10: 100%, psi_full_avg10: 100%}
libvirt:
  stats_period: 1s
classes:
  - name: all
    match: {name: "*"}
    balloon: {guest_free: 60%, max_step: 64MiB}
YAML
"$memtided" --config "$work/memtide.yaml" --connect test:///default --log-target stderr \
  2>"$work/log" &
pids+=($!)
# The first tick comes at once; it only turns the guest's statistics on (they start disabled),
# so it issues no balloon command.
for _ in $(seq 50); do
  grep -q "tick 1:" "$work/log" && break
  sleep 0.1
done
grep -q "tick 1:" "$work/log" || { echo "no first tick"; cat "$work/log"; exit 1; }
sleep 1.5  # the guest's statistics period (1 s) passes
# Other activity on the host may raise pressure events of its own; only what follows the
# readers' start is judged.
before=$(wc -l <"$work/log")

dd if=/dev/urandom of="$work/big" bs=1M count=512 status=none
mkdir "$group"
echo $((8 * 1024 * 1024)) >"$group/$limit_file"
for _ in 1 2 3 4; do
  bash -c 'echo $$ > "$1/cgroup.procs"; while :; do cat "$2" >/dev/null; echo 1 >/proc/sys/vm/drop_caches; done' \
    _ "$group" "$work/big" &
  pids+=($!)
done

after() { tail -n +"$((before + 1))" "$work/log"; }
for _ in $(seq 600); do
  grep -q "pressure-reaction" <<<"$(after)" && break
  sleep 0.1
done
cat "$work/log"
echo "memory pressure now: $(head -1 /proc/pressure/memory)"
grep -q "pressure-reaction" <<<"$(after)" || { echo "FAIL: no reaction to the pressure event"; exit 1; }
grep -q "notice: balloon test" <<<"$(after)" || { echo "FAIL: no balloon command after the event"; exit 1; }
ms=$(after | grep -o 'MEMTIDE_REACTION_MS=[0-9.]*' | head -1 | cut -d= -f2)
echo "pressure event to first balloon command: $ms ms"
awk -v ms="$ms" 'BEGIN { exit !(ms < 1000) }' || { echo "FAIL: reaction took $ms ms"; exit 1; }
echo "ok"
