/*
 * check_report.c - the replay's HTML page: log text escaped wherever it lands, sizes
 * bounded however long the log and however many identities, an offender charted and its
 * trip's evidence kept even when busy senders filled the followed set first, the samples
 * reading the sliding value, evidence bounded and cut on a character.
 */
#include <stdio.h>
#include <string.h>

#include <check.h>

#include "engine.h"
#include "report.h"
#include "testrun.h"

static const char report_yaml[] = "mode: monitor\n"
                                  "rules:\n"
                                  "  - name: box-burst\n"
                                  "    scope: mailbox\n"
                                  "    metric: messages\n"
                                  "    window: 10m\n"
                                  "    above: 30\n"
                                  "    actions: [alert]\n"
                                  "  - name: acct-hour\n"
                                  "    scope: account\n"
                                  "    metric: messages\n"
                                  "    window: 1h\n"
                                  "    above: 100000\n"
                                  "    actions: [alert]\n";

/* 2026-03-02 00:00:00 as the parser reads it (local time read as UTC) */
#define T0_MS 1772409600000LL

struct rfx {
    struct config *cfg;
    struct attrib_maps *maps;
    struct report *rep;
    struct engine *e;
    struct engine_notice notes[ENGINE_NOTICES_MAX];
    uint64_t line, trips;
    struct strbuf out;
};

static struct rfx fx;

static void
rfx_setup(void)
{
    struct engine_params ep = { 0 };
    static const char ud[] = "example.com: acct1\nother.org: acct2\n";
    struct diag d;

    memset(&fx, 0, sizeof(fx));
    ck_assert_int_eq(config_parse(report_yaml, strlen(report_yaml), "test.yml", &fx.cfg, &d), 0);
    fx.maps = attrib_maps_new(ep.key);
    ck_assert_int_eq(attrib_maps_add(fx.maps, ud, strlen(ud), true, NULL), 2);
    fx.rep = report_new(fx.cfg);
    ck_assert_ptr_nonnull(fx.rep);
    ep.cfg = fx.cfg;
    ep.maps = fx.maps;
    ep.hook = report_hook(fx.rep);
    ck_assert_int_eq(engine_new(&ep, &fx.e), 0);
    strbuf_init(&fx.out, REPORT_HTML_MAX);
}

static void
rfx_teardown(void)
{
    strbuf_done(&fx.out);
    engine_free(fx.e);
    report_free(fx.rep);
    attrib_maps_free(fx.maps);
    config_free(fx.cfg);
}

/* One SMTP AUTH arrival from @box at @ms with @subject from @ip to @rcpt. */
static void
rfx_send(int64_t ms, const char *box, const char *subject, const char *ip, const char *rcpt)
{
    char line[2048], t[24];
    struct eximlog_record rec;
    size_t n;

    util_format_time(ms, t, sizeof(t));
    (void)snprintf(line, sizeof(line),
                   "%s 1vwqhc-%06llu-xm <= %s H=(pc) [%s]:4000 P=esmtpsa A=dovecot_login:%s "
                   "S=1200 T=\"%s\" for %s",
                   t, (unsigned long long)(fx.line % 1000000), box, ip, box, subject, rcpt);
    rec = (struct eximlog_record){ .text = line, .len = strlen(line) };
    n = engine_feed(fx.e, &rec, ++fx.line, fx.notes, ENGINE_NOTICES_MAX);
    for (size_t i = 0; i < n; i++)
        fx.trips += fx.notes[i].kind == ENGINE_TRIP;
    report_step(fx.rep, fx.e, fx.notes, n);
}

static const char *
rfx_render(void)
{
    static const char *const files[] = { "/var/log/exim_mainlog" };
    struct report_meta m = { .files = files, .nfiles = 1, .lines = fx.line };

    report_finish(fx.rep, fx.e);
    strbuf_reset(&fx.out);
    ck_assert_int_eq(report_render(fx.rep, fx.e, &m, &fx.out), 0);
    return strbuf_cstr(&fx.out);
}

static size_t
count_of(const char *hay, const char *needle)
{
    size_t n = 0;

    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

/* Hostile text in a subject, an identity and a recipient domain stays text. */
START_TEST(test_report_escapes)
{
    const char *html;

    for (int i = 0; i < 40; i++)
        rfx_send(T0_MS + i * 1000, "x'<b>&amp;@example.com",
                 "</svg><script>alert(1)</script>\xe2\x80\xae"
                 "gpj.exe \xff",
                 "192.0.2.7", "v@ev&il'.test");
    ck_assert_uint_eq(fx.trips, 1);
    html = rfx_render();
    ck_assert_ptr_nonnull(strstr(html, "&lt;/svg&gt;&lt;script&gt;alert(1)&lt;/script&gt;"
                                       "\\u202egpj.exe \xef\xbf\xbd"));
    ck_assert_ptr_nonnull(strstr(html, "x&#39;&lt;b&gt;&amp;amp;@example.com"));
    ck_assert_ptr_nonnull(strstr(html, "ev&amp;il&#39;.test"));
    ck_assert_ptr_null(strstr(html, "<script"));
    ck_assert_ptr_null(strstr(html, "<b>"));
    ck_assert_ptr_null(strstr(html, "\xe2\x80\xae"));
    ck_assert_ptr_null(strstr(html, "\xff"));
    /* every chart closed; no script, no external resource */
    ck_assert_uint_eq(count_of(html, "<svg"), count_of(html, "</svg>"));
    ck_assert_uint_eq(count_of(html, "<svg class=\"series\""), 2); /* one per rule */
    ck_assert_ptr_nonnull(strstr(html, "default-src 'none'"));
    ck_assert_str_eq(html + strlen(html) - 15, "</body></html>\n");
    ck_assert_ptr_null(strstr(html, "http://www.w3.org/2000/svg\" src"));
    ck_assert_ptr_null(strstr(html, "href=\"http"));
}
END_TEST

/* Two days, 3000 identities: samples, followed identities, charts and the page bounded. */
START_TEST(test_report_bounded)
{
    char box[64], ip[32];
    const char *html, *p;
    size_t series;

    for (int i = 0; i < 30000; i++) {
        (void)snprintf(box, sizeof(box), "u%d@example.com", (i * 7919) % 3000);
        (void)snprintf(ip, sizeof(ip), "192.0.2.%d", i % 250);
        rfx_send(T0_MS + (int64_t)i * 5760, box, "hello", ip, "a@gmail.com");
    }
    ck_assert_uint_le(report_points(fx.rep), REPORT_POINTS);
    ck_assert_int_gt(report_step_ms(fx.rep), REPORT_STEP_MS * 16); /* 48 h: halved 5 times */
    ck_assert_uint_eq(report_followed(fx.rep, 0), REPORT_TRACK);
    html = rfx_render();
    ck_assert_uint_le(report_points(fx.rep), REPORT_POINTS);
    series = count_of(html, "<svg class=\"series\"");
    ck_assert_uint_eq(series, REPORT_SHOW + 1); /* ten mailboxes, one account */
    ck_assert_uint_eq(count_of(html, "class=\"threshold\""), series);
    /* no polyline holds more points than there are samples */
    for (p = html; (p = strstr(p, "<polyline class=\"value\" points=\"")); p++) {
        const char *end = strchr(p + 33, '"');
        size_t pts = 1;
        for (const char *q = p + 33; q < end; q++)
            pts += *q == ' ';
        ck_assert_uint_le(pts, REPORT_POINTS);
    }
    ck_assert_uint_lt(fx.out.len, 1u << 20);
}
END_TEST

/*
 * Busy but legitimate senders fill the followed set first; an offender that passes the
 * threshold later still displaces one, is charted first with its trip marked, and its
 * trip carries its evidence (subjects, client addresses, recipient domains).
 */
START_TEST(test_report_offender_followed)
{
    char box[64];
    const char *html, *fig, *ev;
    int64_t t = T0_MS;

    for (int round = 0; round < 25; round++)
        for (int b = 0; b < 2 * REPORT_TRACK; b++) {
            (void)snprintf(box, sizeof(box), "busy%02d@example.com", b);
            rfx_send(t, box, "weekly newsletter", "192.0.2.10", "x@gmail.com");
            t += 200;
        }
    ck_assert_uint_eq(report_followed(fx.rep, 0), REPORT_TRACK);
    for (int i = 0; i < 35; i++) {
        char ip[32];
        (void)snprintf(ip, sizeof(ip), "203.0.113.%d", i % 3);
        rfx_send(t, "victim@other.org", i % 2 ? "Your invoice" : "Payment overdue", ip,
                 i % 2 ? "a@spam-target.test" : "b@second.test");
        t += 1000;
    }
    ck_assert_uint_eq(fx.trips, 1);
    html = rfx_render();
    fig = strstr(html, "<figure class=\"ident\"><figcaption>1. <code class=\"id\">");
    ck_assert_ptr_nonnull(fig);
    ck_assert_int_eq(strncmp(fig + 54, "victim@other.org</code>", 23), 0);
    ck_assert_uint_eq(count_of(html, "<circle class=\"trip\""), 1);
    ev = strstr(html, "<table class=\"trips\">");
    ck_assert_ptr_nonnull(ev);
    ck_assert_ptr_nonnull(strstr(ev, "victim@other.org"));
    ck_assert_ptr_nonnull(strstr(ev, "Your invoice"));
    ck_assert_ptr_nonnull(strstr(ev, "Payment overdue"));
    ck_assert_ptr_nonnull(strstr(ev, "203.0.113.2"));
    ck_assert_ptr_nonnull(strstr(ev, "spam-target.test"));
    ck_assert_ptr_nonnull(strstr(ev, "31 &gt; 30 in 600 s"));
    ck_assert_ptr_null(strstr(ev, "not kept"));
}
END_TEST

/* A sample reads the sliding value at the end of its step. */
START_TEST(test_report_samples_value)
{
    const char *html, *pl;
    char want[64];

    /* 5 messages in the first step, nothing more for a minute */
    for (int i = 0; i < 5; i++)
        rfx_send(T0_MS + i * 1000, "one@example.com", "s", "192.0.2.1", "a@gmail.com");
    rfx_send(T0_MS + 60000, "two@example.com", "s", "192.0.2.1", "a@gmail.com");
    ck_assert_uint_eq(report_points(fx.rep), 6); /* steps ending at 10 s .. 60 s */
    html = rfx_render();
    pl = strstr(html, "<polyline class=\"value\" points=\"");
    ck_assert_ptr_nonnull(pl);
    /* one@: 5 at every point (10-minute window), the axis up to 50 (the threshold is 30) */
    (void)snprintf(want, sizeof(want), ",%.1f ", 12.0 + 130.0 - 5.0 / 50.0 * 130.0);
    ck_assert_ptr_nonnull(strstr(pl, want));
    ck_assert_ptr_nonnull(strstr(html, "peak <span class=\"\">5</span>"));
}
END_TEST

/* Evidence: a few distinct values, the most recent kept; long text cut on a character. */
START_TEST(test_report_evidence_bounded)
{
    char subj[512], want[64];
    const char *html, *ev;
    int64_t t = T0_MS;

    for (int i = 0; i < 40; i++) {
        (void)snprintf(subj, sizeof(subj), "subject number %02d", i);
        rfx_send(t += 1000, "many@example.com", subj, "192.0.2.1", "a@gmail.com");
    }
    /* 300 bytes of 'é' (2 bytes each): cut at REPORT_TEXT_MAX, on a whole character */
    memset(subj, 0, sizeof(subj));
    for (int i = 0; i < 150; i++)
        memcpy(subj + 2 * i, "\xc3\xa9", 2);
    rfx_send(t += 1000, "many@example.com", subj, "192.0.2.1", "a@gmail.com");
    ck_assert_uint_eq(fx.trips, 1);
    html = rfx_render();
    ev = strstr(html, "<table class=\"trips\">");
    ck_assert_ptr_nonnull(ev);
    /* the trip (the 31st message) shows the last REPORT_SUBJECTS subjects before it */
    for (int i = 0; i < 31; i++) {
        (void)snprintf(want, sizeof(want), "subject number %02d<", i);
        if (i >= 31 - REPORT_SUBJECTS)
            ck_assert_ptr_nonnull(strstr(ev, want));
        else
            ck_assert_ptr_null(strstr(ev, want));
    }
    ck_assert_ptr_null(strstr(html, "\xef\xbf\xbd"));
}
END_TEST

START_TEST(test_report_cut_subject)
{
    char subj[512], want[REPORT_TEXT_MAX + 32];
    const char *html;

    /* 'a' then 'é' repeated: REPORT_TEXT_MAX falls inside a character, which is dropped */
    subj[0] = 'a';
    for (int i = 0; i < 150; i++)
        memcpy(subj + 1 + 2 * i, "\xc3\xa9", 2);
    subj[301] = '\0';
    for (int i = 0; i < 31; i++)
        rfx_send(T0_MS + i * 1000, "cut@example.com", subj, "192.0.2.1", "a@gmail.com");
    ck_assert_uint_eq(fx.trips, 1);
    html = rfx_render();
    memcpy(want, subj, REPORT_TEXT_MAX - 1);
    memcpy(want + REPORT_TEXT_MAX - 1, "</code>", 8);
    ck_assert_ptr_nonnull(strstr(html, want));
    ck_assert_ptr_null(strstr(html, "\xef\xbf\xbd"));
}
END_TEST

static Suite *
report_suite(void)
{
    Suite *s = suite_create("report");
    TCase *tc = tcase_create("report");

    tcase_add_checked_fixture(tc, rfx_setup, rfx_teardown);
    tcase_add_test(tc, test_report_escapes);
    tcase_add_test(tc, test_report_bounded);
    tcase_add_test(tc, test_report_offender_followed);
    tcase_add_test(tc, test_report_samples_value);
    tcase_add_test(tc, test_report_evidence_bounded);
    tcase_add_test(tc, test_report_cut_subject);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return testrun_suite(report_suite());
}
