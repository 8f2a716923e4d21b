#!/usr/bin/env bash
# floodgate under a real Prometheus (Debian's prometheus package: prometheus and promtool),
# everything on loopback, everything in a temporary directory:
#
#  1. promtool: contrib/prometheus/floodgate.rules.yml passes `check rules`, and its unit
#     tests (floodgate.rules.test.yml: every alert firing and not firing) pass;
#  2. floodgated in monitor mode over a log made by tools/gen-exim-mainlog (with outbreaks,
#     so rules trip), with metrics_file and metrics_listen, and a webhook destination
#     nobody listens on (so the outbox holds the trips' alerts); both exports pass
#     `promtool check metrics`;
#  3. prometheus scrapes the endpoint every second, with the rules file loaded: the values
#     it stores for records, trips, backlog, lag and the outbox match
#     `floodgatectl status --json`; /api/v1/rules lists every rule of the file, healthy;
#  4. contrib/grafana/floodgate.json: valid JSON, every panel has targets, every target's
#     expression is accepted by this Prometheus' /api/v1/query and names only metrics the
#     daemon exports (or the rules file records);
#  5. no alert fires on the healthy daemon; a refused reload fires FloodgateReloadFailed,
#     with the scraped host's labels.
# Prints "FIGURE name=value" lines (series per host). Every wait is bounded; the whole test
# stops itself after 150 s.
set -euo pipefail
build="${FG_BUILD_DIR:?}"
src="${FG_SOURCE_DIR:?}"
for t in python3 prometheus promtool; do
    if ! command -v "$t" >/dev/null; then
        echo "skip: $t not found (Debian: apt-get install prometheus; scripts/install-deps" \
             "installs it where the distribution packages it)"
        exit 77
    fi
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# 1. the rules and their unit tests
promtool check rules "$src/contrib/prometheus/floodgate.rules.yml"
(cd "$src/contrib/prometheus" && promtool test rules floodgate.rules.test.yml)
echo "ok 1 promtool check rules and test rules"

python3 - "$build" "$src" "$tmp" <<'PY'
import json, os, re, signal, socket, subprocess, sys, time
import urllib.parse, urllib.request

BUILD, SRC, TMP = sys.argv[1:4]
BIN = os.path.join(BUILD, "floodgated")
CTL = os.path.join(BUILD, "floodgatectl")
RULES = os.path.join(SRC, "contrib", "prometheus", "floodgate.rules.yml")
DASHBOARD = os.path.join(SRC, "contrib", "grafana", "floodgate.json")
DEADLINE = time.monotonic() + 150
LOG = os.path.join(TMP, "exim_mainlog")
SOCK = os.path.join(TMP, "ctl.sock")
CFG = os.path.join(TMP, "floodgate.yml")
PROM = os.path.join(TMP, "textfile", "floodgate.prom")
ERR = os.path.join(TMP, "floodgated.stderr")
PERR = os.path.join(TMP, "prometheus.stderr")
procs = []


def fail(msg):
    for what, path in (("floodgated", ERR), ("prometheus", PERR)):
        try:
            with open(path, errors="replace") as f:
                msg += "\n--- %s stderr ---\n%s" % (what, f.read()[-3000:])
        except OSError:
            pass
    print("FAIL: " + msg, file=sys.stderr)
    raise SystemExit(1)


def wait(pred, timeout, what, poll=0.1):
    end = min(time.monotonic() + timeout, DEADLINE)
    while True:
        v = pred()
        if v:
            return v
        for name, p in procs:
            if p.poll() is not None:
                fail("%s exited (%r) while waiting for %s" % (name, p.returncode, what))
        if time.monotonic() > end:
            fail("timed out waiting for %s" % what)
        time.sleep(poll)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read().decode()


def status():
    p = subprocess.run([CTL, "--socket", SOCK, "--json", "status"], capture_output=True,
                       timeout=10)
    if p.returncode != 0:
        return None
    return json.loads(p.stdout.decode())


def promtool_metrics(text, what):
    p = subprocess.run(["promtool", "check", "metrics"], input=text.encode(),
                       capture_output=True, timeout=30)
    if p.returncode != 0:
        fail("promtool check metrics (%s): %s%s" % (what, p.stdout.decode(), p.stderr.decode()))


# --- the log and floodgated ------------------------------------------------------------
truth_path = os.path.join(TMP, "truth.json")
gen_log = os.path.join(TMP, "generated.log")
subprocess.run([sys.executable, os.path.join(SRC, "tools", "gen-exim-mainlog"), "--lines",
                "40000", "--outbreaks", "8", "--seed", "11", "--out", gen_log, "--truth",
                truth_path], check=True, timeout=60, stdout=subprocess.DEVNULL)
truth = json.load(open(truth_path))
with open(os.path.join(TMP, "userdomains"), "w") as f:
    for a in truth["accounts"]:
        for d in a["domains"]:
            f.write("%s: %s\n" % (d, a["user"]))
with open(os.path.join(TMP, "localdomains"), "w") as f:
    f.write("".join(d + "\n" for d in truth["localdomains"]))
open(LOG, "w").close()
os.makedirs(os.path.dirname(PROM))
MPORT, PPORT, DEAD = free_port(), free_port(), free_port()
# the sliding counts of the truth (not its trap, campaign, queued or ratio rules)
SLIDING = ("messages", "recipients", "failed", "deferred", "domains", "ips", "mismatch",
           "authfail")
rules = "".join("  - { name: %s, scope: %s, metric: %s, window: %ds, above: %d, "
                "actions: [freeze, hold, alert] }\n"
                % (r["name"], r["scope"], r["metric"], r["window_s"], r["above"])
                for r in truth["rules"] if r.get("metric") in SLIDING)
with open(CFG, "w") as f:
    f.write("""mode: monitor
log_file: %(log)s
state_dir: %(tmp)s/state
audit_log: %(tmp)s/audit.jsonl
control_socket: %(sock)s
userdomains_file: %(tmp)s/userdomains
localdomains_file: %(tmp)s/localdomains
metrics_file: %(prom)s
metrics_listen: 127.0.0.1:%(mport)d
rules:
%(rules)salerts:
  host_name: mx1.test
  destinations:
    - name: hook-down
      type: webhook
      url: http://127.0.0.1:%(dead)d/hook
      allow_http: true
      connect_timeout: 1s
      timeout: 2s
""" % {"log": LOG, "tmp": TMP, "sock": SOCK, "prom": PROM, "mport": MPORT, "rules": rules,
       "dead": DEAD})
os.chmod(CFG, 0o600)  # a webhook URL is a credential: floodgated refuses a config others read
denv = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"}
denv.update({k: v for k, v in os.environ.items() if k in ("ASAN_OPTIONS", "UBSAN_OPTIONS")})
fg = subprocess.Popen([BIN, "--config", CFG], stdin=subprocess.DEVNULL, stdout=open(ERR, "w"),
                      stderr=subprocess.STDOUT, env=denv)
procs.append(("floodgated", fg))

with open(os.path.join(TMP, "prometheus.yml"), "w") as f:
    f.write("""global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - %s
scrape_configs:
  - job_name: floodgate
    static_configs:
      - targets: ['127.0.0.1:%d']
""" % (RULES, MPORT))
pr = subprocess.Popen(["prometheus", "--config.file", os.path.join(TMP, "prometheus.yml"),
                       "--storage.tsdb.path", os.path.join(TMP, "tsdb"),
                       "--web.listen-address", "127.0.0.1:%d" % PPORT,
                       "--storage.tsdb.retention.time", "1h"],
                      stdin=subprocess.DEVNULL, stdout=open(PERR, "w"), stderr=subprocess.STDOUT,
                      cwd=TMP)
procs.append(("prometheus", pr))
API = "http://127.0.0.1:%d/api/v1/" % PPORT


def query(expr):
    """The instant vector of @expr: [(labels, value, timestamp)], or fail on an error."""
    try:
        _, body = get(API + "query?" + urllib.parse.urlencode({"query": expr}))
    except Exception as e:  # an HTTP 400 for a bad expression lands here
        body = getattr(e, "read", lambda: str(e).encode())().decode()
    r = json.loads(body)
    if r.get("status") != "success":
        return None, r.get("error", body)
    if r["data"]["resultType"] != "vector":
        return [], None
    return [(s["metric"], float(s["value"][1]), float(s["value"][0]))
            for s in r["data"]["result"]], None


def one(expr):
    v, err = query(expr)
    if err:
        fail("%s: %s" % (expr, err))
    return v[0] if len(v) == 1 else None


try:
    wait(lambda: (status() or {}).get("ready"), 30, "floodgated to be ready")
    with open(gen_log) as f, open(LOG, "a") as out:
        out.write(f.read())

    def settled():
        a = status()
        if not a or a["lag_bytes"] != 0 or a["records"] == 0:
            return None
        time.sleep(0.5)
        b = status()
        keys = ("records", "trips", "outbox", "parse_errors", "identities")
        return b if all(a[k] == b[k] for k in keys) and b["lag_bytes"] == 0 else None
    st = wait(settled, 60, "floodgated to read the whole log")
    if st["trips"] < 2 or st["outbox"] < 1:
        fail("the log tripped too little to compare: %r" % st)

    # 2. both exports pass promtool
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % MPORT, timeout=5) as r:
        scraped = r.read().decode()
    promtool_metrics(scraped, "/metrics")
    wait(lambda: os.path.exists(PROM), 20, "the textfile")
    with open(PROM) as f:
        promtool_metrics(f.read(), "textfile")
    samples = [l for l in scraped.splitlines() if l and not l.startswith("#")]
    exported = {re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", l).group(0) for l in samples}
    families = {l.split()[2] for l in scraped.splitlines() if l.startswith("# TYPE ")}
    print("FIGURE series_per_host=%d families=%d rules=%d destinations=1"
          % (len(samples), len(families), len(truth["rules"])))
    print("ok 2 promtool check metrics: /metrics and the textfile (%d series)" % len(samples))

    # 3. what prometheus stores is what the daemon says
    wait(lambda: (one('up{job="floodgate"}') or [0, 0])[1] == 1, 30, "the first scrape")

    def scraped_now(expr, want):
        s = one(expr)
        return s if s and s[1] == want else None
    for expr, key in (("floodgate_tail_records_total", "records"),
                      ("sum(floodgate_trips_total)", "trips"),
                      ("floodgate_outbox_entries", "outbox"),
                      ("floodgate_parse_errors_total", "parse_errors"),
                      ("sum(floodgate_identities)", "identities"),
                      ("floodgate_tail_backlog_bytes", "lag_bytes")):
        wait(lambda: scraped_now(expr, st[key]), 20,
             "prometheus: %s == status %s (%r)" % (expr, key, st[key]))
    trips_by_rule = {m["rule"]: v for m, v, _ in query("floodgate_trips_total > 0")[0]}
    if sum(trips_by_rule.values()) != st["trips"] or not trips_by_rule:
        fail("trips by rule %r, status %r" % (trips_by_rule, st["trips"]))
    # the lag: seconds since the last record, at the sample's own time
    lag = one("floodgate_log_lag_seconds")
    now_status = status()
    expect = now_status["last_record_s"] - (time.time() - lag[2])
    if abs(lag[1] - expect) > 2.5:
        fail("floodgate_log_lag_seconds %.1f at %.1f; status says %d s now (%.1f expected)"
             % (lag[1], lag[2], now_status["last_record_s"], expect))
    pending = one('floodgate_alert_outbox_events{destination="hook-down"}')
    if not pending or pending[1] != st["outbox"]:
        fail("outbox events by destination %r, status %r" % (pending, st["outbox"]))
    print("ok 3a prometheus holds what status says: %d records, %d trips %r, outbox %d, lag %.0fs"
          % (st["records"], st["trips"], trips_by_rule, st["outbox"], lag[1]))

    with open(RULES) as f:
        names = re.findall(r"^\s+- (?:alert|record): (\S+)", f.read(), re.M)

    def rules_ok():
        _, body = get(API + "rules")
        loaded = {}
        for g in json.loads(body)["data"]["groups"]:
            for r in g["rules"]:
                loaded[r["name"]] = r
        if sorted(loaded) != sorted(names):
            fail("/api/v1/rules has %r, the file %r" % (sorted(loaded), sorted(names)))
        bad = {n: r.get("lastError") for n, r in loaded.items() if r["health"] == "err"}
        if bad:
            fail("rules with errors: %r" % bad)
        return loaded if all(r["health"] == "ok" for r in loaded.values()) else None
    loaded = wait(rules_ok, 30, "every rule evaluated")
    print("ok 3b /api/v1/rules: %d rules from the file, all healthy" % len(loaded))

    # 4. the dashboard
    with open(DASHBOARD) as f:
        dash = json.load(f)
    recorded = set(re.findall(r"^\s+- record: (\S+)", open(RULES).read(), re.M))
    known = exported | recorded | {"up"}
    for m in list(exported):
        for sfx in ("_bucket", "_sum", "_count"):
            if m.endswith(sfx):
                known.add(m)
    panels, exprs = [], []

    def walk(ps):
        for p in ps:
            if p.get("type") == "row":
                walk(p.get("panels", []))
                continue
            panels.append(p)
    walk(dash.get("panels", []))
    if not panels:
        fail("the dashboard has no panels")
    ids = [p.get("id") for p in panels]
    if len(set(ids)) != len(ids):
        fail("panel ids repeat: %r" % ids)
    for p in panels:
        targets = p.get("targets") or []
        if not targets:
            fail("panel %r has no targets" % p.get("title"))
        for t in targets:
            expr = t.get("expr")
            if not expr:
                fail("panel %r: a target without expr" % p.get("title"))
            exprs.append((p.get("title"), expr))
    for title, expr in exprs:
        # Grafana's variables, as a user would have them set
        e = (expr.replace("$__rate_interval", "1m").replace("$__interval", "15s")
             .replace("$instance", ".*").replace("$job", "floodgate"))
        if "$" in e:
            fail("panel %r: an unknown variable in %r" % (title, expr))
        names_used = set(re.findall(r"\b[a-z_]+:[a-z0-9_:]+", e))  # recorded by the rules
        names_used |= set(re.findall(r"\b(?:floodgate|process)_[a-z0-9_]+",
                                     re.sub(r"\b[a-z_]+:[a-z0-9_:]+", " ", e)))
        unknown = sorted(n for n in names_used if n not in known)
        if unknown:
            fail("panel %r names metrics the daemon does not export: %r" % (title, unknown))
        if not names_used:
            fail("panel %r: no floodgate metric in %r" % (title, expr))
        _, err = query(e)
        if err:
            fail("panel %r: Prometheus refuses %r: %s" % (title, expr, err))
    print("ok 4 dashboard: %d panels, %d expressions, all parsed by Prometheus, all metrics exported"
          % (len(panels), len(exprs)))

    # 5. the rules fire on what the daemon exports: nothing on a healthy host; a refused
    # reload fires FloodgateReloadFailed (no `for`), with the host's labels
    def alerts():
        _, body = get(API + "alerts")
        return json.loads(body)["data"]["alerts"]
    early = alerts()
    if early:
        fail("alerts on a healthy host: %r" % [(a["labels"]["alertname"], a["state"])
                                             for a in early])
    with open(CFG, "a") as f:
        f.write("  - name: [not, a, name]\n")
    fg.send_signal(signal.SIGHUP)

    def reload_alert():
        got = alerts()
        return got if any(a["labels"]["alertname"] == "FloodgateReloadFailed" and
                          a["state"] == "firing" for a in got) else None
    got = wait(reload_alert, 30, "FloodgateReloadFailed to fire")
    names = sorted((a["labels"]["alertname"], a["state"]) for a in got)
    if names != [("FloodgateReloadFailed", "firing")]:
        fail("alerts after a refused reload: %r" % names)
    a = got[0]
    if a["labels"].get("instance") != "127.0.0.1:%d" % MPORT or \
            a["labels"].get("job") != "floodgate" or a["labels"].get("severity") != "warning":
        fail("FloodgateReloadFailed labels: %r" % a["labels"])
    if "127.0.0.1:%d" % MPORT not in a["annotations"].get("summary", ""):
        fail("FloodgateReloadFailed summary: %r" % a["annotations"])
    print("ok 5 no alert on a healthy host; a refused reload fires FloodgateReloadFailed: %s"
          % a["annotations"]["summary"])

    fg.send_signal(signal.SIGTERM)
    if fg.wait(timeout=30) != 0:
        fail("floodgated exited %r on SIGTERM" % fg.returncode)
finally:
    for _, p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for _, p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
PY
