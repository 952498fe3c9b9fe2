#!/bin/bash
# The bash completion offers what the programs take: every memtidectl command, for each command
# the options `memtidectl --help` lists for it (and no option the command refuses), and every
# memtided option. Runs the completion functions in bash as the shell would.
# Usage: completion_test.sh PATH/TO/memtided PATH/TO/memtidectl SOURCE_DIR
set -euo pipefail
memtided=$1
memtidectl=$2
src=$3
# shellcheck source=/dev/null
. "$src/packaging/bash-completion/memtidectl"
fail=0
complete_words() {  # complete_words FUNCTION WORD...: what completing the last word offers
  local fn=$1
  shift
  COMP_WORDS=("$@")
  COMP_CWORD=$(($# - 1))
  COMPREPLY=()
  "$fn"
  printf '%s\n' "${COMPREPLY[@]}"
}

commands=$("$memtidectl" --help | sed -n '/^Commands:/,/^$/p' | grep -oE '^  [a-z-]+' | tr -d ' ')
offered=$(complete_words _memtidectl memtidectl "")
for c in $commands; do
  grep -qx "$c" <<<"$offered" || { echo "FAIL: command $c is not completed"; fail=1; }
done

# Each option of --help against each command: completed exactly when memtidectl accepts it.
options=$("$memtidectl" --help | grep -oE -- '(^|[ ,])--[a-z][a-z-]*' | sed 's/^[ ,]//' | sort -u |
  grep -vx -- '--help' | grep -vx -- '--version')
for c in $commands; do
  offered=$(complete_words _memtidectl memtidectl "$c" "--")
  for o in $options; do
    # Whether memtidectl takes the option for this command: a usage error naming it otherwise.
    refused=$("$memtidectl" "$c" "$o" 2>&1 >/dev/null </dev/null | grep -c "does not apply to $c" || true)
    if [ "$refused" = 0 ] && ! grep -qx -- "$o" <<<"$offered"; then
      echo "FAIL: memtidectl $c takes $o but it is not completed"; fail=1
    elif [ "$refused" != 0 ] && grep -qx -- "$o" <<<"$offered"; then
      echo "FAIL: memtidectl $c refuses $o but it is completed"; fail=1
    fi
  done
done

sort_keys=$(complete_words _memtidectl memtidectl status --sort "")
for k in name class balloon max floor usable target held; do
  grep -qx "$k" <<<"$sort_keys" || { echo "FAIL: --sort $k is not completed"; fail=1; }
done

offered=$(complete_words _memtided memtided "--")
for o in $("$memtided" --help | grep -oE -- '(^|[ ,])--[a-z][a-z-]*' | sed 's/^[ ,]//' | sort -u); do
  grep -qx -- "$o" <<<"$offered" || { echo "FAIL: memtided $o is not completed"; fail=1; }
done
[ "$fail" = 0 ] && echo "ok: the completion offers every command and option, per command"
exit "$fail"
