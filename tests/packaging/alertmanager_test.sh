#!/bin/bash
# memtide with a real Prometheus Alertmanager (Debian's prometheus-alertmanager): memtided reads a
# fixture host whose memory PSI is above the configured limit, raises host-memory-pressure and
# delivers it to Alertmanager; the fixture then calms down, the alert resolves, and Alertmanager
# must see it resolved. The exec hook gets both transitions.
# Usage: alertmanager_test.sh PATH/TO/memtided SOURCE_DIR. Exits 77 (skipped) without it.
set -euo pipefail
memtided=$1
src=$2
if ! command -v prometheus-alertmanager >/dev/null; then
  echo "skipped: needs prometheus-alertmanager (scripts/install-deps installs it)"
  exit 77
fi
# shellcheck source=../support/peer-test-lib.sh
. "$src/tests/support/peer-test-lib.sh"

am_port=$(free_port)
cat >"$work/am.yml" <<'YAML'
route: {receiver: blackhole, group_wait: 1s, group_interval: 1s}
receivers: [{name: blackhole}]
YAML
prometheus-alertmanager --config.file="$work/am.yml" --storage.path="$work/am" \
  --web.listen-address="127.0.0.1:$am_port" --cluster.listen-address="" >"$work/am.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  curl -fsS "http://127.0.0.1:$am_port/-/ready" >/dev/null 2>&1 && break
  sleep 0.1
done

# A fixture host under memory pressure: PSI some 25 % over 10 s.
cp -r "$src/tests/fixtures/hosts/debian12-6.18" "$work/host"
pressure() {
  printf 'some avg10=%s avg60=%s avg300=0.00 total=%s\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n' \
    "$1" "$1" "$2" >"$work/host/proc/pressure/memory.new"
  mv "$work/host/proc/pressure/memory.new" "$work/host/proc/pressure/memory"
}
pressure 25.00 1000000
cat >"$work/hook" <<HOOK
#!/bin/sh
cat >> "$work/hook.log"
echo >> "$work/hook.log"
HOOK
chmod +x "$work/hook"
cat >"$work/memtide.yaml" <<YAML
daemon: {interval: 500ms, procfs: $work/host/proc, sysfs: $work/host/sys, control_socket: ""}
host: {swap_forecast: {window: 10s}, pressure: {psi_some_avg10: 10%}}
libvirt: {uri: "test:///default"}
metrics: {listen: ""}
alerts:
  alertmanager: {url: "http://127.0.0.1:$am_port", resend_interval: 2s}
  exec: {command: $work/hook}
YAML
"$memtided" --config "$work/memtide.yaml" --log-target stderr 2>"$work/memtided.log" &
pids+=($!)

active() {
  curl -fsS "http://127.0.0.1:$am_port/api/v2/alerts?active=true&silenced=false&inhibited=false&unprocessed=true" || true
}
for _ in $(seq 100); do
  grep -q '"alertname":"host-memory-pressure"' <<<"$(active)" && break
  sleep 0.2
done
echo "firing: $(active)"
grep -q '"alertname":"host-memory-pressure"' <<<"$(active)" || {
  cat "$work/memtided.log" "$work/am.log"; echo "FAIL: Alertmanager never got the alert"; exit 1; }
grep -q '"job":"memtided"' <<<"$(active)"

pressure 0.00 1000000  # calm: the total stops growing, avg10 falls to 0
for _ in $(seq 150); do
  grep -q '"alertname":"host-memory-pressure"' <<<"$(active)" || break
  sleep 0.2
done
if grep -q '"alertname":"host-memory-pressure"' <<<"$(active)"; then
  cat "$work/memtided.log"; echo "FAIL: the alert never resolved in Alertmanager"; exit 1
fi
grep -q "alert host-memory-pressure resolved" "$work/memtided.log"
echo "== exec hook"
cat "$work/hook.log"
grep -q '"status":"firing"' "$work/hook.log"
grep -q '"status":"resolved"' "$work/hook.log"
echo "ok"
