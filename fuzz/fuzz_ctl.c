/*
 * The control socket's request grammar (ctl_parse): any bytes as one request line. What
 * parses names a known verb, fits its buffers and, written back in the grammar's own
 * form, parses again to the same request.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "ctl.h"
#include "fuzz.h"

/* @req in the request grammar; the length, or 0 when it does not fit (cannot happen). */
static size_t
ctl_render(const struct ctl_request *req, char *buf, size_t size)
{
    char id[sizeof(req->id) * 4 + 1];
    size_t k = 0;
    int n;

    /* the identity as people are shown it: a backslash doubled, control bytes as \xHH
     * (ctl_parse unescapes both) */
    for (const char *c = req->id; *c && k + 5 < sizeof(id); c++) {
        unsigned char b = (unsigned char)*c;
        if (b == '\\') {
            id[k++] = '\\';
            id[k++] = '\\';
        } else if (b < 0x20 || b == 0x7f) {
            k += (size_t)snprintf(id + k, sizeof(id) - k, "\\x%02x", b);
        } else {
            id[k++] = (char)b;
        }
    }
    id[k] = '\0';
    if (k >= sizeof(req->id))
        return 0; /* the escaped form does not fit the grammar's identity: nothing to check */
    switch (req->verb) {
    case CTL_TOP:
        n = snprintf(buf, size, "top%s%s window=%lldms n=%u", req->any_scope ? "" : " scope=",
                     req->any_scope ? "" : usertable_scope_name(req->scope),
                     (long long)req->window_ms, req->n);
        if (req->window_ms == 0) /* "every window": the field is left out */
            n = snprintf(buf, size, "top%s%s n=%u", req->any_scope ? "" : " scope=",
                         req->any_scope ? "" : usertable_scope_name(req->scope), req->n);
        break;
    case CTL_SHOW:
    case CTL_RELEASE:
    case CTL_HOLD:
    case CTL_SUSPEND:
        n = snprintf(buf, size, "%s %s %s%s%s", ctl_verb_name(req->verb),
                     usertable_scope_name(req->scope), id, req->reason[0] ? "\t" : "",
                     req->reason);
        break;
    case CTL_ALERT_ENABLE:
        n = snprintf(buf, size, "alert-enable %s", id);
        break;
    default:
        n = snprintf(buf, size, "%s", ctl_verb_name(req->verb));
        break;
    }
    return n > 0 && (size_t)n < size ? (size_t)n : 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ctl_request req, again;
    const char *why = NULL;
    char line[CTL_REQUEST_MAX * 2];
    size_t len;
    int r;

    r = ctl_parse((const char *)data, size, &req, &why);
    FUZZ_CHECK(r == 0 || r == -EINVAL);
    if (r < 0) {
        FUZZ_CHECK(why != NULL && strlen(why) > 0 && strlen(why) < 200);
        return 0;
    }
    FUZZ_CHECK((unsigned)req.verb < CTL__VERB_MAX);
    FUZZ_CHECK(ctl_verb_name(req.verb) != NULL);
    FUZZ_CHECK(memchr(req.id, '\0', sizeof(req.id)) != NULL);
    FUZZ_CHECK(memchr(req.reason, '\0', sizeof(req.reason)) != NULL);
    FUZZ_CHECK(strlen(req.reason) <= CTL_REASON_MAX);
    FUZZ_CHECK(strlen(req.id) <= size);
    FUZZ_CHECK((unsigned)req.scope < SCOPE__MAX);
    FUZZ_CHECK(req.window_ms >= 0);
    if (req.verb == CTL_TOP)
        FUZZ_CHECK(req.n >= 1 && req.n <= CTL_TOP_MAX);
    if (req.verb == CTL_SHOW || req.verb == CTL_RELEASE || req.verb == CTL_HOLD ||
        req.verb == CTL_SUSPEND || req.verb == CTL_ALERT_ENABLE)
        FUZZ_CHECK(req.id[0] != '\0');
    if (req.verb != CTL_HOLD && req.verb != CTL_SUSPEND)
        FUZZ_CHECK(req.reason[0] == '\0');

    len = ctl_render(&req, line, sizeof(line));
    if (len == 0)
        return 0;
    r = ctl_parse(line, len, &again, &why);
    if (r != 0)
        (void)fprintf(stderr, "re-parse of \"%s\": %s\n", line, why);
    FUZZ_CHECK(r == 0);
    FUZZ_CHECK(again.verb == req.verb && again.any_scope == req.any_scope &&
               again.scope == req.scope && again.window_ms == req.window_ms && again.n == req.n);
    FUZZ_CHECK(strcmp(again.id, req.id) == 0 && strcmp(again.reason, req.reason) == 0);
    return 0;
}
