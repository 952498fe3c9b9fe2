#!/bin/bash
# The Debian package: builds with `dpkg-buildpackage -us -uc -b` from a copy of the tree, passes
# lintian without errors, installs, its configuration passes `memtided --check-config`, its
# autopkgtests (debian/tests/smoke, debian/tests/observe-only) pass against it, a first
# install only observes and a reinstallation keeps the operator's choice, its unit
# passes `systemd-analyze verify` and scores an exposure of at most 4.0 in
# `systemd-analyze security`; then it is purged again. Needs root (it installs the package);
# exits 77 (skipped) otherwise, or when a memtide package is already installed here.
# Usage: deb_test.sh SOURCE_DIR
set -euo pipefail
src=$1
if [ "$(id -u)" != 0 ]; then
  echo "skipped: needs root"
  exit 77
fi
if dpkg-query -W -f='${Status}' memtide 2>/dev/null | grep -q "install ok installed"; then
  echo "skipped: a memtide package is installed on this machine; not replacing it"
  exit 77
fi
work=$(mktemp -d)
installed=0
cleanup() {
  [ "$installed" = 1 ] && dpkg --purge memtide >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
fail=0
check() {  # check NAME COMMAND...: run, report
  if "${@:2}" >"$work/out" 2>&1; then
    echo "ok: $1"
  else
    echo "FAIL: $1"; cat "$work/out"; fail=1
  fi
}

mkdir "$work/src"
(cd "$src" && git ls-files -z | tar --null -cf - -T -) | tar -xf - -C "$work/src"
# Every core of the machine (debhelper builds with one job unless told), and no test run: the
# suite runs from scripts/test. Line tables as the only debug information (-g1, after the
# package's -g): the package is the same but for its debug symbols, and builds in less time.
if ! (cd "$work/src" && DEB_BUILD_OPTIONS="parallel=$(nproc) nocheck" \
      DEB_CFLAGS_APPEND=-g1 DEB_CXXFLAGS_APPEND=-g1 \
      dpkg-buildpackage -us -uc -b >"$work/build.log" 2>&1); then
  echo "FAIL: dpkg-buildpackage"; tail -40 "$work/build.log"; exit 1
fi
echo "ok: dpkg-buildpackage -us -uc -b"
deb=$(ls "$work"/memtide_*_*.deb)
check "lintian without errors" lintian --fail-on error "$work"/memtide_*.changes
check "dpkg -i" dpkg -i "$deb"
installed=1
check "memtided --check-config /etc/memtide/memtide.yaml" \
  memtided --check-config /etc/memtide/memtide.yaml
check "memtidectl --version" memtidectl --version
check "man pages installed" test -f /usr/share/man/man8/memtided.8.gz \
  -a -f /usr/share/man/man8/memtidectl.8.gz -a -f /usr/share/man/man5/memtide.yaml.5.gz
check "conffile registered" sh -c "dpkg-query -W -f='\${Conffiles}' memtide | grep -q /etc/memtide/memtide.yaml"
check "drop-in directory and examples" test -d /etc/memtide/memtide.d \
  -a -f /usr/share/doc/memtide/examples/50-databases.yaml
check "bash completion installed" test -f /usr/share/bash-completion/completions/memtidectl \
  -a -f /usr/share/bash-completion/completions/memtided
check "autopkgtest debian/tests/smoke" "$work/src/debian/tests/smoke"
check "runbooks installed uncompressed where the alerts link them" \
  test -f /usr/share/doc/memtide/runbooks.md -a -f /usr/share/doc/memtide/configuration.md
check "autopkgtest debian/tests/observe-only" "$work/src/debian/tests/observe-only"
# The operator lets memtide act; a reinstallation (as an upgrade runs) keeps that.
rm /etc/memtide/memtide.d/00-observe-only.yaml
check "dpkg -i again" dpkg -i "$deb"
check "an upgrade keeps the operator's choice (no observe-only drop-in again)" \
  test ! -e /etc/memtide/memtide.d/00-observe-only.yaml
# Purge removes the drop-in the package wrote, as it does the conffile.
cp /usr/share/memtide/00-observe-only.yaml /etc/memtide/memtide.d/
check "systemd-analyze verify" systemd-analyze verify /lib/systemd/system/memtided.service
exposure=$(systemd-analyze security --offline=true /lib/systemd/system/memtided.service 2>&1 |
  sed -n 's/.*Overall exposure level for memtided.service: \([0-9.]*\).*/\1/p')
if awk -v e="$exposure" 'BEGIN { exit !(e != "" && e <= 4.0) }'; then
  echo "ok: systemd-analyze security exposure $exposure"
else
  echo "FAIL: systemd-analyze security exposure '$exposure' (at most 4.0 wanted)"; fail=1
fi
check "dpkg --purge" dpkg --purge memtide
installed=0
check "configuration removed by purge" test ! -e /etc/memtide/memtide.yaml \
  -a ! -e /etc/memtide/memtide.d/00-observe-only.yaml
[ "$fail" = 0 ] && echo "deb_test: all checks passed"
exit "$fail"
