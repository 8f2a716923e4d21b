/*
 * check_util.c - lib/util's two renderings of log text: JSON strings (UTF-8 kept, bad
 * bytes U+FFFD, steering code points escaped) and terminals (every control, bad byte and
 * steering code point a visible escape, bounded output), and HTML text (markup and quotes
 * as references, steering code points visible, bad bytes U+FFFD).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "testrun.h"
#include "util.h"

static const struct render_case {
    const char *in;
    size_t len; /* 0: strlen */
    const char *json, *term;
} render_cases[] = {
    { "plain user@example.com", 0, "plain user@example.com", "plain user@example.com" },
    /* é stays é: never \u00c3\u00a9 (mojibake) nor \xc3\xa9 */
    { "caf\xc3\xa9", 0, "caf\xc3\xa9", "caf\xc3\xa9" },
    { "\xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x93\xa7", 0, "\xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x93\xa7",
      "\xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x93\xa7" },
    { "\x1b[2J\x07\rx", 0, "\\u001b[2J\\u0007\\u000dx", "\\x1b[2J\\x07\\x0dx" },
    { "a\nb\tc", 0, "a\\nb\\tc", "a\\x0ab\\x09c" },
    { "del\x7f", 0, "del\\u007f", "del\\x7f" },
    { "nul\0x", 5, "nul\\u0000x", "nul\\x00x" },
    /* U+202E RIGHT-TO-LEFT OVERRIDE, U+2066 LRI, U+200F RLM, U+2028 LINE SEPARATOR */
    { "\xe2\x80\xae" "gpj.exe", 0, "\\u202egpj.exe", "\\u202egpj.exe" },
    { "\xe2\x81\xa6x\xe2\x80\x8f\xe2\x80\xa8", 0, "\\u2066x\\u200f\\u2028",
      "\\u2066x\\u200f\\u2028" },
    /* C1 controls: CSI as UTF-8 (U+009B) and as a raw byte (not UTF-8) */
    { "\xc2\x9b" "2J", 0, "\\u009b2J", "\\u009b2J" },
    { "\x9b" "2J", 0, "\xef\xbf\xbd" "2J", "\\x9b2J" },
    /* not UTF-8: a bad byte, an overlong, a surrogate, a cut sequence at the end */
    { "bad\xff", 0, "bad\xef\xbf\xbd", "bad\\xff" },
    { "\xc0\xaf", 0, "\xef\xbf\xbd\xef\xbf\xbd", "\\xc0\\xaf" },
    { "\xed\xa0\x80", 0, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd", "\\xed\\xa0\\x80" },
    { "x\xc3", 0, "x\xef\xbf\xbd", "x\\xc3" },
    { "q\"b\\s", 0, "q\\\"b\\\\s", "q\"b\\\\s" },
};

START_TEST(test_render)
{
    const struct render_case *c = &render_cases[_i];
    size_t len = c->len ? c->len : strlen(c->in);
    struct strbuf b;
    char out[256];

    strbuf_init(&b, 4096);
    ck_assert_int_eq(strbuf_append_json(&b, c->in, len), 0);
    ck_assert_str_eq(strbuf_cstr(&b), c->json);
    strbuf_done(&b);
    ck_assert_uint_eq(util_term_escape(out, sizeof(out), c->in, len), strlen(c->term));
    ck_assert_str_eq(out, c->term);
    ck_assert_uint_eq(util_term_escape(NULL, 0, c->in, len), strlen(c->term));
}
END_TEST

/* Output is bounded: cut at a whole unit (never inside an escape or a character), "...". */
START_TEST(test_term_bounded)
{
    char out[12];
    size_t need;

    need = util_term_escape(out, sizeof(out), "\x1b\x1b\x1b\x1b", 4);
    ck_assert_uint_eq(need, 16);
    ck_assert_str_eq(out, "\\x1b\\x1b...");
    need = util_term_escape(out, sizeof(out), "abcdef\xc3\xa9\xc3\xa9", 10);
    ck_assert_uint_eq(need, 10);
    ck_assert_str_eq(out, "abcdef\xc3\xa9\xc3\xa9"); /* fits exactly: no "..." */
    need = util_term_escape(out, sizeof(out), "abcdefg\xc3\xa9\xc3\xa9x", 12);
    ck_assert_uint_eq(need, 12); /* room for 8 bytes and "...": é does not fit whole */
    ck_assert_str_eq(out, "abcdefg...");
    need = util_term_escape(out, 4, "abcdef", 6);
    ck_assert_str_eq(out, "abc"); /* no room for "...": what fits */
    need = util_term_escape(out, 1, "abc", 3);
    ck_assert_str_eq(out, "");
    ck_assert_uint_eq(need, 3);
}
END_TEST

/* A JSON append that does not fit leaves the buffer as it was. */
START_TEST(test_json_cap)
{
    struct strbuf b;

    strbuf_init(&b, 8);
    ck_assert_int_eq(strbuf_appends(&b, "ab"), 0);
    ck_assert_int_lt(strbuf_append_json(&b, "\x1b\x1b", 2), 0);
    ck_assert_str_eq(strbuf_cstr(&b), "ab");
    strbuf_done(&b);
}
END_TEST

/* HTML: markup, quotes and steering code points can neither open tags nor reorder text. */
static const struct html_case {
    const char *in;
    size_t len; /* 0: strlen */
    const char *html;
} html_cases[] = {
    { "plain user@example.com", 0, "plain user@example.com" },
    { "</svg><script>alert(1)</script>", 0,
      "&lt;/svg&gt;&lt;script&gt;alert(1)&lt;/script&gt;" },
    { "x\" onload=\"alert(1)' a='&amp;", 0,
      "x&quot; onload=&quot;alert(1)&#39; a=&#39;&amp;amp;" },
    { "<!-- ]]> <![CDATA[", 0, "&lt;!-- ]]&gt; &lt;![CDATA[" },
    /* U+202E RIGHT-TO-LEFT OVERRIDE, U+2066 LRI, U+2028 LINE SEPARATOR: visible escapes */
    { "\xe2\x80\xae" "gpj.exe", 0, "\\u202egpj.exe" },
    { "\xe2\x81\xa6x\xe2\x80\xa8", 0, "\\u2066x\\u2028" },
    { "caf\xc3\xa9 \xf0\x9f\x93\xa7", 0, "caf\xc3\xa9 \xf0\x9f\x93\xa7" },
    { "a\nb\x1b[2J\x7f", 0, "a\\u000ab\\u001b[2J\\u007f" },
    { "nul\0x", 5, "nul\\u0000x" },
    { "\xc2\x9b" "2J", 0, "\\u009b2J" },
    /* not UTF-8: each bad byte is U+FFFD (a raw C1 byte, an overlong, a cut sequence) */
    { "\x9b<\xff", 0, "\xef\xbf\xbd&lt;\xef\xbf\xbd" },
    { "\xc0\xaf", 0, "\xef\xbf\xbd\xef\xbf\xbd" },
    { "x\xe2\x80", 0, "x\xef\xbf\xbd\xef\xbf\xbd" },
    { "back\\slash", 0, "back\\slash" },
};

START_TEST(test_html)
{
    const struct html_case *c = &html_cases[_i];
    size_t len = c->len ? c->len : strlen(c->in);
    struct strbuf b;
    const char *out;

    strbuf_init(&b, 4096);
    ck_assert_int_eq(strbuf_append_html(&b, c->in, len), 0);
    out = strbuf_cstr(&b);
    ck_assert_str_eq(out, c->html);
    /* never a markup or quote character, and never a steering code point, from the input */
    ck_assert_ptr_null(strpbrk(out, "<>\"'"));
    ck_assert_ptr_null(strstr(out, "\xe2\x80\xae"));
    strbuf_done(&b);
}
END_TEST

/* An HTML append that does not fit leaves the buffer as it was. */
START_TEST(test_html_cap)
{
    struct strbuf b;

    strbuf_init(&b, 8);
    ck_assert_int_eq(strbuf_appends(&b, "ab"), 0);
    ck_assert_int_lt(strbuf_append_html(&b, "<<", 2), 0);
    ck_assert_str_eq(strbuf_cstr(&b), "ab");
    strbuf_done(&b);
}
END_TEST

static Suite *
util_suite(void)
{
    Suite *s = suite_create("util");
    TCase *tc = tcase_create("render");

    tcase_add_loop_test(tc, test_render, 0, (int)N_ELEMS(render_cases));
    tcase_add_test(tc, test_term_bounded);
    tcase_add_test(tc, test_json_cap);
    tcase_add_loop_test(tc, test_html, 0, (int)N_ELEMS(html_cases));
    tcase_add_test(tc, test_html_cap);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return testrun_suite(util_suite());
}
