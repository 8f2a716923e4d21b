#!/usr/bin/env bash
# Replay must not depend on where lines fall in its read buffer: a log with an over-long
# arrival line (cut at 16 KiB, never lost) placed across, just before and far from the
# 1 MiB read boundary gives the same report from the plain file, from .gz and from stdin.
# Then the report of hostile identities (ESC[2J, BEL, CR, U+202E, a byte that is not UTF-8
# in a mailbox and a cwd= directory): visible escapes for people, valid JSON with \u
# escapes (and U+FFFD for the bad byte) with --json, "é" kept as UTF-8 in both.
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
python3 - "$bin" "$tmp" <<'PY'
import json, subprocess, sys
binary, tmp = sys.argv[1:3]
open(tmp + "/ud", "w").write("example.com: acct1\n")
open(tmp + "/hostile.yml", "w").write(
    "mode: monitor\nuserdomains_file: %s/ud\nlocaldomains_file: %s/none\nrules:\n"
    "  - {name: r, scope: mailbox, metric: messages, window: 1m, above: 1, actions: [alert]}\n"
    "  - {name: s, scope: script, metric: messages, window: 1m, above: 1, actions: [alert]}\n"
    % (tmp, tmp))
box = b"x\x1b[2J\x07\r\xe2\x80\xaeb\xffz@example.com"
cafe = "caf\u00e9@example.com".encode()
d = b"/home/acct1/public_html/\x1b]0;owned\x07\xe2\x80\xae\xfe"
lines = []
for i in range(3):
    for n, who in ((0, box), (1, cafe)):
        lines.append(b"2026-03-02 00:00:%02d 1vwqhc-00A%d%02d-xm <= %s H=(pc) [192.0.2.1]:1 "
                     b"P=esmtpsa A=dovecot_login:%s S=100 for x@gmail.com\n" % (i, n, i, who, who))
    lines.append(b"2026-03-02 00:00:%02d cwd=%s 3 args: /usr/sbin/sendmail -t -i\n" % (i, d))
    lines.append(b"2026-03-02 00:00:%02d 1vwqhc-00AD%02d-xm <= acct1@h.example.com U=acct1 "
                 b"P=local S=100 for x@gmail.com\n" % (i, i))
open(tmp + "/hostile", "wb").write(b"".join(lines))
run = lambda *a: subprocess.run([binary, "--config", tmp + "/hostile.yml", "--replay"] +
                                list(a) + [tmp + "/hostile"], capture_output=True,
                                check=True).stdout
text = run()
for raw in (b"\x1b", b"\x07", b"\r", b"\xe2\x80\xae", b"\xff", b"\xfe"):
    assert raw not in text, "replay text holds %r raw:\n%r" % (raw, text)
for esc in (b"x\\x1b[2j\\x07\\x0d\\u202eb\\xffz@example.com",
            b"acct1:/home/acct1/public_html/\\x1b]0;owned\\x07\\u202e\\xfe", cafe):
    assert text.count(esc) == 2, "replay text: %r not in the senders and the trips:\n%r" % (
        esc, text)
jraw = run("--json")
assert all(c >= 0x20 for c in jraw[:-1]) and b"\xe2\x80\xae" not in jraw, jraw
j = json.loads(jraw)
ids = {t["id"] for t in j["trips"]}
want = {"x\x1b[2j\x07\r\u202eb\ufffdz@example.com", "caf\u00e9@example.com",
        "acct1:/home/acct1/public_html/\x1b]0;owned\x07\u202e\ufffd"}
assert ids == want, "replay --json trips: %r" % ids
assert b'"caf\xc3\xa9@example.com"' in jraw, "é not kept as UTF-8 in --json: %r" % jraw
PY
python3 - "$bin" "$tmp" <<'PY'
# The report for people: header rows, windows as 1m, singular and plural, the account of a
# mailbox, every recurrence of a trip; warnings for files out of time order and for a
# reject log given as a main log; a progress line per file only when stderr is a terminal.
import json, os, pty, subprocess, sys
binary, tmp = sys.argv[1:3]
open(tmp + "/ud", "w").write("example.com: acct1\n")
open(tmp + "/rec.yml", "w").write(
    "mode: monitor\nuserdomains_file: %s/ud\nlocaldomains_file: %s/none\nrules:\n"
    "  - {name: burst, scope: mailbox, metric: messages, window: 1m, above: 2, actions: [alert]}\n"
    % (tmp, tmp))
def arrivals(minute, n, first):
    return "".join("2026-03-02 10:%02d:%02d 1vwqhc-00R%03d-xm <= r@example.com H=(pc) "
                   "[192.0.2.1]:1 P=esmtpsa A=dovecot_login:r@example.com S=100 "
                   "for x@gmail.com\n" % (minute, i, first + i) for i in range(n))
open(tmp + "/old", "w").write(arrivals(0, 3, 0))            # a burst: trips
open(tmp + "/new", "w").write(arrivals(30, 1, 10) + arrivals(31, 3, 20))  # quiet, then again
open(tmp + "/one", "w").write(arrivals(40, 1, 30))
def replay(*files, json_out=False, stderr=subprocess.PIPE):
    p = subprocess.run([binary, "--config", tmp + "/rec.yml", "--replay"] +
                       (["--json"] if json_out else []) + [tmp + "/" + f for f in files],
                       stdout=subprocess.PIPE, stderr=stderr, check=True, text=True)
    return p.stdout, p.stderr
text, err = replay("old", "new")
assert "out of time order" not in (err or "") and "[1/" not in (err or ""), err
assert "2 trips (1 a recurrence: the value fell to the limit, then passed it again):" in text, text
assert "LOG TIME" in text and "VALUE > LIMIT IN WINDOW" in text and "MESSAGES" in text, text
rows = [l for l in text.splitlines() if " burst " in l]
assert len(rows) == 2 and all(" acct1 " in r and r.rstrip().endswith(("in 1m", "in 1m (again)"))
                              for r in rows) and rows[1].endswith("3 > 2 in 1m (again)"), rows
assert "in 60s" not in text, text
j = json.loads(replay("old", "new", json_out=True)[0])
assert [(t["at"], t["value"], t["limit"], t["again"]) for t in j["trips"]] == [
    ("2026-03-02 10:00:02", 3, 2, False), ("2026-03-02 10:31:02", 3, 2, True)], j["trips"]
text, _ = replay("one")
assert text.startswith("1 line, ") and "\n0 trips\n" in text, text
# newest first, as a shell glob sorts mainlog.1 mainlog.2.gz: warned, naming both files
_, err = replay("new", "old")
assert "files out of time order: %s/old starts at 2026-03-02 10:00:00, before %s/new ended" % (
    tmp, tmp) in err, err
# a reject log given as the main log
open(tmp + "/rejectlog", "w").write(
    "2026-03-02 10:00:00 H=(x) [192.0.2.9] F=<a@b.example> rejected RCPT <c@d.example>: no\n"
    "Envelope-from: <a@b.example>\nEnvelope-to: <c@d.example>\nP Received: from x\n")
open(tmp + "/mainlog.0", "w").write(open(tmp + "/rejectlog").read())
for f in ("rejectlog", "mainlog.0"):
    _, err = replay(f)
    assert "looks like Exim's reject log" in err, (f, err)
assert "reject log" not in replay("old")[1]
# after a main log, whose last records are still being fed while it is read: its own
# arrivals decide, not those of the main log's tail
_, err = replay("old", "rejectlog")
assert "/rejectlog looks like Exim's reject log" in err and "/old looks" not in err, err
# a progress line per file on a terminal only
m, sl = pty.openpty()
p = subprocess.run([binary, "--config", tmp + "/rec.yml", "--replay", tmp + "/old", tmp + "/new"],
                   stdout=subprocess.PIPE, stderr=sl, check=True)
os.close(sl)
got = b""
while True:
    try:
        chunk = os.read(m, 4096)
    except OSError:
        break
    if not chunk:
        break
    got += chunk
os.close(m)
assert b"[1/2] " + (tmp + "/old").encode() + b": 3 lines, " in got and b"[2/2] " in got, got
print("replay report: headers, 1m, plurals, accounts, recurrences, order and reject-log "
      "warnings, progress on a terminal")
PY
echo "replay: same report wherever the long line falls; hostile text escaped"
