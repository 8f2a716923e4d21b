#!/usr/bin/env bash
# The contract between floodgated and systemd (systemd/floodgate.service: Type=notify,
# NotifyAccess=main, WatchdogSec=, ExecReload= -> SIGHUP, SIGTERM on stop), checked on the
# real build/floodgated without systemd: PID 1 need not be systemd here. The test plays
# the manager: it listens on a unix datagram socket named by NOTIFY_SOCKET and starts the
# daemon with WATCHDOG_USEC and WATCHDOG_PID set to the daemon's own pid (fork, then
# execve: sd_watchdog_enabled() ignores the variables unless WATCHDOG_PID == getpid()).
#
#  1. first start, no state: a wrong WATCHDOG_PID gets no pings; READY=1; SIGTERM ->
#     STOPPING=1, exit 0, the state file exists.
#  2. 200k lines appended while stopped, a burst at their end: the restart resumes
#     from the checkpoint, and READY=1 comes only after the catch-up (the burst's trip is
#     in the audit log when READY=1 arrives), even with a SIGHUP during the catch-up;
#     STATUS= says "following"; WATCHDOG=1 pings, never further apart than WATCHDOG_USEC.
#  3. SIGHUP with a valid new config: RELOADING=1 with MONOTONIC_USEC in one datagram, then
#     READY=1; a burst the old rule ignores trips the new one.
#  4. SIGHUP with an invalid config: the error names file:line, READY=1 follows, and the
#     running rules stay (a burst trips the running rule, never the invalid file's rule);
#     --check-config (ExecStartPre/ExecReload) rejects the same file with the same place.
#  5. SIGTERM: exit 0 and a fresh state file.
# Everything waits on a condition with a timeout; nothing sleeps longer than a poll.
set -euo pipefail
bin="${FG_BUILD_DIR:?}/floodgated"
if ! command -v python3 >/dev/null; then
    echo "skip: python3 not found"
    exit 77
fi
[ -x "$bin" ] || { echo "missing $bin"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

python3 - "$bin" "$tmp" <<'PY'
import json, os, re, signal, socket, subprocess, sys, time

BIN, TMP = sys.argv[1], sys.argv[2]
DEADLINE = time.monotonic() + 180   # whole test; each wait below has its own bound too
LOG = os.path.join(TMP, "exim_mainlog")
STATE = os.path.join(TMP, "state")
AUDIT = os.path.join(TMP, "log", "audit.jsonl")
CTL = os.path.join(TMP, "run", "ctl.sock")
CFG = os.path.join(TMP, "floodgate.yml")
NOTIFY = os.path.join(TMP, "notify.sock")
WATCHDOG_USEC = 400000  # pings every 0.2 s
BACKLOG = 200000        # lines, about 40 MB: ~0.5 s of catch-up at 400k records/s

def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    raise SystemExit(1)

# --- the log ------------------------------------------------------------------------
B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
seq = [0]

def b62(n, width):
    s = ""
    for _ in range(width):
        s = B62[n % 62] + s
        n //= 62
    return s

def msgid():
    seq[0] += 1
    return "%s-%s-%s" % (b62(int(time.time()), 6), b62(seq[0], 6), b62(seq[0], 2))

def stamp(t):
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))

def message(t, box, with_delivery=True):
    """One outbound submission by an authenticated mailbox: arrival, delivery, completion."""
    mid, ts, n = msgid(), stamp(t), seq[0]
    lines = ["%s %s <= %s H=(pc) [192.0.2.%d]:4%04d P=esmtpsa "
             "X=TLS1.3:TLS_AES_256_GCM_SHA384:256 CV=no A=dovecot_login:%s S=%d "
             "id=m%d@%s T=\"Hello\" for r%d@remote.example"
             % (ts, mid, box, n % 250 + 1, n % 10000, box, 1000 + n % 5000, n,
                box.split("@")[1], n % 97)]
    if with_delivery:
        lines.append("%s %s => r%d@remote.example R=dkim_lookuphost T=dkim_remote_smtp "
                     "H=mx.remote.example [198.51.100.7] C=\"250 OK\"" % (ts, mid, n % 97))
        lines.append("%s %s Completed" % (ts, mid))
    return lines

def append(lines):
    with open(LOG, "a") as f:
        f.write("".join(l + "\n" for l in lines))

def burst(box, n):
    now = time.time()
    out = []
    for i in range(n):
        out += message(now, box, with_delivery=False)
    return out

# --- configuration ------------------------------------------------------------------
def write_config(rules, tail="", state=None):
    body = ("mode: monitor\n"
            "log_file: %s\nstate_dir: %s\naudit_log: %s\ncontrol_socket: %s\n"
            "userdomains_file: %s\nlocaldomains_file: %s\n"
            "rules:\n" % (LOG, state or STATE, AUDIT, CTL, os.path.join(TMP, "userdomains"),
                          os.path.join(TMP, "localdomains")))
    for name, above in rules:
        body += ("  - name: %s\n    scope: mailbox\n    metric: messages\n"
                 "    window: 10m\n    above: %d\n    actions: [alert]\n" % (name, above))
    body += tail
    tmpname = CFG + ".tmp"
    with open(tmpname, "w") as f:
        f.write(body)
    os.rename(tmpname, CFG)  # the daemon must never read a half-written file
    return body

# --- the manager's side -------------------------------------------------------------
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.bind(NOTIFY)
notes = []  # (monotonic seconds, [lines]) in arrival order

def pump(timeout):
    """Receive notifications for at most `timeout` seconds; returns after the first one."""
    sock.settimeout(max(0.01, timeout))
    try:
        data = sock.recv(4096)
    except socket.timeout:
        return False
    notes.append((time.monotonic(), data.decode("utf-8", "replace").split("\n")))
    return True

def wait_note(pred, timeout, what, start=0):
    """Index of the first datagram at or after `start` satisfying pred(lines)."""
    end = min(time.monotonic() + timeout, DEADLINE)
    i = start
    while True:
        while i < len(notes):
            if pred(notes[i][1]):
                return i
            i += 1
        left = end - time.monotonic()
        if left <= 0:
            fail("timed out waiting for %s; got %r" % (what, [n[1] for n in notes[start:]]))
        pump(min(left, 0.2))

def has(lines, prefix):
    return any(l.startswith(prefix) for l in lines)

def drain(seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pump(end - time.monotonic())

class Daemon:
    def __init__(self, name, watchdog_pid_ok=True):
        self.err = os.path.join(TMP, name + ".stderr")
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C",
               "NOTIFY_SOCKET": NOTIFY, "WATCHDOG_USEC": str(WATCHDOG_USEC)}
        pid = os.fork()
        if pid == 0:  # the child becomes floodgated: same pid, so WATCHDOG_PID can name it
            try:
                env["WATCHDOG_PID"] = str(os.getpid() if watchdog_pid_ok else 1)
                fd = os.open(self.err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                os.dup2(fd, 2)
                os.dup2(fd, 1)
                devnull = os.open(os.devnull, os.O_RDONLY)
                os.dup2(devnull, 0)
                os.execve(BIN, [BIN, "--config", CFG], env)
            finally:
                os._exit(127)
        self.pid = pid
        self.status = None

    def stderr(self):
        with open(self.err, errors="replace") as f:
            return f.read()

    def poll(self):
        if self.status is None:
            p, st = os.waitpid(self.pid, os.WNOHANG)
            if p == self.pid:
                self.status = st
        return self.status

    def alive(self):
        if self.poll() is not None:
            fail("floodgated exited early (status %r):\n%s" % (self.status, self.stderr()))

    def wait_exit(self, timeout):
        end = min(time.monotonic() + timeout, DEADLINE)
        while self.poll() is None:
            if time.monotonic() > end:
                fail("floodgated did not exit in %ss:\n%s" % (timeout, self.stderr()))
            pump(0.05)
        return self.status

    def kill(self):
        if self.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
            self.status = -9

def audit_trips():
    try:
        with open(AUDIT) as f:
            return [json.loads(l) for l in f if l.strip()]
    except FileNotFoundError:
        return []

def wait_trip(box, timeout, d):
    end = min(time.monotonic() + timeout, DEADLINE)
    while True:
        for e in audit_trips():
            if e.get("event") == "trip" and e.get("id") == box:
                return e
        d.alive()
        if time.monotonic() > end:
            fail("no trip for %s in %ss; audit: %r\n%s" % (box, timeout, audit_trips(),
                                                            d.stderr()))
        pump(0.05)

def state_ok():
    p = os.path.join(STATE, "state")
    if not os.path.isfile(p):
        fail("no state file %s after SIGTERM" % p)
    with open(p, "rb") as f:
        if not f.read(64).startswith(b"FLOODGATE-STATE 3\n"):
            fail("%s does not start with the state magic" % p)
    return os.stat(p).st_mtime_ns

# --- the test ------------------------------------------------------------------------
with open(os.path.join(TMP, "userdomains"), "w") as f:
    f.write("example.com: acct1\nbulk.example: acct2\n")
open(os.path.join(TMP, "localdomains"), "w").close()
write_config([("old-burst", 40)])
now = time.time()
append(message(now - 300, "seed@example.com"))

daemons = []
try:
    # 1. first start (no state: follows from the end), wrong WATCHDOG_PID, SIGTERM
    d = Daemon("first", watchdog_pid_ok=False)
    daemons.append(d)
    wait_note(lambda l: "READY=1" in l, 20, "READY=1 on the first start")
    drain(4 * WATCHDOG_USEC / 1e6)
    if any("WATCHDOG=1" in l for _, l in notes):
        fail("WATCHDOG=1 sent although WATCHDOG_PID names another process")
    mark = len(notes)
    os.kill(d.pid, signal.SIGTERM)
    st = d.wait_exit(15)
    if not (os.WIFEXITED(st) and os.WEXITSTATUS(st) == 0):
        fail("SIGTERM: exit status %r, want 0:\n%s" % (st, d.stderr()))
    wait_note(lambda l: "STOPPING=1" in l, 1, "STOPPING=1", mark)
    state_ok()
    print("ok 1 first start: READY=1, no pings for another pid, SIGTERM -> 0 + state")

    # 2. a backlog written while stopped, the burst at its very end. Big enough that reading
    #    it takes several times the daemon's first readiness check (50 ms), so a READY=1
    #    sent before the catch-up finished shows as a missing trip.
    backlog = []
    base = time.time() - 240
    k = 0
    while len(backlog) < BACKLOG - 60:
        backlog += message(base + k * 240.0 / BACKLOG, "u%d@bulk.example" % (k % 5000))
        k += 1
    backlog += burst("early@example.com", 60)
    append(backlog)
    mark = len(notes)
    t0 = time.monotonic()
    d = Daemon("second")
    daemons.append(d)
    # a SIGHUP during the catch-up (the first ping means the signal watchers are up) must
    # neither end the start early nor announce a reload before READY=1
    wait_note(lambda l: "WATCHDOG=1" in l, 20, "the first WATCHDOG=1", mark)
    os.kill(d.pid, signal.SIGHUP)
    ready = wait_note(lambda l: "READY=1" in l, 60, "READY=1 after the catch-up", mark)
    if any("RELOADING=1" in l for _, l in notes[mark:ready]):
        fail("RELOADING=1 sent while still starting")
    trips = [e for e in audit_trips() if e.get("event") == "trip"]
    if not any(e["id"] == "early@example.com" and e["rule"] == "old-burst" for e in trips):
        fail("READY=1 arrived before the backlog was read: no trip for early@example.com "
             "in the audit log yet: %r\n%s" % (trips, d.stderr()))
    if any(e["id"].endswith("@bulk.example") for e in trips):
        fail("background mailboxes tripped: %r" % trips)
    st_i = wait_note(lambda l: has(l, "STATUS="), 10, "STATUS= after READY=1", ready)
    status = [l for l in notes[st_i][1] if l.startswith("STATUS=")][0]
    if "following" not in status:
        fail("STATUS after READY=1 should say following: %r" % status)
    # the pings keep coming at about WATCHDOG_USEC/2
    while time.monotonic() - notes[ready][0] < 1.0:
        pump(0.1)
    pings = [t for t, l in notes[mark:] if "WATCHDOG=1" in l]
    if len(pings) < 3:
        fail("want >= 3 WATCHDOG=1 in >= 1 s with WATCHDOG_USEC=%d, got %d"
             % (WATCHDOG_USEC, len(pings)))
    gap = max(b - a for a, b in zip(pings, pings[1:]))
    if gap > WATCHDOG_USEC / 1e6:
        fail("WATCHDOG=1 gap %.2fs exceeds WATCHDOG_USEC" % gap)
    print("ok 2 catch-up of %d lines in %.2fs, then READY=1; %s; %d pings, max gap %.2fs"
          % (len(backlog), notes[ready][0] - t0, status, len(pings), gap))

    # 3. reload with a valid config: a rule the old config did not have, and a state_dir
    #    that is bound at start (kept, with a warning, never half-applied)
    other_state = os.path.join(TMP, "other-state")
    write_config([("new-burst", 5)], state=other_state)
    reloads = d.stderr().count("reloaded")
    mark = len(notes)
    os.kill(d.pid, signal.SIGHUP)
    r_i = wait_note(lambda l: "RELOADING=1" in l, 10, "RELOADING=1", mark)
    mono = [l for l in notes[r_i][1] if l.startswith("MONOTONIC_USEC=")]
    if not mono or not re.fullmatch(r"MONOTONIC_USEC=[0-9]+", mono[0]):
        fail("RELOADING=1 without MONOTONIC_USEC= in the same datagram: %r" % notes[r_i][1])
    skew = abs(int(mono[0].split("=")[1]) - time.monotonic_ns() // 1000) / 1e6
    if skew > 10:
        fail("MONOTONIC_USEC is %.1fs away from CLOCK_MONOTONIC" % skew)
    wait_note(lambda l: "READY=1" in l, 10, "READY=1 after the reload", r_i + 1)
    append(burst("fresh1@example.com", 8))  # 8 <= 40: only the new rule trips on it
    e = wait_trip("fresh1@example.com", 15, d)
    if e["rule"] != "new-burst":
        fail("fresh1 tripped %r, want new-burst" % e["rule"])
    if d.stderr().count("reloaded") <= reloads:
        fail("no 'reloaded' log line:\n" + d.stderr())
    if "state_dir changes need a restart; still using" not in d.stderr():
        fail("no warning that state_dir is kept:\n" + d.stderr())
    time.sleep(1.5)  # a checkpoint after the reload must still go to the running state_dir
    if os.path.exists(other_state):
        fail("the reload half-applied state_dir: %s exists" % other_state)
    write_config([("new-burst", 5)])
    print("ok 3 SIGHUP valid: RELOADING=1 + MONOTONIC_USEC, READY=1, new rule trips")

    # 4. reload with an invalid config: the running one stays
    body = write_config([("bad-rule", 0)], tail="no_such_key: 1\n")
    bad_line = body.split("\n").index("no_such_key: 1") + 1
    mark = len(notes)
    os.kill(d.pid, signal.SIGHUP)
    r_i = wait_note(lambda l: "RELOADING=1" in l, 10, "RELOADING=1 (invalid)", mark)
    wait_note(lambda l: "READY=1" in l, 10, "READY=1 after the failed reload", r_i + 1)
    where = "%s:%d:" % (CFG, bad_line)
    end = time.monotonic() + 5
    while not any("reload failed" in l and where in l for l in d.stderr().splitlines()):
        if time.monotonic() > end:
            fail("no 'reload failed ... %s' line:\n%s" % (where, d.stderr()))
        pump(0.05)
    chk = subprocess.run([BIN, "--config", CFG, "--check-config"], capture_output=True,
                         text=True, timeout=30)
    if chk.returncode != 1 or where not in chk.stderr:
        fail("--check-config on the bad file: rc %d, stderr %r" % (chk.returncode, chk.stderr))
    append(burst("fresh2@example.com", 8))
    e = wait_trip("fresh2@example.com", 15, d)
    if e["rule"] != "new-burst":
        fail("after a failed reload fresh2 tripped %r, want the running new-burst" % e["rule"])
    if any(t.get("rule") == "bad-rule" for t in audit_trips()):
        fail("a rule from the invalid file was applied")
    print("ok 4 SIGHUP invalid: error at %s, READY=1, running rules kept" % where)

    # 5. SIGTERM: checkpoint and exit 0
    before = os.stat(os.path.join(STATE, "state")).st_mtime_ns
    mark = len(notes)
    os.kill(d.pid, signal.SIGTERM)
    st = d.wait_exit(15)
    if not (os.WIFEXITED(st) and os.WEXITSTATUS(st) == 0):
        fail("SIGTERM: exit status %r, want 0:\n%s" % (st, d.stderr()))
    wait_note(lambda l: "STOPPING=1" in l, 1, "STOPPING=1", mark)
    if state_ok() < before:
        fail("state file older after SIGTERM")
    print("ok 5 SIGTERM: exit 0, STOPPING=1, state file in %s" % STATE)
finally:
    for d in daemons:
        d.kill()
PY
