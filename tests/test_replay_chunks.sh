#!/usr/bin/env bash
# Replay must not depend on where lines fall in its read buffer: a log with an over-long
# arrival line (cut at 16 KiB, never lost) placed across, just before and far from the
# 1 MiB read boundary gives the same report from the plain file, from .gz and from stdin.
set -euo pipefail
bin="${FG_BUILD_DIR:?}/floodgated"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf 'mode: monitor\nuserdomains_file: %s/none\nlocaldomains_file: %s/none\nrules:\n  - {name: r, scope: mailbox, metric: messages, window: 1m, above: 1000000, actions: [alert]}\n' \
    "$tmp" "$tmp" >"$tmp/fg.yml"
python3 - "$bin" "$tmp" <<'PY'
import gzip, json, subprocess, sys
binary, tmp = sys.argv[1:3]
line = ("2026-03-02 00:00:%02d 1vwqhc-00AB%02d-xm <= a%d@example.com H=(pc) [192.0.2.1]:1 "
        "P=esmtpsa A=dovecot_login:a%d@example.com S=100 for x@gmail.com\n")
normal = [line % (i % 60, i % 100, i, i) for i in range(12000)]
long = ("2026-03-02 00:00:10 1vwqhc-00LONG-xm <= a@example.com H=(x) [192.0.2.1]:1 P=esmtpsa "
        "A=dovecot_login:a@example.com S=1 for " + " ".join("r%d@gmail.com" % i for i in range(1500)) + "\n")
reports = set()
for pos in (1048576 - 17000, 1048576 - 100, 5000):
    out, size, done = [], 0, False
    for l in normal:
        if not done and size + len(l) > pos:
            out.append(long); size += len(long); done = True
        out.append(l); size += len(l)
    text = "".join(out)
    open(tmp + "/log", "w").write(text)
    with gzip.open(tmp + "/log.gz", "wt") as f:
        f.write(text)
    for args, stdin in ((["log"], None), (["log.gz"], None), (["-"], tmp + "/log")):
        src = open(stdin, "rb") if stdin else None
        o = subprocess.run([binary, "--config", tmp + "/fg.yml", "--replay", "--json"] +
                           [a if a == "-" else tmp + "/" + a for a in args],
                           stdin=src, capture_output=True, text=True, check=True).stdout
        j = json.loads(o)
        reports.add((j["lines"], j["records"], j["arrivals"], j["parse_errors"]))
        print("long line at %7d, %-6s: lines %d records %d arrivals %d parse errors %d" % (
            pos, args[0], j["lines"], j["records"], j["arrivals"], j["parse_errors"]))
assert len(reports) == 1, "replay depends on the read boundary: %s" % sorted(reports)
lines, records, arrivals, errors = reports.pop()
assert lines == 12001 and arrivals == 12001, "the long line or another was lost"
PY
echo "replay: same report wherever the long line falls"
