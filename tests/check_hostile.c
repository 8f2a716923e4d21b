/*
 * check_hostile.c - property test: what a spammer writes into the log moves no one else's
 * counts.
 *
 * A benign log in Exim 4.96's format (mailboxes over SMTP AUTH, local logins with cwd=
 * lines, inbound mail) holds one attacker message. Attacker-chosen bytes go into each
 * field of it the attacker controls, written the way Exim writes that field: the
 * envelope sender and recipients raw (a quoted local part, or quoted pairs; a raw newline
 * only for local submissions), the HELO raw, id= as a printable-escaped address, T= with
 * its escaping, the cwd= directory raw and argv words through string_printing. For every
 * variant, every other identity's counts must equal the benign run's, and the attacker's
 * message must count for its true identity or be flagged (absorbed, forged tail,
 * ambiguous). Fixed seed, bounded iterations.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "engine.h"
#include "testrun.h"

/*
 * Every record goes to the engine, flagged or not: lib/engine drops what the parser flags
 * EXIM_F_FORGED_TAIL and counts an absorbing arrival for its genuine writer only. Build
 * with -DHOSTILE_ENGINE_DROPS_FLAGGED=0 to check the parser's side of the contract alone
 * (the test then drops flagged records itself).
 */
#ifndef HOSTILE_ENGINE_DROPS_FLAGGED
#define HOSTILE_ENGINE_DROPS_FLAGGED 1
#endif

#define HOSTILE_ITERATIONS 150 /* per field */
#define HOSTILE_LOG_MAX    (64 * 1024)
#define HOSTILE_IDS_MAX    64
#define ATT_MSGID          "1vwqAT-00CATT-xm"
#define ATT_MAILBOX        "att@other.org"
#define ATT_ACCOUNT        "acct2"

static const char hostile_yaml[] = "mode: monitor\n"
                                   "rules:\n"
                                   "  - name: box\n"
                                   "    scope: mailbox\n"
                                   "    metric: messages\n"
                                   "    window: 1h\n"
                                   "    above: 100000\n"
                                   "    actions: [alert]\n"
                                   "  - name: acct\n"
                                   "    scope: account\n"
                                   "    metric: messages\n"
                                   "    window: 1h\n"
                                   "    above: 100000\n"
                                   "    actions: [alert]\n"
                                   "  - name: script\n"
                                   "    scope: script\n"
                                   "    metric: messages\n"
                                   "    window: 1h\n"
                                   "    above: 100000\n"
                                   "    actions: [alert]\n";

static const char hostile_userdomains[] =
    "example.com: acct1\nother.org: acct2\nthird.net: acct3\n";

/* ---- a deterministic generator ---------------------------------------------------- */

static uint64_t rng_state;

static uint32_t
rng(uint32_t n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state % n);
}

/* ---- text buffers ----------------------------------------------------------------- */

struct buf {
    char p[HOSTILE_LOG_MAX];
    size_t n;
};

static void
buf_add(struct buf *b, const char *s, size_t n)
{
    ck_assert_uint_lt(b->n + n, sizeof(b->p));
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static void
buf_str(struct buf *b, const char *s)
{
    buf_add(b, s, strlen(s));
}

static void
buf_byte(struct buf *b, char c)
{
    buf_add(b, &c, 1);
}

/* string_printing (string.c): 32-126 as they are, the rest escaped */
static void
buf_printing(struct buf *b, const char *s, size_t n, bool keep_tab)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char tmp[8];
        if ((c >= 32 && c < 127) || (keep_tab && c == '\t'))
            buf_byte(b, (char)c);
        else if (c == '\n')
            buf_str(b, "\\n");
        else if (c == '\r')
            buf_str(b, "\\r");
        else if (c == '\t')
            buf_str(b, "\\t");
        else {
            snprintf(tmp, sizeof(tmp), "\\%03o", c);
            buf_str(b, tmp);
        }
    }
}

/* ---- attacker payloads ------------------------------------------------------------ */

struct piece {
    const char *s;
    size_t n;
};

#define P(lit)                                                                                     \
    {                                                                                              \
        lit, sizeof(lit) - 1                                                                       \
    }

static const struct piece pieces[] = {
    P("\""),
    P("\\"),
    P(" "),
    P("="),
    P("@"),
    P(")"),
    P("(x"),
    P("[10.0.0.1]:1"),
    P(" A=dovecot_login:a1@example.com"),
    P(" for "),
    P(" for a1@example.com"),
    P(" S=1"),
    P(" 3 args: x"),
    P(" 1 args: x"),
    P(") [10.0.0.1]:1 P=esmtpa A=dovecot_login:a1@example.com S=1"),
    P(" U=acct1 P=local S=1 for r@x.test"),
    P(" <trunc>"),
    P("\xff\xfe"),
    P("\xd0\x9f"),
    P("\0"),
    P("\t"),
};

/* only where Exim writes the bytes raw: a newline and a whole fake line */
static const struct piece newline_pieces[] = {
    P("\n"),
    P("\n2026-03-02 10:00:30 1vwqZZ-00CZZZ-xm <= a1@example.com H=(pc) [192.0.2.9]:4000 "
      "P=esmtpsa A=dovecot_login:a1@example.com S=1 for x@gmail.com"),
    P("\n2026-03-02 10:00:30 1vwqZZ-00CZZY-xm <= a@b U=acct1 P=local S=1 for r@gmail.com\n"),
    P("\n2026-03-02 10:00:30 cwd=/home/acct1/public_html 3 args: /usr/sbin/sendmail -t -i\n"),
    P("\n 3 args: x"),
};

static void
payload(struct buf *out, bool newlines)
{
    unsigned k = 1 + rng(5);
    out->n = 0;
    out->p[0] = '\0';
    for (unsigned i = 0; i < k; i++) {
        if (newlines && rng(4) == 0) {
            const struct piece *pc = &newline_pieces[rng(N_ELEMS(newline_pieces))];
            buf_add(out, pc->s, pc->n);
        } else if (rng(5) == 0) {
            buf_byte(out, (char)('a' + rng(26)));
        } else {
            const struct piece *pc = &pieces[rng(N_ELEMS(pieces))];
            buf_add(out, pc->s, pc->n);
        }
    }
}

/* ---- the fields, as Exim writes them ---------------------------------------------- */

enum field {
    F_SENDER,   /* SMTP: MAIL FROM (no newline) */
    F_HELO,     /* SMTP: raw, no CR/LF */
    F_ID,       /* SMTP: Message-ID */
    F_SUBJECT,  /* SMTP: Subject */
    F_RCPT,     /* SMTP: RCPT TO (no newline) */
    F_LSENDER,  /* local: -f, raw newline possible */
    F_LRCPT,    /* local: recipient argument, raw newline possible */
    F_CWD,      /* local: the working directory, raw */
    F_ARGV,     /* local: one more argv word */
    F_LSUBJECT, /* local: Subject */
    F_LID,      /* local: Message-ID */
    F__MAX,
};

static const char *const field_names[F__MAX] = {
    "sender",     "helo", "id",   "subject",       "rcpt",     "local sender",
    "local rcpt", "cwd",  "argv", "local subject", "local id",
};

/*
 * An address whose local part carries @pl (parse.c keeps quoted strings and quoted
 * pairs as given): either "..." with " and \ escaped, or every special escaped by a
 * backslash. NUL never reaches an address; newlines only when @raw_nl.
 */
static void
buf_address(struct buf *b, const struct buf *pl, bool raw_nl, const char *domain)
{
    bool quoted = rng(2) == 0;
    if (quoted)
        buf_byte(b, '"');
    for (size_t i = 0; i < pl->n; i++) {
        char c = pl->p[i];
        if (c == '\0' || c == '\r' || (c == '\n' && !raw_nl))
            continue;
        if (c == '"' || c == '\\' ||
            (!quoted && (strchr(" ()<>@,;:[]", c) != NULL || c == '\t' || c == '\n')))
            buf_byte(b, '\\');
        buf_byte(b, c);
    }
    if (quoted)
        buf_byte(b, '"');
    buf_byte(b, '@');
    buf_str(b, domain);
}

/* The subject: the first 100 bytes, '"' and '\' escaped, then string_printing */
static void
buf_subject(struct buf *b, const struct buf *pl)
{
    struct buf t;
    t.n = 0;
    for (size_t i = 0; i < pl->n && i < 100; i++) {
        char c = pl->p[i];
        if (c == '\0')
            continue;
        if (c == '"' || c == '\\')
            buf_byte(&t, '\\');
        buf_byte(&t, c);
    }
    buf_str(b, " T=\"");
    buf_printing(b, t.p, t.n, true);
    buf_byte(b, '"');
}

/* id=: the Message-ID parsed as an address, then string_printing */
static void
buf_msgid(struct buf *b, const struct buf *pl)
{
    struct buf t;
    t.n = 0;
    buf_address(&t, pl, true, "mid.test");
    buf_str(b, " id=");
    buf_printing(b, t.p, t.n, false);
}

/* one argv word: string_printing, wrapped in '"' when empty or holding white space */
static void
buf_argv(struct buf *b, const char *s, size_t n)
{
    struct buf t;
    t.n = 0;
    buf_printing(&t, s, n, false);
    bool q = t.n == 0 || memchr(t.p, ' ', t.n) != NULL;
    buf_byte(b, ' ');
    if (q)
        buf_byte(b, '"');
    buf_add(b, t.p, t.n);
    if (q)
        buf_byte(b, '"');
}

/* ---- the log ---------------------------------------------------------------------- */

static void
benign_round(struct buf *b, unsigned round)
{
    static const char *const boxes[] = { "a1@example.com", "a2@example.com", "b1@third.net" };
    char line[1024];
    for (unsigned i = 0; i < N_ELEMS(boxes); i++) {
        snprintf(line, sizeof(line),
                 "2026-03-02 10:%02u:%02u 1vwq%02u-00C%03u-xm <= %s H=(pc%u) [192.0.2.%u]:40%02u "
                 "P=esmtpsa X=TLS1.3:TLS_AES_256_GCM_SHA384:256 CV=no A=dovecot_login:%s "
                 "S=%u id=m%u.%u@pc.test T=\"report %u\" for x%u@gmail.com y@yahoo.com\n"
                 "2026-03-02 10:%02u:%02u 1vwq%02u-00C%03u-xm Completed\n",
                 round, i, round, i, boxes[i], i, 10 + i, round, boxes[i], 1000 + i, round, i,
                 round, i, round, i + 30, round, i);
        buf_str(b, line);
    }
    snprintf(line, sizeof(line),
             "2026-03-02 10:%02u:10 cwd=/home/acct1/public_html 3 args: /usr/sbin/sendmail -t -i\n"
             "2026-03-02 10:%02u:10 1vwq%02u-00L001-xm <= acct1@example.com U=acct1 P=local "
             "S=900 T=\"news\" for z%u@gmail.com\n"
             "2026-03-02 10:%02u:11 1vwq%02u-00I001-xm <= ext@remote.test H=mx.remote.test "
             "[203.0.113.5]:25 P=esmtps X=TLS1.3:TLS_AES_256_GCM_SHA384:256 CV=no S=3000 "
             "id=abc%u@remote.test T=\"hello\" for a1@example.com\n",
             round, round, round, round, round, round, round);
    buf_str(b, line);
}

/* The attacker's message, with @pl in field @f (or none when @f is F__MAX). */
static void
attacker(struct buf *b, enum field f, const struct buf *pl, bool local)
{
    if (!local) {
        buf_str(b, "2026-03-02 10:05:00 " ATT_MSGID " <= ");
        if (f == F_SENDER)
            buf_address(b, pl, false, "other.org");
        else
            buf_str(b, ATT_MAILBOX);
        buf_str(b, " H=(");
        for (size_t i = 0; f == F_HELO && i < pl->n; i++)
            if (pl->p[i] != '\0' && pl->p[i] != '\r' && pl->p[i] != '\n')
                buf_byte(b, pl->p[i]);
        if (f != F_HELO)
            buf_str(b, "att-pc");
        buf_str(b, ") [192.0.2.66]:4444 P=esmtpsa A=dovecot_login:" ATT_MAILBOX " S=1500");
        if (f == F_ID)
            buf_msgid(b, pl);
        else
            buf_str(b, " id=spam@att.test");
        if (f == F_SUBJECT)
            buf_subject(b, pl);
        else
            buf_str(b, " T=\"buy\"");
        buf_str(b, " for v1@gmail.com ");
        if (f == F_RCPT)
            buf_address(b, pl, false, "gmail.com");
        else
            buf_str(b, "v2@gmail.com");
        buf_str(b, "\n2026-03-02 10:05:01 " ATT_MSGID " Completed\n");
        return;
    }
    /* a local submission: cwd= then the arrival */
    struct buf argv;
    argv.n = 0;
    unsigned argc = 3;
    buf_str(&argv, " /usr/sbin/sendmail -t -i");
    if (f == F_ARGV) {
        buf_argv(&argv, pl->p, pl->n);
        argc++;
    }
    struct buf sender;
    sender.n = 0;
    if (f == F_LSENDER) {
        buf_address(&sender, pl, true, "other.org");
        struct buf fa;
        fa.n = 0;
        buf_str(&fa, "-f");
        buf_add(&fa, sender.p, sender.n);
        buf_argv(&argv, fa.p, fa.n);
        argc++;
    } else
        buf_str(&sender, "acct2@other.org");
    char head[128];
    snprintf(head, sizeof(head), "2026-03-02 10:05:00 cwd=/home/" ATT_ACCOUNT "/");
    buf_str(b, head);
    if (f == F_CWD) {
        for (size_t i = 0; i < pl->n; i++)
            if (pl->p[i] != '\0')
                buf_byte(b, pl->p[i]);
    } else
        buf_str(b, "www");
    snprintf(head, sizeof(head), " %u args:", argc);
    buf_str(b, head);
    buf_add(b, argv.p, argv.n);
    buf_str(b, "\n2026-03-02 10:05:00 " ATT_MSGID " <= ");
    buf_add(b, sender.p, sender.n);
    buf_str(b, " U=" ATT_ACCOUNT " P=local S=700");
    if (f == F_LID)
        buf_msgid(b, pl);
    if (f == F_LSUBJECT)
        buf_subject(b, pl);
    else
        buf_str(b, " T=\"buy\"");
    buf_str(b, " for v1@gmail.com");
    if (f == F_LRCPT) {
        buf_byte(b, ' ');
        buf_address(b, pl, true, "gmail.com");
    }
    buf_str(b, "\n2026-03-02 10:05:01 " ATT_MSGID " Completed\n");
}

static void
build_log(struct buf *b, enum field f, const struct buf *pl)
{
    bool local = f >= F_LSENDER && f != F__MAX;
    b->n = 0;
    b->p[0] = '\0';
    for (unsigned r = 0; r < 5; r++) {
        benign_round(b, r);
        if (r == 2)
            attacker(b, f == F__MAX + 1 ? F__MAX : f, pl, local);
    }
}

/* ---- running it ------------------------------------------------------------------- */

struct ident {
    enum usertable_scope scope;
    char key[USERTABLE_KEY_MAX];
    uint64_t msgs, rcpts;
};

struct run {
    struct ident ids[HOSTILE_IDS_MAX];
    size_t nids;
    uint32_t att_flags; /* flags of the record(s) holding the attacker's arrival */
    uint32_t all_flags; /* flags of every record of the run */
    bool att_seen;
    char att_text[EXIMLOG_RECORD_MAX + 1];
    struct exim_event att_ev;
};

static const char *shown(const char *s);

static struct config *hcfg;
static struct attrib_maps *hmaps;

static void
hostile_setup(void)
{
    struct diag d;
    uint8_t key[SIPHASH_KEY_LEN] = { 0 };
    ck_assert_int_eq(config_parse(hostile_yaml, strlen(hostile_yaml), "hostile.yml", &hcfg, &d), 0);
    hmaps = attrib_maps_new(key);
    ck_assert_int_eq(
        attrib_maps_add(hmaps, hostile_userdomains, strlen(hostile_userdomains), true, NULL), 3);
}

static void
hostile_teardown(void)
{
    attrib_maps_free(hmaps);
    config_free(hcfg);
}

#define ATT_FLAGS (EXIM_F_ABSORBED | EXIM_F_FORGED_TAIL | EXIM_F_AMBIGUOUS_HOST | EXIM_F_CWD_FORGED)

static void
feed(struct engine *e, struct run *run, const struct eximlog_record *rec, uint64_t line)
{
    struct engine_notice notes[ENGINE_NOTICES_MAX];
    struct exim_event ev;
    uint32_t flags = rec->flags;
    int r = eximlog_parse(rec->text, rec->len, &ev);
    if (r >= 0)
        flags |= ev.flags;
    run->all_flags |= flags;
    if (r == 1 && ev.type == EXIM_ARRIVAL && memmem(rec->text, rec->len, ATT_MSGID, 16) &&
        fg_str_eq(ev.msgid, ATT_MSGID)) {
        run->att_seen = true;
        run->att_flags |= flags;
        memcpy(run->att_text, rec->text, rec->len);
        run->att_text[rec->len] = '\0';
        ck_assert_int_eq(eximlog_parse(run->att_text, rec->len, &run->att_ev), 1);
    } else if (memmem(rec->text, rec->len, ATT_MSGID " <=", 19)) {
        run->att_flags |= flags & ATT_FLAGS; /* it went into another record */
    }
    if (getenv("HOSTILE_DUMP"))
        fprintf(stderr, "REC %08x %s\n", flags, shown(rec->text));
    if (!HOSTILE_ENGINE_DROPS_FLAGGED && (flags & (EXIM_F_ABSORBED | EXIM_F_FORGED_TAIL)))
        return;
    (void)engine_feed(e, rec, line, notes, ENGINE_NOTICES_MAX);
}

static void
run_log(const struct buf *b, struct run *run)
{
    static struct eximlog_joiner j;
    struct engine_params ep = { .cfg = hcfg, .maps = hmaps };
    struct engine *e;
    struct eximlog_record rec;
    uint64_t line = 0;

    memset(run, 0, sizeof(*run));
    ck_assert_int_eq(engine_new(&ep, &e), 0);
    eximlog_joiner_init(&j);
    const char *p = b->p, *end = b->p + b->n;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        line++;
        if (eximlog_joiner_push(&j, p, (size_t)(le - p), (uint64_t)(p - b->p),
                                (uint64_t)((nl ? nl + 1 : end) - b->p), &rec) == 1)
            feed(e, run, &rec, line);
        p = nl ? nl + 1 : end;
    }
    if (eximlog_joiner_flush(&j, true, &rec) == 1)
        feed(e, run, &rec, line);

    struct usertable *t = engine_table(e);
    struct usertable_entry *ent;
    size_t pos = 0;
    while ((ent = usertable_next(t, &pos)) != NULL) {
        ck_assert_uint_lt(run->nids, HOSTILE_IDS_MAX);
        struct ident *id = &run->ids[run->nids++];
        id->scope = usertable_entry_scope(ent);
        snprintf(id->key, sizeof(id->key), "%s", usertable_entry_key(ent));
        id->msgs = usertable_entry_total(ent, WINDOW_MESSAGES);
        id->rcpts = usertable_entry_total(ent, WINDOW_RECIPIENTS);
    }
    engine_free(e);
}

static const struct ident *
find_ident(const struct run *r, enum usertable_scope scope, const char *key)
{
    for (size_t i = 0; i < r->nids; i++)
        if (r->ids[i].scope == scope && strcmp(r->ids[i].key, key) == 0)
            return &r->ids[i];
    return NULL;
}

static bool
is_attacker(const struct ident *id)
{
    return strcmp(id->key, ATT_MAILBOX) == 0 || strcmp(id->key, ATT_ACCOUNT) == 0 ||
           strncmp(id->key, ATT_ACCOUNT ":", strlen(ATT_ACCOUNT) + 1) == 0;
}

static uint64_t
msgs_of(const struct run *r, enum usertable_scope scope, const char *key)
{
    const struct ident *id = find_ident(r, scope, key);
    return id ? id->msgs : 0;
}

static const char *shown(const char *s);

/* the escaped attacker record, for failure messages */
static const char *
shown(const char *s)
{
    static char out[4 * EXIMLOG_RECORD_MAX + 1];
    size_t k = 0;
    for (; *s && k + 5 < sizeof(out); s++) {
        unsigned char c = (unsigned char)*s;
        if (c >= 32 && c < 127)
            out[k++] = (char)c;
        else
            k += (size_t)snprintf(out + k, sizeof(out) - k, "\\x%02x", c);
    }
    out[k] = '\0';
    return out;
}

/* how often each outcome occurred (printed, for the record) */
static unsigned n_exact, n_swallowed, n_signalled, n_att_flagged;

static void
check_variant(const struct run *benign, const struct run *h, enum field f, unsigned iter,
              const struct buf *pl)
{
    bool local = f >= F_LSENDER && f < F__MAX;
    bool flagged = (h->att_flags & ATT_FLAGS) != 0;
    char ctx[256];
    snprintf(ctx, sizeof(ctx), "field %s, iteration %u, payload \"%s\"", field_names[f], iter,
             shown(pl->p));

    /*
     * Everyone else: the benign counts exactly. Two exceptions, each with its signal:
     * records swallowed by a flagged entry (a cwd= directory with a newline takes the
     * whole span one write can hold) may lose counts; whole lines written by a directory
     * name after a cwd= head that looks complete cannot be told from real ones until the
     * remnant (EXIM_F_FORGED_TAIL) shows, so they may add counts then. An ambiguous
     * record counts for both of Exim's readings.
     */
    uint32_t swallowed = h->all_flags & (EXIM_F_ABSORBED | EXIM_F_CWD_FORGED);
    uint32_t signalled = h->all_flags & (EXIM_F_FORGED_TAIL | EXIM_F_CWD_MULTI | EXIM_F_CWD_ARGC |
                                         EXIM_F_AMBIGUOUS_HOST);
    for (size_t i = 0; i < benign->nids; i++) {
        const struct ident *a = &benign->ids[i];
        if (is_attacker(a))
            continue;
        const struct ident *b = find_ident(h, a->scope, a->key);
        uint64_t bm = b ? b->msgs : 0, br = b ? b->rcpts : 0;
        bool ok = (bm == a->msgs && br == a->rcpts) ||
                  (bm <= a->msgs && br <= a->rcpts && swallowed) || (bm >= a->msgs && signalled) ||
                  (swallowed && signalled);
        ck_assert_msg(ok, "%s: %s %s counted %llu, benign %llu; attacker record: %s", ctx,
                      usertable_scope_name(a->scope), a->key, (unsigned long long)bm,
                      (unsigned long long)a->msgs, shown(h->att_text));
    }
    if (swallowed || signalled) {
        n_swallowed += swallowed != 0;
        n_signalled += signalled != 0;
    } else
        n_exact++;
    n_att_flagged += flagged;
    for (size_t i = 0; i < h->nids; i++) {
        const struct ident *b = &h->ids[i];
        ck_assert_msg(is_attacker(b) || find_ident(benign, b->scope, b->key) || signalled,
                      "%s: new identity %s %s; attacker record: %s", ctx,
                      usertable_scope_name(b->scope), b->key, shown(h->att_text));
    }
    /* the attacker: its true identity, or a flag the engine acts on */
    if (flagged)
        return;
    ck_assert_msg(h->att_seen, "%s: attacker arrival lost without a flag", ctx);
    ck_assert_msg(!(h->att_ev.flags & EXIM_F_ANOMALOUS), "%s: anomalous: %s", ctx,
                  shown(h->att_text));
    if (local) {
        ck_assert_msg(fg_str_eq(h->att_ev.ident, ATT_ACCOUNT), "%s: ident: %s", ctx,
                      shown(h->att_text));
        ck_assert_uint_eq(msgs_of(h, SCOPE_ACCOUNT, ATT_ACCOUNT),
                          msgs_of(benign, SCOPE_ACCOUNT, ATT_ACCOUNT));
    } else {
        ck_assert_msg(fg_str_eq(h->att_ev.set_id, ATT_MAILBOX), "%s: set_id: %s", ctx,
                      shown(h->att_text));
        ck_assert_msg(msgs_of(h, SCOPE_MAILBOX, ATT_MAILBOX) ==
                          msgs_of(benign, SCOPE_MAILBOX, ATT_MAILBOX),
                      "%s: attacker mailbox counted %llu", ctx,
                      (unsigned long long)msgs_of(h, SCOPE_MAILBOX, ATT_MAILBOX));
    }
}

static struct buf logbuf, pl;
static struct run benign_smtp, benign_local, hrun;

/* The benign runs: the attacker's message over SMTP, and as a local submission. */
static void
benign_runs(void)
{
    pl.n = 0;
    pl.p[0] = '\0';
    build_log(&logbuf, F__MAX, &pl);
    run_log(&logbuf, &benign_smtp);
    ck_assert_uint_eq(msgs_of(&benign_smtp, SCOPE_MAILBOX, ATT_MAILBOX), 1);
    ck_assert_uint_eq(msgs_of(&benign_smtp, SCOPE_MAILBOX, "a1@example.com"), 5);
    ck_assert_uint_eq(msgs_of(&benign_smtp, SCOPE_ACCOUNT, "acct1"), 15);
    ck_assert_uint_eq(msgs_of(&benign_smtp, SCOPE_SCRIPT, "acct1:/home/acct1/public_html"), 5);
    ck_assert(!(benign_smtp.att_flags & ATT_FLAGS));
    build_log(&logbuf, (enum field)(F__MAX + 1), &pl);
    run_log(&logbuf, &benign_local);
    ck_assert_uint_eq(msgs_of(&benign_local, SCOPE_ACCOUNT, ATT_ACCOUNT), 1);
    ck_assert_uint_eq(msgs_of(&benign_local, SCOPE_SCRIPT, ATT_ACCOUNT ":/home/acct2/www"), 1);
    ck_assert(!(benign_local.att_flags & ATT_FLAGS));
}

START_TEST(test_hostile_fields)
{
    rng_state = UINT64_C(0x9e3779b97f4a7c15);
    benign_runs();
    for (int f = 0; f < F__MAX; f++) {
        bool newlines = f == F_LSENDER || f == F_LRCPT || f == F_CWD;
        const struct run *benign = f >= F_LSENDER ? &benign_local : &benign_smtp;
        for (unsigned it = 0; it < HOSTILE_ITERATIONS; it++) {
            payload(&pl, newlines);
            build_log(&logbuf, (enum field)f, &pl);
            run_log(&logbuf, &hrun);
            check_variant(benign, &hrun, (enum field)f, it, &pl);
        }
    }
    fprintf(stderr,
            "hostile: %u variants: %u with no flagged record, %u with swallowed records, %u "
            "signalled; attacker's message flagged in %u\n",
            (unsigned)(F__MAX * HOSTILE_ITERATIONS), n_exact, n_swallowed, n_signalled,
            n_att_flagged);
}
END_TEST

/* Specific attacks the random walk may not hit, each with its expected outcome. */
START_TEST(test_hostile_known)
{
    static struct buf b;
    benign_runs();
    /* subject that reads like an authenticated arrival */
    pl.n = 0;
    buf_str(&pl, "x) [10.0.0.1]:1 P=esmtpa A=dovecot_login:a1@example.com S=1 for a@b.c");
    build_log(&b, F_SUBJECT, &pl);
    run_log(&b, &hrun);
    check_variant(&benign_smtp, &hrun, F_SUBJECT, 0, &pl);
    ck_assert(!(hrun.att_flags & ATT_FLAGS));
    /* a directory that forges a whole line of a1@example.com after " 1 args: x" */
    pl.n = 0;
    buf_str(&pl, "d 1 args: x\n2026-03-02 10:00:30 1vwqZZ-00CZZZ-xm <= a1@example.com H=(pc) "
                 "[192.0.2.9]:4000 P=esmtpsa A=dovecot_login:a1@example.com S=1 for x@gmail.com");
    build_log(&b, F_CWD, &pl);
    run_log(&b, &hrun);
    check_variant(&benign_local, &hrun, F_CWD, 0, &pl);
    /* -f '"x<newline><fake line>x"@other.org' */
    pl.n = 0;
    buf_str(&pl, "x\n2026-03-02 10:00:30 1vwqZZ-00CZZY-xm <= a@b U=acct1 P=local S=1 for "
                 "r@gmail.com\nx");
    build_log(&b, F_LSENDER, &pl);
    run_log(&b, &hrun);
    check_variant(&benign_local, &hrun, F_LSENDER, 0, &pl);
}
END_TEST

int
main(void)
{
    Suite *s = suite_create("hostile");
    TCase *tc = tcase_create("property");
    tcase_add_checked_fixture(tc, hostile_setup, hostile_teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_hostile_fields);
    tcase_add_test(tc, test_hostile_known);
    suite_add_tcase(s, tc);
    return testrun_suite(s);
}
