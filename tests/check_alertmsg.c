/*
 * check_alertmsg.c - lib/alertmsg: ids (stable, distinct, valid outbox names), RFC 3339
 * times, and every body for every destination type and kind checked by a strict JSON
 * validator written here and, when python3 exists, by json.loads plus Slack's limits
 * (alerting.md §2.2). Hostile log text (mentions, links, quotes, backticks, newlines,
 * invalid UTF-8, 10 KB identities) must leave valid JSON with no '<' in a Slack body.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "alertmsg.h"
#include "config.h"
#include "outbox.h"
#include "testdir.h"
#include "testrun.h"
#include "util.h"

/* --- a strict JSON validator (RFC 8259, UTF-8 checked) ------------------------------- */

struct jv {
    const unsigned char *p, *end;
    int depth;
};

static void
jv_ws(struct jv *v)
{
    while (v->p < v->end && (*v->p == ' ' || *v->p == '\n' || *v->p == '\t' || *v->p == '\r'))
        v->p++;
}

static bool jv_value(struct jv *v);

static bool
jv_utf8(struct jv *v)
{
    unsigned c = *v->p, n, cp, min;

    if (c < 0x80) {
        v->p++;
        return true;
    }
    if (c >= 0xc2 && c <= 0xdf)
        n = 1, cp = c & 0x1f, min = 0x80;
    else if (c >= 0xe0 && c <= 0xef)
        n = 2, cp = c & 0x0f, min = 0x800;
    else if (c >= 0xf0 && c <= 0xf4)
        n = 3, cp = c & 0x07, min = 0x10000;
    else
        return false;
    if ((size_t)(v->end - v->p) < n + 1)
        return false;
    for (unsigned i = 1; i <= n; i++) {
        if ((v->p[i] & 0xc0) != 0x80)
            return false;
        cp = (cp << 6) | (v->p[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return false;
    v->p += n + 1;
    return true;
}

static bool
jv_string(struct jv *v)
{
    v->p++; /* the opening quote */
    while (v->p < v->end) {
        unsigned char c = *v->p;
        if (c == '"') {
            v->p++;
            return true;
        }
        if (c < 0x20)
            return false;
        if (c == '\\') {
            v->p++;
            if (v->p >= v->end)
                return false;
            if (*v->p == 'u') {
                for (int i = 1; i <= 4; i++)
                    if (v->p + i >= v->end || !strchr("0123456789abcdefABCDEF", v->p[i]) ||
                        !v->p[i])
                        return false;
                v->p += 5;
            } else if (strchr("\"\\/bfnrt", *v->p) && *v->p) {
                v->p++;
            } else {
                return false;
            }
            continue;
        }
        if (!jv_utf8(v))
            return false;
    }
    return false;
}

static bool
jv_number(struct jv *v)
{
    const unsigned char *s = v->p;

    if (*v->p == '-')
        v->p++;
    if (v->p >= v->end)
        return false;
    if (*v->p == '0')
        v->p++;
    else if (*v->p >= '1' && *v->p <= '9')
        while (v->p < v->end && *v->p >= '0' && *v->p <= '9')
            v->p++;
    else
        return false;
    if (v->p < v->end && *v->p == '.') {
        v->p++;
        if (v->p >= v->end || *v->p < '0' || *v->p > '9')
            return false;
        while (v->p < v->end && *v->p >= '0' && *v->p <= '9')
            v->p++;
    }
    return v->p > s;
}

static bool
jv_lit(struct jv *v, const char *lit)
{
    size_t n = strlen(lit);

    if ((size_t)(v->end - v->p) < n || memcmp(v->p, lit, n) != 0)
        return false;
    v->p += n;
    return true;
}

static bool
jv_container(struct jv *v, char close, bool object)
{
    v->p++;
    if (++v->depth > 64)
        return false;
    jv_ws(v);
    if (v->p < v->end && *v->p == close) {
        v->p++;
        v->depth--;
        return true;
    }
    for (;;) {
        jv_ws(v);
        if (object) {
            if (v->p >= v->end || *v->p != '"' || !jv_string(v))
                return false;
            jv_ws(v);
            if (v->p >= v->end || *v->p != ':')
                return false;
            v->p++;
        }
        if (!jv_value(v))
            return false;
        jv_ws(v);
        if (v->p < v->end && *v->p == ',') {
            v->p++;
            continue;
        }
        if (v->p < v->end && *v->p == close) {
            v->p++;
            v->depth--;
            return true;
        }
        return false;
    }
}

static bool
jv_value(struct jv *v)
{
    jv_ws(v);
    if (v->p >= v->end)
        return false;
    switch (*v->p) {
    case '{':
        return jv_container(v, '}', true);
    case '[':
        return jv_container(v, ']', false);
    case '"':
        return jv_string(v);
    case 't':
        return jv_lit(v, "true");
    case 'f':
        return jv_lit(v, "false");
    case 'n':
        return jv_lit(v, "null");
    default:
        return jv_number(v);
    }
}

static bool
json_valid(const char *s, size_t len)
{
    struct jv v = { (const unsigned char *)s, (const unsigned char *)s + len, 0 };

    if (!jv_value(&v))
        return false;
    jv_ws(&v);
    return v.p == v.end;
}

START_TEST(test_alertmsg_validator_rejects)
{
    static const char *const bad[] = {
        "",   "{",     "{\"a\":}",         "[1,]",   "{\"a\" 1}", "\"\x01\"", "\"\xff\"", "\"\\x\"",
        "01", "{} {}", "\"\xed\xa0\x80\"", "[\"a\"", "tru",
    };
    static const char *const good[] = { "{}", "[]", "{\"a\":[1,-2.5,true,null,\"\\u00e9 é\"]}" };

    for (size_t i = 0; i < N_ELEMS(bad); i++)
        ck_assert_msg(!json_valid(bad[i], strlen(bad[i])), "bad[%zu] accepted", i);
    for (size_t i = 0; i < N_ELEMS(good); i++)
        ck_assert_msg(json_valid(good[i], strlen(good[i])), "good[%zu] refused", i);
}
END_TEST

/* --- python3 as a second oracle, with Slack's limits --------------------------------- */

/* Every body of a test is queued in one file and checked by one python3 run at the end
 * of the test (py_teardown): starting an interpreter per body made the suite slow on a
 * loaded machine. The file holds "<kind> <name> <length>\n<body>" records. */
static const char pycheck[] =
    "import sys,json\n"
    "def strs(x):\n"
    "  if isinstance(x,str): yield x\n"
    "  elif isinstance(x,dict):\n"
    "    for k,v in x.items():\n"
    "      yield k\n"
    "      yield from strs(v)\n"
    "  elif isinstance(x,list):\n"
    "    for v in x: yield from strs(v)\n"
    "def check(kind,raw):\n"
    "  d=json.loads(raw.decode('utf-8'))\n"
    "  if kind==b'slack':\n"
    "    assert 0<len(d['text'])<=4000\n"
    "    assert len(d['blocks'])<=50\n"
    "    for b in d['blocks']:\n"
    "      if b['type']=='header':\n"
    "        assert b['text']['type']=='plain_text' and len(b['text']['text'])<=150\n"
    "      if b['type']=='section':\n"
    "        if 'text' in b: assert len(b['text']['text'])<=3000\n"
    "        if 'fields' in b:\n"
    "          assert len(b['fields'])<=10\n"
    "          for f in b['fields']: assert len(f['text'])<=2000\n"
    "    for s in strs(d): assert '<' not in s and '>' not in s\n"
    "data=open(sys.argv[1],'rb').read()\n"
    "pos=0\n"
    "while pos<len(data):\n"
    "  nl=data.index(b'\\n',pos)\n"
    "  kind,name,n=data[pos:nl].split(b' ')\n"
    "  body=data[nl+1:nl+1+int(n)]\n"
    "  pos=nl+1+int(n)\n"
    "  try: check(kind,body)\n"
    "  except Exception as e:\n"
    "    print('%s: python3 refused (%r): %.300s'%(name.decode(),e,body[:300]),file=sys.stderr)\n"
    "    sys.exit(1)\n";

static char pydir[512];
static char pybodies[600];
static bool have_python;
static size_t py_queued;

static void
py_setup(void)
{
    char path[600];
    FILE *f;

    have_python = system("command -v python3 >/dev/null 2>&1") == 0;
    if (!have_python)
        return;
    testdir_make(pydir, sizeof(pydir), "check_alertmsg");
    (void)snprintf(path, sizeof(path), "%s/check.py", pydir);
    f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fputs(pycheck, f) >= 0, 1);
    ck_assert_int_eq(fclose(f), 0);
    (void)snprintf(pybodies, sizeof(pybodies), "%s/bodies", pydir);
    py_queued = 0;
}

/* The python3 oracle over every body the test queued, then the directory goes. */
static void
py_teardown(void)
{
    char cmd[1400], err[600];
    FILE *f;
    size_t n;
    int st;

    if (!have_python)
        return;
    if (py_queued == 0) {
        testdir_remove(pydir);
        return;
    }
    (void)snprintf(cmd, sizeof(cmd), "python3 %s/check.py %s 2>&1", pydir, pybodies);
    f = popen(cmd, "r");
    ck_assert_ptr_nonnull(f);
    n = fread(err, 1, sizeof(err) - 1, f);
    err[n] = '\0';
    st = pclose(f);
    testdir_remove(pydir);
    ck_assert_msg(st == 0, "%zu bodies: %s", py_queued, err);
}

/* Validate a body both ways; Slack bodies also lose every '<' of the log text. */
static void
check_body(const char *name, enum alert_dest_type type, struct strbuf *b)
{
    ck_assert_msg(b->len > 0, "%s: empty", name);
    ck_assert_msg(json_valid(b->p, b->len), "%s: invalid JSON: %.300s", name, b->p);
    if (type == ALERT_DEST_SLACK) {
        ck_assert_msg(!memchr(b->p, '<', b->len), "%s: '<' left in Slack body", name);
        ck_assert_msg(!strstr(strbuf_cstr(b), "<!channel>"), "%s", name);
    }
    if (have_python) {
        FILE *f = fopen(pybodies, "ab");
        char tag[200];

        ck_assert_ptr_nonnull(f);
        /* the name is one word in the record header */
        (void)snprintf(tag, sizeof(tag), "%s", name);
        for (char *c = tag; *c; c++)
            if (*c == ' ' || *c == '\n')
                *c = '_';
        fprintf(f, "%s %s %zu\n", type == ALERT_DEST_SLACK ? "slack" : "other", tag, b->len);
        (void)fwrite(b->p, 1, b->len, f);
        ck_assert_int_eq(fclose(f), 0);
        py_queued++;
    }
}

/* --- ids ------------------------------------------------------------------------------ */

static bool
is_base32_id(const char *s)
{
    if (strlen(s) != ALERTMSG_ID_LEN || strncmp(s, "fg_", 3) != 0)
        return false;
    for (const char *p = s + 3; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '2' && *p <= '7')))
            return false;
    return true;
}

START_TEST(test_alertmsg_ids_stable_distinct)
{
    char a[ALERTMSG_ID_MAX], b[ALERTMSG_ID_MAX], v[6][ALERTMSG_ID_MAX], ev[ALERTMSG_ID_MAX];
    static const char *const kinds[] = { "tripped", "acted", "released" };

    alertmsg_incident_id("host7", "burst", SCOPE_MAILBOX, "info@example.com", 1000, a);
    alertmsg_incident_id("host7", "burst", SCOPE_MAILBOX, "info@example.com", 1000, b);
    ck_assert_str_eq(a, b);
    ck_assert_msg(is_base32_id(a), "%s", a);
    alertmsg_incident_id("host8", "burst", SCOPE_MAILBOX, "info@example.com", 1000, v[0]);
    alertmsg_incident_id("host7", "burst2", SCOPE_MAILBOX, "info@example.com", 1000, v[1]);
    alertmsg_incident_id("host7", "burst", SCOPE_ACCOUNT, "info@example.com", 1000, v[2]);
    alertmsg_incident_id("host7", "burst", SCOPE_MAILBOX, "info@example.org", 1000, v[3]);
    alertmsg_incident_id("host7", "burst", SCOPE_MAILBOX, "info@example.com", 1001, v[4]);
    /* NUL separation: moving a byte between fields changes the id */
    alertmsg_incident_id("host", "7burst", SCOPE_MAILBOX, "info@example.com", 1000, v[5]);
    for (size_t i = 0; i < 6; i++) {
        ck_assert_str_ne(a, v[i]);
        for (size_t j = i + 1; j < 6; j++)
            ck_assert_str_ne(v[i], v[j]);
    }
    for (size_t i = 0; i < N_ELEMS(kinds); i++) {
        ck_assert_int_eq(alertmsg_event_id(a, kinds[i], ev, sizeof(ev)), 0);
        ck_assert(outbox_name_valid(ev));
        ck_assert_ptr_null(strchr(ev, '.'));
    }
    ck_assert_int_eq(alertmsg_event_id(a, "a.b", ev, sizeof(ev)), -EINVAL);
    ck_assert_int_eq(
        alertmsg_event_id(a, "0123456789012345678901234567890123456789", ev, sizeof(ev)), -E2BIG);
    /* the largest times still fit an outbox name */
    alertmsg_digest_id("host7", INT64_MAX, ev);
    ck_assert_msg(outbox_name_valid(ev), "%s", ev);
    alertmsg_digest_id("host7", 60000, b);
    ck_assert_str_eq(b + ALERTMSG_ID_LEN, "_digest_60");
    alertmsg_health_id("host7", "destination_disabled", INT64_MAX, ev);
    ck_assert_msg(outbox_name_valid(ev), "%s", ev);
    alertmsg_health_id("host7", "tail_gap", 5000, b);
    ck_assert_str_ne(ev, b);
    ck_assert_str_eq(b + ALERTMSG_ID_LEN, "_health_5");
    alertmsg_test_id("host7", INT64_MAX, ev);
    ck_assert_msg(outbox_name_valid(ev), "%s", ev);
}
END_TEST

static const struct time_case {
    int64_t ms;
    const char *want;
} time_cases[] = {
    { 0, "1970-01-01T00:00:00.000Z" },
    { 1787306798344, "2026-08-21T10:06:38.344Z" },
    { 951782400005, "2000-02-29T00:00:00.005Z" },
    { 1704067199999, "2023-12-31T23:59:59.999Z" },
};

START_TEST(test_alertmsg_rfc3339)
{
    char buf[40];

    alertmsg_rfc3339(time_cases[_i].ms, buf, sizeof(buf));
    ck_assert_str_eq(buf, time_cases[_i].want);
}
END_TEST

static const struct dur_case {
    int64_t ms;
    const char *want;
} dur_cases[] = {
    { 600000, "10m" }, { 3600000, "1h" }, { 90000, "90s" }, { 250, "250ms" }, { 86400000, "1d" },
};

START_TEST(test_alertmsg_duration)
{
    char buf[24];

    alertmsg_duration(dur_cases[_i].ms, buf, sizeof(buf));
    ck_assert_str_eq(buf, dur_cases[_i].want);
}
END_TEST

/* --- incident bodies ------------------------------------------------------------------ */

static const char hostile[] = "<!channel> <https://x|y> & \"quote\" `tick`\nline\t\xff\xfe\xc3";

static const struct body_case {
    const char *name;
    const char *identity;
    const char *account;
    bool evidence, monitor, failed;
} body_cases[] = {
    { "plain", "info@example.com", "examplec", true, false, false },
    { "no account", "shop:/home/shop/public_html", NULL, false, false, false },
    { "hostile", hostile, hostile, true, false, true },
    { "monitor", "a@b.c", "", true, true, false },
    { "huge", NULL /* 10 KB */, NULL, true, false, false },
};

START_TEST(test_alertmsg_incident_bodies)
{
    const struct body_case *c = &body_cases[_i];
    static char huge[10 * 1024 + 1];
    const char *subjects[] = { hostile, "Your invoice", "x", "y", "z", "sixth is ignored" };
    const char *ips[] = { "203.0.113.9", "2001:db8::1" };
    const char *domains[] = { "gmail.com", hostile };
    struct alertmsg_count counts[] = { { "messages", 3600000, 900 }, { "recipients", 60000, 80 } };
    struct alertmsg_actions acted = { .confirmed = 390,
                                      .frozen = 388,
                                      .failed = c->failed ? 2 : 0,
                                      .backend = "cpanel",
                                      .backend_done = CONFIG_ACTION_HOLD,
                                      .monitor = c->monitor };
    char id[ALERTMSG_ID_MAX];
    struct alertmsg_incident inc;
    static const enum alert_dest_type types[] = { ALERT_DEST_SLACK, ALERT_DEST_WEBHOOK,
                                                  ALERT_DEST_ALERTMANAGER };
    struct strbuf b;

    memset(huge, 'A', sizeof(huge) - 1);
    huge[100] = '<';
    huge[5000] = '\n';
    alertmsg_incident_id("host7", "mailbox-burst", SCOPE_MAILBOX, c->identity ? c->identity : huge,
                         1787306798344, id);
    inc = (struct alertmsg_incident){
        .host = "host7.example.net",
        .incident_id = id,
        .rule = "mailbox-burst",
        .scope = SCOPE_MAILBOX,
        .identity = c->identity ? c->identity : huge,
        .account = c->account,
        .metric = "recipients",
        .window_ms = 600000,
        .value = 412,
        .limit = 300,
        .at_ms = 1787306798344,
        .monitor = c->monitor,
        .counts = counts,
        .ncounts = N_ELEMS(counts),
    };
    if (c->evidence) {
        inc.subjects = subjects;
        inc.nsubjects = N_ELEMS(subjects);
        inc.client_ips = ips;
        inc.nclient_ips = N_ELEMS(ips);
        inc.domains = domains;
        inc.ndomains = N_ELEMS(domains);
    }
    strbuf_init(&b, ALERTMSG_BODY_MAX);
    for (size_t t = 0; t < N_ELEMS(types); t++) {
        for (int k = ALERTMSG_TRIPPED; k <= ALERTMSG_RELEASED; k++) {
            char name[128];

            inc.acted = k >= ALERTMSG_ACTED ? &acted : NULL;
            inc.released_ms = k == ALERTMSG_RELEASED ? 1787306900000 : 0;
            (void)snprintf(name, sizeof(name), "%s/%zu/%s", c->name, t,
                           alertmsg_kind_name((enum alertmsg_kind)k));
            strbuf_reset(&b);
            ck_assert_int_eq(alertmsg_incident_body(&b, types[t], (enum alertmsg_kind)k, &inc,
                                                    1787306799000, 240000),
                             0);
            check_body(name, types[t], &b);
            /* every value is capped: even a 10 KB identity leaves a small body */
            ck_assert_msg(b.len < 16 * 1024, "%s: %zu bytes", name, b.len);
            if (types[t] == ALERT_DEST_SLACK && k != ALERTMSG_RELEASED && !c->monitor)
                ck_assert_msg(strstr(b.p, "floodgatectl release --scope mailbox "), "%s", name);
            if (types[t] == ALERT_DEST_SLACK)
                ck_assert_msg(strstr(b.p, id), "%s: incident id missing", name);
            if (types[t] == ALERT_DEST_SLACK && c->evidence && k != ALERTMSG_RELEASED) {
                ck_assert_msg(strstr(b.p, "Your invoice"), "%s", name);
                ck_assert_msg(!strstr(b.p, "sixth is ignored"), "%s", name);
            }
        }
    }
    strbuf_done(&b);
}
END_TEST

/* Slack's follow-up without an outcome, and a failure told late with the release (§2.5). */
START_TEST(test_alertmsg_followup_late_outcome)
{
    struct alertmsg_actions acted = { .confirmed = 390,
                                      .frozen = 388,
                                      .failed = 2,
                                      .backend = "cpanel",
                                      .backend_done = CONFIG_ACTION_HOLD };
    struct alertmsg_incident inc = { .host = "host7",
                                     .incident_id = "fg_x",
                                     .rule = "mailbox-burst",
                                     .scope = SCOPE_MAILBOX,
                                     .identity = hostile,
                                     .account = "examplec",
                                     .metric = "recipients",
                                     .window_ms = 600000,
                                     .value = 412,
                                     .limit = 300,
                                     .at_ms = 1787306798344,
                                     .waited_ms = 30000 };
    struct strbuf b;

    strbuf_init(&b, ALERTMSG_BODY_MAX);
    ck_assert_int_eq(
        alertmsg_incident_body(&b, ALERT_DEST_SLACK, ALERTMSG_FOLLOWUP, &inc, inc.at_ms, 0), 0);
    check_body("followup", ALERT_DEST_SLACK, &b);
    ck_assert_ptr_nonnull(strstr(b.p, "Outbound spam: actions still running on host7"));
    ck_assert_ptr_nonnull(strstr(b.p, "the actions have not reported after 30s; still running"));
    ck_assert_ptr_nonnull(strstr(b.p, "floodgatectl release --scope mailbox "));
    ck_assert_ptr_null(strstr(b.p, "froze"));
    inc.monitor = true;
    strbuf_reset(&b);
    ck_assert_int_eq(
        alertmsg_incident_body(&b, ALERT_DEST_SLACK, ALERTMSG_FOLLOWUP, &inc, inc.at_ms, 0), 0);
    check_body("followup/monitor", ALERT_DEST_SLACK, &b);
    ck_assert_ptr_nonnull(strstr(b.p, "monitor mode: the would-be actions have not reported"));
    inc.monitor = false;
    /* machines get the outcome itself, never this note */
    strbuf_reset(&b);
    ck_assert_int_eq(
        alertmsg_incident_body(&b, ALERT_DEST_WEBHOOK, ALERTMSG_FOLLOWUP, &inc, inc.at_ms, 0),
        -EINVAL);
    ck_assert_int_eq(
        alertmsg_incident_body(&b, ALERT_DEST_ALERTMANAGER, ALERTMSG_FOLLOWUP, &inc, inc.at_ms, 0),
        -EINVAL);
    ck_assert_uint_eq(b.len, 0);
    ck_assert_str_eq(alertmsg_kind_name(ALERTMSG_FOLLOWUP), "followup");
    /* the release tells a failure that came after the follow-up, and only then */
    inc.acted = &acted;
    inc.released_ms = 1787306900000;
    ck_assert_int_eq(
        alertmsg_incident_body(&b, ALERT_DEST_SLACK, ALERTMSG_RELEASED, &inc, inc.at_ms, 0), 0);
    check_body("released", ALERT_DEST_SLACK, &b);
    ck_assert_ptr_null(strstr(b.p, "had failed"));
    inc.late_outcome = true;
    strbuf_reset(&b);
    ck_assert_int_eq(
        alertmsg_incident_body(&b, ALERT_DEST_SLACK, ALERTMSG_RELEASED, &inc, inc.at_ms, 0), 0);
    check_body("released/late", ALERT_DEST_SLACK, &b);
    ck_assert_ptr_nonnull(
        strstr(b.p, "; the actions had failed: froze 388 of 390 messages, 2 could not be frozen"));
    ck_assert_ptr_nonnull(strstr(b.p, "*Actions had failed*"));
    strbuf_done(&b);
}
END_TEST

START_TEST(test_alertmsg_slack_escaped)
{
    struct alertmsg_incident inc = { .host = "h",
                                     .incident_id = "fg_x",
                                     .rule = "r",
                                     .identity = hostile,
                                     .metric = "messages",
                                     .window_ms = 60000,
                                     .value = 2,
                                     .limit = 1,
                                     .at_ms = 1 };
    struct strbuf b;

    strbuf_init(&b, ALERTMSG_BODY_MAX);
    ck_assert_int_eq(alertmsg_incident_body(&b, ALERT_DEST_SLACK, ALERTMSG_TRIPPED, &inc, 1, 0), 0);
    /* the fallback text escapes; inside inline code the backticks and newline are gone */
    ck_assert_ptr_nonnull(strstr(b.p, "&lt;!channel&gt; &lt;https://x|y&gt; &amp; \\\"quote\\\""));
    ck_assert_ptr_nonnull(strstr(b.p, "`&lt;!channel&gt; &lt;https://x|y&gt; &amp; \\\"quote\\\" "
                                      "tick line "));
    ck_assert_ptr_nonnull(strstr(b.p, "\xef\xbf\xbd"));
    ck_assert_ptr_null(strstr(b.p, "<https:"));
    strbuf_done(&b);
}
END_TEST

START_TEST(test_alertmsg_webhook_shape)
{
    struct alertmsg_actions a = {
        .confirmed = 3, .frozen = 3, .backend = "exim", .backend_done = CONFIG_ACTION_SUSPEND
    };
    struct alertmsg_incident inc = { .host = "host7",
                                     .incident_id = "fg_abc",
                                     .rule = "burst",
                                     .scope = SCOPE_ACCOUNT,
                                     .identity = "shop",
                                     .metric = "messages",
                                     .window_ms = 600000,
                                     .value = 412,
                                     .limit = 300,
                                     .at_ms = 1787306798344,
                                     .acted = &a };
    struct strbuf b;

    strbuf_init(&b, ALERTMSG_BODY_MAX);
    ck_assert_int_eq(
        alertmsg_incident_body(&b, ALERT_DEST_WEBHOOK, ALERTMSG_ACTED, &inc, 1787306800001, 0), 0);
    ck_assert_ptr_nonnull(strstr(b.p, "{\"type\":\"floodgate.trip.acted\","
                                      "\"timestamp\":\"2026-08-21T10:06:40.001Z\",\"data\":{"));
    ck_assert_ptr_nonnull(strstr(b.p, "\"window_seconds\":600,\"value\":412,\"limit\":300"));
    ck_assert_ptr_nonnull(strstr(b.p, "\"account\":null"));
    ck_assert_ptr_nonnull(
        strstr(b.p, "{\"action\":\"suspend\",\"result\":\"ok\",\"backend\":\"exim\"}"));
    a.backend_err = -EIO;
    strbuf_reset(&b);
    ck_assert_int_eq(alertmsg_incident_body(&b, ALERT_DEST_WEBHOOK, ALERTMSG_ACTED, &inc, 1, 0), 0);
    ck_assert_ptr_nonnull(strstr(b.p, "\"type\":\"floodgate.trip.action_failed\""));
    /* for people: FAILED, the backend and the error text, not an errno number */
    a.backend_err = -ENOENT;
    strbuf_reset(&b);
    ck_assert_int_eq(alertmsg_incident_body(&b, ALERT_DEST_SLACK, ALERTMSG_ACTED, &inc, 1, 0), 0);
    ck_assert_msg(strstr(b.p, "hold or suspension FAILED through exim: No such file or directory"),
                  "%s", b.p);
    ck_assert_ptr_null(strstr(b.p, "error 2"));
    a.backend_err = -EIO;
    strbuf_reset(&b);
    ck_assert_int_eq(alertmsg_incident_body(&b, ALERT_DEST_WEBHOOK, ALERTMSG_TRIPPED, &inc, 1, 0),
                     0);
    ck_assert_ptr_nonnull(strstr(b.p, "\"type\":\"floodgate.trip.tripped\""));
    ck_assert_ptr_null(strstr(b.p, "\"actions\""));
    strbuf_done(&b);
}
END_TEST

/* Nothing held for want of a confirmed message, or for want of a ledger: said as such. */
START_TEST(test_alertmsg_unconfirmed_and_ledger_failed)
{
    struct alertmsg_actions a = { .backend = "cpanel", .unconfirmed = true, .candidates = 7 };
    struct alertmsg_incident inc = { .host = "host7",
                                     .incident_id = "fg_abc",
                                     .rule = "burst",
                                     .scope = SCOPE_ACCOUNT,
                                     .identity = "shop",
                                     .metric = "messages",
                                     .window_ms = 600000,
                                     .value = 412,
                                     .limit = 300,
                                     .at_ms = 1787306798344,
                                     .acted = &a };
    struct strbuf b;

    strbuf_init(&b, ALERTMSG_BODY_MAX);
    ck_assert_int_eq(alertmsg_incident_body(&b, ALERT_DEST_SLACK, ALERTMSG_ACTED, &inc, 1, 0), 0);
    ck_assert_ptr_nonnull(strstr(b.p, "not held: none of the 7 messages named in the log is "
                                      "confirmed in Exim's spool"));
    ck_assert_ptr_nonnull(strstr(b.p, "not confirmed (nothing held)"));
    ck_assert_ptr_null(strstr(b.p, "stopped on"));
    ck_assert(!alertmsg_actions_failed(&a));
    strbuf_reset(&b);
    ck_assert_int_eq(alertmsg_incident_body(&b, ALERT_DEST_WEBHOOK, ALERTMSG_ACTED, &inc, 1, 0), 0);
    ck_assert_ptr_nonnull(strstr(b.p, "\"type\":\"floodgate.trip.unconfirmed\""));
    ck_assert_ptr_nonnull(strstr(b.p, "{\"action\":\"hold\",\"result\":\"unconfirmed\","
                                      "\"candidates\":7,\"confirmed\":0}"));
    strbuf_reset(&b);
    ck_assert_int_eq(
        alertmsg_incident_body(&b, ALERT_DEST_ALERTMANAGER, ALERTMSG_ACTED, &inc, 1, 0), 0);
    ck_assert_ptr_nonnull(strstr(b.p, "not held: none of the 7 messages"));

    a = (struct alertmsg_actions){ .backend = "cpanel", .ledger_err = -ENOSPC };
    strbuf_reset(&b);
    ck_assert_int_eq(alertmsg_incident_body(&b, ALERT_DEST_SLACK, ALERTMSG_ACTED, &inc, 1, 0), 0);
    ck_assert_ptr_nonnull(strstr(b.p, "could not act: ledger write failed (No space left on "
                                      "device); nothing was done"));
    ck_assert(alertmsg_actions_failed(&a));
    strbuf_reset(&b);
    ck_assert_int_eq(alertmsg_incident_body(&b, ALERT_DEST_WEBHOOK, ALERTMSG_ACTED, &inc, 1, 0), 0);
    ck_assert_ptr_nonnull(strstr(b.p, "\"type\":\"floodgate.trip.action_failed\""));
    ck_assert_ptr_nonnull(strstr(b.p, "\"reason\":\"ledger_write_failed\",\"error\":28"));
    strbuf_done(&b);
}
END_TEST

START_TEST(test_alertmsg_am_alerts)
{
    struct alertmsg_incident v[2] = {
        { .host = "host7",
          .incident_id = "fg_one",
          .rule = "burst",
          .scope = SCOPE_MAILBOX,
          .identity = "a@b.c",
          .metric = "messages",
          .window_ms = 60000,
          .value = 5,
          .limit = 4,
          .at_ms = 1787306798344 },
        { .host = "host7",
          .incident_id = "fg_two",
          .rule = "burst",
          .scope = SCOPE_MAILBOX,
          .identity = hostile,
          .metric = "messages",
          .window_ms = 60000,
          .value = 5,
          .limit = 4,
          .at_ms = 1000,
          .released_ms = 2000,
          .generator_url = "https://fg.example.net/incident" },
    };
    struct strbuf b;

    strbuf_init(&b, ALERTMSG_BODY_MAX);
    ck_assert_int_eq(alertmsg_am_array(&b, v, 2, 1787306798344 + 240000), 0);
    check_body("am array", ALERT_DEST_ALERTMANAGER, &b);
    ck_assert_ptr_nonnull(strstr(b.p, "[{\"labels\":{\"alertname\":\"FloodgateTrip\","
                                      "\"severity\":\"critical\",\"host\":\"host7\",\"rule\":"
                                      "\"burst\",\"scope\":\"mailbox\",\"identity\":\"a@b.c\"}"));
    ck_assert_ptr_nonnull(strstr(b.p, "\"incident_id\":\"fg_one\"},\"startsAt\":\"2026-08-21T10:"
                                      "06:38.344Z\",\"endsAt\":\"2026-08-21T10:10:38.344Z\"}"));
    /* the resolved one ends at its release; generatorURL only when configured */
    ck_assert_ptr_nonnull(strstr(b.p, "\"endsAt\":\"1970-01-01T00:00:02.000Z\",\"generatorURL\":"
                                      "\"https://fg.example.net/incident/fg_two\"}]"));
    /* only the second alert has one */
    ck_assert_ptr_null(strstr(strstr(b.p, "generatorURL") + 1, "generatorURL"));
    strbuf_reset(&b);
    ck_assert_int_eq(alertmsg_am_array(&b, v, 0, 0), 0);
    ck_assert_str_eq(b.p, "[]");
    strbuf_done(&b);
}
END_TEST

/* The identity label of a one-alert array @b: a copy in @buf. */
static void
am_label(const struct strbuf *b, char *buf, size_t size)
{
    const char *p = strstr(b->p, "\"identity\":\"");
    const char *e;

    ck_assert_ptr_nonnull(p);
    p += 12;
    e = strchr(p, '"');
    ck_assert_ptr_nonnull(e);
    ck_assert_uint_lt((size_t)(e - p), size);
    (void)snprintf(buf, size, "%.*s", (int)(e - p), p);
}

static void
am_label_of(const char *identity, char *buf, size_t size)
{
    struct alertmsg_incident inc = { .host = "host7",
                                     .incident_id = "fg_x",
                                     .rule = "burst",
                                     .identity = identity,
                                     .metric = "messages",
                                     .window_ms = 60000,
                                     .value = 5,
                                     .limit = 4,
                                     .at_ms = 1787306798344 };
    struct strbuf b;

    strbuf_init(&b, ALERTMSG_BODY_MAX);
    ck_assert_int_eq(alertmsg_am_array(&b, &inc, 1, 1787306798344 + 240000), 0);
    check_body(identity, ALERT_DEST_ALERTMANAGER, &b);
    am_label(&b, buf, size);
    strbuf_done(&b);
}

/* Is @s "…" and ALERTMSG_LABEL_HASH lowercase hex digits at its end? */
static bool
label_hashed(const char *s)
{
    size_t n = strlen(s);

    if (n < 3 + ALERTMSG_LABEL_HASH || memcmp(s + n - 3 - ALERTMSG_LABEL_HASH, "\xe2\x80\xa6", 3))
        return false;
    return strspn(s + n - ALERTMSG_LABEL_HASH, "0123456789abcdef") == ALERTMSG_LABEL_HASH;
}

/* Labels identify an alert: identities sharing their first 200 bytes stay distinct. */
START_TEST(test_alertmsg_am_identity_cut)
{
    static char a[301], b2[301], fits[ALERTMSG_TEXT_CAP + 1], utf[301];
    char la[512], lb[512], la2[512], l[512];

    memset(a, 'x', sizeof(a) - 1);
    memcpy(b2, a, sizeof(a));
    b2[299] = 'y'; /* the same first 299 bytes */
    am_label_of(a, la, sizeof(la));
    am_label_of(b2, lb, sizeof(lb));
    am_label_of(a, la2, sizeof(la2));
    ck_assert_str_ne(la, lb);
    ck_assert_str_eq(la, la2); /* stable: the same identity, the same alert */
    ck_assert(label_hashed(la) && label_hashed(lb));
    ck_assert_uint_le(strlen(la), ALERTMSG_TEXT_CAP);
    ck_assert_int_eq(strncmp(la, a, ALERTMSG_TEXT_CAP - 3 - ALERTMSG_LABEL_HASH), 0);
    /* one that fits is the label itself */
    memset(fits, 'z', sizeof(fits) - 1);
    am_label_of(fits, l, sizeof(l));
    ck_assert_str_eq(l, fits);
    am_label_of("a@b.c", l, sizeof(l));
    ck_assert_str_eq(l, "a@b.c");
    /* one that only looks cut cannot pose as another's label */
    (void)snprintf(fits, sizeof(fits), "%.*s\xe2\x80\xa6%.8s",
                   ALERTMSG_TEXT_CAP - 3 - ALERTMSG_LABEL_HASH, a, la + strlen(la) - 8);
    ck_assert_str_eq(fits, la);
    am_label_of(fits, l, sizeof(l));
    ck_assert_str_ne(l, la);
    ck_assert(label_hashed(l));
    /* a cut inside a multi-byte character keeps the label valid UTF-8 (check_body) */
    for (size_t i = 0; i + 2 < sizeof(utf) - 1; i += 2)
        memcpy(utf + i, "\xc3\xa9", 2);
    utf[sizeof(utf) - 2] = 'e';
    am_label_of(utf, l, sizeof(l));
    ck_assert(label_hashed(l));
}
END_TEST

/*
 * East of UTC the log time, read as UTC, is ahead of the wall clock: the bodies show the
 * detection time, and the log time as text, server local.
 */
START_TEST(test_alertmsg_detection_time)
{
    struct alertmsg_incident inc = { .host = "host7",
                                     .incident_id = "fg_x",
                                     .rule = "burst",
                                     .identity = "a@b.c",
                                     .metric = "messages",
                                     .window_ms = 60000,
                                     .value = 5,
                                     .limit = 4,
                                     .at_ms = 1787306798344 + 2 * 3600 * 1000,
                                     .detected_ms = 1787306798344,
                                     .log_time = "2026-08-21 12:06:38" };
    struct strbuf b;

    strbuf_init(&b, ALERTMSG_BODY_MAX);
    ck_assert_int_eq(alertmsg_am_array(&b, &inc, 1, 1787306798344 + 240000), 0);
    check_body("am/detected", ALERT_DEST_ALERTMANAGER, &b);
    ck_assert_ptr_nonnull(strstr(b.p, "\"startsAt\":\"2026-08-21T10:06:38.344Z\","
                                      "\"endsAt\":\"2026-08-21T10:10:38.344Z\""));
    ck_assert_ptr_nonnull(strstr(b.p, "\"log_time\":\"2026-08-21 12:06:38 (server local)\""));
    strbuf_reset(&b);
    ck_assert_int_eq(
        alertmsg_incident_body(&b, ALERT_DEST_WEBHOOK, ALERTMSG_TRIPPED, &inc, inc.detected_ms, 0),
        0);
    check_body("hook/detected", ALERT_DEST_WEBHOOK, &b);
    ck_assert_ptr_nonnull(strstr(b.p, "\"tripped_at\":\"2026-08-21T10:06:38.344Z\""));
    ck_assert_ptr_nonnull(strstr(b.p, "\"log_time\":\"2026-08-21 12:06:38\""));
    ck_assert_ptr_null(strstr(b.p, "T12:06"));
    strbuf_reset(&b);
    ck_assert_int_eq(
        alertmsg_incident_body(&b, ALERT_DEST_SLACK, ALERTMSG_TRIPPED, &inc, inc.detected_ms, 0),
        0);
    check_body("slack/detected", ALERT_DEST_SLACK, &b);
    ck_assert_ptr_nonnull(strstr(b.p, "*Detected*\\n2026-08-21T10:06:38.344Z\\nlog time "
                                      "(server local) 2026-08-21 12:06:38"));
    /* no detection time: the log time stands in, no text */
    inc.detected_ms = 0;
    inc.log_time = NULL;
    strbuf_reset(&b);
    ck_assert_int_eq(alertmsg_am_array(&b, &inc, 1, 1787306798344 + 8 * 3600 * 1000), 0);
    ck_assert_ptr_nonnull(strstr(b.p, "\"startsAt\":\"2026-08-21T12:06:38.344Z\""));
    ck_assert_ptr_null(strstr(b.p, "log_time"));
    strbuf_done(&b);
}
END_TEST

/* --- digests -------------------------------------------------------------------------- */

START_TEST(test_alertmsg_digest_top20)
{
    enum { N = 1000 };
    static struct alertmsg_digest_item items[N];
    static char names[N][32];
    struct alertmsg_digest_count counts[] = { { "burst", SCOPE_MAILBOX, 990 },
                                              { "script-burst", SCOPE_SCRIPT, 10 } };
    struct alertmsg_digest dg = { .host = "host7",
                                  .event_id = "fg_x_digest_60",
                                  .start_ms = 60000,
                                  .end_ms = 120000,
                                  .total = N,
                                  .acted = 7,
                                  .failed = 1,
                                  .counts = counts,
                                  .ncounts = 2,
                                  .items = items,
                                  .nitems = N };
    struct strbuf b;
    const char *p;

    for (size_t i = 0; i < N; i++) {
        /* values 0..999 in a scrambled order; the top 20 are 999..980 */
        uint64_t v = (i * 7919) % N;
        (void)snprintf(names[i], sizeof(names[i]), "u%03llu@x.y", (unsigned long long)v);
        items[i] = (struct alertmsg_digest_item){
            .rule = "burst", .identity = names[i], .metric = "messages", .value = v, .limit = 5
        };
    }
    items[3].identity = hostile;
    items[3].value = 5000;
    strbuf_init(&b, ALERTMSG_BODY_MAX);
    ck_assert_int_eq(alertmsg_digest_body(&b, ALERT_DEST_SLACK, &dg), 0);
    check_body("digest slack", ALERT_DEST_SLACK, &b);
    ck_assert_ptr_nonnull(strstr(b.p, "and 980 more — `floodgatectl top`"));
    ck_assert_ptr_nonnull(strstr(b.p, "burst (mailbox): 990"));
    ck_assert_ptr_nonnull(strstr(b.p, "*1000 incidents*"));
    /* largest first: the hostile one (5000), then 999, 998, ... 982 is last; 980 is out */
    p = strstr(b.p, "&lt;!channel&gt;");
    ck_assert_ptr_nonnull(p);
    ck_assert_ptr_nonnull(strstr(p, "u999@x.y"));
    ck_assert_ptr_nonnull(strstr(strstr(p, "u999@x.y"), "u981@x.y"));
    ck_assert_ptr_null(strstr(b.p, "u980@x.y"));
    strbuf_reset(&b);
    ck_assert_int_eq(alertmsg_digest_body(&b, ALERT_DEST_WEBHOOK, &dg), 0);
    check_body("digest webhook", ALERT_DEST_WEBHOOK, &b);
    ck_assert_ptr_nonnull(strstr(b.p, "\"type\":\"floodgate.digest\""));
    ck_assert_ptr_nonnull(strstr(b.p, "\"more\":980}}"));
    ck_assert_ptr_nonnull(
        strstr(b.p, "{\"rule\":\"script-burst\",\"scope\":\"script\",\"count\":10}"));
    ck_assert_ptr_eq(strstr(b.p, "\"identity\""), strstr(b.p, "\"identity\":\"<!channel>"));
    strbuf_reset(&b);
    ck_assert_int_eq(alertmsg_digest_body(&b, ALERT_DEST_ALERTMANAGER, &dg), -EINVAL);
    /* fewer than 20: no "more" */
    dg.nitems = dg.total = 3;
    strbuf_reset(&b);
    ck_assert_int_eq(alertmsg_digest_body(&b, ALERT_DEST_SLACK, &dg), 0);
    check_body("digest small", ALERT_DEST_SLACK, &b);
    ck_assert_ptr_null(strstr(b.p, "more —"));
    strbuf_done(&b);
}
END_TEST

START_TEST(test_alertmsg_health_test_bodies)
{
    static const enum alert_dest_type types[] = { ALERT_DEST_SLACK, ALERT_DEST_WEBHOOK,
                                                  ALERT_DEST_ALERTMANAGER };
    struct strbuf b;

    strbuf_init(&b, ALERTMSG_BODY_MAX);
    for (size_t t = 0; t < N_ELEMS(types); t++) {
        strbuf_reset(&b);
        ck_assert_int_eq(alertmsg_health_body(&b, types[t], "host7", "fg_h_health_1",
                                              "destination_disabled",
                                              "alert destination ops <x> disabled", 1000, 3600000),
                         0);
        check_body("health", types[t], &b);
        strbuf_reset(&b);
        ck_assert_int_eq(alertmsg_test_body(&b, types[t], "host7", "fg_t_test_1", 1000), 0);
        check_body("test", types[t], &b);
    }
    ck_assert_ptr_nonnull(strstr(b.p, "\"alertname\":\"FloodgateTest\""));
    strbuf_reset(&b);
    ck_assert_int_eq(alertmsg_test_body(&b, ALERT_DEST_WEBHOOK, "h", "fg_t_test_1", 0), 0);
    ck_assert_ptr_nonnull(strstr(b.p, "\"type\":\"floodgate.test\""));
    strbuf_reset(&b);
    ck_assert_int_eq(alertmsg_health_body(&b, ALERT_DEST_WEBHOOK, "h", "e", "k", "t", 0, 0), 0);
    ck_assert_ptr_nonnull(strstr(b.p, "\"type\":\"floodgate.daemon.degraded\""));
    strbuf_done(&b);
}
END_TEST

START_TEST(test_alertmsg_cap_restores)
{
    struct alertmsg_incident inc = { .host = "h",
                                     .incident_id = "fg_x",
                                     .rule = "r",
                                     .identity = "a@b.c",
                                     .metric = "messages",
                                     .window_ms = 1000,
                                     .at_ms = 1 };
    struct strbuf b;

    strbuf_init(&b, 64);
    ck_assert_int_eq(strbuf_appends(&b, "keep"), 0);
    ck_assert_int_eq(alertmsg_incident_body(&b, ALERT_DEST_SLACK, ALERTMSG_TRIPPED, &inc, 1, 0),
                     -E2BIG);
    ck_assert_str_eq(strbuf_cstr(&b), "keep");
    strbuf_done(&b);
}
END_TEST

/* Identities shown to people: UTF-8 and printable ASCII as they are, other bytes as \xHH. */
START_TEST(test_strbuf_append_display)
{
    static const char id[] = "acct1:/home/acct1/caf\xc3\xa9 \x01\xff\\x\nY";
    struct strbuf b;

    strbuf_init(&b, 1024);
    ck_assert_int_eq(strbuf_append_display(&b, id, strlen(id)), 0);
    ck_assert_str_eq(strbuf_cstr(&b), "acct1:/home/acct1/caf\xc3\xa9 \\x01\\xff\\\\x\\x0aY");
    /* a cut UTF-8 sequence is bytes, not a character */
    strbuf_reset(&b);
    ck_assert_int_eq(strbuf_append_display(&b, "\xc3", 1), 0);
    ck_assert_str_eq(strbuf_cstr(&b), "\\xc3");
    strbuf_done(&b);
    /* over the cap: nothing appended */
    strbuf_init(&b, 4);
    ck_assert_int_lt(strbuf_append_display(&b, "\x01\x02", 2), 0);
    ck_assert_str_eq(strbuf_cstr(&b), "");
    strbuf_done(&b);
}
END_TEST

static Suite *
alertmsg_suite(void)
{
    Suite *s = suite_create("alertmsg");
    TCase *tc = tcase_create("ids");

    tcase_add_test(tc, test_alertmsg_ids_stable_distinct);
    tcase_add_loop_test(tc, test_alertmsg_rfc3339, 0, N_ELEMS(time_cases));
    tcase_add_loop_test(tc, test_alertmsg_duration, 0, N_ELEMS(dur_cases));
    tcase_set_timeout(tc, 120);
    suite_add_tcase(s, tc);
    tc = tcase_create("bodies");
    tcase_set_timeout(tc, 300); /* python3 may start slowly on a loaded machine */
    tcase_add_checked_fixture(tc, py_setup, py_teardown);
    tcase_add_test(tc, test_alertmsg_validator_rejects);
    tcase_add_loop_test(tc, test_alertmsg_incident_bodies, 0, N_ELEMS(body_cases));
    tcase_add_test(tc, test_alertmsg_slack_escaped);
    tcase_add_test(tc, test_strbuf_append_display);
    tcase_add_test(tc, test_alertmsg_followup_late_outcome);
    tcase_add_test(tc, test_alertmsg_webhook_shape);
    tcase_add_test(tc, test_alertmsg_unconfirmed_and_ledger_failed);
    tcase_add_test(tc, test_alertmsg_am_alerts);
    tcase_add_test(tc, test_alertmsg_am_identity_cut);
    tcase_add_test(tc, test_alertmsg_detection_time);
    tcase_add_test(tc, test_alertmsg_digest_top20);
    tcase_add_test(tc, test_alertmsg_health_test_bodies);
    tcase_add_test(tc, test_alertmsg_cap_restores);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return testrun_suite(alertmsg_suite());
}
