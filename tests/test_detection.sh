#!/usr/bin/env bash
# Detection against ground truth: logs from tools/gen-exim-mainlog (several seeds; mixed,
# old and new id formats; with and without +pid, +millisec, log_timezone), replayed with the
# rules the generator's truth lists (normal senders stay under all of them). Every offender
# (mailbox burst, PHP script, leaked password spread over IPs, recipient blast, spoofed
# sender) must trip its rule on its true identity between its start and 60 s of log time
# after its own traffic crossed the threshold, and no other identity may trip. So must the
# signals across identities: every member of a spam campaign spread over mailboxes and
# scripts (each under every per-identity limit) once the campaign passes its threshold,
# the senders of spam-trap hits, and mailboxes whose mail to dead hosts queues, defers and
# bounces (queued, defer_ratio). The seed-11 log must give the same report plain, gzipped,
# from stdin and rotated into dated files. Normal traffic alone (no offender) trips
# nothing, and neither do the real logs of FG_SHARED_DIR/corpus when present (every rule,
# the campaign rule without its learning time).
#
# A hostile-sender log (attacker text in subjects, Message-IDs, HELOs, quoted senders and
# recipients, argv, and raw newlines forging whole lines) is replayed too: its victims must
# never be counted, its offenders must still trip and nothing else may. The result is printed
# always and enforced with FG_DETECTION_HOSTILE=1.
# When FG_SHARED_DIR holds an external generator (bench/gen-exim-mainlog), one of its logs
# is checked as well.
set -euo pipefail
src="${FG_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}"
gen="$src/tools/gen-exim-mainlog"
bin="${FG_BUILD_DIR:?}/floodgated"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Configuration from a truth file: the account maps and the rules (or, for an external
# generator's truth without rules, its two burst rules).
setup() { # truth
    python3 - "$1" "$tmp" <<'PY'
import json, sys
truth, tmp = json.load(open(sys.argv[1])), sys.argv[2]
rules = truth.get("rules") or [
    {"name": "mailbox-burst", "scope": "mailbox", "metric": "messages", "window_s": 600, "above": 45},
    {"name": "script-burst", "scope": "script", "metric": "messages", "window_s": 600, "above": 45}]
with open(tmp + "/userdomains", "w") as f:
    for a in truth["accounts"]:
        for d in a["domains"]:
            f.write("%s: %s\n" % (d, a["user"]))
    f.write("*: nobody\n")
with open(tmp + "/localdomains", "w") as f:
    f.write("".join(d + "\n" for d in truth.get("localdomains", [])))
with open(tmp + "/floodgate.yml", "w") as f:
    f.write("mode: monitor\nuserdomains_file: %s/userdomains\nlocaldomains_file: %s/localdomains\n"
            "rules:\n" % (tmp, tmp))
    for r in rules:
        keys = ["name: %s" % r["name"], "scope: %s" % r["scope"]]
        keys += ["metric: %s" % r["metric"]] if "metric" in r else []
        keys += ["key: %s" % r["key"]] if "key" in r else []
        keys += ["window: %ds" % r["window_s"]] if "window_s" in r else []
        keys += ["above: %s" % r["above"]] if "above" in r else []
        keys += ["min: %d" % r["min"]] if "min" in r else []
        f.write("  - {%s, actions: [alert]}\n" % ", ".join(keys))
    traps = truth.get("traps") if any(r["scope"] == "trap" for r in rules) else None
    if traps:
        f.write("traps:\n  addresses: [%s]\n  domains: [%s]\n" % (
            ", ".join(traps["addresses"]), ", ".join(traps["domains"])))
PY
}

replay() { # out.json log...
    local out=$1
    shift
    "$bin" --config "$tmp/floodgate.yml" --replay --json "$@" >"$out"
}

same_report() { # a.json b.json label
    python3 - "$@" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
for k in ("lines", "bytes", "records", "parse_errors", "arrivals", "outbound", "identities", "trips"):
    assert a[k] == b[k], "%s replay differs from plain in %s" % (sys.argv[3], k)
print("%s replay: identical report" % sys.argv[3])
PY
}

# check truth.json out.json label enforce: with enforce 0 the findings are printed, not fatal
check() {
    python3 - "$@" <<'PY'
import json, sys
from datetime import datetime, timedelta
truth, out = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
label, enforce = sys.argv[3], sys.argv[4] == "1"
bad, soft = [], []
if out["parse_errors"]:
    bad.append("%d parse errors" % out["parse_errors"])
when = lambda s: datetime.fromisoformat(s)
expected, allowed = [], set()
for o in truth["outbreaks"]:
    if "rules" in truth:
        key, rule = (o["scope"], o["id"]), o["rule"]
        allowed.update(tuple(x) for x in o["may_trip"])
        due = when(o["crosses_at"]) if o["crosses_at"] else None
    else:  # an external generator's truth: bursts only, judged from their start
        key = ("script", "%s:%s" % (o["account"], o["cwd"])) if o["kind"] == "script" else \
            ("mailbox", o["mailbox"].lower())
        rule = "script-burst" if o["kind"] == "script" else "mailbox-burst"
        allowed.add(key)
        due = when(o["start"]) + timedelta(seconds=60) if o["messages"] > 45 else None
    if due is None:
        continue  # the log ended before this offender passed its threshold
    expected.append((key, rule, o, due))
trips = {}
for t in out["trips"]:
    trips.setdefault((t["scope"], t["id"]), []).append(t)
for key, rule, o, due in expected:
    got = [t for t in trips.get(key, []) if t["rule"] == rule]
    if not got:
        bad.append("missed %s offender %s (rule %s)" % (o["kind"], key, rule))
        continue
    at, start = when(got[0]["at"]), when(o["start"])
    late = (at - due).total_seconds()
    if at < start - timedelta(seconds=1) or late > 60:
        bad.append("%s tripped %s at %s: start %s, threshold crossed %s" % (key, rule, at, start, due))
    print("%s: %-10s %-62s %-16s tripped %6.1f s after its start (value %d)" % (
        label, o["kind"], key[1][:62], rule, (at - start).total_seconds(), got[0]["value"]))
for key in trips:
    if key not in allowed:
        bad.append("false positive: %s %s (%s)" % (key[0], key[1], trips[key][0]["rule"]))
never = {tuple(x) for x in truth.get("never_counted", [])}
if never:
    counted = {(i["scope"], i["id"]): i["messages"] for i in out["identities"]}
    vectors = {}
    for h in truth["hostile"]:
        vectors.setdefault(h["vector"], []).append(h)
    leaks = sorted("%s %s (%d messages)" % (k[0], k[1], counted[k]) for k in never if k in counted)
    leaks += sorted("trip on victim %s %s" % k for k in never if k in trips)
    print("%s: %d hostile messages over %d vectors (%s), victims counted: %s" % (
        label, len(truth["hostile"]), len(vectors), ", ".join(sorted(vectors)),
        "; ".join(leaks) if leaks else "none"))
    bad.extend("victim counted: " + x for x in leaks)
print("%s: %d lines, %d outbound, %d identities, %d trips" % (
    label, out["lines"], out["outbound"], len(out["identities"]), len(out["trips"])))
if not enforce:
    soft, bad = bad, []
for x in soft:
    print("%s: not enforced (FG_DETECTION_HOSTILE=1 does): %s" % (label, x))
if bad:
    print("\n".join("%s: %s" % (label, x) for x in bad))
    sys.exit(1)
PY
}

# The generator itself: the same seed makes the same bytes.
python3 "$gen" --lines 20000 --seed 5 --hostile 3 --out "$tmp/a" --truth "$tmp/a.json"
python3 "$gen" --lines 20000 --seed 5 --hostile 3 --out "$tmp/b" --truth "$tmp/b.json"
cmp "$tmp/a" "$tmp/b"
python3 -c 'import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:])
a["files"] = b["files"] = None
assert a == b, "the truth differs between two runs of one seed"' "$tmp/a.json" "$tmp/b.json"
echo "generator: deterministic by seed"

common=(--hours 1.5 --rate 8 --outbreaks 5 --outbreak-minutes 10 --campaign 18 --traps 4 --backlog 2)
for run in "11 --id-format mixed --pid --millisec" "23 --id-format old" \
    "37 --id-format new --pid --tz +0100"; do
    read -r seed opts <<<"$run"
    # shellcheck disable=SC2086
    python3 "$gen" "${common[@]}" --seed "$seed" $opts --out "$tmp/log" --truth "$tmp/truth.json"
    setup "$tmp/truth.json"
    replay "$tmp/out.json" "$tmp/log"
    if [ "$seed" = 11 ]; then
        # the same log compressed, from standard input, and rotated must give the same report
        gzip -c "$tmp/log" >"$tmp/log.gz"
        replay "$tmp/gz.json" "$tmp/log.gz"
        replay "$tmp/stdin.json" - <"$tmp/log.gz"
        mkdir "$tmp/rot"
        # shellcheck disable=SC2086
        python3 "$gen" "${common[@]}" --seed "$seed" $opts --rotate 30m --rotate-gzip \
            --out "$tmp/rot/exim_mainlog" --truth "$tmp/rot.json"
        mapfile -t files < <(python3 -c 'import json, sys; print("\n".join(json.load(open(sys.argv[1]))["files"]))' "$tmp/rot.json")
        [ "${#files[@]}" -ge 4 ] || { echo "rotation: only ${#files[@]} files"; exit 1; }
        replay "$tmp/rot-out.json" "${files[@]}"
        zcat -f "${files[@]}" | cmp - "$tmp/log"
        for alt in gz stdin; do same_report "$tmp/out.json" "$tmp/$alt.json" "$alt"; done
        same_report "$tmp/out.json" "$tmp/rot-out.json" "rotated (${#files[@]} files)"
    fi
    check "$tmp/truth.json" "$tmp/out.json" "seed $seed" 1
done

# Normal traffic only: every rule, new signals included, stays silent.
for seed in 61 62; do
    python3 "$gen" --hours 2.5 --rate 8 --outbreaks 0 --seed "$seed" --id-format mixed --pid \
        --out "$tmp/log" --truth "$tmp/truth.json"
    setup "$tmp/truth.json"
    replay "$tmp/out.json" "$tmp/log"
    check "$tmp/truth.json" "$tmp/out.json" "normal seed $seed" 1
done

# Real logs: no trip at all, the campaign rule learning nothing first.
corpus="${FG_SHARED_DIR:-}/corpus"
if [ -n "${FG_SHARED_DIR:-}" ] && [ -d "$corpus" ]; then
    sed -i 's/key: subject, /key: subject, learn: 0s, /; s/key: domains, /key: domains, learn: 0s, /' \
        "$tmp/floodgate.yml"
    grep -q 'learn: 0s' "$tmp/floodgate.yml"
    n=0
    for f in "$corpus"/*.log; do
        [ -f "$f" ] || continue
        replay "$tmp/out.json" "$f"
        python3 - "$tmp/out.json" "$f" <<'PY'
import json, sys
o = json.load(open(sys.argv[1]))
assert not o["trips"], "corpus %s: false trips %s" % (sys.argv[2], [(t["rule"], t["id"]) for t in o["trips"]])
PY
        n=$((n + 1))
    done
    echo "corpus: $n real logs, no trips"
fi

# Hostile senders: printed always, enforced on request.
python3 "$gen" "${common[@]}" --seed 53 --id-format mixed --pid --millisec --hostile 12 \
    --out "$tmp/log" --truth "$tmp/truth.json"
setup "$tmp/truth.json"
replay "$tmp/out.json" "$tmp/log"
check "$tmp/truth.json" "$tmp/out.json" "hostile" "${FG_DETECTION_HOSTILE:-0}"

ext="${FG_SHARED_DIR:-}/bench/gen-exim-mainlog"
if [ -n "${FG_SHARED_DIR:-}" ] && [ -f "$ext" ]; then
    python3 "$ext" --hours 1 --rate 8 --outbreaks 3 --seed 11 --id-format mixed --pid --millisec \
        --out "$tmp/log" --truth "$tmp/truth.json"
    setup "$tmp/truth.json"
    replay "$tmp/out.json" "$tmp/log"
    check "$tmp/truth.json" "$tmp/out.json" "external" 1
fi
echo "detection: all offenders caught, no false positives${FG_DETECTION_HOSTILE:+, hostile senders included}"
