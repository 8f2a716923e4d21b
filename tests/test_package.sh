#!/usr/bin/env bash
# The Debian package, built and used the way an admin would: dpkg-buildpackage in a copy
# of the source tree (the work tree is untouched), lintian (no errors), dpkg -i on this
# machine, floodgated --check-config on the installed config, the installed daemon run
# briefly against a main log written by a real Exim (the e2e harness's throwaway Exim,
# through a copy of the installed config pointed at it), floodgatectl status on the
# package's control socket, the audit log rotated by the package's logrotate file while
# the daemon writes it, then remove (conffiles and state kept), reinstall over an edited
# config (edit kept), purge (state gone). The machine is restored afterwards (purge, and
# the group removed if this test created it).
#
# Exit 77 (skipped): not root, no dpkg-buildpackage/debhelper, not a Debian system, a
# sanitizer build (it runs in the Release ctest run only: the package is built from
# source with its own flags, so a second run would test the same thing), floodgate
# already installed here (an admin's installation is never touched), or no usable Exim.
# Takes one to four minutes (a package build on two cores).
set -euo pipefail
build="${FG_BUILD_DIR:?}"
src="${FG_SOURCE_DIR:?}"
skip() {
    echo "SKIP: $*"
    exit 77
}
fail() {
    echo "FAIL: $*" >&2
    exit 1
}
[ "$(id -u)" = 0 ] || skip "needs root (installs and purges the package)"
command -v dpkg-buildpackage >/dev/null || skip "dpkg-buildpackage not installed (apt-get install dpkg-dev)"
command -v dh >/dev/null || skip "debhelper not installed (apt-get install debhelper)"
if grep -q '^FLOODGATE_SANITIZE:BOOL=ON$' "$build/CMakeCache.txt" 2>/dev/null; then
    skip "sanitizer build; the package test runs in the Release build's ctest only"
fi
if dpkg-query -W -f='${Status}' floodgate 2>/dev/null | grep -qv 'not-installed'; then
    skip "a floodgate package is installed or its conffiles are left here; not touching it"
fi
[ ! -e /etc/floodgate ] || skip "/etc/floodgate exists (a source install?); not touching it"

tmp=$(mktemp -d /tmp/fg-package.XXXXXX)
pkgsrc="$tmp/floodgate"
group_existed=no
getent group floodgate >/dev/null && group_existed=yes
installed=no
FGD_PID=
cleanup() {
    local rc=$?
    if [ -n "$FGD_PID" ]; then
        kill -TERM "$FGD_PID" 2>/dev/null || true
        wait "$FGD_PID" 2>/dev/null || true
    fi
    if [ -n "${EH_DIR:-}" ]; then eh_stop; fi
    if [ "$installed" = yes ]; then
        dpkg --purge floodgate >"$tmp/cleanup-purge.log" 2>&1 ||
            { cat "$tmp/cleanup-purge.log" >&2; rc=1; }
    fi
    if [ "$group_existed" = no ] && getent group floodgate >/dev/null; then
        groupdel floodgate || rc=1
    fi
    rm -rf "$tmp"
    exit $rc
}
trap cleanup EXIT

# --- build, in a copy -----------------------------------------------------------------------
mkdir "$pkgsrc"
if git -C "$src" rev-parse --git-dir >/dev/null 2>&1; then
    # the work tree as it is (committed or not), without build directories or ignored files
    (cd "$src" && git ls-files -z -co --exclude-standard | xargs -0 tar -cf - --no-recursion) |
        tar -xf - -C "$pkgsrc"
else
    (cd "$src" && tar -cf - --exclude='./build*' --exclude='./obj-*' .) | tar -xf - -C "$pkgsrc"
fi
[ -d "$pkgsrc/debian" ] || fail "no debian/ in the source copy"
before=$(cd "$src" && git status --porcelain 2>/dev/null || true)
t0=$(date +%s)
if ! (cd "$pkgsrc" && DEB_BUILD_OPTIONS=nocheck dpkg-buildpackage -us -uc -b) >"$tmp/build.log" 2>&1; then
    tail -n 40 "$tmp/build.log" >&2
    fail "dpkg-buildpackage -us -uc -b"
fi
deb=$(ls "$tmp"/floodgate_*_*.deb)
echo "ok dpkg-buildpackage: $(basename "$deb") in $(($(date +%s) - t0)) s"
[ "$(cd "$src" && git status --porcelain 2>/dev/null || true)" = "$before" ] ||
    fail "the package build changed the source work tree"

if command -v lintian >/dev/null; then
    lintian "$tmp"/floodgate_*.changes >"$tmp/lintian.log" 2>&1 || true
    if grep -q '^E: ' "$tmp/lintian.log"; then
        cat "$tmp/lintian.log" >&2
        fail "lintian reports errors"
    fi
    echo "ok lintian: no errors ($(grep -c '^[WI]: ' "$tmp/lintian.log" || true) warnings/infos)"
else
    echo "skip: lintian not installed"
fi

# --- install ------------------------------------------------------------------------------
installed=yes
dpkg -i "$deb" >"$tmp/install.log" 2>&1 </dev/null || { cat "$tmp/install.log" >&2; fail "dpkg -i"; }
conf=/etc/floodgate/floodgate.yml
getent group floodgate >/dev/null || fail "postinst did not create the group floodgate"
for d in /var/lib/floodgate /var/log/floodgate; do
    [ "$(stat -c %a "$d" 2>/dev/null)" = 750 ] || fail "$d is not a 0750 directory after install"
done
[ "$(stat -c %a:%U "$conf")" = 640:root ] || fail "$conf is not root's and 0640"
for f in $conf /etc/floodgate/exim-acl.conf /etc/logrotate.d/floodgate; do
    dpkg-query -W -f='${Conffiles}\n' floodgate | grep -q "^ $f " || fail "$f is not a conffile"
done
grep -q '^log_file: /var/log/exim4/mainlog$' $conf || fail "not the Debian config (log_file)"
grep -q '^  backend: exim$' $conf || fail "not the Debian config (backend)"
grep -q '^  blocklist_file: /etc/exim4/floodgate-blocklist$' $conf || fail "blocklist not in /etc/exim4"
grep -q '^FLOODGATE_LIST = /etc/exim4/floodgate-blocklist$' /etc/floodgate/exim-acl.conf ||
    fail "the ACL snippet does not read /etc/exim4/floodgate-blocklist"
/usr/sbin/floodgated --check-config >"$tmp/check.log" 2>&1 || { cat "$tmp/check.log" >&2; fail "floodgated --check-config on the installed config"; }
grep -q 'ok (.*mode monitor' "$tmp/check.log" || { cat "$tmp/check.log" >&2; fail "the installed config is not in monitor mode"; }
echo "ok installed: group floodgate, /var/lib and /var/log/floodgate 0750, conffiles, --check-config: $(tail -n 1 "$tmp/check.log")"

# --- the installed daemon on a real Exim's main log -----------------------------------------
export FG_SOURCE_DIR=$src
# shellcheck source=tests/e2e/exim-harness.sh
. "$src/tests/e2e/exim-harness.sh"
eh_init || skip "no usable Exim for the daemon run"
eh_start >"$tmp/exim.log" 2>&1 || { cat "$tmp/exim.log" >&2; fail "the throwaway Exim did not start"; }
[ -e "$EH_DIR/log/mainlog" ] || install -m 0640 -o "$EH_USER" -g "$EH_GROUP" /dev/null "$EH_DIR/log/mainlog"
# The installed config, with its log_file pointed at that Exim's log and one rule that trips
# on the third message of a mailbox in a minute; state, audit log and control socket are
# the package's own paths.
awk -v logf="$EH_DIR/log/mainlog" '
    skip && /^[a-z]/ { skip = 0 }
    /^rules:$/ { print; print "  - name: pkg-test-burst"; print "    scope: mailbox";
                 print "    metric: messages"; print "    window: 1m"; print "    above: 2";
                 print "    actions: [freeze, suspend, alert]"; skip = 1; next }
    skip { next }
    /^log_file: / { print "log_file: " logf; next }
    { print }' $conf >"$tmp/floodgate.yml"
chmod 0640 "$tmp/floodgate.yml"
/usr/sbin/floodgated --config "$tmp/floodgate.yml" 2>"$tmp/floodgated.log" &
FGD_PID=$!
ready() { /usr/sbin/floodgatectl --json status 2>/dev/null | grep -q '"ready":true'; }
for _ in $(seq 1 100); do
    ready && break
    kill -0 "$FGD_PID" 2>/dev/null || { cat "$tmp/floodgated.log" >&2; fail "the installed floodgated exited"; }
    sleep 0.1
done
ready || { cat "$tmp/floodgated.log" >&2; fail "floodgated did not become ready"; }
/usr/sbin/floodgatectl status >"$tmp/status.txt" 2>&1 || { cat "$tmp/status.txt" >&2; fail "floodgatectl status"; }
echo "ok floodgatectl status (installed daemon, /run/floodgate/ctl.sock):"
sed 's/^/    /' "$tmp/status.txt"

audit=/var/log/floodgate/audit.jsonl
burst() { # MAILBOX: three messages, then wait for its trip in the live audit log
    for i in 1 2 3; do
        eh_submit_auth "$1" "$1" "r$i@remote.example" "pkg-$1-$i" >/dev/null ||
            fail "Exim did not accept message $i of $1"
    done
    for _ in $(seq 1 100); do
        grep -q "\"event\":\"trip\".*\"id\":\"$1\"" "$audit" 2>/dev/null && return 0
        sleep 0.1
    done
    cat "$tmp/floodgated.log" >&2
    fail "no trip for $1 in $audit"
}
burst one@pkg.example
grep '"event":"trip"' "$audit" | grep -q '"mode":"monitor"' || fail "the trip was not in monitor mode"
echo "ok trip read from Exim's log, audited in monitor mode"

# The package's logrotate file, on the package's audit log, while the daemon holds it open.
if command -v logrotate >/dev/null; then
    logrotate -f -s "$tmp/logrotate.state" /etc/logrotate.d/floodgate ||
        fail "logrotate on /etc/logrotate.d/floodgate"
    grep -q '"id":"one@pkg.example"' "$audit.1" || fail "the rotated audit log lacks the first trip"
    burst two@pkg.example
    [ "$(head -c 1 "$audit")" = '{' ] || fail "after rotation the audit log does not start with a record"
    grep -q '"id":"one@pkg.example"' "$audit" && fail "the first trip is still in the live audit log"
    grep -q '"id":"two@pkg.example"' "$audit.1" && fail "the daemon wrote to the rotated file"
    echo "ok logrotate (copytruncate): the next trip is at the start of the live audit log"
else
    echo "skip: logrotate not installed; rotation not checked"
fi
kill -TERM "$FGD_PID"
wait "$FGD_PID" || fail "floodgated did not exit 0 on SIGTERM"
FGD_PID=
[ -s /var/lib/floodgate/state ] || fail "no checkpoint in /var/lib/floodgate after a clean stop"

# --- remove, reinstall over an edited config, purge -----------------------------------------
sed -i 's/^max_identities: .*/max_identities: 123456/' $conf
cp -p $conf "$tmp/edited.yml"
dpkg -r floodgate >"$tmp/remove.log" 2>&1 || { cat "$tmp/remove.log" >&2; fail "dpkg -r"; }
[ ! -e /usr/sbin/floodgated ] || fail "dpkg -r left /usr/sbin/floodgated"
cmp -s $conf "$tmp/edited.yml" || fail "dpkg -r did not keep the edited conffile"
[ -s /var/lib/floodgate/state ] || fail "dpkg -r removed the state (only purge may)"
echo "ok remove: programs gone; edited config and state kept"

dpkg -i "$deb" >"$tmp/reinstall.log" 2>&1 </dev/null || { cat "$tmp/reinstall.log" >&2; fail "dpkg -i after remove"; }
cmp -s $conf "$tmp/edited.yml" || fail "reinstalling after a remove replaced the edited config"
dpkg -i "$deb" >"$tmp/reinstall2.log" 2>&1 </dev/null || { cat "$tmp/reinstall2.log" >&2; fail "dpkg -i over the installed package"; }
cmp -s $conf "$tmp/edited.yml" || fail "reinstalling over the installed package replaced the edited config"
[ "$(stat -c %a "$conf")" = 640 ] || fail "the kept config is no longer 0640"
/usr/sbin/floodgated --check-config >/dev/null 2>&1 || fail "--check-config on the kept config"
echo "ok reinstall (after remove, and over the installed package): the edit is kept"

dpkg --purge floodgate >"$tmp/purge.log" 2>&1 || { cat "$tmp/purge.log" >&2; fail "dpkg --purge"; }
installed=no
for p in /etc/floodgate /var/lib/floodgate /var/log/floodgate /run/floodgate /usr/sbin/floodgated \
    /etc/logrotate.d/floodgate; do
    [ ! -e "$p" ] || fail "purge left $p"
done
dpkg-query -W -f='${Status}' floodgate 2>/dev/null | grep -qv 'not-installed' &&
    fail "dpkg still knows floodgate after purge"
echo "ok purge: config, state, audit log and programs gone"
