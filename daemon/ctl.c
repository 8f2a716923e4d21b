/*
 * ctl.c - floodgatectl: ask the running floodgated over its control socket.
 *
 *   floodgatectl [--socket PATH] [--json] status
 *   floodgatectl [--socket PATH] [--json] release [--scope mailbox|account|script] IDENTITY
 *
 * Without --scope the identity's form decides: "user:/path" is a script, "box@domain" a
 * mailbox, anything else an account.
 */
#include "ctl.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "usertable.h"
#include "util.h"

#define CTLCLI_DEFAULT_SOCKET "/run/floodgate/ctl.sock"

static void
ctlcli_usage(FILE *f)
{
    fputs("usage: floodgatectl [--socket PATH] [--json] status\n"
          "       floodgatectl [--socket PATH] [--json] release [--scope SCOPE] IDENTITY\n"
          "  IDENTITY: box@domain (mailbox), user (account) or user:/dir (script)\n",
          f);
}

static const char *
ctlcli_guess_scope(const char *id)
{
    const char *colon = strchr(id, ':');

    if (colon && colon[1] == '/')
        return "script";
    if (strchr(id, '@'))
        return "mailbox";
    return "account";
}

/* Print a flat JSON object as "key: value" lines (the daemon's answers are flat). */
static void
ctlcli_print_text(const char *json)
{
    bool in_str = false;
    int depth = 0;

    for (const char *p = json; *p && *p != '\n'; p++) {
        if (*p == '"' && (p == json || p[-1] != '\\')) {
            in_str = !in_str;
            continue;
        }
        if (!in_str && (*p == '{' || *p == '[')) {
            depth++;
            if (depth == 1)
                continue;
        }
        if (!in_str && (*p == '}' || *p == ']')) {
            depth--;
            if (depth == 0)
                continue;
        }
        if (!in_str && depth == 1 && *p == ',') {
            putchar('\n');
            continue;
        }
        if (!in_str && depth == 1 && *p == ':') {
            fputs(": ", stdout);
            continue;
        }
        putchar(*p);
    }
    putchar('\n');
}

int
main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "socket", required_argument, NULL, 's' },
        { "json", no_argument, NULL, 'j' },
        { "scope", required_argument, NULL, 'S' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *sock = CTLCLI_DEFAULT_SOCKET, *scope = NULL;
    enum usertable_scope sc;
    bool json = false;
    char req[CTL_REQUEST_MAX];
    struct strbuf out;
    int c, r;

    while ((c = getopt_long(argc, argv, "s:jS:h", opts, NULL)) != -1) {
        switch (c) {
        case 's':
            sock = optarg;
            break;
        case 'j':
            json = true;
            break;
        case 'S':
            scope = optarg;
            break;
        case 'h':
            ctlcli_usage(stdout);
            return 0;
        default:
            ctlcli_usage(stderr);
            return 2;
        }
    }
    if (optind < argc && strcmp(argv[optind], "status") == 0 && optind + 1 == argc) {
        (void)snprintf(req, sizeof(req), "status");
    } else if (optind + 2 == argc && strcmp(argv[optind], "release") == 0) {
        const char *id = argv[optind + 1];
        if (!scope)
            scope = ctlcli_guess_scope(id);
        if (usertable_scope_parse(scope, &sc) < 0) {
            fprintf(stderr, "floodgatectl: --scope: '%s' is not mailbox, account or script\n",
                    scope);
            return 2;
        }
        if ((size_t)snprintf(req, sizeof(req), "release %s %s", scope, id) >= sizeof(req)) {
            fprintf(stderr, "floodgatectl: identity too long\n");
            return 2;
        }
    } else {
        ctlcli_usage(stderr);
        return 2;
    }
    strbuf_init(&out, CTL_RESPONSE_MAX);
    r = ctl_call(sock, req, &out);
    if (r < 0) {
        fprintf(stderr, "floodgatectl: %s: %s%s\n", sock, strerror(-r),
                (r == -ENOENT || r == -ECONNREFUSED) ? " (is floodgated running?)" : "");
        strbuf_done(&out);
        return 1;
    }
    if (json)
        fputs(strbuf_cstr(&out), stdout);
    else
        ctlcli_print_text(strbuf_cstr(&out));
    r = strstr(strbuf_cstr(&out), "{\"error\"") == strbuf_cstr(&out) ? 1 : 0;
    strbuf_done(&out);
    return r;
}
