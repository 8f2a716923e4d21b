#!/usr/bin/env bash
# floodgate against a real Alertmanager cluster (Debian's prometheus-alertmanager), all on
# loopback: two instances gossiping (--cluster.listen-address, --cluster.peer), each with
# its own configuration routing to a webhook receiver (tests/e2e/http_sink.py) with
# group_by [rule]; floodgated (monitor mode) has both as `type: alertmanager` destinations.
#
#  1. an outbreak of FG_AM_IDENTITIES (200) mailboxes: both instances list every alert
#     (/api/v2/alerts) with the right labels (alertname, severity, host, rule, scope,
#     identity) and annotations (summary, description, incident_id, log_time); the receiver
#     gets one notification for the group, holding every alert, from one instance only;
#  2. floodgatectl release of some mailboxes: gone from both instances' active alerts,
#     notified as resolved;
#  3. one instance stopped mid-outbreak, more mailboxes trip, the instance restarted: it
#     lists every active alert again (floodgate re-sends each resend_interval), the new
#     alerts are notified.
# After 2 and 3: no state of the group notified twice in a row (both instances sending it)
# and the eventual state notified last. Alertmanager's HA mode may send an older state once
# more after a newer one (an instance that waited its peer timeout with a snapshot taken
# before the change); such repeats are counted in the output, not refused.
# Prints "FIGURE name=value" lines (alerts and requests per outbreak). Every wait is
# bounded; the whole test stops itself after 110 s.
set -euo pipefail
build="${FG_BUILD_DIR:?}"
src="${FG_SOURCE_DIR:?}"
for t in python3 prometheus-alertmanager; do
    if ! command -v "$t" >/dev/null; then
        echo "skip: $t not found (Debian: apt-get install prometheus-alertmanager;" \
             "scripts/install-deps installs it where the distribution packages it)"
        exit 77
    fi
done
tmp=$(mktemp -d)
trap '[ -n "${FG_AM_KEEP:-}" ] && echo "kept $tmp" || rm -rf "$tmp"' EXIT

python3 - "$build" "$src" "$tmp" <<'PY'
import json, os, re, signal, socket, subprocess, sys, time
import urllib.request

BUILD, SRC, TMP = sys.argv[1:4]
BIN = os.path.join(BUILD, "floodgated")
CTLBIN = os.path.join(BUILD, "floodgatectl")
SINK = os.path.join(SRC, "tests", "e2e", "http_sink.py")
N = int(os.environ.get("FG_AM_IDENTITIES", "200"))
N2 = max(N // 4, 1)  # the second wave, while one instance is down
NREL = min(20, N)
DEADLINE = time.monotonic() + float(os.environ.get("FG_AM_DEADLINE", "110"))
LOG = os.path.join(TMP, "exim_mainlog")
CTL = os.path.join(TMP, "ctl.sock")
CFG = os.path.join(TMP, "floodgate.yml")
ERR = os.path.join(TMP, "floodgated.err")
HOST = "mx7.test"
# How long the second instance waits for the first one's notification to be gossiped before
# it sends its own: longer than the receiver takes to accept a notification (one of 2,000
# alerts is 2 MB), or both instances notify.
PEER_TIMEOUT = 5
SETTLE = 2 * PEER_TIMEOUT + 4 + 1  # both instances' turns and a group_interval
RULE = "mailbox-burst"
procs = {}


def fail(msg):
    for name in ("floodgated", "am1", "am2"):
        try:
            with open(os.path.join(TMP, name + ".err"), errors="replace") as f:
                msg += "\n--- %s ---\n%s" % (name, f.read()[-2500:])
        except OSError:
            pass
    print("FAIL: " + msg, file=sys.stderr)
    raise SystemExit(1)


def wait(cond, timeout, what, poll=0.1):
    end = min(time.monotonic() + timeout, DEADLINE)
    while True:
        v = cond()
        if v:
            return v
        if procs.get("floodgated") and procs["floodgated"].poll() is not None:
            fail("floodgated exited (%r) waiting for %s" % (procs["floodgated"].returncode, what))
        if time.monotonic() > end:
            fail("timed out waiting for " + what)
        time.sleep(poll)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def get_json(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return json.loads(r.read().decode())
    except (OSError, ValueError):
        return None


# --- the receiver -----------------------------------------------------------------------
sink_log = os.path.join(TMP, "sink.jsonl")
sink_port = os.path.join(TMP, "sink.port")
open(sink_log, "w").close()
procs["sink"] = subprocess.Popen([sys.executable, SINK, "--port-file", sink_port, "--log",
                                  sink_log], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
SINK_PORT = int(wait(lambda: os.path.exists(sink_port) and open(sink_port).read().strip(), 10,
                     "the receiver"))


def notifications():
    out = []
    with open(sink_log) as f:
        for line in f:
            if line.endswith("\n") and line.strip():
                r = json.loads(line)
                n = json.loads(r["body"])
                n["_path"] = r["path"]
                out.append(n)
    return out


# --- two Alertmanagers in one cluster ---------------------------------------------------
AM = {}
for name in ("am1", "am2"):
    AM[name] = {"web": free_port(), "cluster": free_port(),
                "dir": os.path.join(TMP, name), "cfg": os.path.join(TMP, name + ".yml")}
    os.mkdir(AM[name]["dir"])
    with open(AM[name]["cfg"], "w") as f:
        f.write("""route:
  receiver: hook
  group_by: [rule]
  group_wait: 3s
  group_interval: 4s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: http://127.0.0.1:%d/%s
        send_resolved: true
""" % (SINK_PORT, name))


def am_start(name):
    me, other = AM[name], AM["am2" if name == "am1" else "am1"]
    procs[name] = subprocess.Popen(
        ["prometheus-alertmanager", "--config.file", me["cfg"], "--storage.path", me["dir"],
         "--web.listen-address", "127.0.0.1:%d" % me["web"],
         "--cluster.listen-address", "127.0.0.1:%d" % me["cluster"],
         "--cluster.advertise-address", "127.0.0.1:%d" % me["cluster"],
         "--cluster.peer", "127.0.0.1:%d" % other["cluster"],
         "--cluster.peer-timeout", "%ds" % PEER_TIMEOUT, "--cluster.gossip-interval", "100ms",
         "--cluster.pushpull-interval", "2s", "--cluster.reconnect-interval", "1s",
         "--log.level", "info"],
        stdin=subprocess.DEVNULL, stdout=open(os.path.join(TMP, name + ".err"), "a"),
        stderr=subprocess.STDOUT, cwd=TMP)


def am_api(name, what):
    return get_json("http://127.0.0.1:%d/api/v2/%s" % (AM[name]["web"], what))


def clustered(name):
    st = am_api(name, "status")
    return st and st["cluster"]["status"] == "ready" and len(st["cluster"]["peers"]) == 2


def am_alerts(name):
    """{identity: alert} of the active FloodgateTrip alerts, or None when unreachable."""
    v = am_api(name, "alerts?filter=alertname%3D%22FloodgateTrip%22")
    if v is None:
        return None
    return {a["labels"].get("identity"): a for a in v}


def am_metric(name, metric, **labels):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % AM[name]["web"],
                                    timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return None
    total = 0.0
    for line in text.splitlines():
        m = re.match(r"%s(?:\{(.*)\})? (\S+)$" % re.escape(metric), line)
        if m and all('%s="%s"' % kv in (m.group(1) or "") for kv in labels.items()):
            total += float(m.group(2))
    return total


for name in AM:
    am_start(name)
for name in AM:
    wait(lambda: clustered(name), 30, "%s to join the cluster" % name)

# --- floodgated -------------------------------------------------------------------------
open(os.path.join(TMP, "userdomains"), "w").close()
open(os.path.join(TMP, "localdomains"), "w").close()
open(LOG, "w").close()
with open(CFG, "w") as f:
    f.write("""mode: monitor
log_file: %(log)s
state_dir: %(tmp)s/state
audit_log: %(tmp)s/audit.jsonl
control_socket: %(ctl)s
userdomains_file: %(tmp)s/userdomains
localdomains_file: %(tmp)s/localdomains
rules:
  - { name: %(rule)s, scope: mailbox, metric: messages, window: 10m, above: 5, actions: [freeze, hold, alert] }
alerts:
  host_name: %(host)s
  resend_interval: 10s
  resolved_keep: 1m
  destinations:
    - { name: am1, type: alertmanager, url: "http://127.0.0.1:%(am1)d", allow_http: true, connect_timeout: 1s, timeout: 3s }
    - { name: am2, type: alertmanager, url: "http://127.0.0.1:%(am2)d", allow_http: true, connect_timeout: 1s, timeout: 3s }
""" % {"log": LOG, "tmp": TMP, "ctl": CTL, "rule": RULE, "host": HOST,
       "am1": AM["am1"]["web"], "am2": AM["am2"]["web"]})
os.chmod(CFG, 0o600)
denv = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"}
denv.update({k: v for k, v in os.environ.items() if k in ("ASAN_OPTIONS", "UBSAN_OPTIONS")})
procs["floodgated"] = subprocess.Popen([BIN, "--config", CFG], stdin=subprocess.DEVNULL,
                                       stdout=open(ERR, "w"), stderr=subprocess.STDOUT, env=denv)


def ctl(*args):
    return subprocess.run([CTLBIN, "--socket", CTL] + list(args), capture_output=True,
                          text=True, timeout=30)


def status():
    p = ctl("--json", "status")
    return json.loads(p.stdout) if p.returncode == 0 else None


wait(lambda: (status() or {}).get("ready"), 20, "floodgated ready")

B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
seq = [0]


def b62(n, width):
    s = ""
    for _ in range(width):
        s = B62[n % 62] + s
        n //= 62
    return s


def outbreak(boxes, n=6):
    ts = time.strftime("%Y-%m-%d %H:%M:%S")
    out = []
    for box in boxes:
        for _ in range(n):
            seq[0] += 1
            mid = "%s-%s-%s" % (b62(int(time.time()), 6), b62(seq[0], 6), b62(seq[0], 2))
            out.append("%s %s <= %s H=(pc) [192.0.2.7]:41000 P=esmtpsa A=dovecot_login:%s "
                       "S=900 id=m%d@x T=\"Invoice\" for r%d@remote.example\n"
                       % (ts, mid, box, box, seq[0], seq[0] % 7))
    with open(LOG, "a") as f:
        f.write("".join(out))


def box(i):
    return "user%04d@site%d.example" % (i, i % 10)


def check_alert(a, ident):
    want = {"alertname": "FloodgateTrip", "severity": "warning", "host": HOST, "rule": RULE,
            "scope": "mailbox", "identity": ident}
    if a["labels"] != want:
        fail("labels of %s: %r, want %r" % (ident, a["labels"], want))
    an = a["annotations"]
    if an.get("summary") != "%s tripped for %s on %s" % (RULE, ident, HOST):
        fail("summary of %s: %r" % (ident, an.get("summary")))
    if not re.match(r"6 messages in 10m, limit 5; monitor mode: nothing done", an.get(
            "description", "")):
        fail("description of %s: %r" % (ident, an.get("description")))
    if not re.match(r"fg_[a-z2-7]+$", an.get("incident_id", "")):
        fail("incident_id of %s: %r" % (ident, an.get("incident_id")))
    if not an.get("log_time", "").endswith("(server local)"):
        fail("log_time of %s: %r" % (ident, an.get("log_time")))
    if a["status"]["state"] != "active":
        fail("state of %s: %r" % (ident, a["status"]))


def firing_sets():
    """Each notification: (receiver path, status, frozenset of firing, of resolved identities)."""
    out = []
    for n in notifications():
        if n["groupLabels"] != {"rule": RULE}:
            fail("a notification grouped by %r, want {rule: %s}" % (n["groupLabels"], RULE))
        f = frozenset(a["labels"]["identity"] for a in n["alerts"] if a["status"] == "firing")
        r = frozenset(a["labels"]["identity"] for a in n["alerts"] if a["status"] == "resolved")
        out.append((n["_path"], n["status"], f, r))
    return out


def check_sequence(sets, firing, resolved_max):
    """
    What a clustered Alertmanager promises: no state of the group notified twice in a row
    (both instances sending what one sent), and the eventual state last. An instance that
    took its snapshot before a change and waited its peer timeout may send that older state
    once more after the newer one (a known trade-off of Alertmanager's HA mode: the
    receiver always gets the eventual state last); those are counted, not refused.
    Returns how many such stale repeats there were.
    """
    for (p1, _, f1, r1), (p2, _, f2, r2) in zip(sets, sets[1:]):
        if (f1, r1) == (f2, r2):
            fail("one state of the group (%d firing, %d resolved) notified twice in a row, by "
                 "%s then %s" % (len(f1), len(r1), p1, p2))
    last = sets[-1]
    if last[2] != frozenset(firing) or not last[3] <= frozenset(resolved_max):
        fail("the last notification (%s) has %d firing, %d resolved; want %d firing, resolved "
             "among %d" % (last[0], len(last[2]), len(last[3]), len(firing), len(resolved_max)))
    seen, stale = set(), 0
    for _, _, f, r in sets:
        stale += (f, r) in seen
        seen.add((f, r))
    return stale


try:
    # 1. the outbreak, both instances up
    first = [box(i) for i in range(N)]
    t0 = time.monotonic()
    outbreak(first)
    for name in AM:
        got = wait(lambda: (lambda v: v if v and len(v) >= N else None)(am_alerts(name)), 40,
                   "%s to list %d alerts" % (name, N))
        if sorted(got) != sorted(first):
            fail("%s lists %d alerts, not the outbreak's %d" % (name, len(got), N))
        for ident, a in got.items():
            check_alert(a, ident)
    t_listed = time.monotonic() - t0
    sets = wait(lambda: firing_sets() or None, 20, "the notification")
    time.sleep(SETTLE)
    sets = firing_sets()
    if len(sets) != 1:
        fail("%d notifications for one outbreak: %r" % (len(sets), [(p, len(f)) for p, _, f, _ in sets]))
    if sets[0][2] != frozenset(first) or sets[0][1] != "firing":
        fail("the notification holds %d firing alerts, not the %d of the outbreak"
             % (len(sets[0][2]), N))
    recv = {n: am_metric(n, "alertmanager_alerts_received_total") for n in AM}
    st = status()
    delivered = {a["name"]: a["delivered"] for a in st["alerts"]}
    print("FIGURE identities=%d am_requests_per_instance=%s alerts_received=%s "
          "notifications=%d seconds_to_list=%.1f"
          % (N, delivered, {k: int(v) for k, v in recv.items()}, len(sets), t_listed))
    print("ok 1 %d alerts listed by both instances, labels and annotations right; one "
          "notification (%s) with all of them" % (N, sets[0][0]))
    print("  e.g. " + json.dumps({k: v for k, v in am_alerts("am1")[first[0]].items()
                                  if k in ("labels", "annotations", "startsAt", "endsAt")}))

    # 2. release -> resolved (while both instances have the same alerts: an instance that
    # got a resolution later than the other would notify the state before it once more)
    released = first[:NREL]
    for ident in released:
        p = ctl("release", ident)
        if p.returncode != 0:
            fail("release %s: %s%s" % (ident, p.stdout, p.stderr))
    for name in AM:
        wait(lambda: (lambda v: v and not set(released) & set(v) and len(v) == N - NREL)(
            am_alerts(name)), 30, "%s to drop the released alerts" % name)

    def resolved_notified():
        s = firing_sets()
        return s if any(set(released) <= r for _, _, _, r in s) else None
    sets = wait(resolved_notified, 20, "the resolved notification")
    time.sleep(SETTLE)
    sets = firing_sets()
    stale2 = check_sequence(sets, first[NREL:], released)
    last = [x for x in sets if set(released) <= x[3]]
    if any(set(released) & f for _, _, f, _ in last):
        fail("a released identity still firing in the resolved notification")
    print("ok 2 %d released: gone from both instances, notified resolved; %d notifications, "
          "the eventual state last, %d stale repeat(s) of an earlier state"
          % (NREL, len(sets), stale2))

    # 3. am2 down mid-outbreak, more trips, am2 back
    def am2_misses():
        a = [x for x in status()["alerts"] if x["name"] == "am2"][0]
        return a["retried"] + a["failed"]
    misses = am2_misses()
    procs["am2"].send_signal(signal.SIGTERM)
    procs["am2"].wait(timeout=20)
    second = [box(i) for i in range(N, N + N2)]
    outbreak(second)
    wait(lambda: (lambda v: v and set(second) <= set(v))(am_alerts("am1")), 30,
         "am1 to list the second wave")
    wait(lambda: am2_misses() > misses, 20, "floodgate to find am2 down")
    t_back = time.monotonic()
    am_start("am2")
    wait(lambda: clustered("am2"), 30, "am2 to rejoin")
    active = set(first[NREL:] + second)
    got = wait(lambda: (lambda v: v if v and set(v) == active else None)(
        am_alerts("am2")), 30, "am2 to list all %d active alerts again" % len(active))
    for ident, a in got.items():
        check_alert(a, ident)
    t_resent = time.monotonic() - t_back

    def all_notified():
        s = firing_sets()
        return s if set(second) <= set().union(*(f for _, _, f, _ in s)) else None
    sets = wait(all_notified, 20, "the second wave notified")
    time.sleep(SETTLE)
    sets = firing_sets()
    stale3 = check_sequence(sets, active, released)
    print("ok 3 am2 stopped (floodgate's posts to it failed), %d more trips, am2 restarted: "
          "it lists all %d active alerts %.1f s after its start (re-sent); the second wave "
          "notified; %d notifications in all, the eventual state last, %d stale repeat(s)"
          % (N2, len(active), t_resent, len(sets), stale3))
    recv2 = {n: am_metric(n, "alertmanager_alerts_received_total") for n in AM}
    rss = {}
    for n in AM:
        with open("/proc/%d/status" % procs[n].pid) as f:
            rss[n] = int(re.search(r"^VmRSS:\s+(\d+)", f.read(), re.M).group(1))
    print("FIGURE notifications_total=%d alerts_received_total=%s alertmanager_rss_kib=%s"
          % (len(sets), {k: int(v) for k, v in recv2.items()}, rss))
    fg = procs.pop("floodgated")
    fg.send_signal(signal.SIGTERM)
    if fg.wait(timeout=30) != 0:
        fail("floodgated exited %r on SIGTERM" % fg.returncode)

finally:
    for name, p in procs.items():
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for name, p in procs.items():
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
PY
