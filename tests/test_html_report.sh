#!/usr/bin/env bash
# floodgated --replay --html: a generated log with outbreaks (tools/gen-exim-mainlog, whose
# truth names the offenders) and a hostile sender appended (a subject that closes the SVG
# and opens a script, quotes, U+202E, a byte that is not UTF-8) is replayed into a page.
#   - the page is well-formed: the whole of it parses as XML and as HTML, every SVG alone;
#   - every offender that crossed its rule's threshold is charted under that rule;
#   - headless Chromium renders it: one SVG per charted identity, each with its threshold
#     line, the offenders and the hostile sender in the DOM as text, and no script, image
#     or event handler anywhere in the DOM;
#   - a screenshot is taken (kept at $FG_HTML_SCREENSHOT when set, to look at).
# Skipped (77) when Chromium is not installed (scripts/install-deps installs it).
set -euo pipefail
src="${FG_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}"
bin="${FG_BUILD_DIR:?}/floodgated"
chromium=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$chromium" ]; then
    echo "test_html_report: SKIP: no chromium (apt-get install chromium; scripts/install-deps does)"
    exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

python3 "$src/tools/gen-exim-mainlog" --hours 1.5 --rate 8 --outbreaks 5 --outbreak-minutes 10 \
    --seed 29 --out "$tmp/log" --truth "$tmp/truth.json"

# The configuration from the truth, and a hostile sender appended: 60 messages in a minute
# after the log's end from a mailbox of the first account, subject and name hostile.
python3 - "$tmp" <<'PY'
import json, sys
from datetime import datetime, timedelta
tmp = sys.argv[1]
truth = json.load(open(tmp + "/truth.json"))
with open(tmp + "/userdomains", "w") as f:
    for a in truth["accounts"]:
        for d in a["domains"]:
            f.write("%s: %s\n" % (d, a["user"]))
    f.write("*: nobody\n")
with open(tmp + "/localdomains", "w") as f:
    f.write("".join(d + "\n" for d in truth.get("localdomains", [])))
# the sliding counts of the truth (not its trap, campaign, queued or ratio rules)
SLIDING = ("messages", "recipients", "failed", "deferred", "domains", "ips", "mismatch",
           "authfail")
with open(tmp + "/floodgate.yml", "w") as f:
    f.write("mode: monitor\nuserdomains_file: %s/userdomains\nlocaldomains_file: %s/localdomains\n"
            "rules:\n" % (tmp, tmp))
    for r in truth["rules"]:
        if r.get("metric") not in SLIDING:
            continue  # the sliding counts the page charts (not trap or campaign rules)
        f.write("  - {name: %s, scope: %s, metric: %s, window: %ds, above: %d, actions: [alert]}\n"
                % (r["name"], r["scope"], r["metric"], r["window_s"], r["above"]))
last = open(tmp + "/log", "rb").read().rstrip(b"\n").rsplit(b"\n", 1)[-1].decode()
t = datetime.strptime(last[:19], "%Y-%m-%d %H:%M:%S") + timedelta(seconds=5)
box = "x'<b>&amp;@" + truth["accounts"][0]["domains"][0]
# Exim writes a quote inside T="..." as \"
subject = "</svg><script>alert(1)</script>\u202egpj.exe \\\"q\\\" "
with open(tmp + "/log", "ab") as f:
    for i in range(60):
        at = (t + timedelta(seconds=i)).strftime("%Y-%m-%d %H:%M:%S")
        if i == 30:  # once past half the threshold: a byte that is not UTF-8
            f.write(("%s 1zzzzz-999999-Zz <= %s H=(pc) [198.51.100.9]:4000 P=esmtpsa "
                     "A=dovecot_login:%s S=1200 T=\"bad " % (at, box, box)).encode() +
                    b"\xff\xfe\" for w@target.test\n")
        f.write(("%s 1zzzzz-%06d-Zz <= %s H=(pc) [198.51.100.%d]:4000 P=esmtpsa "
                 "A=dovecot_login:%s S=1200 T=\"%s%d\" for v%d@target.test\n" % (
                     at, i, box, i % 3 + 1, box, subject, i % 2, i)).encode())
json.dump({"box": box}, open(tmp + "/hostile.json", "w"))
PY

"$bin" --config "$tmp/floodgate.yml" --replay --json --html "$tmp/report.html" "$tmp/log" \
    >"$tmp/out.json" 2>"$tmp/err"
[ -s "$tmp/report.html" ] || { echo "no report written"; cat "$tmp/err"; exit 1; }

# The page as written: well-formed, the offenders charted under their rules.
python3 - "$tmp" <<'PY'
import json, re, sys
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
tmp = sys.argv[1]
raw = open(tmp + "/report.html", "rb").read()
page = raw.decode("utf-8")  # strict: the page is valid UTF-8
truth, out = json.load(open(tmp + "/truth.json")), json.load(open(tmp + "/out.json"))
box = json.load(open(tmp + "/hostile.json"))["box"]
assert "\u202e" not in page, "a raw U+202E in the page"
root = ET.fromstring(page.split("\n", 1)[1])  # all of it but the doctype, as XML
ns = "{http://www.w3.org/2000/svg}"
svgs = list(root.iter(ns + "svg"))
for s in re.findall(r"<svg .*?</svg>", page, re.S):
    ET.fromstring(s)  # every chart alone
class Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.text = [], []
    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
    def handle_data(self, d):
        self.text.append(d)
p = Tags()
p.feed(page)
names = {t for t, _ in p.tags}
assert "script" not in names and "img" not in names, names
assert not any(k.startswith("on") for _, a in p.tags for k in a), "an event handler attribute"
assert not any(a.get("href", "#").split("#")[0] for _, a in p.tags), "a link out of the page"
text = "".join(p.text)
assert "</svg><script>alert(1)</script>" in text, "the hostile subject is not shown as text"
assert box in text, "the hostile sender is not shown"
assert "bad \ufffd\ufffd" in text, "a byte that is not UTF-8 is not U+FFFD"
# per rule: the charted identities (figcaption <code class="id">) of its section
sections = {}
for sec in root.iter("section"):
    rule = "".join(sec.find("h2/code").itertext())
    sections[rule] = ["".join(f.find("figcaption/code").itertext()) for f in sec.iter("figure")]
    series = [s for s in sec.iter(ns + "svg") if s.get("class") == "series"]
    assert len(series) == len(sections[rule]) <= 10, (rule, len(series))
    for s in series:
        assert [l for l in s.iter(ns + "line") if l.get("class") == "threshold"], "no threshold"
trips = {(t["rule"], t["id"]) for t in out["trips"]}
seen = 0
for o in truth["outbreaks"]:
    if not o["crosses_at"]:
        continue
    assert (o["rule"], o["id"]) in trips, "replay missed %s" % o["id"]
    assert o["id"] in sections[o["rule"]], "offender %s not charted under %s: %s" % (
        o["id"], o["rule"], sections[o["rule"]])
    seen += 1
assert seen >= 3, "only %d offenders crossed" % seen
assert box.lower() in [i.lower() for i in sections["mailbox-burst"]], "hostile sender not charted"
print("page: %d bytes, %d charts, %d offenders charted, well-formed, log text escaped" % (
    len(raw), len(svgs), seen))
PY

# Rendered by Chromium: the DOM it built, and a screenshot.
run_chromium() {
    timeout 120 "$chromium" --headless --no-sandbox --disable-gpu --hide-scrollbars \
        --user-data-dir="$tmp/profile" --no-first-run --disable-extensions "$@" \
        "file://$tmp/report.html" 2>>"$tmp/chromium.err"
}
if ! run_chromium --dump-dom >"$tmp/dom.html" || ! [ -s "$tmp/dom.html" ]; then
    echo "test_html_report: SKIP: chromium could not render a page here:"
    tail -5 "$tmp/chromium.err"
    exit 77
fi
python3 - "$tmp" <<'PY'
import json, sys
from html.parser import HTMLParser
tmp = sys.argv[1]
dom = open(tmp + "/dom.html", encoding="utf-8").read()
truth = json.load(open(tmp + "/truth.json"))
box = json.load(open(tmp + "/hostile.json"))["box"]
class Dom(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.text, self.stack = [], [], []
        self.figures, self.cur = [], None
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag == "figure":
            self.cur = {"svg": 0, "threshold": 0, "text": []}
            self.figures.append(self.cur)
        elif self.cur is not None and tag == "svg" and a.get("class") == "series":
            self.cur["svg"] += 1
        elif self.cur is not None and tag == "line" and a.get("class") == "threshold":
            self.cur["threshold"] += 1
    def handle_endtag(self, tag):
        if tag == "figure":
            self.cur = None
    def handle_data(self, d):
        self.text.append(d)
        if self.cur is not None:
            self.cur["text"].append(d)
d = Dom()
d.feed(dom)
names = [t for t, _ in d.tags]
assert "script" not in names, "a script element in the rendered DOM"
assert "img" not in names and "iframe" not in names, "markup from the log in the DOM"
assert not any(k.startswith("on") for _, a in d.tags for k in a), "an event handler in the DOM"
assert "alert(1)" not in dom.replace("&lt;script&gt;alert(1)", ""), "alert outside escaped text"
assert d.figures, "no charts rendered"
for f in d.figures:
    assert f["svg"] == 1 and f["threshold"] == 1, f
text = "".join(d.text)
for o in truth["outbreaks"]:
    if o["crosses_at"]:
        assert o["id"] in text, "offender %s not in the rendered page" % o["id"]
assert box in text and "</svg><script>alert(1)</script>" in text, "hostile text not shown as text"
print("chromium: %d charts, each one SVG with its threshold line; offenders shown; no script, "
      "image or handler in the DOM" % len(d.figures))
PY
run_chromium --window-size=1200,2600 --screenshot="$tmp/report.png" >/dev/null
python3 - "$tmp/report.png" <<'PY'
import struct, sys
b = open(sys.argv[1], "rb").read()
assert b[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
w, h = struct.unpack(">II", b[16:24])
assert (w, h) == (1200, 2600) and len(b) > 20000, (w, h, len(b))
print("screenshot: %dx%d, %d bytes" % (w, h, len(b)))
PY
if [ -n "${FG_HTML_SCREENSHOT:-}" ]; then
    cp "$tmp/report.png" "$FG_HTML_SCREENSHOT"
    cp "$tmp/report.html" "${FG_HTML_SCREENSHOT%.png}.html"
fi
echo "html report: well-formed, offenders charted, hostile text inert, rendered"
