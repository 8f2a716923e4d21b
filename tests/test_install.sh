#!/usr/bin/env bash
# `cmake --install` into a temporary DESTDIR: every file lands where the unit and the docs
# say, a second install keeps an edited floodgate.yml, the installed binary accepts the
# installed config (what ExecStartPre= runs), the manual pages are in place, the unit
# passes `systemd-analyze verify`
# and its `systemd-analyze security --offline` exposure stays at most FG_MAX_EXPOSURE
# (both skipped without systemd-analyze). A /usr/local install gets a unit naming
# /usr/local paths.
set -euo pipefail
build="${FG_BUILD_DIR:?}"
src="${FG_SOURCE_DIR:?}"
max_exposure="${FG_MAX_EXPOSURE:-3.5}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() {
    echo "FAIL: $*" >&2
    exit 1
}

root="$tmp/root"
DESTDIR="$root" cmake --install "$build" --prefix /usr >"$tmp/install.log"

unitdir=$(sed -n 's/^FLOODGATE_SYSTEMD_UNITDIR:[A-Z]*=//p' "$build/CMakeCache.txt")
case "$unitdir" in
"") fail "FLOODGATE_SYSTEMD_UNITDIR not in $build/CMakeCache.txt" ;;
/*) ;;
*) unitdir="/usr/$unitdir" ;;
esac
unit="$root$unitdir/floodgate.service"

want=(usr/sbin/floodgated etc/floodgate/floodgate.yml etc/floodgate/floodgate.yml.example
      etc/floodgate/exim-acl.conf "${unit#"$root"/}")
[ -x "$build/floodgatectl" ] && want+=(usr/sbin/floodgatectl)
[ -f "$src/docs/operating.md" ] && want+=(usr/share/doc/floodgate/operating.md)
want+=(usr/share/man/man8/floodgated.8 usr/share/man/man8/floodgatectl.8
       usr/share/man/man5/floodgate.yml.5)
for f in "${want[@]}"; do
    [ -f "$root/$f" ] || fail "not installed: /$f (installed: $(cd "$root" && find . -type f))"
done
for f in usr/sbin/floodgated usr/sbin/floodgatectl; do
    [ ! -e "$root/$f" ] || [ -x "$root/$f" ] || fail "/$f is not executable"
done
# nothing outside the expected trees (a relative SYSCONFDIR would give /usr/etc)
extra=$(cd "$root" && find . -type f | sed 's|^\./||' | grep -v -e '^usr/sbin/' \
    -e '^etc/floodgate/' -e "^${unitdir#/}/" -e '^usr/share/doc/floodgate/' \
    -e '^usr/share/man/man[58]/floodgate' || true)
[ -z "$extra" ] || fail "unexpected files installed: $extra"
cmp -s "$src/systemd/floodgate.service" "$unit" || fail "prefix /usr: unit differs from systemd/"
cmp -s "$src/conf/floodgate.yml" "$root/etc/floodgate/floodgate.yml" || fail "config differs"
[ "$(stat -c %a "$root/etc/floodgate/floodgate.yml")" = 640 ] ||
    fail "floodgate.yml is not installed 0640 (it may hold alert credentials)"
echo "ok files: ${want[*]}"

# the installed binary accepts the installed config, as ExecStartPre= will run it
"$root/usr/sbin/floodgated" --config "$root/etc/floodgate/floodgate.yml" --check-config ||
    fail "installed floodgated rejects the installed floodgate.yml"
grep -q '^ExecStartPre=/usr/sbin/floodgated --config /etc/floodgate/floodgate.yml --check-config$' \
    "$unit" || fail "ExecStartPre= does not check /etc/floodgate/floodgate.yml"

# a second install keeps the operator's edits and refreshes the example
echo "# edited by the operator" >>"$root/etc/floodgate/floodgate.yml"
cp "$root/etc/floodgate/floodgate.yml" "$tmp/edited.yml"
echo "# stale" >>"$root/etc/floodgate/floodgate.yml.example"
DESTDIR="$root" cmake --install "$build" --prefix /usr >"$tmp/install2.log"
cmp -s "$tmp/edited.yml" "$root/etc/floodgate/floodgate.yml" ||
    fail "a reinstall overwrote /etc/floodgate/floodgate.yml"
cmp -s "$src/conf/floodgate.yml" "$root/etc/floodgate/floodgate.yml.example" ||
    fail "a reinstall did not refresh floodgate.yml.example"
grep -q 'Keeping: ' "$tmp/install2.log" || fail "a reinstall did not say it kept the config"
echo "ok reinstall keeps floodgate.yml"

# another prefix: the unit names what was installed there
DESTDIR="$tmp/local" cmake --install "$build" --prefix /usr/local >/dev/null
lunit=$(find "$tmp/local" -name floodgate.service)
[ -n "$lunit" ] || fail "prefix /usr/local: no unit installed"
grep -q '^ExecStart=/usr/local/sbin/floodgated --config /usr/local/etc/floodgate/floodgate.yml$' \
    "$lunit" || fail "prefix /usr/local: ExecStart= does not name /usr/local paths"
[ -x "$tmp/local/usr/local/sbin/floodgated" ] || fail "prefix /usr/local: no floodgated"
echo "ok prefix /usr/local"

if ! command -v systemd-analyze >/dev/null; then
    echo "skip: systemd-analyze not found; unit not verified"
    exit 0
fi
# verify checks that ExecStart= binaries exist: point a copy at the DESTDIR tree. (--root
# would want a whole OS under DESTDIR: sysinit.target, /bin/kill.)
mkdir -p "$tmp/verify"
sed -e "s#/usr/sbin/floodgated#$root/usr/sbin/floodgated#g" \
    -e "s#/etc/floodgate/#$root/etc/floodgate/#g" "$unit" >"$tmp/verify/floodgate.service"
if ! systemd-analyze verify "$tmp/verify/floodgate.service" >"$tmp/verify.log" 2>&1; then
    cat "$tmp/verify.log" >&2
    fail "systemd-analyze verify"
fi
[ ! -s "$tmp/verify.log" ] || { cat "$tmp/verify.log" >&2; fail "systemd-analyze verify warned"; }
echo "ok systemd-analyze verify"

if ! systemd-analyze security --help 2>/dev/null | grep -q -- '--offline'; then
    echo "skip: systemd-analyze security has no --offline (systemd < 250)"
    exit 0
fi
systemd-analyze security --offline=true --no-pager "$tmp/verify/floodgate.service" \
    >"$tmp/security.log" 2>&1 || true
score=$(sed -n 's/.*Overall exposure level for floodgate.service: \([0-9.]*\).*/\1/p' \
    "$tmp/security.log")
[ -n "$score" ] || { cat "$tmp/security.log" >&2; fail "no exposure score"; }
awk -v s="$score" -v m="$max_exposure" 'BEGIN { exit !(s <= m) }' ||
    { grep '✗' "$tmp/security.log" >&2; fail "exposure $score > $max_exposure"; }
echo "ok systemd-analyze security --offline: exposure $score (at most $max_exposure)"
