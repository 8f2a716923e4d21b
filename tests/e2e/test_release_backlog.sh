#!/bin/bash
# test_release_backlog.sh - release undoes every freeze floodgate caused, and a trip after a
# restart freezes the backlog queued before it, against a real Exim on loopback.
#
# A throwaway Exim (exim-harness.sh, conf/exim-acl.conf included) and floodgated (enforce,
# exim backend) with one rule: a script sending more than 5 messages in 10m is frozen and
# held. Login webuser runs a script in <tmp>/home/webuser/public_html/wp-content/uploads
# (the offender) and its shop in <tmp>/home/webuser/public_html (real order mail).
#  1. 3 script messages while floodgated runs (below the threshold); floodgated stops;
#     4 more script messages and 2 order messages while it is down; floodgated starts and
#     trips the script while catching up. All 7 script messages are frozen (the first 3
#     only in the spool: the ids floodgated read before the restart are not kept), the
#     order mail is not.
#  2. The hold is the script's: a new order message is accepted unfrozen, a new script
#     message is frozen on arrival by the ACL.
#  3. An older blocklist keyed the whole login for a script: an order message is frozen on
#     arrival because of the script. floodgatectl release of the script thaws it too: after
#     the release no message floodgate froze stays frozen (exim -bp before the trip and
#     after the release).
# Exit 77 (skip) when Exim or root is missing. Every loop is bounded; loopback only.
set -u
: "${FG_SOURCE_DIR:?}" "${FG_BUILD_DIR:?}"
. "$FG_SOURCE_DIR/tests/e2e/exim-harness.sh"
eh_init || exit 77
FGD=$FG_BUILD_DIR/floodgated
CTL=$FG_BUILD_DIR/floodgatectl
for b in "$FGD" "$CTL"; do [ -x "$b" ] || { echo "missing $b" >&2; exit 1; }; done

FAIL=0
FGD_PID=
ok()   { echo "ok   - $*"; }
bad()  { echo "FAIL - $*"; FAIL=1; }
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }
not()  { ! "$@"; }

fgd_stop() {
    if [ -n "$FGD_PID" ] && kill -0 "$FGD_PID" 2>/dev/null; then
        kill -TERM "$FGD_PID" 2>/dev/null
        for _ in $(seq 1 100); do kill -0 "$FGD_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$FGD_PID" 2>/dev/null || true
    fi
    FGD_PID=
}
cleanup() {
    fgd_stop
    if [ "$FAIL" != 0 ] && [ -n "${EH_DIR:-}" ] && [ -d "$EH_DIR" ]; then
        echo "--- floodgated stderr"; tail -n 80 "$FG/floodgated.log" 2>/dev/null
        echo "--- audit"; cat "$FG/audit.jsonl" 2>/dev/null
        echo "--- blocklist"; cat "$EH_LIST" 2>/dev/null
        echo "--- exim mainlog (tail)"; tail -n 60 "$EH_DIR/log/mainlog" 2>/dev/null
        echo "--- queue"; eh_queue 2>/dev/null | head -n 100
    fi
    eh_stop
}
trap cleanup EXIT
trap 'exit 1' INT TERM
eh_start || exit 1

FG=$EH_DIR/fg
mkdir -p "$FG"
SHOP_DIR=$EH_DIR/home/webuser/public_html
UP_DIR=$SHOP_DIR/wp-content/uploads
mkdir -p "$UP_DIR"
SCRIPT_ID="webuser:$UP_DIR"
echo "shop.example: webuser" > "$FG/userdomains"
echo fg-test.example > "$FG/localdomains"
cat > "$FG/floodgate.yml" <<EOF
mode: enforce
rules:
  - name: e2e-script
    scope: script
    metric: messages
    window: 10m
    above: 5
    actions: [freeze, hold]
log_file: $EH_DIR/log/mainlog
userdomains_file: $FG/userdomains
localdomains_file: $FG/localdomains
state_dir: $EH_DIR/state
audit_log: $FG/audit.jsonl
control_socket: $FG/ctl.sock
actions:
  backend: exim
  exim_path: $EH_EXIM
  exim_config: $EH_CONF
  spool_dir: $EH_SPOOL
  blocklist_file: $EH_LIST
  timeout: 30s
EOF
chmod 600 "$FG/floodgate.yml"
if [ ! -e "$EH_DIR/log/mainlog" ]; then
    install -m 0640 -o "$EH_USER" -g "$EH_GROUP" /dev/null "$EH_DIR/log/mainlog"
fi
ctl() { timeout 10 "$CTL" --socket "$FG/ctl.sock" "$@"; }
fgd_start() {
    "$FGD" --config "$FG/floodgate.yml" 2>>"$FG/floodgated.log" &
    FGD_PID=$!
    for _ in $(seq 1 100); do
        ctl --json status 2>/dev/null | grep -q '"ready":true' && return 0
        kill -0 "$FGD_PID" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}
# wait_for SECONDS CMD...: poll (0.1 s) until CMD succeeds.
wait_for() {
    local t=$1; shift
    for _ in $(seq 1 $((t * 10))); do "$@" && return 0; sleep 0.1; done
    return 1
}
audit_has() { grep -F "\"event\":\"$1\"" "$FG/audit.jsonl" 2>/dev/null | grep -qF "$2"; }
script_mail() { (cd "$UP_DIR" && eh_submit_local webuser wp@shop.example "x$1@remote.example" "$1"); }
order_mail()  { (cd "$SHOP_DIR" && eh_submit_local webuser orders@shop.example "c$1@remote.example" "$1"); }
nfrozen() { eh_queue | grep -cF '*** frozen ***'; }
# lines_read: records floodgated has read (status), to know it caught up
lines_seen() { grep -c '' "$EH_DIR/log/mainlog"; }

check "floodgated starts" fgd_start
FROZEN_BEFORE=$(nfrozen)
for i in 1 2 3; do check "script message $i (floodgated up)" script_mail "s-pre-$i"; done
# let floodgated read them (and save its position) before it stops
check "floodgated read the first 3" wait_for 15 sh -c "'$CTL' --socket '$FG/ctl.sock' --json show '$SCRIPT_ID' 2>/dev/null | grep -q '\"messages\"'"
sleep 1.5
fgd_stop
for i in 4 5 6 7; do check "script message $i (floodgated down)" script_mail "s-down-$i"; done
check "order message 1 (floodgated down)" order_mail o-down-1
check "order message 2 (floodgated down)" order_mail o-down-2
check "nothing frozen before the trip" test "$(nfrozen)" = "$FROZEN_BEFORE"
check "floodgated restarts" fgd_start
check "script tripped during catch-up" wait_for 20 audit_has acted "$SCRIPT_ID"
SCRIPT_IDS=""
for s in s-pre-1 s-pre-2 s-pre-3 s-down-4 s-down-5 s-down-6 s-down-7; do
    SCRIPT_IDS="$SCRIPT_IDS $(eh_msgid "$s")"
done
n=0; for id in $SCRIPT_IDS; do eh_is_frozen "$id" && n=$((n + 1)); done
echo "FIGURE backlog_script_frozen=$n of 7"
check "all 7 script messages frozen (3 from before the restart found in the spool)" test "$n" = 7
check "the audit counts the backlog" grep -qE '"event":"acted".*"backlog":[1-9]' "$FG/audit.jsonl"
check "order mail 1 not frozen" not eh_is_frozen "$(eh_msgid o-down-1)"
check "order mail 2 not frozen" not eh_is_frozen "$(eh_msgid o-down-2)"

# 2. the hold is the script's
check "blocklist keys the script by login and directory" grep -qF "\"webuser:$UP_DIR\": hold script" "$EH_LIST"
check "new order message" order_mail o-after-1
check "... accepted unfrozen" not eh_is_frozen "$(eh_msgid o-after-1)"
check "new script message" script_mail s-after-1
check "... frozen on arrival by the ACL" eh_is_frozen "$(eh_msgid s-after-1)"

# 3. an older blocklist keyed the login: the order mail frozen because of the script
ENC=$(sed -n "s/^\"webuser:[^\"]*\": hold script \([^ ]*\) .*/\1/p" "$EH_LIST")
printf 'webuser: hold script %s e2e-script\n' "$ENC" >> "$EH_LIST"
check "order message under the login-wide key" order_mail o-legacy-1
check "... frozen on arrival because of the script" eh_is_frozen "$(eh_msgid o-legacy-1)"
echo "FIGURE frozen_before_release=$(nfrozen)"
check "release the script" ctl release "$SCRIPT_ID"
check "released (audit)" wait_for 20 audit_has released "$SCRIPT_ID"
AFTER=$(nfrozen)
echo "FIGURE frozen_before_trip=$FROZEN_BEFORE frozen_after_release=$AFTER"
check "no message floodgate froze stays frozen" test "$AFTER" = "$FROZEN_BEFORE"
check "the order mail frozen because of the script is thawed" not eh_is_frozen "$(eh_msgid o-legacy-1)"
check "blocklist no longer lists the script" not grep -qF "hold script $ENC" "$EH_LIST"
check "script mail accepted unfrozen again" script_mail s-again
check "... not frozen" not eh_is_frozen "$(eh_msgid s-again)"
exit $FAIL
