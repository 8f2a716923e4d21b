#!/bin/bash
# test_exim_acl.sh - the exim backend and freezing against a real Exim on loopback.
#
# Starts a throwaway Exim (exim-harness.sh) with conf/exim-acl.conf included, then drives
# lib/action through tests/action_probe and checks what Exim does:
#  - a queued message of a listed mailbox is frozen by exim -Mf, the others are not;
#  - an authenticated submission from a suspended mailbox is refused at RCPT with 5xx,
#    a held one with 4xx, other mailboxes are accepted;
#  - a local submission by a listed login is frozen on arrival by the ACL;
#  - release thaws what floodgate froze (exim -Mf and the ACL) and mail is accepted again.
# Exit 77 (skip) when Exim or root is missing.
set -u
: "${FG_SOURCE_DIR:?}" "${FG_BUILD_DIR:?}"
. "$FG_SOURCE_DIR/tests/e2e/exim-harness.sh"
eh_init || exit 77
PROBE=$FG_BUILD_DIR/action_probe
[ -x "$PROBE" ] || { echo "missing $PROBE" >&2; exit 1; }
trap eh_stop EXIT
eh_start || exit 1

FAIL=0
ok()   { echo "ok   - $*"; }
bad()  { echo "FAIL - $*"; FAIL=1; }
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }
not()  { ! "$@"; }

probe() {
    timeout 60 "$PROBE" --state-dir "$EH_DIR/state" --spool-dir "$EH_SPOOL" --exim "$EH_EXIM" \
        --exim-config "$EH_CONF" --blocklist "$EH_LIST" --backend exim --batch 2 "$@" \
        >>"$EH_DIR/audit.jsonl" 2>>"$EH_DIR/probe.log"
}

# 1. queue some mail: two from the bad mailbox, one from a good one, local ones.
check "auth submission bad 1 accepted"  eh_submit_auth bad@example.com bad@example.com r1@remote.example s-bad-1
check "auth submission bad 2 accepted"  eh_submit_auth bad@example.com bad@example.com r2@remote.example s-bad-2 LOGIN
check "auth submission good accepted"   eh_submit_auth good@example.com good@example.com r3@remote.example s-good-1
check "local submission alice"          eh_submit_local alice alice@example.org r4@remote.example s-alice-1
check "local submission bob"            eh_submit_local bob bob@example.org r5@remote.example s-bob-1
B1=$(eh_msgid s-bad-1); B2=$(eh_msgid s-bad-2); G1=$(eh_msgid s-good-1)
A1=$(eh_msgid s-alice-1); O1=$(eh_msgid s-bob-1)
echo "ids: bad=$B1,$B2 good=$G1 alice=$A1 bob=$O1"
check "all ids found" test -n "$B1" -a -n "$B2" -a -n "$G1" -a -n "$A1" -a -n "$O1"

# 2. trip the bad mailbox; candidates include other identities' ids (log forgery case).
check "trip mailbox (freeze, suspend)" probe trip e2e-burst mailbox Bad@Example.com \
    freeze,suspend "$B1" "$B2" "$G1" "$A1"
check "bad 1 frozen"        eh_is_frozen "$B1"
check "bad 2 frozen"        eh_is_frozen "$B2"
check "good not frozen"     not eh_is_frozen "$G1"
check "alice not frozen"    not eh_is_frozen "$A1"
check "blocklist lists the mailbox" grep -q '^bad@example.com: suspend mailbox' "$EH_LIST"
check "audit has unconfirmed ids" grep -q '"event":"unconfirmed"' "$EH_DIR/audit.jsonl"
check "ledger says active"  probe active mailbox bad@example.com
check "second trip is not repeated" not probe trip e2e-burst mailbox bad@example.com freeze,suspend

# 3. new submissions: the suspended mailbox is refused with 5xx at RCPT, others pass.
out=$(eh_submit_auth BAD@example.com bad@example.com r6@remote.example s-bad-3); rc=$?
echo "$out"
check "suspended mailbox refused at RCPT" test $rc = 1
check "refusal is 5xx" grep -q ' 550 ' <<<"$out"
check "refusal quotes the reference" grep -qE ' 550 .*suspended \(ref fg-[0-9a-f]{8}\)' <<<"$out"
check "rejection logged" grep -q 'rejected RCPT <r6@remote.example>: floodgate: suspended BAD@example.com' "$EH_DIR/log/mainlog"
check "other mailbox still accepted" eh_submit_auth good@example.com good@example.com r7@remote.example s-good-2

# 4. hold: 4xx at RCPT.
check "trip hold mailbox (an operator's order: nothing queued to confirm)" probe --ordered trip e2e-hold mailbox held@example.com hold
out=$(eh_submit_auth held@example.com held@example.com r8@remote.example s-held-1); rc=$?
echo "$out"
check "held mailbox deferred at RCPT" test $rc = 1
check "deferral is 4xx" grep -q ' 451 ' <<<"$out"
check "deferral quotes the reference" grep -qE ' 451 .*on hold \(ref fg-[0-9a-f]{8}\)' <<<"$out"

# 5. account (local submissions): freeze queued, then the ACL freezes new arrivals.
check "trip account alice (freeze, hold)" probe trip e2e-script account alice freeze,hold "$A1" "$O1"
check "alice queued frozen"  eh_is_frozen "$A1"
check "bob not frozen"       not eh_is_frozen "$O1"
check "local submission alice 2" eh_submit_local alice alice@example.org r9@remote.example s-alice-2
A2=$(eh_msgid s-alice-2)
check "alice new arrival frozen by ACL" eh_is_frozen "$A2"
check "ACL logged the freeze" grep -q 'floodgate: frozen on arrival for alice' "$EH_DIR/log/mainlog"
check "local submission bob 2" eh_submit_local bob bob@example.org r10@remote.example s-bob-2
check "bob new arrival not frozen" not eh_is_frozen "$(eh_msgid s-bob-2)"

# 6. release: thaw exactly what floodgate froze; mail flows again.
check "release mailbox" probe release mailbox bad@example.com
check "bad 1 thawed" not eh_is_frozen "$B1"
check "bad 2 thawed" not eh_is_frozen "$B2"
check "blocklist no longer lists the mailbox" not grep -q '^bad@example.com:' "$EH_LIST"
check "released mailbox accepted again" eh_submit_auth bad@example.com bad@example.com r11@remote.example s-bad-4
check "ledger says released" not probe active mailbox bad@example.com
check "release account" probe release account alice
check "alice 1 thawed" not eh_is_frozen "$A1"
check "alice 2 (frozen on arrival by floodgate's ACL) thawed too" not eh_is_frozen "$A2"
check "held mailbox still listed" grep -q '^held@example.com: hold' "$EH_LIST"
check "release hold" probe release mailbox held@example.com
check "held mailbox accepted again" eh_submit_auth held@example.com held@example.com r12@remote.example s-held-2

# 7. a missing blocklist is not a 451 for everyone.
rm -f "$EH_LIST"
check "no blocklist file: accepted" eh_submit_auth x@example.com x@example.com r13@remote.example s-x-1

if [ $FAIL != 0 ]; then
    echo "--- probe log"; cat "$EH_DIR/probe.log"
    echo "--- audit"; cat "$EH_DIR/audit.jsonl"
    echo "--- exim mainlog"; tail -n 60 "$EH_DIR/log/mainlog"
    echo "--- queue"; eh_queue
fi
exit $FAIL
