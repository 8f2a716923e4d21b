/*
 * The action ledger (actions.ledger, read by action_open): any bytes as the file, in a
 * scratch state directory. Nothing external runs: the spawner refuses every command, the
 * spool and the exim backend's blocklist are in the scratch directory.
 *
 * Invariants: what loads lists one identity per "E" line with sane fields, each findable
 * by action_info(); opened for enforcing (which resumes interrupted steps, fail, and
 * rewrites the ledger) and given one more frozen id, the ledger the module writes loads
 * again to exactly the identities it held in memory (save -> load round trip).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "action.h"
#include "clock.h"
#include "fuzz.h"
#include "log.h"
#include "state.h"

#define LEDGER "actions.ledger"

static struct config *monitor_cfg, *enforce_cfg;
static struct clock_fake cf;
static struct clock clk;
static const char *dir;

int LLVMFuzzerInitialize(int *argc, char ***argv);

static void
set_path(char **field, const char *name)
{
    char path[512];

    (void)snprintf(path, sizeof(path), "%s/%s", dir, name);
    free(*field);
    *field = strdup(path);
    if (!*field)
        abort();
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    static const char yaml[] = "rules:\n"
                               "  - {name: m, scope: mailbox, metric: messages, window: 1m, "
                               "above: 2, actions: [freeze, hold]}\n";
    struct config *cs[2];

    (void)argc;
    (void)argv;
    dir = fuzz_tmpdir();
    log_setup(LOG_SINK_STDERR, LOG_EMERG); /* a refused ledger is the common case: quiet */
    clk = clock_fake_init(&cf, 0);         /* time 0: no released entry is old enough to prune */
    cs[0] = monitor_cfg = fuzz_config(yaml);
    cs[1] = enforce_cfg = fuzz_config(yaml);
    for (int i = 0; i < 2; i++) {
        set_path(&cs[i]->spool_dir, "spool");
        set_path(&cs[i]->blocklist_file, "blocklist");
        set_path(&cs[i]->state_dir, "");
    }
    monitor_cfg->mode = CONFIG_MODE_MONITOR;
    enforce_cfg->mode = CONFIG_MODE_ENFORCE;
    return 0;
}

static struct action *
open_ledger(const struct config *cfg, int *ret)
{
    struct action_params p = { .clock = &clk,
                               .cfg = cfg,
                               .state_dir = dir,
                               .spawner = fuzz_spawner(),
                               .hold_users_file = cfg->blocklist_file,
                               .suspended_users_file = cfg->blocklist_file };
    struct action *a = NULL;

    *ret = action_open(&p, &a);
    FUZZ_CHECK((*ret == 0) == (a != NULL));
    return a;
}

struct listing {
    const struct action *a;
    struct strbuf text;
    size_t n;
    const struct action_info *first_active;
    char first_id[USERTABLE_KEY_MAX * 4];
    enum usertable_scope first_scope;
};

static void
list_one(void *ctx, const struct action_info *i)
{
    struct listing *l = ctx;
    struct action_info again;

    FUZZ_CHECK((unsigned)i->scope < SCOPE__MAX && i->id && i->rule && i->reason && i->state);
    FUZZ_CHECK(strcmp(i->state, "acting") == 0 || strcmp(i->state, "acted") == 0 ||
               strcmp(i->state, "released") == 0);
    FUZZ_CHECK(i->active == (strcmp(i->state, "released") != 0));
    FUZZ_CHECK(i->acted_ms >= 0 && i->released_ms >= 0);
    FUZZ_CHECK(action_info(l->a, i->scope, i->id, &again) == 0);
    if (i->active && !l->first_id[0] && strlen(i->id) < sizeof(l->first_id)) {
        memcpy(l->first_id, i->id, strlen(i->id) + 1);
        l->first_scope = i->scope;
    }
    (void)strbuf_printf(&l->text, "%d|%s|%s|%s|%s|%s|%u|%u|%d|%zu|%lld|%lld\n", (int)i->scope,
                        i->id, i->account ? i->account : "(none)", i->rule, i->reason, i->state,
                        i->want, i->done, i->preexisting, i->nfrozen, (long long)i->acted_ms,
                        (long long)i->released_ms);
    l->n++;
}

static void
listing(struct listing *l, const struct action *a)
{
    memset(l, 0, sizeof(*l));
    l->a = a;
    strbuf_init(&l->text, 1u << 28);
    (void)action_list(a, true, list_one, l);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct listing first, mem, disk;
    struct action *a;
    size_t elines = 0;
    int r;

    fuzz_write_file(dir, LEDGER, data, size);
    /* E lines before the first NUL: the loader reads the file as a C string (a NUL ends
     * it early; fuzz/crashes-found/action-ledger-nul-truncates) */
    for (size_t i = 0; i + 1 < size && data[i]; i++)
        elines += (i == 0 || data[i - 1] == '\n') && data[i] == 'E' && data[i + 1] == '\t';

    a = open_ledger(monitor_cfg, &r);
    FUZZ_CHECK(r == 0 || r == -EBADMSG || r == -ENOMEM || r == -E2BIG);
    if (!a)
        return 0;
    listing(&first, a);
    FUZZ_CHECK(first.n == elines);
    FUZZ_CHECK(action_pending(a) == 0); /* monitor mode resumes nothing */
    action_free(a);
    strbuf_done(&first.text);

    /* enforce: interrupted steps resume and fail (nothing may run), the ledger is rewritten */
    a = open_ledger(enforce_cfg, &r);
    FUZZ_CHECK(r == 0);
    listing(&mem, a);
    if (mem.first_id[0]) {
        /* one more id frozen on floodgate's behalf: a ledger write */
        r = action_adopt_frozen(a, mem.first_scope, mem.first_id, "1vwqhc-008lnF-24");
        FUZZ_CHECK(r == 1 || r == 0 || r == -E2BIG || r == -ENOENT);
        strbuf_done(&mem.text);
        listing(&mem, a);
    }
    action_free(a);

    /* what it wrote (or the input, when nothing was written) loads to the same identities */
    a = open_ledger(monitor_cfg, &r);
    FUZZ_CHECK(r == 0);
    listing(&disk, a);
    action_free(a);
    if (strcmp(strbuf_cstr(&mem.text), strbuf_cstr(&disk.text)) != 0)
        (void)fprintf(stderr, "in memory:\n%s\nreloaded:\n%s\n", strbuf_cstr(&mem.text),
                      strbuf_cstr(&disk.text));
    FUZZ_CHECK(strcmp(strbuf_cstr(&mem.text), strbuf_cstr(&disk.text)) == 0);
    strbuf_done(&mem.text);
    strbuf_done(&disk.text);
    return 0;
}
