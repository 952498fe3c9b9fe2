#!/bin/bash
# memtide with a real Prometheus: the shipped alerting rules pass promtool (syntax and unit
# tests), every metric the rules and the Grafana dashboard use is one memtided serves, every
# dashboard query runs on Prometheus with its variables filled in, and
# Debian's prometheus server scrapes a running memtided (libvirt's test driver) over loopback so
# that a query returns memtide series.
# Usage: prometheus_test.sh PATH/TO/memtided SOURCE_DIR. Exits 77 (skipped) without prometheus.
set -euo pipefail
memtided=$1
src=$2
if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
  echo "skipped: needs prometheus and promtool (scripts/install-deps installs them)"
  exit 77
fi
# shellcheck source=../support/peer-test-lib.sh
. "$src/tests/support/peer-test-lib.sh"

echo "== rules"
promtool check rules "$src/packaging/prometheus/memtide-alerts.yml"
(cd "$src/packaging/prometheus" && promtool test rules memtide-alerts.test.yml)

echo "== memtided"
# The test guest is kept short of memory (60 % free wanted, 64 MiB steps), so memtided grows it
# every tick for a minute and a half: its command counter moves while Prometheus scrapes.
cat >"$work/memtide.yaml" <<'YAML'
daemon: {interval: 1s}
host: {swap_forecast: {window: 10s}}
classes:
  - name: all
    match: {name: "*"}
    balloon: {guest_free: 60%, max_step: 64MiB, deadband: 1MiB}
YAML
"$memtided" --config "$work/memtide.yaml" --connect test:///default --log-target stderr \
  --metrics-listen 127.0.0.1:0 2>"$work/memtided.log" &
pids+=($!)
port=$(metrics_port_from_log "$work/memtided.log")
[ -n "$port" ] || { cat "$work/memtided.log"; echo "FAIL: memtided serves no metrics"; exit 1; }
sleep 2
curl -fsS "http://127.0.0.1:$port/metrics" >"$work/metrics.txt"
promtool check metrics <"$work/metrics.txt"

echo "== every metric used by the rules and the dashboard exists"
served=$(grep '^# TYPE ' "$work/metrics.txt" | awk '{print $3}' | sort -u)
used=$(grep -oh 'memtide_[a-z0-9_]*' "$src/packaging/prometheus/memtide-alerts.yml" \
  "$src/packaging/grafana/memtide.json" | sort -u)
missing=0
for m in $used; do
  if ! grep -qx "$m" <<<"$served"; then
    echo "FAIL: $m is used but not served"
    missing=1
  fi
done
[ $missing = 0 ]
python3 -m json.tool "$src/packaging/grafana/memtide.json" >/dev/null

echo "== socket activation: memtided serves the socket it is handed (memtided.socket)"
if command -v systemd-socket-activate >/dev/null; then
  act_port=$(free_port)
  systemd-socket-activate -l "127.0.0.1:$act_port" "$memtided" --config "$work/memtide.yaml" \
    --connect test:///default --log-target stderr --control-socket "" \
    2>"$work/activated.log" &
  pids+=($!)
  sleep 1
  # The first connection starts memtided, which must answer it on the inherited socket.
  grep -q '^memtide_build_info' <<<"$(curl -fsS --max-time 20 "http://127.0.0.1:$act_port/metrics")" ||
    { cat "$work/activated.log"; echo "FAIL: no metrics on the activated socket"; exit 1; }
  grep -q "serving metrics on 127.0.0.1:$act_port (socket from systemd)" "$work/activated.log"
else
  echo "(systemd-socket-activate not installed; skipped)"
fi

echo "== prometheus scrapes memtided"
prom_port=$(free_port)
cat >"$work/prometheus.yml" <<YAML
global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: [$src/packaging/prometheus/memtide-alerts.yml]
scrape_configs:
  - job_name: memtide
    static_configs: [{targets: ["127.0.0.1:$port"]}]
YAML
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/data" \
  --web.listen-address="127.0.0.1:$prom_port" >"$work/prometheus.log" 2>&1 &
pids+=($!)
query() { curl -fsS "http://127.0.0.1:$prom_port/api/v1/query" --data-urlencode "query=$1" 2>/dev/null || true; }
for _ in $(seq 60); do
  if grep -q '"domain":"test"' <<<"$(query 'memtide_vm_balloon_bytes{domain="test"}')"; then
    break
  fi
  sleep 0.5
done
result=$(query 'memtide_vm_balloon_bytes{domain="test"}')
echo "$result"
grep -q '"domain":"test"' <<<"$result" || { tail -20 "$work/prometheus.log"; echo "FAIL: no series"; exit 1; }
grep -q '"job":"memtide"' <<<"$result"
grep -q '"value":\[[0-9.]*,"1"\]' <<<"$(query 'up{job="memtide"}')" || { echo "FAIL: target not up"; exit 1; }

# The command annotation needs two scrapes that saw the counter move.
for _ in $(seq 40); do
  if grep -q '"domain":"test"' <<<"$(query 'changes(memtide_vm_balloon_commands_total[1m]) > 0')"; then
    break
  fi
  sleep 0.5
done

echo "== every dashboard query and annotation runs, with its variables as Grafana fills them"
# All hosts and VMs selected, top 10, Grafana's rate interval and range. The per-VM panels must
# return libvirt's test domain, so a broken \$domain filter or top-k shows up as no data.
python3 - "$src/packaging/grafana/memtide.json" "http://127.0.0.1:$prom_port" <<'PY'
import json, sys, urllib.parse, urllib.request
dashboard, prometheus = sys.argv[1], sys.argv[2]
d = json.load(open(dashboard))
names = {v["name"] for v in d["templating"]["list"]}
assert {"instance", "domain", "topk"} <= names, names
values = {"$instance": ".*", "$domain": ".*", "$topk": "10", "$__rate_interval": "1m",
          "$__range": "5m"}
failed = 0
# The per-guest row repeats for each VM selected in $domain.
rows = [p for p in d["panels"] if p["type"] == "row" and p.get("repeat") == "domain"]
if not rows:
    print("FAIL: no per-guest row repeated by $domain")
    failed = 1
# The annotations (memtide's commands and alerts) run like the panels' queries, and the counter
# the command marks come from has the test domain's series.
queries = [(panel["title"], target["expr"]) for panel in d["panels"]
           for target in panel.get("targets", [])]
queries += [("annotation " + a["name"], a["expr"]) for a in d.get("annotations", {}).get("list", [])
            if "expr" in a]
if not any("memtide_vm_balloon_commands_total" in expr for title, expr in queries
           if title.startswith("annotation")):
    print("FAIL: no annotation of memtide's balloon commands")
    failed = 1
queries.append(("commands counter", 'memtide_vm_balloon_commands_total{domain=~"$domain"}'))
for title, expr in queries:
    per_vm = "memtide_vm_" in expr
    if per_vm and "$domain" not in expr:
        print("FAIL: per-VM query without the $domain filter:", title)
        failed = 1
    for name, value in values.items():
        expr = expr.replace(name, value)
    url = prometheus + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        reply = json.load(urllib.request.urlopen(url, timeout=10))
    except Exception as e:  # a 400 carries Prometheus's parse error
        print("FAIL:", title, expr, getattr(e, "read", lambda: b"")().decode())
        failed = 1
        continue
    series = reply["data"]["result"]
    # Panels of ranked quantities may be empty on an idle test host (no faults, nothing
    # below its target); the balloon and usable panels, the command counter and the
    # annotation of commands (the guest is grown every tick) always have the test domain.
    must = (per_vm and "balloon_bytes" in expr and "target" not in expr) or \
        title in ("commands counter", "annotation memtide balloon commands")
    if must and not series:
        print("FAIL: no data:", title, expr)
        failed = 1
    print(f"{title}: {len(series)} series")
sys.exit(failed)
PY
echo "ok"
