/*
 * action_exim.c - backend for plain Exim hosts: a blocklist file the ACL snippet in
 * conf/exim-acl.conf consults with lsearch (cpanel.md §7).
 *
 * Owns: the lines of the blocklist file that look like ours; every other line (an
 * operator's own key, a comment) is kept as it is. One line per (action, identity):
 *
 *     <key>: <hold|suspend> <scope> <identity, %-encoded> <rule> <reference>
 *
 * <reference> is the identity's fg-xxxxxxxx (trips_identity_ref): the ACL quotes it in its
 * refusal and floodgatectl show finds the identity by it. Lines without one are read too.
 *
 * <key> is what Exim knows at ACL time: the lower-cased mailbox for a mailbox (matched
 * against $authenticated_id), the account name for an account (matched against
 * $authenticated_id for SMTP AUTH as the system user and against $sender_ident for local
 * submissions), and for a script "user:/dir" the quoted key "user:/dir" (matched against
 * "$sender_ident:$initial_cwd" in acl_not_smtp: Exim's $initial_cwd is the directory the
 * submitting process started in, the cwd= of the log, so only that script's submissions
 * are frozen, not the login's other mail; inside lsearch's quotes '\' and '"' are
 * escaped with a backslash). lsearch
 * ends a key at the colon and returns the rest as $value, whose first word tells the ACL
 * to deny (suspend, 5xx) or defer (hold, 4xx). lsearch returns the first line of a key,
 * so our lines come first, suspend before hold, and the operator's lines after them: an
 * operator's "bob: note" must not hide our "bob: suspend ...".
 *
 * The file is rewritten whole and atomically on every change (tmp + fsync + rename +
 * fsync(dir)); Exim reopens it for each message, so no reload is needed. Mode 0644: the
 * Exim user reads it in the daemon's receiving processes. Everything is synchronous.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "action_backend.h"
#include "state.h"
#include "trips.h"
#include "util.h"

#define EXIM_BLOCKLIST_MAX (16u << 20)
#define EXIM_HEADER_TAG    "# floodgate blocklist:" /* how we know our header line */
#define EXIM_HEADER        EXIM_HEADER_TAG " rewritten by floodgated on every change\n"

struct exim_line {
    char op[16];
    char scope[16];
    char ident[SPAWN_TEXT_MAX * 3 + 1];
};

static void
exim_encode(char *dst, size_t size, const char *s)
{
    size_t n = 0;

    for (; *s && n + 4 < size; s++) {
        unsigned char c = (unsigned char)*s;
        if (c <= 0x20 || c >= 0x7f || c == '%' || c == ':' || c == '#')
            n += (size_t)snprintf(dst + n, size - n, "%%%02X", c);
        else
            dst[n++] = (char)c;
    }
    dst[n] = '\0';
}

int
action_exim_key(const struct action_target *t, char *key, size_t size)
{
    const char *src = t->scope == SCOPE_MAILBOX ? t->id : t->account;
    size_t n, k = 0;

    if (t->scope == SCOPE_SCRIPT) {
        /* "user:/dir" quoted. The directory is any bytes a local user chose: a raw newline
         * would end the lsearch line and let the rest of the name write a line of its own
         * (a key of someone else's), so every control byte is written as lsearch's \xHH
         * escape, which Exim turns back into that byte inside quotes. */
        if (!strchr(t->id, ':') || size < 3)
            return -EINVAL;
        key[k++] = '"';
        for (const char *p = t->id; *p; p++) {
            unsigned char c = (unsigned char)*p;
            if (k + 6 > size)
                return -EINVAL;
            if (c < 0x20 || c == 0x7f) {
                k += (size_t)snprintf(key + k, size - k, "\\x%02x", c);
                continue;
            }
            if (c == '"' || c == '\\')
                key[k++] = '\\';
            key[k++] = (char)c;
        }
        key[k++] = '"';
        key[k] = '\0';
        return 0;
    }
    if (!src || (n = strlen(src)) == 0 || n >= size)
        return -EINVAL;
    for (size_t i = 0; i <= n; i++)
        key[i] = util_ascii_lower(src[i]);
    return 0;
}

/* Copy the next space-separated word of *@p into @dst; false when none or too long. */
static bool
exim_word(const char **p, char *dst, size_t size)
{
    const char *s = *p, *e;

    while (*s == ' ')
        s++;
    e = s;
    while (*e && *e != ' ')
        e++;
    if (e == s || (size_t)(e - s) >= size)
        return false;
    memcpy(dst, s, (size_t)(e - s));
    dst[e - s] = '\0';
    *p = e;
    return true;
}

/* Parse a line of ours; false for foreign lines. Borrows @line (NUL-terminated). */
static bool
exim_parse_line(const char *line, struct exim_line *l)
{
    const char *colon, *p;

    if (line[0] == '"') { /* a quoted key (a script's): up to the closing quote */
        for (p = line + 1; *p && *p != '"'; p++)
            if (*p == '\\' && p[1])
                p++;
        colon = *p == '"' && p[1] == ':' ? p + 1 : NULL;
    } else {
        colon = strchr(line, ':');
    }
    if (!colon || line[0] == '#' || colon == line)
        return false;
    p = colon + 1;
    if (!exim_word(&p, l->op, sizeof(l->op)) || !exim_word(&p, l->scope, sizeof(l->scope)) ||
        !exim_word(&p, l->ident, sizeof(l->ident)))
        return false;
    return strcmp(l->op, "hold") == 0 || strcmp(l->op, "suspend") == 0;
}

static bool
exim_line_is(const struct exim_line *l, const char *op, const struct action_target *t,
             const char *enc)
{
    return (!op || strcmp(l->op, op) == 0) &&
           strcmp(l->scope, usertable_scope_name(t->scope)) == 0 && strcmp(l->ident, enc) == 0;
}

/*
 * Rewrite the file: drop our lines for (@drop_op, @t) when @drop_op, add one for
 * (@add_op, @t) when @add_op and absent. *@ret_found: such a line existed before.
 */
static int
exim_rewrite(const struct action_backend_env *env, const struct action_target *t,
             const char *add_op, const char *drop_op, bool *ret_found)
{
    const char *path = env->cfg->blocklist_file;
    char *buf = NULL, enc[sizeof(((struct exim_line *)0)->ident)], key[ACTION_EXIM_KEY_MAX];
    struct strbuf susp, hold, other;
    bool found = false;
    int r;

    if (!path || action_exim_key(t, key, sizeof(key)) < 0 || !spawn_valid_text(t->rule))
        return -EINVAL;
    exim_encode(enc, sizeof(enc), t->id);
    r = state_read_path(path, EXIM_BLOCKLIST_MAX, &buf, NULL);
    if (r == -ENOENT) {
        buf = strdup("");
        r = buf ? 0 : -ENOMEM;
    }
    if (r < 0)
        return r;
    strbuf_init(&susp, EXIM_BLOCKLIST_MAX);
    strbuf_init(&hold, EXIM_BLOCKLIST_MAX);
    strbuf_init(&other, EXIM_BLOCKLIST_MAX);
    for (char *line = buf, *nl; *line; line = nl + 1) {
        struct exim_line l;
        nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        if (strncmp(line, EXIM_HEADER_TAG, sizeof(EXIM_HEADER_TAG) - 1) == 0) {
            /* ours, rewritten below */
        } else if (exim_parse_line(line, &l)) {
            bool match = exim_line_is(&l, add_op ? add_op : drop_op, t, enc);
            found = found || match;
            if (!(drop_op && exim_line_is(&l, drop_op, t, enc))) {
                struct strbuf *b = strcmp(l.op, "suspend") == 0 ? &susp : &hold;
                (void)strbuf_appends(b, line);
                (void)strbuf_appends(b, "\n");
            }
        } else if (line[0]) {
            (void)strbuf_appends(&other, line);
            (void)strbuf_appends(&other, "\n");
        }
        if (!nl)
            break;
    }
    free(buf);
    if (add_op && !found) {
        struct strbuf *b = strcmp(add_op, "suspend") == 0 ? &susp : &hold;
        char ref[TRIPS_REF_MAX]; /* quoted by the ACL's refusal: floodgatectl show <ref> */
        trips_identity_ref(t->scope, t->id, ref, sizeof(ref));
        (void)strbuf_printf(b, "%s: %s %s %s %s %s\n", key, add_op, usertable_scope_name(t->scope),
                            enc, t->rule, ref);
    }
    {
        struct strbuf out;
        strbuf_init(&out, EXIM_BLOCKLIST_MAX * 2);
        r = strbuf_appends(&out, EXIM_HEADER);
        if (r == 0)
            r = strbuf_append(&out, strbuf_cstr(&susp), susp.len);
        if (r == 0)
            r = strbuf_append(&out, strbuf_cstr(&hold), hold.len);
        if (r == 0)
            r = strbuf_append(&out, strbuf_cstr(&other), other.len);
        if (r == 0)
            r = state_write_path(path, strbuf_cstr(&out), out.len, 0644);
        strbuf_done(&out);
    }
    strbuf_done(&susp);
    strbuf_done(&hold);
    strbuf_done(&other);
    if (r == 0 && ret_found)
        *ret_found = found;
    return r;
}

static int
exim_hold(const struct action_backend_env *env, const struct action_target *t,
          action_be_done_fn done, void *ctx)
{
    (void)done;
    (void)ctx;
    int r = exim_rewrite(env, t, "hold", NULL, NULL);
    return r < 0 ? r : ACTION_BE_DONE;
}

static int
exim_suspend(const struct action_backend_env *env, const struct action_target *t,
             action_be_done_fn done, void *ctx)
{
    (void)done;
    (void)ctx;
    int r = exim_rewrite(env, t, "suspend", NULL, NULL);
    return r < 0 ? r : ACTION_BE_DONE;
}

static int
exim_release(const struct action_backend_env *env, const struct action_target *t, uint32_t what,
             action_be_done_fn done, void *ctx)
{
    (void)done;
    (void)ctx;
    int r = exim_rewrite(env, t, NULL, (what & CONFIG_ACTION_SUSPEND) ? "suspend" : "hold", NULL);
    return r < 0 ? r : ACTION_BE_DONE;
}

static int
exim_query(const struct action_backend_env *env, const struct action_target *t, uint32_t *ret)
{
    char *buf = NULL, enc[sizeof(((struct exim_line *)0)->ident)];
    uint32_t bits = 0;
    int r;

    if (!env->cfg->blocklist_file)
        return -EINVAL;
    exim_encode(enc, sizeof(enc), t->id);
    r = state_read_path(env->cfg->blocklist_file, EXIM_BLOCKLIST_MAX, &buf, NULL);
    if (r == -ENOENT) {
        *ret = 0;
        return 0;
    }
    if (r < 0)
        return r;
    for (char *line = buf, *nl; *line; line = nl + 1) {
        struct exim_line l;
        nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        if (exim_parse_line(line, &l) && exim_line_is(&l, NULL, t, enc))
            bits |= strcmp(l.op, "suspend") == 0 ? CONFIG_ACTION_SUSPEND : CONFIG_ACTION_HOLD;
        if (!nl)
            break;
    }
    free(buf);
    *ret = bits;
    return 0;
}

const struct action_backend action_backend_exim = {
    .name = "exim",
    .hold = exim_hold,
    .suspend = exim_suspend,
    .release = exim_release,
    .query = exim_query,
};
