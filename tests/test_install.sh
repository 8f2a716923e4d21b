#!/usr/bin/env bash
# `cmake --install` into a temporary DESTDIR: every file lands where the unit and the docs
# say, a second install keeps an edited floodgate.yml, the installed binary accepts the
# installed config (what ExecStartPre= runs), the manual pages are in place, the unit
# passes `systemd-analyze verify`
# and its `systemd-analyze security --offline` exposure stays at most FG_MAX_EXPOSURE
# (both skipped without systemd-analyze). A /usr/local install gets a unit naming
# /usr/local paths. The logrotate file's copytruncate keeps an append-mode writer's
# records (skipped without logrotate or root).
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
      etc/floodgate/exim-acl.conf etc/logrotate.d/floodgate "${unit#"$root"/}"
      usr/share/doc/floodgate/README.md usr/share/doc/floodgate/install-debian.md)
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
    -e '^etc/floodgate/' -e '^etc/logrotate.d/floodgate$' -e "^${unitdir#/}/" -e '^usr/share/doc/floodgate/' \
    -e '^usr/share/man/man[58]/floodgate' || true)
[ -z "$extra" ] || fail "unexpected files installed: $extra"
cmp -s "$src/systemd/floodgate.service" "$unit" || fail "prefix /usr: unit differs from systemd/"
variant=$(sed -n 's/^FLOODGATE_CONFIG_VARIANT:[A-Z]*=//p' "$build/CMakeCache.txt")
if [ "$variant" = generic ]; then
    cmp -s "$src/conf/floodgate.yml" "$root/etc/floodgate/floodgate.yml" || fail "config differs"
fi
cmp -s "$build/conf/floodgate.yml" "$root/etc/floodgate/floodgate.yml" ||
    fail "config differs from the $variant variant"
cmp -s "$src/packaging/logrotate/floodgate" "$root/etc/logrotate.d/floodgate" ||
    fail "logrotate file differs"
grep -q '^/var/log/floodgate/audit.jsonl {' "$root/etc/logrotate.d/floodgate" ||
    fail "the logrotate file does not name the default audit_log"
grep -q '^audit_log: /var/log/floodgate/audit.jsonl$' "$root/etc/floodgate/floodgate.yml" ||
    fail "the config's audit_log is not the path the logrotate file rotates"
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
cmp -s "$build/conf/floodgate.yml" "$root/etc/floodgate/floodgate.yml.example" ||
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

# The audit log's rotation, as floodgated writes it: one descriptor opened O_APPEND at start
# and never reopened (daemon/live.c). After logrotate's copytruncate the next record must
# be at the start of the live file, the earlier ones in the rotated copy.
if command -v logrotate >/dev/null && [ "$(id -u)" = 0 ]; then
    mkdir -m 0750 "$tmp/lr"
    sed "s#^/var/log/floodgate/audit.jsonl {#$tmp/lr/audit.jsonl {#" \
        "$root/etc/logrotate.d/floodgate" >"$tmp/lr.conf"
    exec 3>>"$tmp/lr/audit.jsonl"
    echo '{"event":"before"}' >&3
    logrotate -f -s "$tmp/lr.state" "$tmp/lr.conf" || fail "logrotate failed on the shipped file"
    echo '{"event":"after"}' >&3
    exec 3>&-
    [ "$(cat "$tmp/lr/audit.jsonl")" = '{"event":"after"}' ] ||
        fail "after rotation the audit log holds: $(od -c "$tmp/lr/audit.jsonl" | head -3)"
    [ "$(cat "$tmp/lr/audit.jsonl.1")" = '{"event":"before"}' ] ||
        fail "the rotated audit log does not hold the earlier record"
    echo "ok logrotate: copytruncate keeps an O_APPEND writer's records whole and in order"
else
    echo "skip: logrotate not installed or not root; rotation not checked"
fi

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
