#!/usr/bin/env bash
# Replay's fast path changes nothing: every log below gives the same --json report, byte
# for byte (the run time aside), from `floodgated --replay` and from `--replay --strict`
# (each record parsed again when it is counted, the service's path). The logs: the bench's
# kind (tools/gen-exim-mainlog, mixed ids, +pid +millisec) and others (old and new ids,
# log_timezone, hostile text, outbreaks) at small sizes, the fixtures, and the real logs
# under $FG_SHARED_DIR/corpus when that directory exists. Both policies: the shipped one
# (conf/floodgate.yml) and the bench's rules.
set -euo pipefail
bin="${FG_BUILD_DIR:?}/floodgated"
src="${FG_SOURCE_DIR:?}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

gen() { # name, generator arguments...
    local name=$1
    shift
    python3 "$src/tools/gen-exim-mainlog" "$@" --out "$tmp/$name.log" --truth "$tmp/$name.json"
    python3 - "$tmp/$name.json" "$tmp/$name" <<'PY'
import json, sys
t = json.load(open(sys.argv[1]))
with open(sys.argv[2] + ".ud", "w") as f:
    for a in t["accounts"]:
        for d in a["domains"]:
            f.write("%s: %s\n" % (d, a["user"]))
with open(sys.argv[2] + ".ld", "w") as f:
    f.write("".join(d + "\n" for d in t["localdomains"]))
PY
}
gen bench --lines 30000 --seed 42 --id-format mixed --pid --millisec
gen oldids --lines 20000 --seed 7 --id-format old --outbreaks 6
gen zoned --lines 20000 --seed 11 --id-format new --pid --tz +0200 --hostile 30
gen hostile --lines 15000 --seed 3 --id-format mixed --pid --millisec --hostile 80

# the bench's rules and the shipped policy, each with a log's maps
policy() { # kind, maps prefix -> config path
    local out="$tmp/$1-$(basename "$2").yml"
    {
        echo "userdomains_file: $2.ud"
        echo "localdomains_file: $2.ld"
        if [ "$1" = shipped ]; then
            grep -v '^\(user\|local\)domains_file' "$src/conf/floodgate.yml"
        else
            cat <<'YML'
mode: monitor
rules:
  - { name: mailbox-burst, scope: mailbox, metric: messages, window: 10m, above: 45, actions: [alert] }
  - { name: mailbox-rcpts, scope: mailbox, metric: recipients, window: 1h, above: 300, actions: [alert] }
  - { name: mailbox-domains, scope: mailbox, metric: domains, window: 10m, above: 40, actions: [alert] }
  - { name: script-burst, scope: script, metric: messages, window: 10m, above: 45, actions: [alert] }
  - { name: mailbox-ips, scope: mailbox, metric: ips, window: 1h, above: 10, actions: [alert] }
  - { name: mailbox-mismatch, scope: mailbox, metric: mismatch, window: 10m, above: 20, actions: [alert] }
  - { name: account-hour, scope: account, metric: messages, window: 1h, above: 2000, actions: [alert] }
YML
        fi
    } >"$out"
    echo "$out"
}

same() { # config, logs...
    local cfg=$1
    shift
    "$bin" --config "$cfg" --replay --json "$@" | sed 's/"seconds":[0-9.]*,//' >"$tmp/fast"
    "$bin" --config "$cfg" --replay --json --strict "$@" | sed 's/"seconds":[0-9.]*,//' \
        >"$tmp/strict"
    if ! cmp -s "$tmp/fast" "$tmp/strict"; then
        echo "FAIL: replay of $* differs between the fast path and --strict:" >&2
        diff <(tr ',' '\n' <"$tmp/fast") <(tr ',' '\n' <"$tmp/strict") | head -20 >&2
        exit 1
    fi
    python3 -c 'import json, sys
o = json.load(open(sys.argv[1]))
print("same: %-40s records %7d trips %4d identities %5d" % (sys.argv[2], o["records"],
      len(o["trips"]), len(o["identities"])))' "$tmp/fast" "$(basename "$cfg") $(basename "$1")"
}

n=0
for name in bench oldids zoned hostile; do
    for kind in bench shipped; do
        same "$(policy "$kind" "$tmp/$name")" "$tmp/$name.log"
        n=$((n + 1))
    done
done
# several files in one replay: the joiner and the delay queue carry across them
same "$(policy shipped "$tmp/bench")" "$tmp/oldids.log" "$tmp/bench.log" "$tmp/hostile.log"
gzip -c "$tmp/zoned.log" >"$tmp/zoned.log.gz"
same "$(policy bench "$tmp/zoned")" "$tmp/zoned.log.gz"
n=$((n + 2))

for f in "$src"/tests/fixtures/eximlog/*.log; do
    same "$(policy shipped "$tmp/bench")" "$f"
    n=$((n + 1))
done
corpus="${FG_SHARED_DIR:-}/corpus"
if [ -n "${FG_SHARED_DIR:-}" ] && [ -d "$corpus" ]; then
    for f in "$corpus"/*; do
        [ -f "$f" ] || continue
        same "$(policy shipped "$tmp/bench")" "$f"
        n=$((n + 1))
    done
fi
echo "replay: fast path and --strict agree on $n runs"
