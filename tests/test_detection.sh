#!/usr/bin/env bash
# Detection against ground truth: logs from the shared generator (several seeds, mixed id
# formats, +pid, +millisec), replayed with rules above the generator's normal cap and below
# the outbreak rate. Every outbreak must trip on its true identity within 60 s of log time
# of its start, and nothing else may trip. Skips (77) without the shared generator.
set -euo pipefail
gen="${FG_SHARED_DIR:-}/bench/gen-exim-mainlog"
bin="${FG_BUILD_DIR:?}/floodgated"
if [ ! -f "$gen" ]; then
    echo "skip: $gen not found"
    exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

for seed in 11 23 37; do
    python3 "$gen" --hours 3 --rate 8 --outbreaks 3 --seed "$seed" --id-format mixed --pid \
        --millisec --out "$tmp/log" --truth "$tmp/truth.json"
    python3 - "$tmp/truth.json" "$tmp/userdomains" <<'PY'
import json, sys
truth = json.load(open(sys.argv[1]))
with open(sys.argv[2], "w") as f:
    for a in truth["accounts"]:
        for d in a["domains"]:
            f.write("%s: %s\n" % (d, a["user"]))
    f.write("*: nobody\n")
PY
    cat >"$tmp/floodgate.yml" <<YML
mode: monitor
userdomains_file: $tmp/userdomains
localdomains_file: $tmp/localdomains
rules:
  - name: mailbox-burst
    scope: mailbox
    metric: messages
    window: 10m
    above: 45
    actions: [alert]
  - name: script-burst
    scope: script
    metric: messages
    window: 10m
    above: 45
    actions: [alert]
YML
    : >"$tmp/localdomains"
    "$bin" --config "$tmp/floodgate.yml" --replay --json "$tmp/log" >"$tmp/out.json"
    if [ "$seed" = 11 ]; then
        # the same log compressed, and from standard input, must give the same report
        gzip -c "$tmp/log" >"$tmp/log.gz"
        "$bin" --config "$tmp/floodgate.yml" --replay --json "$tmp/log.gz" >"$tmp/gz.json"
        "$bin" --config "$tmp/floodgate.yml" --replay --json - <"$tmp/log.gz" >"$tmp/stdin.json"
        for alt in gz stdin; do
            python3 - "$tmp/out.json" "$tmp/$alt.json" "$alt" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
for k in ("lines", "bytes", "records", "parse_errors", "arrivals", "outbound", "identities", "trips"):
    assert a[k] == b[k], "%s replay differs from plain in %s" % (sys.argv[3], k)
print("%s replay: identical report" % sys.argv[3])
PY
        done
    fi
    python3 - "$tmp/truth.json" "$tmp/out.json" "$seed" <<'PY'
import json, sys
from datetime import datetime
truth = json.load(open(sys.argv[1]))
out = json.load(open(sys.argv[2]))
seed = sys.argv[3]
assert out["parse_errors"] == 0, "seed %s: %d parse errors" % (seed, out["parse_errors"])
expected = {}
for o in truth["outbreaks"]:
    if o["kind"] == "script":
        key = ("script", "%s:%s" % (o["account"], o["cwd"]))
    else:
        key = ("mailbox", o["mailbox"].lower())
    expected[key] = o
trips = {}
for t in out["trips"]:
    trips.setdefault((t["scope"], t["id"]), []).append(t)
bad = []
for key, o in expected.items():
    if o["messages"] <= 45:
        continue  # the log ended before this outbreak could pass the threshold
    got = trips.get(key)
    if not got:
        bad.append("missed %s outbreak %s" % (o["kind"], key))
        continue
    start = datetime.fromisoformat(o["start"])
    at = datetime.fromisoformat(got[0]["at"])
    delay = (at - start).total_seconds()
    if delay > 60 or delay < -1:
        bad.append("%s tripped %.1f s after the outbreak started" % (key, delay))
    print("seed %s: %-7s %-60s tripped after %5.1f s (rule %s, value %d)" % (
        seed, o["kind"], key[1], delay, got[0]["rule"], got[0]["value"]))
for key in trips:
    if key not in expected:
        bad.append("false positive: %s %s" % key)
print("seed %s: %d lines, %d outbound, %d identities, %d trips" % (
    seed, out["lines"], out["outbound"], len(out["identities"]), len(out["trips"])))
if bad:
    print("\n".join(bad))
    sys.exit(1)
PY
done
echo "detection: all outbreaks caught, no false positives"
