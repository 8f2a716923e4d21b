/*
 * Exim's main log, as the daemon reads it: the input is split into lines and pushed
 * through the record joiner (a line over FUZZ_LINE_CAP is skipped as the tailer skips an
 * over-long one), every record is parsed and its recipients walked, and each is fed to a
 * fresh engine with small rules, so attribution, windows and policy run on it too.
 *
 * Invariants: records fit EXIMLOG_RECORD_MAX and come in file order within the input;
 * every slice the parser returns lies within its record; the for-list walk advances and
 * finds nrcpt addresses at most; the engine counts each record once and gives at most
 * the notices asked for; a forced flush leaves nothing pending.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "eximlog.h"
#include "fuzz.h"

/* Lines longer than this are skipped like the tailer's over-long lines (smaller than the
 * tailer's cap so that the fuzzer reaches it). */
#define FUZZ_LINE_CAP 4096

static const char fuzz_yaml[] = "mode: monitor\n"
                                "max_identities: 64\n"
                                "cooldown: 10m\n"
                                "rules:\n"
                                "  - {name: m, scope: mailbox, metric: messages, window: 1m, "
                                "above: 2, actions: [freeze, alert]}\n"
                                "  - {name: r, scope: mailbox, metric: recipients, window: 10m, "
                                "above: 3, actions: [alert]}\n"
                                "  - {name: i, scope: mailbox, metric: ips, window: 1h, "
                                "above: 1, actions: [alert]}\n"
                                "  - {name: f, scope: account, metric: failed, window: 10m, "
                                "above: 1, actions: [alert]}\n"
                                "  - {name: d, scope: account, metric: domains, window: 10m, "
                                "above: 2, actions: [alert]}\n"
                                "  - {name: s, scope: script, metric: messages, window: 5m, "
                                "above: 1, actions: [freeze, hold, alert]}\n";

static struct config *cfg;
static struct attrib_maps *maps;
static struct eximlog_joiner joiner;
static struct engine_notice notes[ENGINE_NOTICES_MAX];

int LLVMFuzzerInitialize(int *argc, char ***argv);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    static const char owners[] = "example.com: acct1\nother.org: acct2\nslyf.co.uk: slyf\n";
    uint8_t key[SIPHASH_KEY_LEN] = { 1, 2, 3 };

    (void)argc;
    (void)argv;
    cfg = fuzz_config(fuzz_yaml);
    maps = attrib_maps_new(key);
    if (!maps || attrib_maps_add(maps, owners, strlen(owners), true, NULL) != 3)
        abort();
    return 0;
}

#define IN(s) fuzz_slice_within((s), rec->text, rec->len)

static void
check_peer(const struct exim_peer *p, const struct eximlog_record *rec)
{
    FUZZ_CHECK(IN(p->host) && IN(p->host_ip) && IN(p->ident) && IN(p->proto) && IN(p->auth) &&
               IN(p->set_id));
}

static void
check_record(const struct eximlog_record *rec, size_t size, uint64_t *last_end)
{
    struct exim_event ev;
    int r;

    FUZZ_CHECK(rec->len <= EXIMLOG_RECORD_MAX);
    FUZZ_CHECK(rec->len == 0 || rec->text != NULL);
    FUZZ_CHECK(rec->start <= rec->end && rec->end <= size);
    FUZZ_CHECK(rec->start >= *last_end);
    *last_end = rec->end;

    memset(&ev, 0xa5, sizeof(ev));
    r = eximlog_parse(rec->text, rec->len, &ev);
    FUZZ_CHECK(r == 1 || r == 0 || r == -EBADMSG || r == -E2BIG);
    if (r < 0)
        return;
    FUZZ_CHECK((unsigned)ev.type < EXIM_TYPE__MAX);
    FUZZ_CHECK(eximlog_type_name(ev.type) != NULL);
    FUZZ_CHECK(IN(ev.time) && IN(ev.msgid) && IN(ev.body) && IN(ev.sender) && IN(ev.bounce_of));
    FUZZ_CHECK(IN(ev.host) && IN(ev.host_ip) && IN(ev.ident) && IN(ev.proto) && IN(ev.auth));
    FUZZ_CHECK(IN(ev.set_id) && IN(ev.subject) && IN(ev.rcpts) && IN(ev.flag) && IN(ev.addr));
    FUZZ_CHECK(IN(ev.router) && IN(ev.transport) && IN(ev.text) && IN(ev.cwd) && IN(ev.args));
    if (r == 0)
        return;
    check_peer(&ev.alt, rec);
    if (ev.msgid.len)
        FUZZ_CHECK(eximlog_msgid_valid(ev.msgid));
    if (ev.type == EXIM_ARRIVAL) {
        struct fg_str addr, dom;
        size_t pos = 0, prev = 0, n = 0;

        while (ev.rcpts.len && eximlog_next_addr(ev.rcpts, &pos, &addr) == 1) {
            FUZZ_CHECK(pos > prev && pos <= ev.rcpts.len);
            prev = pos;
            FUZZ_CHECK(fuzz_slice_within(addr, ev.rcpts.p, ev.rcpts.len));
            dom = eximlog_addr_domain(addr);
            FUZZ_CHECK(fuzz_slice_within(dom, addr.p, addr.len));
            FUZZ_CHECK(++n <= ev.rcpts.len);
        }
        FUZZ_CHECK(n <= ev.nrcpt);
    }
    for (int i = 0; i < 2; i++) { /* the domain of a plain field too */
        struct fg_str a = i ? ev.addr : ev.sender, dom = eximlog_addr_domain(a);
        FUZZ_CHECK(fuzz_slice_within(dom, a.p, a.len));
    }
}

static void
feed(struct engine *e, const struct eximlog_record *rec, size_t size, uint64_t *last_end,
     uint64_t line)
{
    uint64_t before = engine_stats(e)->records;
    size_t n;

    check_record(rec, size, last_end);
    n = engine_feed(e, rec, line, notes, ENGINE_NOTICES_MAX);
    FUZZ_CHECK(n <= ENGINE_NOTICES_MAX);
    FUZZ_CHECK(engine_stats(e)->records == before + 1);
    for (size_t i = 0; i < n; i++) {
        FUZZ_CHECK((unsigned)notes[i].scope < SCOPE__MAX);
        FUZZ_CHECK(memchr(notes[i].id, '\0', sizeof(notes[i].id)) != NULL);
        /* every notice names an identity, but an injection whose writer is unknown */
        FUZZ_CHECK(notes[i].id[0] != '\0' || notes[i].kind == ENGINE_INJECTION);
    }
    /* a notice of the smallest buffer is never more than asked for */
    FUZZ_CHECK(usertable_count(engine_table(e)) <= 64);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data, *end = text + size;
    struct engine_params ep = { .cfg = cfg, .maps = maps, .key = { 7 } };
    struct eximlog_record rec;
    struct engine *e = NULL;
    uint64_t last_end = 0, lines = 0, overlong = 0, nrec = 0;

    if (engine_new(&ep, &e) < 0)
        abort();
    eximlog_joiner_init(&joiner);
    for (const char *p = text; p < end;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
        uint64_t start = (uint64_t)(p - text), stop = start + len + (nl ? 1 : 0);
        int r;

        if (len > FUZZ_LINE_CAP) {
            r = eximlog_joiner_overlong(&joiner, start, stop, &rec);
            overlong++;
        } else {
            r = eximlog_joiner_push(&joiner, p, len, start, stop, &rec);
            lines++;
        }
        FUZZ_CHECK(r == 0 || r == 1);
        if (r == 1) {
            feed(e, &rec, size, &last_end, ++nrec);
            FUZZ_CHECK(rec.end <= start); /* the line just pushed is not part of it */
        }
        FUZZ_CHECK(eximlog_joiner_resume(&joiner, stop) <= stop);
        p += len + (nl ? 1 : 0);
    }
    if (eximlog_joiner_flush(&joiner, false, &rec) == 1)
        feed(e, &rec, size, &last_end, ++nrec);
    if (eximlog_joiner_flush(&joiner, true, &rec) == 1) {
        FUZZ_CHECK(rec.flags & EXIM_F_INCOMPLETE);
        feed(e, &rec, size, &last_end, ++nrec);
    }
    FUZZ_CHECK(eximlog_joiner_flush(&joiner, true, &rec) == 0);
    FUZZ_CHECK(!joiner.pending);
    FUZZ_CHECK(eximlog_joiner_resume(&joiner, size) == size);
    FUZZ_CHECK(joiner.lines == lines + overlong);
    FUZZ_CHECK(nrec <= lines); /* every record starts with a line of text */
    FUZZ_CHECK(joiner.truncated_records >= overlong);
    FUZZ_CHECK(engine_stats(e)->records == nrec);
    engine_free(e);
    return 0;
}
