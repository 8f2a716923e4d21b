#!/usr/bin/env bash
# Alert delivery over TLS: verification is on and cannot be talked out of it.
#
# A signed webhook on an https receiver on 127.0.0.1 whose certificate is self-signed
# (made here with openssl):
#  1. without ca_file the certificate is refused: nothing is delivered, the daemon logs a
#     certificate problem (at err, naming the destination, never the URL's path), the
#     alert stays pending (floodgatectl status);
#  2. a reload that names the certificate as ca_file: the pending alert is delivered, the
#     signature checked by the receiver.
# Every wait is bounded; the test stops itself after 120 s.
set -euo pipefail
build="${FG_BUILD_DIR:?}"
src="${FG_SOURCE_DIR:?}"
for tool in python3 openssl; do
    if ! command -v "$tool" >/dev/null; then
        echo "skip: $tool not found"
        exit 77
    fi
done
tmp=$(mktemp -d)
trap 'pkill -TERM -f "$tmp/" 2>/dev/null || true; rm -rf "$tmp"' EXIT

openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=127.0.0.1" \
    -addext "subjectAltName=IP:127.0.0.1" -keyout "$tmp/key.pem" -out "$tmp/cert.pem" \
    >/dev/null 2>&1

python3 - "$build" "$src" "$tmp" <<'PY'
import json, os, signal, subprocess, sys, time

BUILD, SRC, TMP = sys.argv[1:4]
DEADLINE = time.monotonic() + 120
CTL = os.path.join(TMP, "ctl.sock")
CFG = os.path.join(TMP, "floodgate.yml")
LOG = os.path.join(TMP, "exim_mainlog")
ERR = os.path.join(TMP, "floodgated.err")
SINKLOG = os.path.join(TMP, "sink.jsonl")
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
URLPATH = "hooks/TlsSecretPath"


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    try:
        print(open(ERR).read()[-3000:], file=sys.stderr)
    except OSError:
        pass
    raise SystemExit(1)


def wait_for(cond, timeout, what):
    end = min(time.monotonic() + timeout, DEADLINE)
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    fail("timed out waiting for " + what)


portfile = os.path.join(TMP, "sink.port")
sink = subprocess.Popen([sys.executable, os.path.join(SRC, "tests", "e2e", "http_sink.py"),
                         "--port-file", portfile, "--log", SINKLOG, "--secret", SECRET,
                         "--tls-cert", os.path.join(TMP, "cert.pem"),
                         "--tls-key", os.path.join(TMP, "key.pem")],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
port = int(wait_for(lambda: os.path.exists(portfile) and open(portfile).read().strip(), 10,
                    "the https receiver"))
for name in ("userdomains", "localdomains"):
    open(os.path.join(TMP, name), "w").close()
open(LOG, "w").close()


def write_config(ca):
    body = """mode: monitor
log_file: %(log)s
state_dir: %(tmp)s/state
audit_log: %(tmp)s/audit.jsonl
control_socket: %(ctl)s
userdomains_file: %(tmp)s/userdomains
localdomains_file: %(tmp)s/localdomains
rules:
  - { name: burst, scope: mailbox, metric: messages, window: 10m, above: 3, actions: [alert] }
alerts:
  destinations:
    - name: tlshook
      type: webhook
      url: https://127.0.0.1:%(port)d/%(path)s
      secret: %(secret)s
      connect_timeout: 1s
      timeout: 3s
%(ca)s""" % {"log": LOG, "tmp": TMP, "ctl": CTL, "port": port, "path": URLPATH,
             "secret": SECRET,
             "ca": "      ca_file: %s\n" % os.path.join(TMP, "cert.pem") if ca else ""}
    with open(CFG + ".tmp", "w") as f:
        f.write(body)
    os.chmod(CFG + ".tmp", 0o600)
    os.rename(CFG + ".tmp", CFG)


def ctl(*args):
    return subprocess.run([os.path.join(BUILD, "floodgatectl"), "--socket", CTL] + list(args),
                          capture_output=True, text=True, timeout=30)


def dest():
    p = ctl("--json", "status")
    if p.returncode != 0:
        return None
    return json.loads(p.stdout)["alerts"][0]


def delivered():
    out = []
    try:
        with open(SINKLOG) as f:
            for line in f:
                if not line.endswith("\n"):
                    continue  # still being written
                r = json.loads(line)
                if r.get("status") == 200:
                    out.append(r)
    except FileNotFoundError:
        pass
    return out


write_config(ca=False)
d = subprocess.Popen([os.path.join(BUILD, "floodgated"), "--config", CFG],
                     stdout=subprocess.DEVNULL, stderr=open(ERR, "wb"))
wait_for(dest, 15, "the daemon")
ts = time.strftime("%Y-%m-%d %H:%M:%S")
with open(LOG, "a") as f:
    for i in range(5):
        f.write("%s 1xTLS%d-000000-AB <= box@tls.example H=(pc) [192.0.2.9]:1 P=esmtpsa "
                "A=dovecot_login:box@tls.example S=100 for r@remote.example\n" % (ts, i))

# 1. a self-signed certificate without ca_file: refused
wait_for(lambda: "certificate" in open(ERR).read(), 20, "the certificate problem in the log")
err = open(ERR).read()
line = [l for l in err.splitlines() if "certificate" in l][0]
if "tlshook" not in line:
    fail("the certificate error does not name the destination: " + line)
if URLPATH in err or "TlsSecretPath" in err:
    fail("the URL's path reached the log")
if not (line.startswith("ERR") or "PRIORITY=3" in line or "err" in line.lower()):
    fail("the certificate problem is not logged at err: " + line)
if delivered():
    fail("delivered over a certificate nobody vouches for")
st = dest()
if not st or st["pending"] < 1:
    fail("the alert is not kept pending: %r" % st)

# 2. reload with the certificate as ca_file: delivered
write_config(ca=True)
p = ctl("reload")
if p.returncode != 0:
    fail("reload: " + p.stdout + p.stderr)
# TLS failures back off for minutes; a reload that changes the destination's CA file makes
# its alerts due at once
ok = wait_for(delivered, 60, "delivery once ca_file names the certificate")
if ok[0]["sig_ok"] is not True:
    fail("the receiver could not verify the signature")
d.send_signal(signal.SIGTERM)
if d.wait(30) != 0:
    fail("floodgated did not exit 0")
sink.send_signal(signal.SIGTERM)
sink.wait(10)
print("alerts over TLS: refused without ca_file, delivered with it")
PY
