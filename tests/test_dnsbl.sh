#!/usr/bin/env bash
# The host's own reputation end to end: the real floodgated looks its addresses up in a
# blocklist zone served by dnsmasq on 127.0.0.1 (reputation.nameserver), through c-ares
# on its loop, and alerts a loopback webhook receiver (tests/e2e/http_sink.py).
#
#  1. not listed: no alert, floodgate_dnsbl_listed{...} 0 for both addresses;
#  2. a trip, then dnsmasq lists one address (127.0.0.2, 127.0.0.4) and a reload looks
#     again: one "dnsbl_listed" alert naming the address, the zone, both codes and the
#     identity that tripped; the metric is 1 for that address, 0 for the other; audited;
#  3. dnsmasq down (connection refused/timeouts): lookup errors counted, still listed, no
#     "delisted" alert (an outage is never a delisting);
#  4. a resolver that never answers (timeout 10s): a trip appended meanwhile is audited at
#     once (the lookups wait on the loop, never in the tailer's way);
#  5. dnsmasq back without the listing: a "dnsbl_delisted" alert, the metric 0.
# Every wait is bounded; the whole test stops itself after 180 s. Exit 77 without dnsmasq.
set -euo pipefail
build="${FG_BUILD_DIR:?}"
src="${FG_SOURCE_DIR:?}"
dnsmasq=$(command -v dnsmasq || true)
[ -z "$dnsmasq" ] && [ -x /usr/sbin/dnsmasq ] && dnsmasq=/usr/sbin/dnsmasq
if [ -z "$dnsmasq" ]; then
    echo "skip: dnsmasq not found (Debian: dnsmasq-base; AlmaLinux: dnsmasq; scripts/install-deps)"
    exit 77
fi
if ! command -v python3 >/dev/null; then
    echo "skip: python3 not found"
    exit 77
fi
tmp=$(mktemp -d)
trap 'pkill -TERM -f "$tmp/" 2>/dev/null || true; rm -rf "$tmp"' EXIT

python3 - "$build" "$src" "$tmp" "$dnsmasq" <<'PY'
import json, os, signal, socket, subprocess, sys, time, urllib.request

BUILD, SRC, TMP, DNSMASQ = sys.argv[1:5]
BIN = os.path.join(BUILD, "floodgated")
SINK = os.path.join(SRC, "tests", "e2e", "http_sink.py")
DEADLINE = time.monotonic() + 180
LOG = os.path.join(TMP, "exim_mainlog")
AUDIT = os.path.join(TMP, "audit.jsonl")
CFG = os.path.join(TMP, "floodgate.yml")
ERR = os.path.join(TMP, "floodgated.err")
ZONE = "bl.floodgate.test"
LISTED = "192.0.2.25"
CLEAN = "192.0.2.26"


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    for f in (ERR, os.path.join(TMP, "dnsmasq.log")):
        try:
            print(open(f, "rb").read()[-3000:].decode("utf-8", "replace"), file=sys.stderr)
        except OSError:
            pass
    raise SystemExit(1)


def wait_for(cond, timeout, what, poll=0.05):
    end = min(time.monotonic() + timeout, DEADLINE)
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(poll)
    fail("timed out waiting for " + what)


def free_port(kind):
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# --- the DNS server -------------------------------------------------------------------
DNS_PORT = free_port(socket.SOCK_DGRAM)
dns = [None]


def dns_start(listed):
    args = [DNSMASQ, "--keep-in-foreground", "--no-resolv", "--no-hosts", "--conf-file=/dev/null",
            "--listen-address=127.0.0.1", "--bind-interfaces", "--port=%d" % DNS_PORT,
            "--pid-file=", "--log-queries", "--log-facility=" + os.path.join(TMP, "dnsmasq.log"),
            "--local=/%s/" % ZONE]
    if os.getuid() == 0:
        args.append("--user=root")  # keep the log file in the private directory writable
    if listed:
        rev = ".".join(reversed(LISTED.split(".")))
        args += ["--host-record=%s.%s,127.0.0.2" % (rev, ZONE),
                 "--host-record=%s.%s,127.0.0.4" % (rev, ZONE)]
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                         stderr=open(os.path.join(TMP, "dnsmasq.err"), "ab"))
    dns[0] = p

    def answers():
        if p.poll() is not None:
            fail("dnsmasq exited with %d: %s" % (p.returncode,
                 open(os.path.join(TMP, "dnsmasq.err")).read()[-500:]))
        q = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + b"".join(
            bytes([len(x)]) + x.encode() for x in ["probe"] + ZONE.split(".")) + \
            b"\x00\x00\x01\x00\x01"
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(0.2)
        try:
            s.sendto(q, ("127.0.0.1", DNS_PORT))
            return s.recv(512)
        except OSError:
            return None
        finally:
            s.close()
    wait_for(answers, 10, "dnsmasq to answer")


def select_ready(sock):
    import select
    return bool(select.select([sock], [], [], 0)[0])


def dns_stop():
    if dns[0] and dns[0].poll() is None:
        dns[0].send_signal(signal.SIGTERM)
        dns[0].wait(10)


# --- the receiver -----------------------------------------------------------------------
hook_log = os.path.join(TMP, "hook.jsonl")
hook_port_file = os.path.join(TMP, "hook.port")
open(hook_log, "w").close()
sink = subprocess.Popen([sys.executable, SINK, "--port-file", hook_port_file, "--log", hook_log],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
wait_for(lambda: os.path.exists(hook_port_file) and open(hook_port_file).read().strip(), 10,
         "the receiver")
HOOK = int(open(hook_port_file).read().strip())


def health(kind):
    out = []
    with open(hook_log) as f:
        for line in f:
            if not line.endswith("\n") or not line.strip():
                continue
            r = json.loads(line)
            if r.get("status") != 200:
                continue
            data = json.loads(r["body"]).get("data", {})
            if data.get("kind") == kind:
                out.append(data)
    return out


METRICS = free_port(socket.SOCK_STREAM)


def metric(name, ip):
    try:
        text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % METRICS, timeout=5).read().decode()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(name + "{") and 'ip="%s"' % ip in line and 'zone="%s"' % ZONE in line:
            return float(line.rsplit(" ", 1)[1])
    return None


# --- the daemon -------------------------------------------------------------------------
open(os.path.join(TMP, "userdomains"), "w").close()
open(os.path.join(TMP, "localdomains"), "w").close()
open(LOG, "w").close()
with open(CFG, "w") as f:
    f.write("""mode: monitor
log_file: %(log)s
state_dir: %(tmp)s/state
audit_log: %(audit)s
control_socket: %(tmp)s/ctl.sock
userdomains_file: %(tmp)s/userdomains
localdomains_file: %(tmp)s/localdomains
metrics_listen: 127.0.0.1:%(metrics)d
rules:
  - { name: mailbox-burst, scope: mailbox, metric: messages, window: 10m, above: 5, actions: [alert] }
reputation:
  ips: [%(listed)s, %(clean)s]
  zones: [%(zone)s]
  interval: 10m
  timeout: 500ms
  nameserver: 127.0.0.1:%(dns)d
alerts:
  host_name: testhost
  destinations:
    - name: hook
      type: webhook
      url: http://127.0.0.1:%(hook)d/hook
      allow_http: true
      rate: 1000
      burst: 1000
""" % {"log": LOG, "tmp": TMP, "audit": AUDIT, "metrics": METRICS, "listed": LISTED,
       "clean": CLEAN, "zone": ZONE, "dns": DNS_PORT, "hook": HOOK})
os.chmod(CFG, 0o600)  # an inline URL: floodgated refuses a config others can read

dns_start(listed=False)
daemon = subprocess.Popen([BIN, "--config", CFG], stdout=subprocess.DEVNULL, stderr=open(ERR, "ab"))


def alive():
    if daemon.poll() is not None:
        fail("floodgated exited with %d" % daemon.returncode)
    return True


def reload():
    alive()
    daemon.send_signal(signal.SIGHUP)


# 1. clean: the metric is 0 for both, no alert
wait_for(lambda: alive() and metric("floodgate_dnsbl_listed", LISTED) == 0 and
         metric("floodgate_dnsbl_listed", CLEAN) == 0, 20, "both addresses known clear")
if health("dnsbl_listed"):
    fail("an alert for a clean address")

# 2. a trip, then listed
ts = time.strftime("%Y-%m-%d %H:%M:%S")
with open(LOG, "a") as f:
    for i in range(7):
        f.write("%s 1aB%03d-00000%d-AB <= spam@site.example H=(pc) [192.0.2.7]:4100 "
                "P=esmtpsa A=dovecot_login:spam@site.example S=900 id=m%d@x for r@remote.example\n"
                % (ts, i, i % 10, i))


def audited(event):
    try:
        return [json.loads(l) for l in open(AUDIT) if l.endswith("\n") and
                json.loads(l).get("event") == event]
    except FileNotFoundError:
        return []


wait_for(lambda: audited("trip"), 15, "the trip")
dns_stop()
dns_start(listed=True)
t0 = time.time()
reload()
listed = wait_for(lambda: health("dnsbl_listed"), 20, "the listing alert")
msg = listed[0]["message"]
for want in (LISTED, ZONE, "127.0.0.2", "127.0.0.4", "spam@site.example"):
    if want not in msg:
        fail("the listing alert lacks %r: %r" % (want, msg))
if CLEAN in msg:
    fail("the clean address is in the listing alert: %r" % msg)
wait_for(lambda: metric("floodgate_dnsbl_listed", LISTED) == 1 and
         metric("floodgate_dnsbl_listed", CLEAN) == 0, 10, "the metric to show the listing")
au = audited("dnsbl_listed")
if not au or au[0]["ip"] != LISTED or au[0]["recent_trips"] != ["spam@site.example"]:
    fail("the listing is not audited as expected: %r" % au)
print("listing: reload to alert %.2f s: %s" % (time.time() - t0, msg))

# 3. the DNS server is down: unknown, never a delisting
errors0 = metric("floodgate_dnsbl_lookup_errors_total", LISTED) or 0
dns_stop()
reload()
wait_for(lambda: (metric("floodgate_dnsbl_lookup_errors_total", LISTED) or 0) > errors0, 20,
         "a lookup error to be counted")
time.sleep(1)
if health("dnsbl_delisted"):
    fail("an outage was taken for a delisting")
if metric("floodgate_dnsbl_listed", LISTED) != 1:
    fail("an outage changed the listing metric")

# 4. a resolver that never answers: the lookups wait 10 s a try on the loop, log reading
# goes on
hole = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
hole.bind(("127.0.0.1", DNS_PORT))
with open(CFG) as f:
    cfg = f.read()
with open(CFG, "w") as f:
    f.write(cfg.replace("timeout: 500ms", "timeout: 10s"))
errors1 = metric("floodgate_dnsbl_lookup_errors_total", LISTED) or 0
reload()
wait_for(lambda: hole.recvfrom(512, socket.MSG_DONTWAIT) if select_ready(hole) else None, 10,
         "a query to the silent resolver")
ts = time.strftime("%Y-%m-%d %H:%M:%S")
t1 = time.time()
with open(LOG, "a") as f:
    for i in range(7):
        f.write("%s 1aC%03d-00000%d-AB <= late@site.example H=(pc) [192.0.2.8]:4100 "
                "P=esmtpsa A=dovecot_login:late@site.example S=900 id=n%d@x for r@remote.example\n"
                % (ts, i, i % 10, i))
wait_for(lambda: [o for o in audited("trip") if o["id"] == "late@site.example"], 5,
         "a trip audited while the lookups wait")
lat = time.time() - t1
if (metric("floodgate_dnsbl_lookup_errors_total", LISTED) or 0) != errors1:
    fail("the lookups did not wait for the silent resolver")
print("trip audited %.3f s after the append, with blocklist lookups waiting on a silent "
      "resolver" % lat)
hole.close()
with open(CFG, "w") as f:
    f.write(cfg)

# 5. back, not listed: delisted
dns_start(listed=False)
reload()
de = wait_for(lambda: health("dnsbl_delisted"), 20, "the delisting alert")
if LISTED not in de[0]["message"] or ZONE not in de[0]["message"]:
    fail("the delisting alert: %r" % de[0]["message"])
wait_for(lambda: metric("floodgate_dnsbl_listed", LISTED) == 0, 10, "the metric back to 0")
if len(health("dnsbl_listed")) != 1:
    fail("the listing was alerted %d times" % len(health("dnsbl_listed")))
alive()
daemon.send_signal(signal.SIGTERM)
if daemon.wait(20) != 0:
    fail("floodgated exited with %d after SIGTERM" % daemon.returncode)
err = open(ERR, "rb").read().decode("utf-8", "replace")
if "Sanitizer" in err or "runtime error" in err:
    fail("a sanitizer report in floodgated's stderr")
dns_stop()
sink.send_signal(signal.SIGTERM)
print("ok: listed, outage (unknown), silent resolver (log reading goes on), delisted")
PY
