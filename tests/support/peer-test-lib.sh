# Sourced by the shell tests that run memtided next to real peers (Prometheus, Alertmanager).
# Gives them a private work directory in $work, a list $pids of background processes that are
# killed on exit (with the directory removed), and free_port (a free TCP port on loopback).
work=$(mktemp -d)
pids=()
peer_test_cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap peer_test_cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# The port memtided reports in "serving metrics on 127.0.0.1:PORT" in log file $1 (waits up to
# 10 s); empty when it never does.
metrics_port_from_log() {
  local port=""
  for _ in $(seq 100); do
    port=$(grep -o 'serving metrics on 127.0.0.1:[0-9]*' "$1" | head -1 | cut -d: -f2 || true)
    [ -n "$port" ] && break
    sleep 0.1
  done
  echo "$port"
}
