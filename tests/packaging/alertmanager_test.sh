#!/bin/bash
# memtide with a real Prometheus Alertmanager (Debian's prometheus-alertmanager): memtided reads a
# fixture host whose memory PSI is above the configured limit, raises host-memory-pressure and
# delivers it to Alertmanager; the fixture then calms down, the alert resolves, and Alertmanager
# must see it resolved. The exec hook gets both transitions.
# With Debian's prometheus as well, Prometheus scrapes memtided with the shipped rules and sends
# its alerts to the same Alertmanager: both paths must raise the alert under one alertname and one
# label set, so Alertmanager holds exactly one alert for them.
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
metrics_port=$(free_port)
# Prometheus calls the target 127.0.0.1:PORT, so memtided is told to call itself the same.
# The fixture has 23.2 GiB available: a reserve of 12 GiB puts that near the swap point (at most
# twice the reserve), where a stall counts as host pressure.
cat >"$work/memtide.yaml" <<YAML
daemon: {interval: 500ms, procfs: $work/host/proc, sysfs: $work/host/sys, control_socket: ""}
host: {reserve: 12GiB, swap_forecast: {window: 10s}, pressure: {psi_some_avg10: 10%}}
libvirt: {uri: "test:///default"}
metrics: {listen: "127.0.0.1:$metrics_port"}
alerts:
  alertmanager:
    url: "http://127.0.0.1:$am_port"
    resend_interval: 2s
    labels: {instance: "127.0.0.1:$metrics_port"}
  exec: {command: $work/hook}
YAML
"$memtided" --config "$work/memtide.yaml" --log-target stderr 2>"$work/memtided.log" &
pids+=($!)

active() {
  curl -fsS "http://127.0.0.1:$am_port/api/v2/alerts?active=true&silenced=false&inhibited=false&unprocessed=true" || true
}
for _ in $(seq 100); do
  grep -q '"alertname":"MemtideHostMemoryPressure"' <<<"$(active)" && break
  sleep 0.2
done
echo "firing: $(active)"
grep -q '"alertname":"MemtideHostMemoryPressure"' <<<"$(active)" || {
  cat "$work/memtided.log" "$work/am.log"; echo "FAIL: Alertmanager never got the alert"; exit 1; }
grep -q '"job":"memtide"' <<<"$(active)"
grep -q '"runbook_url":"file:///usr/share/doc/memtide/runbooks.md#memtidehostmemorypressure"' <<<"$(active)"

# The labels of every alert Alertmanager holds named $1, one JSON object per line.
labels_of() {
  python3 -c 'import json, sys
for a in json.load(sys.stdin):
    if a["labels"]["alertname"] == sys.argv[1]:
        print(json.dumps(a["labels"], sort_keys=True))' "$1"
}
if command -v prometheus >/dev/null; then
  echo "== prometheus with the shipped rules, alerting to the same Alertmanager"
  prom_port=$(free_port)
  cat >"$work/prometheus.yml" <<YAML
global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: [$src/packaging/prometheus/memtide-alerts.yml]
alerting: {alertmanagers: [{static_configs: [{targets: ["127.0.0.1:$am_port"]}]}]}
scrape_configs:
  - job_name: memtide
    static_configs: [{targets: ["127.0.0.1:$metrics_port"]}]
YAML
  prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/data" \
    --web.listen-address="127.0.0.1:$prom_port" >"$work/prometheus.log" 2>&1 &
  pids+=($!)
  prom_alerts() { curl -fsS "http://127.0.0.1:$prom_port/api/v1/alerts" 2>/dev/null || true; }
  for _ in $(seq 150); do
    grep -q '"alertname":"MemtideHostMemoryPressure".*"state":"firing"' <<<"$(prom_alerts)" && break
    sleep 0.2
  done
  echo "prometheus: $(prom_alerts)"
  grep -q '"alertname":"MemtideHostMemoryPressure".*"state":"firing"' <<<"$(prom_alerts)" || {
    cat "$work/prometheus.log"; echo "FAIL: the shipped rule never fired"; exit 1; }
  sleep 3  # Prometheus sends to Alertmanager after each evaluation
  from_prometheus=$(python3 -c 'import json, sys
for a in json.load(sys.stdin)["data"]["alerts"]:
    if a["labels"]["alertname"] == "MemtideHostMemoryPressure":
        print(json.dumps(a["labels"], sort_keys=True))' <<<"$(prom_alerts)")
  in_alertmanager=$(labels_of MemtideHostMemoryPressure <<<"$(active)")
  echo "prometheus sent: $from_prometheus"
  echo "alertmanager holds: $in_alertmanager"
  [ "$(wc -l <<<"$in_alertmanager")" = 1 ] || {
    echo "FAIL: Alertmanager holds the alert more than once: the two paths label it differently"
    exit 1; }
  [ "$from_prometheus" = "$in_alertmanager" ] || {
    echo "FAIL: Prometheus and memtided label the alert differently"; exit 1; }
fi

pressure 0.00 1000000  # calm: the total stops growing, avg10 falls to 0
for _ in $(seq 150); do
  grep -q '"alertname":"MemtideHostMemoryPressure"' <<<"$(active)" || break
  sleep 0.2
done
if grep -q '"alertname":"MemtideHostMemoryPressure"' <<<"$(active)"; then
  cat "$work/memtided.log"; echo "FAIL: the alert never resolved in Alertmanager"; exit 1
fi
grep -q "alert host-memory-pressure resolved" "$work/memtided.log"
echo "== exec hook"
cat "$work/hook.log"
grep -q '"status":"firing"' "$work/hook.log"
grep -q '"status":"resolved"' "$work/hook.log"
echo "ok"
