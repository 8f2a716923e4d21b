#!/usr/bin/env bash
# Metrics of the real floodgated (alerting.md §6): the textfile (metrics_file) and the
# loopback endpoint (metrics_listen), checked against the daemon's own status.
#
#  1. start on an empty log: the textfile is written at once and holds every known series
#     at 0 (every rule's trips, the configured backend's action steps, every step's
#     duration histogram, the scopes); it and
#     GET /metrics pass a strict parser of the 0.0.4 text format (and promtool when
#     installed); the endpoint answers 404/405/400 to what is not GET /metrics.
#  2. append a log fixture: /metrics agrees with `floodgatectl status --json` (records,
#     parse errors, identities, trips, held); the textfile catches up by its periodic
#     rewrite; no mailbox, account, IP, host or message id of the log appears anywhere.
#  2b. hostile lines: a subject swallowing a forged arrival counts once in
#     floodgate_log_injection_total{kind="absorbed"}, is audited and logged naming its
#     writer (not the forged one); a record dated 2099 in floodgate_records_clock_ahead_total.
#  3. SIGHUP with a renamed rule: reloads ok 1, the new rule at 0, the old one's count kept;
#     an invalid file: reloads failed 1, last_reload_successful 0.
#  4. SIGTERM: exit 0; the textfile is rewritten at shutdown (mode 0644, no .tmp left).
# Every wait is bounded; nothing sleeps longer than a poll.
set -euo pipefail
bin="${FG_BUILD_DIR:?}/floodgated"
ctl="${FG_BUILD_DIR:?}/floodgatectl"
fixture="${FG_SOURCE_DIR:?}/tests/fixtures/eximlog/generated-mixed.log"
if ! command -v python3 >/dev/null; then
    echo "skip: python3 not found"
    exit 77
fi
[ -x "$bin" ] || { echo "missing $bin"; exit 1; }
[ -x "$ctl" ] || { echo "missing $ctl"; exit 1; }
[ -r "$fixture" ] || { echo "skip: no fixture $fixture"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

python3 - "$bin" "$ctl" "$fixture" "$tmp" <<'PY'
import json, os, re, shutil, signal, socket, subprocess, sys, time

BIN, CTL, FIXTURE, TMP = sys.argv[1:5]
DEADLINE = time.monotonic() + 240
LOG = os.path.join(TMP, "exim_mainlog")
STATE = os.path.join(TMP, "state")
SOCK = os.path.join(TMP, "run", "ctl.sock")
CFG = os.path.join(TMP, "floodgate.yml")
PROM = os.path.join(TMP, "textfile", "floodgate.prom")
ERR = os.path.join(TMP, "floodgated.stderr")

def fail(msg):
    try:
        with open(ERR, errors="replace") as f:
            msg += "\n--- floodgated stderr ---\n" + f.read()[-4000:]
    except OSError:
        pass
    print("FAIL: " + msg, file=sys.stderr)
    raise SystemExit(1)

def wait(pred, timeout, what):
    end = min(time.monotonic() + timeout, DEADLINE)
    while True:
        v = pred()
        if v:
            return v
        if proc.poll() is not None:
            fail("floodgated exited (%r) while waiting for %s" % (proc.returncode, what))
        if time.monotonic() > end:
            fail("timed out waiting for %s" % what)
        time.sleep(0.05)

# --- a strict parser of the text format (0.0.4) ------------------------------------------
NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
LNAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")

def parse_labels(s, where):
    labels, i = {}, 0
    while i < len(s):
        eq = s.find("=", i)
        if eq < 0 or s[eq + 1:eq + 2] != '"':
            raise ValueError("%s: bad label syntax" % where)
        name = s[i:eq]
        if not LNAME.match(name) or name.startswith("__") or name in labels:
            raise ValueError("%s: bad or repeated label name %r" % (where, name))
        j, val = eq + 2, []
        while True:
            if j >= len(s):
                raise ValueError("%s: unterminated label value" % where)
            c = s[j]
            if c == "\\":
                e = s[j + 1:j + 2]
                if e not in ('\\', '"', 'n'):
                    raise ValueError("%s: bad escape" % where)
                val.append("\n" if e == "n" else e)
                j += 2
            elif c == '"':
                j += 1
                break
            else:
                val.append(c)
                j += 1
        labels[name] = "".join(val)
        if j < len(s):
            if s[j] != ",":
                raise ValueError("%s: labels not separated by commas" % where)
            j += 1
        i = j
    return labels

def parse_value(v, where):
    if v in ("+Inf", "-Inf", "NaN"):
        return float(v.replace("Inf", "inf").replace("NaN", "nan"))
    if not re.match(r"-?[0-9]", v):
        raise ValueError("%s: bad value %r" % (where, v))
    return float(v)

def strict(text):
    """{(name, frozenset(labels)): value}, {family: type}; raises ValueError."""
    if text and not text.endswith("\n"):
        raise ValueError("no final newline")
    types, helps, samples, closed, cur = {}, set(), {}, set(), None
    hist = {}
    for n, line in enumerate(text.split("\n")[:-1], 1):
        where = "line %d" % n
        if line == "":
            raise ValueError(where + ": empty line")
        if line.startswith("#"):
            m = re.match(r"# (HELP|TYPE) (\S+) (.*)\Z", line)
            if not m or not NAME.match(m.group(2)):
                raise ValueError(where + ": bad comment " + line)
            kind, name, rest = m.groups()
            if name in closed or name == cur:
                raise ValueError(where + ": HELP/TYPE after samples of " + name)
            if kind == "HELP":
                if name in helps:
                    raise ValueError(where + ": second HELP for " + name)
                if re.search(r"\\[^\\n]", rest.replace("\\\\", "")):
                    raise ValueError(where + ": bad escape in HELP")
                helps.add(name)
            else:
                if name in types:
                    raise ValueError(where + ": second TYPE for " + name)
                if rest not in ("counter", "gauge", "histogram", "summary", "untyped"):
                    raise ValueError(where + ": bad type " + rest)
                if rest == "counter" and not name.endswith("_total"):
                    raise ValueError(where + ": counter not ending in _total: " + name)
                types[name] = rest
            continue
        m = re.match(r"([^{ ]+)(?:\{(.*)\})? (\S+)\Z", line)
        if not m or not NAME.match(m.group(1)):
            raise ValueError(where + ": bad sample " + line)
        name, lab, val = m.group(1), m.group(2) or "", m.group(3)
        fam = name if name in types else None
        if fam is None:
            for sfx in ("_bucket", "_sum", "_count"):
                base = name[:-len(sfx)]
                if name.endswith(sfx) and types.get(base) == "histogram":
                    fam = base
        if fam is None:
            raise ValueError(where + ": no TYPE before " + name)
        if fam != cur:
            if fam in closed:
                raise ValueError(where + ": samples of %s not together" % fam)
            if cur:
                closed.add(cur)
            cur = fam
        labels = parse_labels(lab, where)
        key = (name, frozenset(labels.items()))
        if key in samples:
            raise ValueError(where + ": duplicate series " + line)
        v = parse_value(val, where)
        samples[key] = v
        if types[fam] == "histogram" and name.endswith("_bucket"):
            hk = frozenset((k, x) for k, x in labels.items() if k != "le")
            prev = hist.get((fam, hk), -1)
            if v < prev:
                raise ValueError(where + ": buckets not cumulative")
            hist[(fam, hk)] = v
    return samples, types

def value(samples, name, **labels):
    key = (name, frozenset(labels.items()))
    if key not in samples:
        raise KeyError("%s%r missing" % (name, labels))
    return samples[key]

def total(samples, name):
    return sum(v for (n, _), v in samples.items() if n == name)

def label_values(samples):
    return {v for (_, labs), _ in samples.items() for _, v in labs}

def promtool(text, what):
    exe = shutil.which("promtool")
    if not exe:
        return
    p = subprocess.run([exe, "check", "metrics"], input=text.encode(), capture_output=True,
                       timeout=30)
    if p.returncode != 0:
        fail("promtool check metrics (%s): %s%s" % (what, p.stdout.decode(), p.stderr.decode()))

def check(text, what):
    try:
        s, t = strict(text)
    except ValueError as e:
        fail("%s is not a valid exposition: %s\n%s" % (what, e, text))
    promtool(text, what)
    return s, t

# the strict parser must refuse what it is there to catch
for bad in ("# TYPE a gauge\na 1", "a 1\n", "# TYPE a counter\na 1\n",
            "# TYPE a gauge\na{x=\"1\"} 1\na{x=\"1\"} 2\n",
            "# TYPE a gauge\n# TYPE b gauge\na 1\nb 1\na{x=\"2\"} 1\n",
            "# TYPE a gauge\na{x=\"\\t\"} 1\n"):
    try:
        strict(bad)
    except ValueError:
        continue
    fail("the test's parser accepted %r" % bad)

# --- HTTP ----------------------------------------------------------------------------------
def http(port, request, timeout=5):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(request)
    out = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        out += b
    s.close()
    head, _, body = out.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(l.split(": ", 1) for l in lines[1:])
    return lines[0], headers, body.decode()

def scrape(port):
    status, headers, body = http(port, b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    if status != "HTTP/1.1 200 OK":
        fail("GET /metrics: " + status)
    if headers.get("Content-Type") != "text/plain; version=0.0.4; charset=utf-8":
        fail("GET /metrics: Content-Type %r" % headers.get("Content-Type"))
    if int(headers.get("Content-Length", -1)) != len(body.encode()):
        fail("GET /metrics: Content-Length %r for %d bytes" % (headers.get("Content-Length"),
                                                             len(body.encode())))
    return body

def status():
    p = subprocess.run([CTL, "--socket", SOCK, "--json", "status"], capture_output=True,
                       timeout=10)
    if p.returncode != 0:
        return None
    try:
        return json.loads(p.stdout.decode())
    except ValueError:
        return None

def textfile():
    try:
        with open(PROM) as f:
            return f.read()
    except FileNotFoundError:
        return None

# --- the daemon ----------------------------------------------------------------------------
s = socket.socket()
s.bind(("127.0.0.1", 0))
PORT = s.getsockname()[1]
s.close()

def write_config(rules, broken=False):
    body = ("mode: monitor\nlog_file: %s\nstate_dir: %s\naudit_log: %s\ncontrol_socket: %s\n"
            "userdomains_file: %s\nlocaldomains_file: %s\nmetrics_file: %s\n"
            "metrics_listen: 127.0.0.1:%d\nrules:\n"
            % (LOG, STATE, os.path.join(TMP, "log", "audit.jsonl"), SOCK,
               os.path.join(TMP, "userdomains"), os.path.join(TMP, "localdomains"), PROM, PORT))
    for name, above in rules:
        body += ("  - name: %s\n    scope: mailbox\n    metric: messages\n"
                 "    window: 1h\n    above: %d\n    actions: [freeze, hold]\n" % (name, above))
    if broken:
        body += "  - name: [not, a, name]\n"
    with open(CFG + ".tmp", "w") as f:
        f.write(body)
    os.rename(CFG + ".tmp", CFG)

os.makedirs(os.path.dirname(PROM))
with open(os.path.join(TMP, "userdomains"), "w") as f:
    f.write("example.com: acct1\n")
open(os.path.join(TMP, "localdomains"), "w").close()
open(LOG, "w").close()
write_config([("burst", 1)])

# what the fixture holds, counted by the replay mode of the same binary
p = subprocess.run([BIN, "--config", CFG, "--replay", FIXTURE, "--json"], capture_output=True,
                   timeout=60)
if p.returncode != 0:
    fail("replay: %s" % p.stderr.decode())
replay = json.loads(p.stdout.decode())

proc = subprocess.Popen([BIN, "--config", CFG], stdin=subprocess.DEVNULL,
                        stdout=open(ERR, "w"), stderr=subprocess.STDOUT,
                        env=dict({"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"},
                                 **{k: v for k, v in os.environ.items()
                                    if k in ("ASAN_OPTIONS", "UBSAN_OPTIONS")}))
try:
    # 1. at start: every known series at 0, in both outputs
    wait(lambda: (status() or {}).get("ready"), 30, "the daemon to be ready")
    first = wait(textfile, 20, "the textfile written at start")
    for what, text in (("textfile at start", first), ("/metrics at start", scrape(PORT))):
        smp, types = check(text, what)
        for name, labels in (("floodgate_trips_total", {"rule": "burst", "scope": "mailbox"}),
                             ("floodgate_actions_total", {"action": "freeze", "backend": "exim",
                                                          "result": "ok"}),
                             ("floodgate_actions_total", {"action": "hold", "backend": "exim",
                                                          "result": "failed"}),
                             ("floodgate_identities", {"scope": "account"}),
                             ("floodgate_tail_records_total", {}),
                             ("floodgate_parse_errors_total", {}),
                             ("floodgate_frozen_messages_total", {}),
                             ("floodgate_held_identities", {}),
                             ("floodgate_outbox_entries", {}),
                             ("floodgate_state_commits_total", {"result": "failed"}),
                             ("floodgate_log_injection_total", {"kind": "absorbed"}),
                             ("floodgate_log_injection_total", {"kind": "helo"}),
                             ("floodgate_records_clock_ahead_total", {}),
                             ("floodgate_trap_hits_total", {}),
                             ("floodgate_campaign_trips_total", {}),
                             ("floodgate_campaign_keys_evicted_total", {})):
            try:
                v = value(smp, name, **labels)
            except KeyError as e:
                fail("%s: %s" % (what, e))
            if v != 0:
                fail("%s: %s%r is %r, want 0 before any record" % (what, name, labels, v))
        for name in ("floodgate_build_info", "floodgate_log_lag_seconds",
                     "floodgate_tail_last_record_timestamp_seconds", "floodgate_tail_backlog_bytes",
                     "floodgate_config_last_reload_successful", "process_cpu_seconds_total",
                     "process_resident_memory_bytes", "process_open_fds",
                     "process_start_time_seconds", "floodgate_lines_total"):
            if name not in types:
                fail("%s: no %s" % (what, name))
        if types.get("floodgate_action_duration_seconds") != "histogram":
            fail(what + ": floodgate_action_duration_seconds is not a histogram")
        for act in ("freeze", "thaw", "hold", "suspend", "unhold", "unsuspend"):
            for name, labels in (("floodgate_action_duration_seconds_bucket",
                                  {"action": act, "le": "0.01"}),
                                 ("floodgate_action_duration_seconds_bucket",
                                  {"action": act, "le": "60"}),
                                 ("floodgate_action_duration_seconds_bucket",
                                  {"action": act, "le": "+Inf"}),
                                 ("floodgate_action_duration_seconds_sum", {"action": act}),
                                 ("floodgate_action_duration_seconds_count", {"action": act})):
                try:
                    v = value(smp, name, **labels)
                except KeyError as e:
                    fail("%s: %s" % (what, e))
                if v != 0:
                    fail("%s: %s%r is %r, want 0 before any step" % (what, name, labels, v))
        if value(smp, "floodgate_config_last_reload_successful") != 1:
            fail(what + ": the configuration at start is not counted as applied")
        if value(smp, "process_resident_memory_bytes") <= 0 or value(smp, "process_open_fds") <= 0:
            fail(what + ": process metrics are zero")
        if abs(value(smp, "process_start_time_seconds") - time.time()) > 600:
            fail(what + ": process_start_time_seconds is not about now")
    for req, want in ((b"GET /nope HTTP/1.1\r\n\r\n", "HTTP/1.1 404"),
                      (b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", "HTTP/1.1 405"),
                      (b"\x16\x03\x01 garbage\r\n\r\n", "HTTP/1.1 400")):
        got = http(PORT, req)[0]
        if not got.startswith(want):
            fail("%r: got %r, want %s" % (req, got, want))
    print("ok 1 start: textfile and /metrics valid, every known series at 0")

    # 2. the fixture: /metrics agrees with the status, the textfile catches up
    with open(FIXTURE) as f, open(LOG, "a") as out:
        out.write(f.read())
    records = replay.get("records")
    st = wait(lambda: (lambda s: s if s and s.get("records") == records else None)(status()), 60,
              "status records == %r" % records)
    smp, _ = check(scrape(PORT), "/metrics after the fixture")
    for name, key in (("floodgate_tail_records_total", "records"),
                      ("floodgate_parse_errors_total", "parse_errors"),
                      ("floodgate_identities", "identities"),
                      ("floodgate_trips_total", "trips"),
                      ("floodgate_held_identities", "held")):
        if key in st and total(smp, name) != st[key]:
            fail("%s = %r but status says %s = %r" % (name, total(smp, name), key, st[key]))
    if st.get("trips", 0) < 1:
        fail("the fixture tripped nothing: the trip counters are untested (status %r)" % st)
    if value(smp, "floodgate_actions_total", action="freeze", backend="exim",
             result="skipped") < 1:
        fail("monitor mode: no skipped freeze step counted")
    if value(smp, "floodgate_tail_last_record_timestamp_seconds") < time.time() - 600:
        fail("floodgate_tail_last_record_timestamp_seconds is not recent")
    if value(smp, "floodgate_lines_total") < records:
        fail("fewer lines than records")
    def caught_up():
        t = textfile()
        if not t:
            return None
        s2, _ = check(t, "textfile")
        return s2 if value(s2, "floodgate_tail_records_total") == records else None
    smp_file = wait(caught_up, 30, "the textfile's periodic rewrite")
    # nothing from the log in any label or anywhere in the text
    with open(FIXTURE, errors="replace") as f:
        log = f.read()
    secret = set(re.findall(r"[\w.+-]+@[\w.-]+\.\w+", log))
    secret |= set(re.findall(r"\[(\d{1,3}(?:\.\d{1,3}){3})\]", log))
    secret |= set(re.findall(r"\b\w{6}-\w{6}-\w{2}\b", log))
    secret |= set(re.findall(r"\bH=([\w.-]+\.[a-z]{2,})", log))
    accounts = set(re.findall(r"\bU=(\w+)", log))
    for what, text, s2 in (("/metrics", scrape(PORT), smp), ("textfile", textfile(), smp_file)):
        leaked = sorted(x for x in secret if x in text)
        leaked += sorted(label_values(s2) & (accounts | secret))
        if leaked:
            fail("%s shows text from the log: %r" % (what, leaked[:10]))
    print("ok 2 the fixture: /metrics == status (%d records, %d trips); textfile rewritten; "
          "nothing from the log exported" % (records, st["trips"]))

    # 2b. hostile lines: a local sender (-f) whose quoted address carries a raw newline
    # and a forged arrival (one record of two lines, as Exim writes it), a record dated
    # 2099, a last line; 3 records
    now = time.strftime("%Y-%m-%d %H:%M:%S")
    with open(LOG, "a") as out:
        out.write(now + ' 1zzzzz-000001-ab <= "a\n'
                  + now + ' 1zzzzz-000002-ab <= v@example.com H=(x) [192.0.2.8]:1 P=esmtpsa '
                  'A=dovecot_login:victim@example.com S=1 for z@gmail.com"@example.com U=inj '
                  'P=local S=1200 for a@gmail.com\n')
        out.write('2099-01-01 00:00:00 1zzzzz-000003-ab <= inj@example.com H=(pc) '
                  '[192.0.2.7]:4000 P=esmtpsa A=dovecot_login:inj@example.com S=1 '
                  'for a@gmail.com\n')
        out.write(now + ' 1zzzzz-000004-ab Completed\n')
    def hostile_counted():
        s3, _ = check(scrape(PORT), "/metrics after hostile lines")
        return s3 if (value(s3, "floodgate_log_injection_total", kind="absorbed") == 1 and
                      value(s3, "floodgate_records_clock_ahead_total") == 1 and
                      total(s3, "floodgate_tail_records_total") == records + 3) else None
    # (the 2099 record is counted, at the current time: inj@ trips; step 3 starts from here)
    smp = wait(hostile_counted, 20, "the injection and the record dated ahead to be counted")
    records = total(smp, "floodgate_tail_records_total")
    audit = os.path.join(TMP, "log", "audit.jsonl")
    def audited():
        with open(audit) as f:
            return [json.loads(l) for l in f if '"log_injection"' in l]
    inj = wait(audited, 10, "the log_injection audit line")
    if (inj[0].get("kind"), inj[0].get("scope"), inj[0].get("id")) != \
            ("absorbed", "account", "inj"):
        fail("log_injection audit line: %r" % inj[0])
    with open(ERR, errors="replace") as f:
        err = f.read()
    if "log injection (absorbed)" not in err or "account inj" not in err:
        fail("no journal line naming the writer of the injection")
    if "more than 5 minutes ahead" not in err:
        fail("no journal line about the record dated 2099")
    if "victim@example.com" in json.dumps(status() or {}):
        fail("the swallowed line was counted")
    print("ok 2b hostile lines: injection and clock_ahead counted, audited and logged")

    # 3. reloads: a renamed rule keeps the old count, then an invalid file
    trips_before = value(smp, "floodgate_trips_total", rule="burst", scope="mailbox")
    write_config([("burst2", 1)])
    proc.send_signal(signal.SIGHUP)
    def reloaded(result, n):
        s2, _ = check(scrape(PORT), "/metrics after a reload")
        return s2 if value(s2, "floodgate_config_reloads_total", result=result) == n else None
    s2 = wait(lambda: reloaded("ok", 1), 20, "the reload to be counted")
    if value(s2, "floodgate_trips_total", rule="burst2", scope="mailbox") != 0:
        fail("the new rule's trips do not start at 0")
    if value(s2, "floodgate_trips_total", rule="burst", scope="mailbox") != trips_before:
        fail("the renamed rule's count was lost")
    if value(s2, "floodgate_config_last_reload_successful") != 1:
        fail("a good reload is not successful")
    write_config([("burst2", 1)], broken=True)
    proc.send_signal(signal.SIGHUP)
    s2 = wait(lambda: reloaded("failed", 1), 20, "the failed reload to be counted")
    if value(s2, "floodgate_config_last_reload_successful") != 0:
        fail("a failed reload is reported successful")
    print("ok 3 reloads counted; trips keyed by rule name across a rename")

    # 4. shutdown: the final write
    os.unlink(PROM)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=20)
    if proc.returncode != 0:
        fail("SIGTERM: exit status %r" % proc.returncode)
    t = textfile()
    if t is None:
        fail("no textfile written at shutdown")
    s2, _ = check(t, "textfile at shutdown")
    if value(s2, "floodgate_tail_records_total") != records:
        fail("textfile at shutdown: records %r" % value(s2, "floodgate_tail_records_total"))
    if value(s2, "floodgate_state_commits_total", result="ok") < 1:
        fail("no state commit counted")
    mode = os.stat(PROM).st_mode & 0o777
    if mode != 0o644:
        fail("textfile mode %o, want 644" % mode)
    if os.path.exists(PROM + ".tmp"):
        fail("a .tmp file was left behind")
    print("ok 4 SIGTERM: exit 0, final textfile (mode 644, no .tmp)")
finally:
    if proc.poll() is None:
        proc.kill()
        proc.wait()
PY
