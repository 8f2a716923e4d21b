#!/usr/bin/env bash
# floodgatectl against the real floodgated: every command, in text and --json (parsed and
# checked against the lines fed), with a temporary log, state directory and config.
#
#  1. status, top (all windows, one scope and window, -n), show: the counts of the lines
#     fed, the trip, the queued message ids.
#  2. hold --reason -> held -> show -> release: the operator's command backend is run,
#     the reason is listed and audited; a second hold is refused; release of a stranger
#     fails with one line on stderr. Options are taken before and after the identity,
#     with POSIXLY_CORRECT set too; "--" ends them.
#  2b. a holding rule over lines the spool does not confirm: nothing runs, held and show
#     list the trip as unconfirmed, it is audited; a manual hold acts. With the ledger
#     unwritable, hold and release exit 1 saying so, and run nothing.
#  2c. max_per_hour reached: a hold is refused (circuit breaker open), nothing runs, and
#     floodgate_circuit_breaker_refusals_total counts it.
#  3. reload: a broken config is refused with file:line (exit 1) and the daemon keeps
#     running; a good one is applied (its new window appears in top).
#  4. test-alert and alert-enable without destinations: exit 1 and a clear message.
#  5. another uid (setpriv, as nobody): refused without control_group (the socket is
#     0600); with control_group set to a group nobody is in (nogroup or nobody), the
#     socket is 0660 and that group's, and read-only commands are served, changes refused.
#  6. garbage and oversized requests on the raw socket: one error line each, daemon fine.
#  7. usage errors exit 2, --help lists every command, --version prints the version.
#  8. hostile log text (ESC[2J, BEL, CR, U+202E, bytes that are not UTF-8) in identities
#     is printed as visible escapes, --json is valid JSON with \u escapes, and "é" and a
#     bad byte (U+FFFD) are spelled the same in the audit log, --json and stderr.
#  9. floodgated as a non-root uid (nobody): a loud warning at start and in status.
# Every wait is bounded; nothing sleeps longer than a poll.
set -euo pipefail
if ! command -v python3 >/dev/null; then
    echo "skip: python3 not found"
    exit 77
fi
for b in floodgated floodgatectl; do
    [ -x "${FG_BUILD_DIR:?}/$b" ] || { echo "missing $FG_BUILD_DIR/$b"; exit 1; }
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

python3 - "$FG_BUILD_DIR" "$tmp" <<'PY'
import grp, json, os, re, shutil, signal, socket, stat, subprocess, sys, time

BUILD, TMP = sys.argv[1], sys.argv[2]
DAEMON = os.path.join(BUILD, "floodgated")
os.chmod(TMP, 0o755)  # nobody must reach the socket and the client below
CTLBIN = os.path.join(TMP, "floodgatectl")
shutil.copy(os.path.join(BUILD, "floodgatectl"), CTLBIN)
os.chmod(CTLBIN, 0o755)
DEADLINE = time.monotonic() + 240
LOG = os.path.join(TMP, "exim_mainlog")
STATE = os.path.join(TMP, "state")
AUDIT = os.path.join(TMP, "log", "audit.jsonl")
CTL = os.path.join(TMP, "run", "ctl.sock")
CFG = os.path.join(TMP, "floodgate.yml")
CMDLOG = os.path.join(TMP, "command.log")
SPOOL = os.path.join(TMP, "spool")

def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    raise SystemExit(1)

def check(cond, msg):
    if not cond:
        fail(msg)

def wait_for(pred, what, timeout=20):
    end = min(time.monotonic() + timeout, DEADLINE)
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    fail("timed out waiting for " + what)

# --- fixtures ------------------------------------------------------------------------
os.makedirs(os.path.join(SPOOL, "input"))
with open(os.path.join(TMP, "userdomains"), "w") as f:
    f.write("example.com: acct1\n")
open(os.path.join(TMP, "localdomains"), "w").close()
open(LOG, "w").close()
with open(os.path.join(TMP, "command.sh"), "w") as f:
    f.write("#!/bin/sh\necho \"$@\" >> %s\nexit 0\n" % CMDLOG)
with open(os.path.join(TMP, "exim.sh"), "w") as f:
    f.write("#!/bin/sh\nexit 0\n")
for s in ("command.sh", "exim.sh"):
    os.chmod(os.path.join(TMP, s), 0o755)

s = socket.socket()
s.bind(("127.0.0.1", 0))
METRICS_PORT = s.getsockname()[1]
s.close()

def metrics():
    """GET /metrics from the daemon's loopback endpoint: the body."""
    c = socket.create_connection(("127.0.0.1", METRICS_PORT), timeout=10)
    c.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    data = b""
    while True:
        chunk = c.recv(65536)
        if not chunk:
            break
        data += chunk
    c.close()
    return data.decode().split("\r\n\r\n", 1)[1]

def config(extra_rules="", group=None, broken=False, mode="enforce", blocklist=None,
           max_per_hour=100):
    body = ("mode: %s\nmetrics_listen: 127.0.0.1:%d\n" % (mode, METRICS_PORT) +
            "log_file: %s\nstate_dir: %s\naudit_log: %s\ncontrol_socket: %s\n"
            "userdomains_file: %s\nlocaldomains_file: %s\n"
            % (LOG, STATE, AUDIT, CTL, os.path.join(TMP, "userdomains"),
               os.path.join(TMP, "localdomains")))
    if group:
        body += "control_group: %s\n" % group
    if blocklist:  # the exim backend, its blocklist where the test says
        body += ("actions:\n  backend: exim\n  blocklist_file: %s\n  exim_path: %s\n"
                 "  spool_dir: %s\n  max_per_hour: %d\n"
                 % (blocklist, os.path.join(TMP, "exim.sh"), SPOOL, max_per_hour))
    else:
        body += ("actions:\n  backend: command\n  command: %s\n  exim_path: %s\n"
                 "  spool_dir: %s\n  max_per_hour: %d\n"
                 % (os.path.join(TMP, "command.sh"), os.path.join(TMP, "exim.sh"), SPOOL,
                    max_per_hour))
    body += ("rules:\n"
             "  - name: burst\n    scope: mailbox\n    metric: messages\n"
             "    window: 10m\n    above: 3\n    actions: [alert]\n"
             "  - name: acct-rcpts\n    scope: account\n    metric: recipients\n"
             "    window: 1h\n    above: 1000\n    actions: [alert]\n")
    body += extra_rules
    if broken:
        body += "  - name: broken\n    scope: mailbox\n    metric: messages\n" \
                "    window: 10m\n    above: lots\n    actions: [alert]\n"
    with open(CFG + ".tmp", "w") as f:
        f.write(body)
    os.rename(CFG + ".tmp", CFG)
    return body

def metric(name):
    """One unlabelled sample of GET /metrics, or None."""
    m = re.search(r"^%s (\S+)$" % re.escape(name), metrics(), re.M)
    return float(m.group(1)) if m else None

seq = [0]
def msgid():
    seq[0] += 1
    B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    n, s = seq[0], ""
    for _ in range(6):
        s = B62[n % 62] + s
        n //= 62
    return "1xVYNi-%s-0%d" % (s, seq[0] % 10)

def message(box, completed):
    """One outbound message by an authenticated mailbox; without completion it stays queued."""
    mid, ts, n = msgid(), time.strftime("%Y-%m-%d %H:%M:%S"), seq[0]
    lines = ["%s %s <= %s H=(pc) [192.0.2.%d]:4%04d P=esmtpsa A=dovecot_login:%s S=%d "
             "id=m%d@example.com for r%d@remote.example" % (ts, mid, box, n % 250 + 1, n,
                                                           box, 1000 + n, n, n)]
    if completed:
        lines.append("%s %s => r%d@remote.example R=dkim_lookuphost T=dkim_remote_smtp "
                     "H=mx.remote.example [198.51.100.7] C=\"250 OK\"" % (ts, mid, n))
        lines.append("%s %s Completed" % (ts, mid))
    return mid, lines

# --- the client ----------------------------------------------------------------------
def ctl(*args, user=None, env=None, supp=None):
    cmd = [CTLBIN, "--socket", CTL] + list(args)
    if supp is not None:  # uid nobody, another primary gid, the group a supplementary one
        other = 1 if supp != 1 else 2
        cmd = ["setpriv", "--reuid=65534", "--regid=%d" % other, "--groups=%d" % supp] + cmd
    elif user:
        cmd = ["setpriv", "--reuid=65534", "--regid=%d" % user, "--clear-groups"] + cmd
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=90,
                       env=dict(os.environ, **env) if env else None)
    return p.returncode, p.stdout, p.stderr

def ctl_ok(*args, env=None):
    rc, out, err = ctl(*args, env=env)
    check(rc == 0, "floodgatectl %s: exit %d, stderr %r" % (" ".join(args), rc, err))
    check(err == "", "floodgatectl %s: stderr %r" % (" ".join(args), err))
    return out

def ctl_json(*args):
    out = ctl_ok("--json", *args)
    check(out.endswith("\n") and out.count("\n") == 1, "--json %s: not one line: %r" % (args, out))
    return json.loads(out)

def ctl_fails(code, args, pattern, user=None, supp=None):
    rc, out, err = ctl(*args, user=user, supp=supp)
    check(rc == code, "floodgatectl %s: exit %d (want %d), stderr %r" % (args, rc, code, err))
    check(err.count("\n") == 1 and err.startswith("floodgatectl: "),
          "floodgatectl %s: stderr not one line: %r" % (args, err))
    check(re.search(pattern, err), "floodgatectl %s: stderr %r lacks %r" % (args, err, pattern))
    return err

def kv(text):
    d = {}
    for line in text.splitlines():
        k, _, v = line.partition(": ")
        d[k] = v
    return d

# --- start -----------------------------------------------------------------------------
config()
errf = open(os.path.join(TMP, "daemon.stderr"), "w")
denv = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"}
for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"):  # a sanitizer build's settings
    if k in os.environ:
        denv[k] = os.environ[k]
daemon = subprocess.Popen([DAEMON, "--config", CFG], stdin=subprocess.DEVNULL, stdout=errf,
                          stderr=errf, env=denv)
def alive():
    return daemon.poll() is None
try:
    if not wait_for(lambda: os.path.exists(CTL) or not alive(), "the control socket") or \
            not alive():
        fail("floodgated exited at start: %s" %
             open(os.path.join(TMP, "daemon.stderr"), errors="replace").read()[-2000:])
    wait_for(lambda: ctl("--json", "status")[0] == 0 and
             json.loads(ctl("--json", "status")[1])["ready"], "ready")

    # 1. feed: box1 5 queued messages (trips burst), box2 2 and box3 1 delivered
    lines, queued = [], []
    for _ in range(5):
        mid, l = message("box1@example.com", False)
        queued.append(mid)
        lines += l
    for box, n in (("box2@example.com", 2), ("box3@example.com", 1)):
        for _ in range(n):
            lines += message(box, True)[1]
    # two of box1's messages are in the spool: the first frozen, the fourth (the one that
    # trips) queued; their -H files give show its sender and subject, and the trip its own
    def spool_h(mid, subject, frozen):
        hdr = "%s\n" % ("Subject: " + subject)
        with open(os.path.join(SPOOL, "input", mid + "-H"), "w") as f:
            f.write("%s-H\nDebian-exim 102 105\n<box1@example.com>\n1795457018 0\n"
                    "-auth_id box1@example.com\n-host_address 192.0.2.1.4321\n%s"
                    "XX\n1\nr@remote.example\n\n%03d  %s"
                    % (mid, "-frozen 1795457019\n" if frozen else "", len(hdr), hdr))
    spool_h(queued[0], "hello \x1b[2J there", True)
    spool_h(queued[3], "Win a prize", False)
    with open(LOG, "a") as f:
        f.write("\n".join(lines) + "\n")
    size = os.path.getsize(LOG)
    st = wait_for(lambda: (lambda j: j if j["records"] == len(lines) and j["offset"] == size
                           else None)(ctl_json("status")), "the lines to be read")
    check(st["mode"] == "enforce" and st["trips"] == 1, "status: %r" % st)
    check(st["lag_bytes"] == 0 and st["lag_s"] == 0, "status lag: %r" % st)
    check(st["outbound"] == 8 and st["held"] == 0 and st["outbox"] == 0, "status: %r" % st)
    check(st["identities"] >= 4, "identities: %r" % st)  # 3 mailboxes and their account
    check(st["log_file"] == LOG and st["uptime_s"] >= 0 and st["version"], "status: %r" % st)
    check(st["last_record_s"] >= 0 and isinstance(st["lines_per_s"], (int, float)), repr(st))
    text = ctl_ok("status")
    human = kv(text)
    # in human units and sections: "up 4m17s", "last record: 2s ago", bytes, no raw keys
    check(re.match(r"^floodgated %s, up (\d+s|\d+m\d\ds), enforce mode, ready$"
                   % re.escape(ctl_ok("--version").split()[-1]), text.splitlines()[0]),
          "status head: %r" % text)
    check(human["  trips"] == "1" and human["  records"] == str(len(lines)) and
          human["  outbound messages"] == "8" and human["  behind"] == "nothing" and
          re.match(r"^\d+s ago \(log time \S+ \S+\)$", human["  last record"]) and
          re.match(r"^\d+(\.\d KiB| bytes)$", human["  read up to"]) and
          re.search(r"^log:$", text, re.M) and re.search(r"^since start:$", text, re.M) and
          "uptime_s" not in text and "last_record_s" not in text, "status text: %r" % text)
    check(st["warnings"] == [] and human["warnings"] == "none", "warnings as root: %r" % st)
    check(ctl_ok("-V") == ctl_ok("--version") and "tripped" in ctl_ok("-h") and
          ctl_ok("-h") == ctl_ok("--help"), "-V and -h")

    top = ctl_json("top")
    tables = {(t["scope"], t["metric"], t["window_ms"]): t["rows"] for t in top["tables"]}
    check(set(tables) == {("mailbox", "messages", 600000), ("account", "recipients", 3600000)},
          "top tables: %r" % list(tables))
    rows = [(r["id"], r["value"]) for r in tables[("mailbox", "messages", 600000)]]
    check(rows == [("box1@example.com", 5), ("box2@example.com", 2), ("box3@example.com", 1)],
          "top rows: %r" % rows)
    check([(r["id"], r["value"]) for r in tables[("account", "recipients", 3600000)]]
          == [("acct1", 8)], "top account: %r" % tables)
    one = ctl_json("top", "--scope", "mailbox", "--window", "10m", "-n", "2")
    check(len(one["tables"]) == 1 and [r["id"] for r in one["tables"][0]["rows"]]
          == ["box1@example.com", "box2@example.com"], "top -n 2: %r" % one)
    text = ctl_ok("top", "--scope", "mailbox")
    # each table's limit, each value as % of it, tripped identities marked
    check(re.search(r"^mailbox messages per 10m, limit 3$", text, re.M) and
          re.search(r"^\s+1\s+5\s+166%\s+box1@example\.com  TRIPPED$", text, re.M) and
          re.search(r"^\s+3\s+1\s+33%\s+box3@example\.com$", text, re.M), "top text: %r" % text)
    check(one["tables"][0]["limit"] == 3 and one["tables"][0]["rows"][0]["tripped"] and
          not one["tables"][0]["rows"][1]["tripped"], "top json limit/tripped: %r" % one)
    ctl_fails(1, ["top", "--window", "5m"], r"no rule .* window; windows in use: 10m, 1h$")
    ctl_fails(1, ["top", "--scope", "mailbox", "--window", "1h"], r"windows in use: 10m$")
    ctl_fails(2, ["top", "-n", "0"], r"-n")
    ctl_fails(2, ["top", "-n", "101"], r"-n")
    ctl_fails(2, ["top", "--window", "soon"], r"--window")

    sh = ctl_json("show", "Box1@Example.com")
    check(sh["scope"] == "mailbox" and sh["id"] == "box1@example.com" and
          sh["account"] == "acct1", "show: %r" % sh)
    series = {(s["metric"], s["window_ms"]): s["value"] for s in sh["series"]}
    check(series == {("messages", 600000): 5}, "show series: %r" % series)
    check(sh["totals"]["messages"] == 5 and sh["tripped"] == ["burst"], "show: %r" % sh)
    check(sh["queued_count"] == 5 and sh["queued"] == queued, "show queued: %r" % sh)
    check(sh["action"]["rule"] == "burst" and sh["action"]["state"] == "acted" and
          [h["event"] for h in sh["history"]] == ["acted"], "show action: %r" % sh)
    text = ctl_ok("show", "mailbox:box1@example.com")
    check("tripped now: burst" in text and "messages in the last 10m: 5 (limit 3: 166%)" in text
          and queued[0] in text, "show text: %r" % text)
    # the trip itself: its time, rule, value against the limit, window, tripping message,
    # and what was done (this rule only alerts); totals are only of summed metrics
    check(len(sh["trips"]) == 1 and sh["trips"][0]["rule"] == "burst" and
          sh["trips"][0]["value"] == 4 and sh["trips"][0]["limit"] == 3 and
          sh["trips"][0]["window_ms"] == 600000 and sh["trips"][0]["msgid"] == queued[3] and
          sh["trips"][0]["result"] == "alerted" and sh["trips"][0]["at"] and
          re.match(r"^fg-[0-9a-f]{8}$", sh["trips"][0]["ref"]), "show trips: %r" % sh["trips"])
    check(set(sh["totals"]) == {"messages", "recipients"}, "show totals: %r" % sh["totals"])
    check(re.search(r"^  \S+ \S+  burst: 4/3 in 10m, alerted  fg-[0-9a-f]{8}$", text, re.M) and
          "tripping message " + queued[3] in text, "show trip text: %r" % text)
    msgs = sh["messages"]
    check([m["id"] for m in msgs] == queued and
          [m["in_spool"] for m in msgs] == [True, False, False, True, False] and
          msgs[0]["frozen"] and not msgs[3]["frozen"] and
          msgs[0]["sender"] == "box1@example.com" and msgs[0]["subject"] == "hello \x1b[2J there" and
          msgs[3]["subject"] == "Win a prize", "show messages: %r" % msgs)
    check(sh["trips"][0]["subject"] == "Win a prize", "the trip's sample subject")
    check(re.search(r"^  %s  frozen   from <box1@example\.com>  \"hello \\x1b\[2J there\"$"
                    % queued[0], text, re.M) and
          re.search(r"^  %s  queued   from <box1@example\.com>  \"Win a prize\"$" % queued[3],
                    text, re.M) and
          re.search(r"^  %s  \(not in the spool" % queued[1], text, re.M) and
          'tripping message %s "Win a prize"' % queued[3] in text, "show text messages: %r" % text)
    # the reference a refused sender quotes finds the identity
    byref = ctl_json("show", sh["trips"][0]["ref"])
    check(byref["id"] == "box1@example.com" and byref["ref"] == sh["trips"][0]["ref"],
          "show by reference: %r" % byref)
    ctl_fails(1, ["show", "fg-00000000"], r"no recent trip has that reference")
    tr = ctl_json("tripped")
    check(tr["mode"] == "enforce" and tr["total"] == 1 and
          [(t["rule"], t["id"], t["result"]) for t in tr["trips"]] ==
          [("burst", "box1@example.com", "alerted")], "tripped: %r" % tr)
    text = ctl_ok("tripped")
    check(re.search(r"^LOG TIME\s+RULE\s+SCOPE\s+IDENTITY\s+ACCOUNT\s+VALUE/LIMIT\s+WINDOW\s+DONE\s+REF$",
                    text, re.M) and
          re.search(r"^\S+ \S+\s+burst\s+mailbox\s+box1@example\.com\s+acct1\s+4/3\s+10m\s+alerted\s+fg-",
                    text, re.M), "tripped text: %r" % text)
    acct = ctl_json("show", "--scope", "account", "acct1")
    check(acct["series"][0]["value"] == 8 and acct["action"] is None, "show account: %r" % acct)
    ctl_fails(1, ["show", "nobody@example.com"], r"no such identity")

    # 2. hold -> held -> show -> release; options before or after the identity, whatever
    # the environment says about argument order, and "--" ends them
    posix = {"POSIXLY_CORRECT": "1"}
    check("floodgate holds nothing" in ctl_ok("held"), "held before any hold")
    check(ctl_json("held")["held"] == [], "held json before any hold")
    ctl_fails(2, ["hold", "--", "box2@example.com", "--reason", "ticket 42"],
              r"hold needs one IDENTITY")
    out = ctl_ok("hold", "box2@example.com", "--reason", "ticket 42", env=posix)
    # the answer waits for the steps: the command has run when floodgatectl returns
    check(out.startswith("held mailbox box2@example.com: 0 of 0 queued messages frozen, "
                         "outgoing mail held\n") and re.search(r"^reference: fg-", out, re.M),
          "hold text: %r" % out)
    check("hold mailbox box2@example.com manual" in open(CMDLOG).read(), "the hold command")
    def held_one():
        h = ctl_json("held")["held"]
        return h if h and h[0]["applied"] == "hold" else None
    h = wait_for(held_one, "the hold to be applied")
    check(len(h) == 1 and h[0]["id"] == "box2@example.com" and h[0]["manual"] and
          h[0]["reason"] == "ticket 42" and h[0]["rule"] == "manual" and h[0]["since_ms"] > 0,
          "held: %r" % h)
    text = ctl_ok("held")
    check(re.search(r"^SCOPE\s+IDENTITY\s+WHAT\s+SINCE\s+RULE\s+REASON$", text, re.M) and
          re.search(r"^mailbox\s+box2@example\.com\s+hold\+0 frozen\s+\S+ \S+\s+manual\s+ticket 42$",
                    text, re.M), "held text: %r" % text)
    sh = ctl_json("show", "box2@example.com")
    check(sh["action"]["reason"] == "ticket 42" and sh["action"]["applied"] == "hold" and
          sh["history"][0]["event"] == "held", "show held: %r" % sh)
    check(json.loads(ctl_ok("show", "box2@example.com", "--json", "--scope", "mailbox",
                            env=posix)) == sh, "show with options after the identity")
    check(ctl_json("status")["held"] == 1, "status held")
    ctl_fails(1, ["hold", "box2@example.com"], r"already held")
    ctl_fails(2, ["hold", "box3@example.com", "--reason", "bad\x01"], r"--reason")
    audit = open(AUDIT).read()
    check(re.search(r'"event":"ctl_hold","uid":\d+,"scope":"mailbox","id":"box2@example.com",'
                    r'"reason":"ticket 42"', audit), "audit of the hold")
    out = ctl_ok("release", "--", "box2@example.com")
    check("released mailbox box2@example.com" in out, "release text: %r" % out)
    wait_for(lambda: "release mailbox box2@example.com manual" in open(CMDLOG).read(),
             "the release command")
    wait_for(lambda: ctl_json("held")["held"] == [], "held to empty")
    sh = ctl_json("show", "box2@example.com")
    check(sh["action"]["state"] == "released" and
          [h["event"] for h in sh["history"]] == ["held", "released"], "show released: %r" % sh)
    rel = ctl_json("release", "box1@example.com")  # the alert-only trip: cleared
    check(rel["released"] and rel["id"] == "box1@example.com", "release json: %r" % rel)
    check(ctl_json("show", "box1@example.com")["tripped"] == [], "trips cleared")
    ctl_fails(1, ["release", "stranger@example.com"], r"no such identity")

    # 2b. a rule that holds, over lines the spool does not confirm (forged ones, say): nothing
    # is run, the trip is listed as unconfirmed, and an operator's hold still acts. While the
    # ledger cannot be written (a directory where its temporary file goes), neither a hold
    # nor a release runs, and both say so.
    config(extra_rules="  - name: hold-burst\n    scope: mailbox\n    metric: messages\n"
                       "    window: 10m\n    above: 2\n    actions: [freeze, hold, alert]\n")
    ctl_ok("reload")
    cmds = open(CMDLOG).read()
    lines = []
    for _ in range(3):
        lines += message("box4@example.com", False)[1]
    with open(LOG, "a") as f:
        f.write("\n".join(lines) + "\n")
    h = wait_for(lambda: [x for x in ctl_json("held")["held"] if x["id"] == "box4@example.com"],
                 "the unconfirmed trip")
    check(h[0]["state"] == "unconfirmed" and h[0]["applied"] == "none" and
          h[0]["what"] == "hold" and h[0]["rule"] == "hold-burst", "unconfirmed: %r" % h)
    check(re.search(r"^mailbox\s+box4@example\.com\s+hold \(unconfirmed\)\+0 frozen",
                    ctl_ok("held"), re.M), "held text for the unconfirmed trip")
    sh = ctl_json("show", "box4@example.com")
    check(sh["action"]["state"] == "unconfirmed" and
          [h["event"] for h in sh["history"]] == ["unconfirmed"], "show unconfirmed: %r" % sh)
    check(re.search(r'"event":"not_acted","rule":"hold-burst","scope":"mailbox",'
                    r'"id":"box4@example.com","result":"unconfirmed"', open(AUDIT).read()),
          "audit of the unconfirmed trip")
    check(ctl_json("status")["held"] == 0, "an unconfirmed trip holds nothing")
    blocker = os.path.join(STATE, "actions.ledger.tmp")
    os.mkdir(blocker)
    ctl_fails(1, ["hold", "box4@example.com"], r"could not act: ledger write failed")
    os.rmdir(blocker)
    time.sleep(0.3)
    check(open(CMDLOG).read() == cmds, "a command ran for an unconfirmed trip or without a ledger")
    ctl_ok("hold", "box4@example.com", "--reason", "checked the queue")
    wait_for(lambda: "hold mailbox box4@example.com manual" in open(CMDLOG).read(),
             "the operator's hold")
    wait_for(lambda: [x for x in ctl_json("held")["held"]
                      if x["id"] == "box4@example.com" and x["applied"] == "hold"], "box4 held")
    os.mkdir(blocker)
    ctl_fails(1, ["release", "box4@example.com"], r"could not release: ledger write failed")
    os.rmdir(blocker)
    time.sleep(0.3)
    check("release mailbox box4@example.com" not in open(CMDLOG).read(),
          "released without a ledger")
    check(ctl_json("show", "box4@example.com")["action"]["state"] == "acted", "still held")
    ctl_ok("release", "box4@example.com")
    wait_for(lambda: "release mailbox box4@example.com" in open(CMDLOG).read(), "the release")
    wait_for(lambda: ctl_json("held")["held"] == [], "held to empty again")

    # 2c. no silent failure: in monitor mode (preflight only warns) the exim backend's
    # blocklist in a directory that does not exist. The operator's hold acts, waits for its
    # steps and exits 1 naming the file and the error; held, show, tripped, the journal
    # and the metrics say FAILED.
    missing = os.path.join(TMP, "no-such-dir", "floodgate-blocklist")
    config(blocklist=missing, mode="monitor")
    ctl_ok("reload")
    for _ in range(2):
        with open(LOG, "a") as f:
            f.write("\n".join(message("box5@example.com", False)[1]) + "\n")
    wait_for(lambda: ctl("show", "box5@example.com")[0] == 0, "box5 counted")
    err = ctl_fails(1, ["hold", "box5@example.com"], r"FAILED")
    check("hold of mailbox box5@example.com FAILED: hold through exim (blocklist %s): "
          "No such file or directory" % missing in err, "hold failure: %r" % err)
    h = [x for x in ctl_json("held")["held"] if x["id"] == "box5@example.com"]
    check(h and h[0]["failed"] and missing in h[0]["error"], "held failed: %r" % h)
    check(ctl_json("held")["failed"] == 1, "held failed count")
    text = ctl_ok("held")
    check(re.search(r"^mailbox\s+box5@example\.com\s+FAILED hold \(acted\)\+0 frozen", text, re.M)
          and re.search(r"^  FAILED: hold through exim \(blocklist %s\): No such file or directory$"
                        % re.escape(missing), text, re.M), "held text: %r" % text)
    sh = ctl_json("show", "box5@example.com")
    check(sh["action"]["failed"] and sh["trips"][0]["result"] == "failed" and
          sh["trips"][0]["rule"] == "manual" and missing in sh["trips"][0]["detail"] and
          sh["blocklist"]["file"] == missing and not sh["blocklist"]["exists"],
          "show failed: %r" % sh)
    check("state: acted (FAILED)" in ctl_ok("show", "box5@example.com"), "show text FAILED")
    check(re.search(r"manual\s+mailbox\s+box5@example\.com\s.*FAILED", ctl_ok("tripped")),
          "tripped FAILED")
    check(re.search(r"hold failed through exim %s" % re.escape(missing),
                    open(os.path.join(TMP, "daemon.stderr")).read()), "the journal names the file")
    body = metrics()
    check(re.search(r'^floodgate_actions_total\{action="hold",backend="exim",result="failed"\} 1$',
                    body, re.M) and
          re.search(r"^floodgate_actions_failed_identities 1$", body, re.M),
          "metrics of the failure: %s" % "\n".join(l for l in body.splitlines() if "action" in l))
    # the blocklist's directory now exists: the retry works, and show lists the line
    os.mkdir(os.path.dirname(missing))
    ctl_ok("release", "box5@example.com")
    out = ctl_ok("hold", "box5@example.com")
    check("outgoing mail held" in out, "hold after the fix: %r" % out)
    sh = ctl_json("show", "box5@example.com")
    check(not sh["action"]["failed"] and sh["blocklist"]["exists"] and
          [l.split()[:4] for l in sh["blocklist"]["lines"]] ==
          [["box5@example.com:", "hold", "mailbox", "box5@example.com"]], "blocklist: %r" % sh)
    check(re.search(r"^floodgate_actions_failed_identities 0$", metrics(), re.M), "gauge back to 0")
    # the reference the ACL quotes from the line finds the identity (the ledger's, too)
    ref = sh["blocklist"]["lines"][0].split()[-1]
    check(re.match(r"^fg-[0-9a-f]{8}$", ref) and ctl_json("show", ref)["id"] == "box5@example.com",
          "show by the blocklist's reference %r" % ref)
    out = ctl_ok("release", "box5@example.com")
    check(out == "released mailbox box5@example.com: 0 messages thawed, hold undone\n",
          "release text: %r" % out)
    # a script's own line is keyed by its quoted "login:directory": show lists it too
    sid = 'acct9:/home/acct9/public_html/a "b'
    ctl_ok("hold", sid)
    lines = ctl_json("show", sid)["blocklist"]["lines"]
    check([l.split(": ", 1)[1].split()[:2] for l in lines] == [["hold", "script"]] and
          lines[0].startswith('"acct9:/home/acct9/public_html/a \\"b": hold script '),
          "script blocklist: %r" % lines)
    ctl_ok("release", sid)

    # 2d. monitor mode: an operator's order still acts (suspend, then release); the
    # monitor-mode trip of a holding rule is listed by tripped as would_act
    config(mode="monitor", extra_rules="  - name: hold-burst\n    scope: mailbox\n"
           "    metric: messages\n    window: 10m\n    above: 2\n"
           "    actions: [freeze, hold, alert]\n")
    ctl_ok("reload")
    out = ctl_ok("suspend", "box6@example.com", "--reason", "phished")
    check(out.startswith("suspended mailbox box6@example.com: 0 of 0 queued messages frozen, "
                         "outgoing mail suspended (monitor mode: an operator's order acts)"),
          "suspend in monitor mode: %r" % out)
    check("suspend mailbox box6@example.com manual" in open(CMDLOG).read(), "the suspend command")
    h = [x for x in ctl_json("held")["held"] if x["id"] == "box6@example.com"]
    check(h and h[0]["applied"] == "suspend" and h[0]["reason"] == "phished", "held: %r" % h)
    check(re.search(r'"event":"ctl_suspend","uid":\d+,"scope":"mailbox","id":"box6@example.com",'
                    r'"reason":"phished","result":"ok"', open(AUDIT).read()), "audit of suspend")
    out = ctl_ok("release", "box6@example.com")
    check("suspension undone" in out and
          "release mailbox box6@example.com" in open(CMDLOG).read(), "release: %r" % out)
    lines = []
    for _ in range(3):
        lines += message("box7@example.com", False)[1]
    with open(LOG, "a") as f:
        f.write("\n".join(lines) + "\n")
    t = wait_for(lambda: [x for x in ctl_json("tripped")["trips"]
                          if x["id"] == "box7@example.com" and x["result"] != "pending"],
                 "the monitor-mode trip")
    check(t[0]["result"] == "would_act" and t[0]["rule"] == "hold-burst" and
          t[0]["value"] == 3 and t[0]["limit"] == 2, "monitor trip: %r" % t)
    check(re.search(r"hold-burst\s+mailbox\s+box7@example\.com\s+acct1\s+3/2\s+10m\s+"
                    r"would hold \(monitor\)", ctl_ok("tripped")), "tripped monitor text")
    check(not [x for x in ctl_json("held")["held"] if x["id"] == "box7@example.com"],
          "a monitor-mode trip holds nothing")
    config()
    ctl_ok("reload")

    # 2c. the circuit breaker: with max_per_hour 1 (the holds above count), a hold is refused
    # and counted in floodgate_circuit_breaker_refusals_total
    check(metric("floodgate_circuit_breaker_refusals_total") == 0, "breaker refusals before")
    config(max_per_hour=1)
    ctl_ok("reload")
    cmds = open(CMDLOG).read()
    ctl_fails(1, ["hold", "box5@example.com"], r"circuit breaker open")
    check(metric("floodgate_circuit_breaker_refusals_total") == 1, "breaker refusal not counted")
    time.sleep(0.3)
    check(open(CMDLOG).read() == cmds, "a command ran with the circuit breaker open")
    config()
    ctl_ok("reload")

    # 3. reload
    config(broken=True)
    err = ctl_fails(1, ["reload"], re.escape(CFG) + r":\d+")
    check("reload failed" in err, "reload error: %r" % err)
    check(alive() and ctl_json("status")["ready"], "daemon after a failed reload")
    config(extra_rules="  - name: fast\n    scope: mailbox\n    metric: messages\n"
                       "    window: 1m\n    above: 100\n    actions: [alert]\n")
    out = ctl_ok("reload")
    check(out.startswith("reloaded "), "reload text: %r" % out)
    rl = ctl_json("reload")
    check(rl["reloaded"] and rl["rules"] == 3, "reload json: %r" % rl)
    check(any(t["window_ms"] == 60000 for t in ctl_json("top", "--window", "1m")["tables"]),
          "the new window in top")

    # 4. alerts without destinations
    ctl_fails(1, ["test-alert"], r"^floodgatectl: no alert destinations configured$")
    ctl_fails(1, ["alert-enable", "ops"], r"no alert destination named ops")
    ctl_fails(2, ["alert-enable", "a/b"], r"bad request|name")

    # 5. another uid
    if os.geteuid() == 0 and shutil.which("setpriv"):
        check(stat.S_IMODE(os.stat(CTL).st_mode) == 0o600, "socket mode without a group")
        ctl_fails(1, ["status"], r"ermission denied", user=65534)
        ngroup = None
        for name in ("nogroup", "nobody"):
            try:
                ngroup = grp.getgrnam(name)
                break
            except KeyError:
                pass
        if ngroup is None:
            print("no nogroup/nobody group: control_group part skipped")
        else:
            gid = ngroup.gr_gid
            config(group=ngroup.gr_name)
            ctl_ok("reload")
            sb = os.stat(CTL)
            check(stat.S_IMODE(sb.st_mode) == 0o660 and sb.st_gid == gid, "socket mode and group")
            rc, out, err = ctl("--json", "status", user=gid)
            check(rc == 0 and json.loads(out)["ready"], "status as a member: %d %r" % (rc, err))
            for args in (["top"], ["show", "box1@example.com"], ["held"]):
                rc, out, err = ctl(*args, user=gid)
                check(rc == 0, "%s as a member: %d %r" % (args, rc, err))
            ctl_fails(1, ["release", "box1@example.com"],
                      r"^floodgatectl: permission denied: release needs root$", user=gid)
            ctl_fails(1, ["hold", "box3@example.com"], r"permission denied: hold", user=gid)
            ctl_fails(1, ["reload"], r"permission denied: reload", user=gid)
            # the group only as a supplementary one, and the group file does not list nobody
            # in it: the kernel says so (SO_PEERGROUPS), no name service asked
            check("nobody" not in ngroup.gr_mem, "nobody is listed in %s" % ngroup.gr_name)
            rc, out, err = ctl("--json", "status", supp=gid)
            check(rc == 0, "status with the group as a supplementary one: %d %r" % (rc, err))
            ctl_fails(1, ["release", "box1@example.com"], r"permission denied", supp=gid)
            config()
            ctl_ok("reload")
            check(stat.S_IMODE(os.stat(CTL).st_mode) == 0o600, "socket mode back to 0600")
    else:
        print("not root or no setpriv: the other-uid part skipped")

    # 6. garbage and oversized requests on the raw socket
    def raw(data):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(CTL)
        try:
            s.sendall(data)
        except OSError:
            pass
        buf = b""
        while True:
            try:
                chunk = s.recv(4096)
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
        s.close()
        return buf
    ans = raw(b"\x00\xff\xfegarbage\x1b[2J\n")
    check(ans.endswith(b"\n") and json.loads(ans)["error"].startswith("bad request"),
          "garbage: %r" % ans)
    ans = raw(b"show mailbox " + b"a" * 5000 + b"\n")
    check(json.loads(ans) == {"error": "request too long"}, "oversized: %r" % ans)
    ans = raw(b"show mailbox \xc3\xa9t\xc3\xa9@example.com\n")  # not counted, answered
    check("error" in json.loads(ans), "utf-8 identity: %r" % ans)
    check(alive() and ctl_json("status")["ready"], "daemon after hostile requests")

    # 7. usage
    for args in ([], ["frobnicate"], ["show"], ["show", "a", "b"], ["status", "extra"],
                 ["--scope", "x", "status"], ["show", "--scope", "domain", "x"],
                 ["release", "--reason", "x", "a@b.example"],
                 ["release", "a@b.example", "--reason", "x"], ["top", "--bogus"],
                 ["top", "--scope", "mailbox", "extra"], ["held", "--", "--json"]):
        rc, out, err = ctl(*args)
        check(rc == 2 and err.count("\n") == 1 and err.startswith("floodgatectl: "),
              "usage %r: exit %d, stderr %r" % (args, rc, err))
    out = ctl_ok("--help")
    for c in ("status", "top", "show", "held", "release", "hold", "reload", "test-alert",
              "alert-enable"):
        check(re.search(r"^  %s\b" % c, out, re.M), "--help lacks %s" % c)
    p = subprocess.run([CTLBIN, "--socket", os.path.join(TMP, "none.sock"), "status"],
                       capture_output=True, text=True, timeout=30)
    check(p.returncode == 1 and "is floodgated running?" in p.stderr, "no daemon: %r" % p.stderr)

    # 8. hostile log text: escaped for terminals, one spelling of UTF-8 everywhere
    HOSTILE = b"x\x1b[2j\x07\r\xe2\x80\xaeb\xffz@example.com"
    CAFE, BAD = "caf\xc3\xa9@example.com".encode("latin-1"), b"bad\xffbox@example.com"
    raw_lines = []
    for box in (HOSTILE, CAFE, BAD):
        for _ in range(4):
            _, l = message("BOX", True)
            raw_lines += [x.encode().replace(b"BOX", box) for x in l]
    before = ctl_json("status")["records"]
    with open(LOG, "ab") as f:
        f.write(b"\n".join(raw_lines) + b"\n")
    wait_for(lambda: ctl_json("status")["records"] == before + len(raw_lines), "hostile lines")
    def ctl_raw(*args):
        p = subprocess.run([CTLBIN, "--socket", CTL] + list(args), capture_output=True,
                           timeout=90)
        check(p.returncode == 0, "floodgatectl %s: %d %r" % (args, p.returncode, p.stderr))
        return p.stdout
    text = ctl_raw("top", "--scope", "mailbox")
    for bad in (b"\x1b", b"\x07", b"\r", b"\xe2\x80\xae", b"\xff"):
        check(bad not in text, "top text holds %r raw: %r" % (bad, text))
    check(b"x\\x1b[2j\\x07\\x0d\\u202eb\xef\xbf\xbdz@example.com" in text,
          "top text: hostile identity not escaped: %r" % text)
    check(CAFE in text and b"bad\xef\xbf\xbdbox@example.com" in text, "top text: %r" % text)
    jraw = ctl_raw("--json", "top", "--scope", "mailbox")
    check(all(c >= 0x20 for c in jraw[:-1]) and b"\xe2\x80\xae" not in jraw,
          "--json holds raw controls: %r" % jraw)
    ids = [r["id"] for r in json.loads(jraw)["tables"][0]["rows"]]
    want = ["x\x1b[2j\x07\r\u202eb\ufffdz@example.com", "caf\u00e9@example.com",
            "bad\ufffdbox@example.com"]
    check(all(w in ids for w in want), "--json ids: %r" % ids)
    araw = open(AUDIT, "rb").read()
    trips = [json.loads(l) for l in araw.splitlines() if b'"event":"trip"' in l]
    check(all(w in [t["id"] for t in trips] for w in want), "audit trips: %r" % trips)
    for spelled in (b'"caf\xc3\xa9@example.com"', b'"bad\xef\xbf\xbdbox@example.com"',
                    b'"x\\u001b[2j\\u0007\\u000d\\u202eb\xef\xbf\xbdz@example.com"'):
        check(spelled in araw and spelled in jraw,
              "%r not spelled the same in the audit log and --json" % spelled)
    eraw = open(os.path.join(TMP, "daemon.stderr"), "rb").read()
    check(b"tripped burst: mailbox " + CAFE in eraw and b"\x1b" not in eraw and
          b"\\x1b[2j\\x07\\x0d\\u202eb\\xffz@example.com" in eraw,
          "daemon stderr: %r" % eraw[-2000:])

    # stop
    daemon.send_signal(signal.SIGTERM)
    check(daemon.wait(timeout=30) == 0,
          "floodgated exit status: %r" % open(os.path.join(TMP, "daemon.stderr")).read()[-3000:])
    check(not os.path.exists(CTL), "socket removed at exit")

    # 9. as nobody: every process of that uid may use the control socket; say so loudly
    if os.geteuid() == 0 and shutil.which("setpriv"):
        NR = os.path.join(TMP, "nr")
        os.mkdir(NR)
        os.chown(NR, 65534, 65534)
        CTL2 = os.path.join(NR, "ctl.sock")
        body = config().replace(STATE, os.path.join(NR, "state")).replace(AUDIT, os.path.join(
            NR, "audit.jsonl")).replace(CTL, CTL2)
        with open(os.path.join(NR, "fg.yml"), "w") as f:
            f.write(body)
        errf2 = open(os.path.join(NR, "daemon.stderr"), "w")
        d2 = subprocess.Popen(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                               DAEMON, "--config", os.path.join(NR, "fg.yml")],
                              stdin=subprocess.DEVNULL, stdout=errf2, stderr=errf2, env=denv)
        try:
            wait_for(lambda: os.path.exists(CTL2) or d2.poll() is not None, "nobody's socket")
            err = open(os.path.join(NR, "daemon.stderr")).read()
            check(re.search(r"^WARN not running as root: every process of uid 65534 \(nobody\) "
                            r"can release and hold through the control socket; run floodgated "
                            r"as root, or as a dedicated user", err, re.M), "no warning: %r" % err)
            p = subprocess.run([CTLBIN, "--socket", CTL2, "--json", "status"],
                               capture_output=True, text=True, timeout=90)
            check(p.returncode == 0, "status of nobody's daemon: %r" % p.stderr)
            w = json.loads(p.stdout)["warnings"]
            check(len(w) == 1 and "uid 65534 (nobody)" in w[0], "status warnings: %r" % w)
            p = subprocess.run([CTLBIN, "--socket", CTL2, "status"], capture_output=True,
                               text=True, timeout=90)
            check(re.search(r"^WARNING: not running as root: every process of uid 65534 "
                            r"\(nobody\)", p.stdout, re.M), "status text: %r" % p.stdout)
            d2.send_signal(signal.SIGTERM)
            check(d2.wait(timeout=30) == 0, "nobody's daemon exit status")
        finally:
            if d2.poll() is None:
                d2.kill()
                d2.wait()
            errf2.close()
finally:
    if daemon.poll() is None:
        daemon.kill()
        daemon.wait()
    errf.close()
print("ok (sections 1-9)")
PY
