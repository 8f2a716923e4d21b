#!/usr/bin/env bash
# Alert delivery end to end: the real floodgated, real HTTP receivers on loopback
# (tests/e2e/http_sink.py: one per destination, each answering what the test scripts),
# monitor mode so no Exim is needed. What it proves (alerting.md §7):
#
#  1. a trip reaches a signed webhook (signature checked by the receiver with python's
#     hmac, independently of lib/alert), Slack (text + blocks, nothing of the log text
#     able to mention or link) and Alertmanager (firing, labels, endsAt ahead);
#  2. 429 with Retry-After: 2 -> the next attempt no sooner than 2 s later, same
#     webhook-id, same body bytes, a fresh signature;
#  3. a receiver that hangs costs nothing to log reading: another identity's trip is
#     audited while the request is still open; the alert is delivered after the timeout;
#  4. receiver down, then the daemon killed with SIGKILL and restarted, then the receiver
#     back: every alert is delivered, and none twice (distinct webhook-ids == deliveries);
#  5. floodgatectl test-alert reports each destination (exit 0 / 1);
#  6. floodgatectl release -> "released" webhook, Alertmanager resolved (endsAt <= now);
#  7. Slack answers 404: the destination is disabled (floodgatectl status says so), the
#     alert is kept, and floodgatectl alert-enable sends it;
#  8. a 1,000-identity outbreak: the webhook gets every trip, Slack a bounded number of
#     messages (digests with the right total), Alertmanager one array holding them all;
#  9. no log line, ctl answer or metric contains the Slack URL's secret path or the key;
#     the metrics count the deliveries per destination.
# 10. the checkpoint cannot be written: the trip's alerts wait, a health alert naming the
#     file and the error reaches the receivers from memory, and is logged; once the
#     checkpoint is written again, the trip's alerts follow.
# 11. a local sender whose quoted address carries a raw newline and a forged arrival: a
#     log_injection health alert names the writer (not the forged identity), escaped for
#     Slack like any log text.
# Every wait is bounded; the whole test stops itself after 240 s.
set -euo pipefail
build="${FG_BUILD_DIR:?}"
src="${FG_SOURCE_DIR:?}"
if ! command -v python3 >/dev/null; then
    echo "skip: python3 not found"
    exit 77
fi
tmp=$(mktemp -d)
trap 'pkill -TERM -f "$tmp/" 2>/dev/null || true; rm -rf "$tmp"' EXIT

python3 - "$build" "$src" "$tmp" <<'PY'
import base64, json, os, signal, socket, subprocess, sys, time

BUILD, SRC, TMP = sys.argv[1:4]
BIN = os.path.join(BUILD, "floodgated")
CTLBIN = os.path.join(BUILD, "floodgatectl")
SINK = os.path.join(SRC, "tests", "e2e", "http_sink.py")
DEADLINE = time.monotonic() + 240
LOG = os.path.join(TMP, "exim_mainlog")
CTL = os.path.join(TMP, "ctl.sock")
AUDIT = os.path.join(TMP, "audit.jsonl")
CFG = os.path.join(TMP, "floodgate.yml")
ERR = os.path.join(TMP, "floodgated.err")
SECRET = "whsec_" + base64.b64encode(bytes(range(1, 33))).decode()
SLACK_SECRET_PATH = "T0FLOOD/B0GATE/SecretSlackPathXYZ"
figures = {}


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    try:
        with open(ERR, "rb") as f:
            print(f.read()[-3000:].decode("utf-8", "replace"), file=sys.stderr)
    except OSError:
        pass
    raise SystemExit(1)


def wait_for(cond, timeout, what, poll=0.02):
    end = min(time.monotonic() + timeout, DEADLINE)
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(poll)
    fail("timed out waiting for " + what)


# --- receivers ---------------------------------------------------------------------
class Sink:
    def __init__(self, name, secret=None):
        self.name = name
        self.log = os.path.join(TMP, "sink-%s.jsonl" % name)
        self.portfile = os.path.join(TMP, "sink-%s.port" % name)
        self.secret = secret
        self.port = 0
        self.p = None
        open(self.log, "a").close()

    def start(self):
        if os.path.exists(self.portfile):
            os.unlink(self.portfile)
        args = [sys.executable, SINK, "--port-file", self.portfile, "--log", self.log,
                "--port", str(self.port)]
        if self.secret:
            args += ["--secret", self.secret]
        self.p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: os.path.exists(self.portfile) and open(self.portfile).read().strip(),
                 10, "sink %s to listen" % self.name)
        self.port = int(open(self.portfile).read().strip())

    def stop(self):
        if self.p and self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            self.p.wait(10)

    def control(self, modes, default="200"):
        body = json.dumps({"modes": modes, "default": default}).encode()
        s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        s.sendall(b"POST /__control HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
        while s.recv(4096):
            pass
        s.close()

    def requests(self):
        out = []
        with open(self.log) as f:
            for line in f:
                if line.endswith("\n") and line.strip():  # a line still being written waits
                    out.append(json.loads(line))
        return out

    def ok(self):
        return [r for r in self.requests() if 200 <= (r["status"] or 0) < 300]


hook = Sink("hook", SECRET)
slack = Sink("slack")
am = Sink("am")
for s in (hook, slack, am):
    s.start()

secret_file = os.path.join(TMP, "hook.secret")
with open(secret_file, "w") as f:
    f.write(SECRET + "\n")
os.chmod(secret_file, 0o600)
open(os.path.join(TMP, "userdomains"), "w").close()
open(os.path.join(TMP, "localdomains"), "w").close()
open(LOG, "w").close()

with open(CFG, "w") as f:
    f.write("""mode: monitor
log_file: %(log)s
state_dir: %(tmp)s/state
audit_log: %(audit)s
control_socket: %(ctl)s
userdomains_file: %(tmp)s/userdomains
localdomains_file: %(tmp)s/localdomains
metrics_file: %(tmp)s/floodgate.prom
rules:
  - { name: mailbox-burst, scope: mailbox, metric: messages, window: 10m, above: 5, actions: [freeze, hold, alert] }
alerts:
  host_name: testhost
  digest_threshold: 5
  digest_interval: 10s
  resend_interval: 10s
  destinations:
    - name: hook
      type: webhook
      url: http://127.0.0.1:%(hook)d/hook
      allow_http: true
      secret_file: %(secret)s
      rate: 1000
      burst: 1000
      connect_timeout: 1s
      timeout: 2s
    - name: slack
      type: slack
      url: http://127.0.0.1:%(slack)d/services/%(spath)s
      allow_http: true
      connect_timeout: 1s
      timeout: 2s
    - name: am
      type: alertmanager
      url: http://127.0.0.1:%(am)d
      allow_http: true
      connect_timeout: 1s
      timeout: 2s
""" % {"log": LOG, "tmp": TMP, "audit": AUDIT, "ctl": CTL, "hook": hook.port,
       "slack": slack.port, "am": am.port, "secret": secret_file, "spath": SLACK_SECRET_PATH})
os.chmod(CFG, 0o600)  # an inline Slack URL: floodgated refuses a config others can read

# --- the log ------------------------------------------------------------------------
B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
seq = [0]


def b62(n, width):
    s = ""
    for _ in range(width):
        s = B62[n % 62] + s
        n //= 62
    return s


def burst(box, n=6, subject="Hello"):
    ts = time.strftime("%Y-%m-%d %H:%M:%S")
    out = []
    for _ in range(n):
        seq[0] += 1
        mid = "%s-%s-%s" % (b62(int(time.time()), 6), b62(seq[0], 6), b62(seq[0], 2))
        out.append("%s %s <= %s H=(pc) [192.0.2.7]:41000 P=esmtpsa A=dovecot_login:%s S=900 "
                   "id=m%d@x T=\"%s\" for r%d@remote.example\n"
                   % (ts, mid, box, box, seq[0], subject, seq[0] % 7))
    return out


def append(lines):
    with open(LOG, "a") as f:
        f.write("".join(lines))


# --- the daemon ---------------------------------------------------------------------
daemon = [None]


def start():
    daemon[0] = subprocess.Popen([BIN, "--config", CFG], stdout=subprocess.DEVNULL,
                                 stderr=open(ERR, "ab"))
    wait_for(lambda: ctl_json("status"), 15, "the daemon to answer")


def ctl(*args):
    return subprocess.run([CTLBIN, "--socket", CTL] + list(args), capture_output=True,
                          text=True, timeout=60)


def ctl_json(*args):
    if daemon[0].poll() is not None:
        fail("floodgated exited with %d" % daemon[0].returncode)
    p = ctl("--json", *args)
    if p.returncode != 0:
        return None
    return json.loads(p.stdout)


def audited_trips():
    out = []
    try:
        with open(AUDIT) as f:
            for line in f:
                if not line.endswith("\n"):
                    continue  # still being written
                o = json.loads(line)
                if o.get("event") == "trip":
                    out.append(o)
    except FileNotFoundError:
        pass
    return out


def hook_events(box, kind=None):
    return [r for r in hook.ok() if json.loads(r["body"])["data"].get("identity") == box
            and (kind is None or json.loads(r["body"])["type"].endswith(kind))]


start()
wait_for(lambda: (ctl_json("status") or {}).get("ready"), 15, "ready")

# 1. one trip to every destination ----------------------------------------------------
hostile = "<!channel> <https://evil.example|bank> & \\\"q\\\" `tick`"
t_append = time.time()
append(burst("box1@site.example", subject=hostile))
wait_for(lambda: hook_events("box1@site.example", "tripped") or
         hook_events("box1@site.example", "acted"), 10, "the webhook for box1")
r = (hook_events("box1@site.example", "tripped") or hook_events("box1@site.example", "acted"))[0]
if r["sig_ok"] is not True:
    fail("the receiver could not verify the webhook signature: %r" % r["headers"])
for h in ("webhook-id", "webhook-timestamp", "webhook-signature"):
    if h not in r["headers"]:
        fail("webhook without " + h)
if "." in r["headers"]["webhook-id"]:
    fail("webhook-id contains a dot")
figures["append_to_webhook_ms"] = int((r["t"] - t_append) * 1000)
sl = wait_for(lambda: [x for x in slack.ok() if "box1@site.example" in x["body"]], 10,
              "the Slack message for box1")
body = json.loads(sl[0]["body"])
if not body.get("text") or not body.get("blocks"):
    fail("Slack payload without text or blocks")
flat = sl[0]["body"]
if "<!channel>" in flat or "<https://evil" in flat:
    fail("log text reached Slack unescaped")
if SLACK_SECRET_PATH in flat:
    fail("the Slack URL is in the message")
amr = wait_for(lambda: [x for x in am.ok() if x["path"] == "/api/v2/alerts"
                        and "box1@site.example" in x["body"]], 15, "Alertmanager firing")
alerts = json.loads(amr[-1]["body"])
a1 = [a for a in alerts if a["labels"].get("identity") == "box1@site.example"]
if not a1 or a1[0]["labels"].get("alertname") != "FloodgateTrip":
    fail("Alertmanager alert without the identity label: %r" % alerts)

# 2. 429 with Retry-After ------------------------------------------------------------
# box1's last webhook (the outcome) is in, so the 429 goes to box2's first one
wait_for(lambda: hook_events("box1@site.example", "acted"), 10, "box1's outcome")
hook.control(["429:2"])
append(burst("box2@site.example"))
wait_for(lambda: hook_events("box2@site.example"), 20, "the webhook for box2 after a 429")
tries = [x for x in hook.requests() if "box2@site.example" in x.get("body", "")]
first429 = [x for x in tries if x["status"] == 429]
if not first429:
    fail("the sink never answered 429")
after = [x for x in tries if x["t"] > first429[0]["t"] and
         x["headers"]["webhook-id"] == first429[0]["headers"]["webhook-id"]]
if not after:
    fail("no retry of the 429'd event")
gap = after[0]["t"] - first429[0]["t"]
if gap < 1.95:
    fail("retried %.2f s after a 429 with Retry-After: 2" % gap)
if after[0]["body"] != first429[0]["body"]:
    fail("the retry re-serialized the body")
figures["retry_after_gap_s"] = round(gap, 2)

# 3. a hanging receiver does not stop log reading --------------------------------------
wait_for(lambda: hook_events("box2@site.example", "acted"), 20, "box2's outcome")
hook.control(["hang"])
append(burst("box3@site.example"))
wait_for(lambda: [x for x in audited_trips() if x["id"] == "box3@site.example"], 5, "box3's trip")
time.sleep(0.3)  # the request for box3 is open and hanging now
t0 = time.time()
append(burst("box4@site.example"))
wait_for(lambda: [x for x in audited_trips() if x["id"] == "box4@site.example"], 1.5,
         "box4's trip while the receiver hangs")
figures["trip_during_hang_ms"] = int((time.time() - t0) * 1000)
wait_for(lambda: hook_events("box3@site.example"), 30, "box3 after the hang timed out")

# 4. receiver down + SIGKILL + restart: exactly once -----------------------------------
hook.stop()
append(burst("box5@site.example") + burst("box6@site.example"))
wait_for(lambda: len([x for x in audited_trips()
                      if x["id"] in ("box5@site.example", "box6@site.example")]) >= 2, 5,
         "box5 and box6 trips")
time.sleep(2.5)  # a checkpoint holds them; attempts fail against the closed port
daemon[0].send_signal(signal.SIGKILL)
daemon[0].wait()
start()
hook.start()  # same port
wait_for(lambda: hook_events("box5@site.example") and hook_events("box6@site.example"), 60,
         "box5 and box6 after the outage and the restart")

# 5. test-alert ----------------------------------------------------------------------
p = ctl("test-alert")
if p.returncode != 0 or p.stdout.count("\n") < 3:
    fail("test-alert: exit %d\n%s%s" % (p.returncode, p.stdout, p.stderr))
hook.control(["500"])
p = ctl("test-alert")
if p.returncode != 1 or "hook" not in p.stdout + p.stderr:
    fail("test-alert with a failing receiver: exit %d\n%s%s" % (p.returncode, p.stdout, p.stderr))

# 6. release -------------------------------------------------------------------------
p = ctl("release", "box1@site.example")
if p.returncode != 0:
    fail("release: %s%s" % (p.stdout, p.stderr))
wait_for(lambda: hook_events("box1@site.example", "released"), 15, "the released webhook")


def resolved():
    for x in reversed(am.ok()):
        for a in json.loads(x["body"]):
            if a["labels"].get("identity") == "box1@site.example" and \
                    a.get("endsAt", "9") <= time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() + 1)):
                return True
    return False


wait_for(resolved, 20, "Alertmanager resolved for box1")

# 7. a 404 disables Slack until alert-enable -------------------------------------------


def slack_dest():
    st = ctl_json("status") or {}
    return [a for a in st.get("alerts", []) if a["name"] == "slack"]


if len((ctl_json("status") or {}).get("alerts", [])) != 3:
    fail("status does not list the 3 destinations")
slack.control(["404"])
append(burst("box7@site.example"))
wait_for(lambda: [a for a in slack_dest() if not a["enabled"] and a["last_status"] == 404], 30,
         "Slack disabled by a 404")
human = ctl("status").stdout
if "alert slack: slack http://127.0.0.1:%d, DISABLED" % slack.port not in human:
    fail("floodgatectl status does not show Slack disabled:\n" + human)
if SLACK_SECRET_PATH in human:
    fail("floodgatectl status shows the Slack URL")
refused = [x for x in slack.requests() if x["status"] == 404]
p = ctl("alert-enable", "slack")
if p.returncode != 0:
    fail("alert-enable: %s%s" % (p.stdout, p.stderr))
wait_for(lambda: [x for x in slack.ok() if x["body"] == refused[-1]["body"]], 30,
         "the alert Slack refused, sent again after alert-enable")
if not slack_dest()[0]["enabled"]:
    fail("Slack still disabled after alert-enable")

# 8. a 1,000-identity outbreak -------------------------------------------------------
slack_before = len(slack.ok())
t0 = time.time()
lines = []
for i in range(1000):
    lines += burst("o%04d@outbreak.example" % i)
append(lines)
wait_for(lambda: len({json.loads(x["body"])["data"]["identity"] for x in hook.ok()
                      if json.loads(x["body"])["data"].get("identity", "").endswith("@outbreak.example")}) >= 1000,
         90, "1,000 webhook trips")
figures["outbreak_webhook_s"] = round(time.time() - t0, 1)
time.sleep(12)  # one grouping window closes: its digest goes out
slack_msgs = slack.ok()[slack_before:]
figures["outbreak_slack_messages"] = len(slack_msgs)
if len(slack_msgs) > 12:
    fail("Slack got %d messages for one outbreak" % len(slack_msgs))
if not any("more" in x["body"] or "digest" in x["body"].lower() for x in slack_msgs):
    fail("no digest reached Slack")
am_last = wait_for(lambda: [x for x in am.ok()
                            if x["body"].count("@outbreak.example") >= 1000], 30,
                   "Alertmanager array with the outbreak")
figures["alertmanager_posts"] = len(am.ok())

# 9. secrets and metrics ---------------------------------------------------------------
seen = open(ERR, "rb").read().decode("utf-8", "replace")
seen += ctl("--json", "status").stdout
try:
    seen += open(os.path.join(TMP, "floodgate.prom")).read()
except FileNotFoundError:
    pass
for secret in (SLACK_SECRET_PATH, SECRET, SECRET[6:]):
    if secret in seen:
        fail("a secret leaked into logs, status or metrics")

# 10. the checkpoint cannot be written (a directory where its temporary file goes): the
# trip's alerts wait for it, a health alert leaves from memory at once -------------------
blocker = os.path.join(TMP, "state", "state.tmp")
os.mkdir(blocker)
append(burst("box9@site.example"))
wait_for(lambda: [x for x in audited_trips() if x["id"] == "box9@site.example"], 10, "box9's trip")
health = wait_for(lambda: [x for x in hook.ok() if "checkpoint cannot be written" in x["body"]],
                  20, "the health alert while the checkpoint fails")
if os.path.join(TMP, "state", "state") + ": Is a directory" not in \
        health[0]["body"].replace("\\/", "/"):
    fail("the health alert does not name the file and the error: %s" % health[0]["body"])
wait_for(lambda: [x for x in slack.ok() if "checkpoint cannot be written" in x["body"]], 20,
         "the health alert on Slack")
if hook_events("box9@site.example"):
    fail("box9's alert left before the checkpoint holding it was written")
if "health alert sent from memory" not in open(ERR, "rb").read().decode("utf-8", "replace"):
    fail("the health alert was not logged")
os.rmdir(blocker)
wait_for(lambda: hook_events("box9@site.example"), 20, "box9 once the checkpoint is written")

# 11. log injection: a health alert naming the writer, escaped like the rest -----------
# (Exim writes a sender given with -f raw: a quoted newline ends the physical line)
inj_box = "ev<!here>il"
ts = time.strftime("%Y-%m-%d %H:%M:%S")
append(["%s 1zzzzz-0INJ01-ab <= \"a\n%s 1zzzzz-0INJ02-ab <= v@x H=(y) [192.0.2.8]:1 "
        "P=esmtpsa A=dovecot_login:victim@site.example S=1 for z@remote.example\"@site.example "
        "U=%s P=local S=900 for r@remote.example\n" % (ts, ts, inj_box),
        "%s 1zzzzz-0INJ03-ab Completed\n" % ts])


def injection_events(sink, pick):
    return [x for x in sink.ok() if "log_injection" in x["body"] and pick(x["body"])]


got = wait_for(lambda: injection_events(hook, lambda b: True), 20, "the log_injection webhook")
data = json.loads(got[0]["body"])["data"]
if data.get("kind") != "log_injection" or inj_box not in data.get("message", ""):
    fail("log_injection webhook does not name the writer: %r" % data)
if "victim@site.example" in data.get("message", ""):
    fail("log_injection webhook names the forged identity: %r" % data)
sl = wait_for(lambda: [x for x in slack.ok() if "log injection" in x["body"]], 20,
              "the log_injection Slack message")
if "<!here>" in sl[0]["body"] or "&lt;!here&gt;" not in sl[0]["body"]:
    fail("the identity reached Slack unescaped: %r" % sl[0]["body"][:400])

# exactly once over the whole run: every delivered event id delivered once
ids = [x["headers"]["webhook-id"] for x in hook.ok()
       if not json.loads(x["body"])["type"].startswith("floodgate.test")]
dups = len(ids) - len(set(ids))
figures["webhook_duplicates"] = dups
if dups:
    fail("%d webhook events delivered twice" % dups)

daemon[0].send_signal(signal.SIGTERM)
if daemon[0].wait(30) != 0:
    fail("floodgated did not exit 0 on SIGTERM")
prom = {}
for line in open(os.path.join(TMP, "floodgate.prom")):  # rewritten at shutdown
    if line and not line.startswith("#"):
        name, _, value = line.rstrip("\n").rpartition(" ")
        prom[name] = float(value)
for dest in ("hook", "slack", "am"):
    if prom.get('floodgate_alert_destination_enabled{destination="%s"}' % dest) != 1:
        fail("metrics: destination %s not enabled" % dest)
if prom.get('floodgate_alerts_total{destination="hook",result="delivered"}', 0) < 1000:
    fail("metrics: fewer than 1,000 webhook deliveries counted")
if prom.get('floodgate_alert_delivery_duration_seconds_count{kind="webhook"}', 0) < 1000:
    fail("metrics: webhook delivery durations not counted")
for s in (hook, slack, am):
    s.stop()
for k, v in figures.items():
    print("FIGURE %s=%s" % (k, v))
print("alerts: all scenarios passed")
PY
