#!/bin/bash
# The man pages stay true to the programs: every option in `memtided --help` is in memtided(8)
# and every option and command in `memtidectl --help` in memtidectl(8); every configuration key
# of docs/configuration.md's table is in memtide.yaml(5); every journal event (MEMTIDE_EVENT=...) and journal
# field (MEMTIDE_*) the sources log is in memtided(8). Each page renders without warnings.
# Usage: man_test.sh PATH/TO/memtided PATH/TO/memtidectl SOURCE_DIR
set -euo pipefail
memtided=$1
memtidectl=$2
src=$3
man=$src/packaging/man
fail=0
missing() {  # missing WHAT PAGE: report
  echo "FAIL: $1 is not in $(basename "$2")"
  fail=1
}
# The text of a page without roff escapes: "\-" is "-".
text_of() { sed 's/\\-/-/g; s/\\(em/--/g' "$1"; }

daemon_page=$(text_of "$man/memtided.8")
ctl_page=$(text_of "$man/memtidectl.8")
config_page=$(text_of "$man/memtide.yaml.5")

options() { grep -oE -- '(^|[ ,])--[a-z][a-z-]*' | sed 's/^[ ,]//' | sort -u; }
for opt in $("$memtided" --help | options); do
  grep -qF -- "$opt" <<<"$daemon_page" || missing "memtided $opt" "$man/memtided.8"
done
for opt in $("$memtidectl" --help | options); do
  grep -qF -- "$opt" <<<"$ctl_page" || missing "memtidectl $opt" "$man/memtidectl.8"
done
# Commands: the indented words of the Commands: block of memtidectl --help.
for cmd in $("$memtidectl" --help | sed -n '/^Commands:/,/^$/p' | grep -oE '^  [a-z-]+' | tr -d ' '); do
  grep -qE -- "(^|[^a-z-])$cmd([^a-z-]|$)" <<<"$ctl_page" || missing "memtidectl command $cmd" "$man/memtidectl.8"
done

keys=$(grep -oE '^\| `(daemon|libvirt|host|ksm|metrics|alerts)\.[a-z_.]+`' "$src/docs/configuration.md" |
  sed 's/^| `//; s/`$//' | sort -u)
[ "$(wc -l <<<"$keys")" -gt 40 ] || { echo "FAIL: docs/configuration.md's key table not found"; exit 1; }
for key in $keys; do
  grep -qF -- "$key" <<<"$config_page" || missing "config key $key" "$man/memtide.yaml.5"
done

sources=$(find "$src/daemon" "$src/collectors" "$src/actuators" "$src/config" -name '*.cpp')
# Every kebab-case literal on a line that sets MEMTIDE_EVENT ({"MEMTIDE_EVENT", paused ? "paused"
# : "resumed"} names two), and the values of act.cpp's per-command `event`.
events=$( (grep -h 'MEMTIDE_EVENT' $sources | grep -v '{"MEMTIDE_EVENT", event}'
  sed -n '/const char\* event = /,/;$/p' "$src/daemon/src/act.cpp") |
  grep -oE '"[a-z]+(-[a-z]+)*"' | tr -d '"' | sort -u)
[ "$(wc -l <<<"$events")" -gt 20 ] || { echo "FAIL: no journal events found in the sources"; exit 1; }
for event in $events; do
  grep -qE -- "(^|[^a-z-])$event([^a-z-]|$)" <<<"$daemon_page" || missing "journal event $event" "$man/memtided.8"
done
fields=$(grep -ohE '"MEMTIDE_[A-Z_]+"' $sources | tr -d '"' | sort -u)
for field in $fields; do
  grep -qE -- "(^|[^A-Z_])$field([^A-Z_]|$)" <<<"$daemon_page" || missing "journal field $field" "$man/memtided.8"
done

if command -v man >/dev/null; then
  for page in "$man"/*.[58]; do
    warnings=$(LC_ALL=C.UTF-8 MANROFFSEQ='' MANWIDTH=80 man --warnings -E UTF-8 -l "$page" 2>&1 >/dev/null || true)
    [ -z "$warnings" ] || { echo "FAIL: $(basename "$page") renders with warnings:"; echo "$warnings"; fail=1; }
  done
fi
[ "$fail" = 0 ] && echo "ok: man pages cover every option, command, key, journal event and field"
exit "$fail"
