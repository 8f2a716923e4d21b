/*
 * alert.c - the pure rules of alert delivery (alerting.md): how a webhook is signed, how
 * log text is made safe for Slack and JSON, what an HTTP answer means, how long to wait
 * before the next attempt, and how fast a destination may be sent to.
 *
 * Signatures follow Standard Webhooks 1.0: HMAC-SHA256 (libcrypto) over
 * "<id>.<timestamp>.<body>" keyed with the decoded bytes of a "whsec_" secret, sent as
 * "v1,<base64>"; during a key rotation one header carries a signature per secret.
 *
 * Text from the log is bytes, not UTF-8: one bad byte would make a whole Slack payload
 * invalid_payload, so alert_append_text() repairs it (U+FFFD), caps it at a character
 * boundary before escaping (an entity is never cut) and applies Slack's three escapes.
 */
#include "alert.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

/* --- Standard Webhooks ------------------------------------------------------------- */

#define ALERT_WHSEC_PREFIX "whsec_"

int
alert_secret_decode(const char *text, struct alert_secret *ret)
{
    uint8_t buf[(ALERT_SECRET_MAX + 2) / 3 * 3 + 3];
    size_t len, pad = 0;
    int n;

    if (strncmp(text, ALERT_WHSEC_PREFIX, strlen(ALERT_WHSEC_PREFIX)) == 0)
        text += strlen(ALERT_WHSEC_PREFIX);
    len = strlen(text);
    if (len == 0 || len % 4 != 0 || len / 4 * 3 > sizeof(buf))
        return -EINVAL;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '+' || c == '/';
        if (c == '=' && i >= len - 2) {
            pad++;
            continue;
        }
        if (!ok || pad > 0)
            return -EINVAL;
    }
    n = EVP_DecodeBlock(buf, (const unsigned char *)text, (int)len);
    if (n < 0 || (size_t)n < pad)
        return -EINVAL;
    /* EVP_DecodeBlock counts the padding as zero bytes */
    len = (size_t)n - pad;
    if (len < ALERT_SECRET_MIN || len > ALERT_SECRET_MAX)
        return -EINVAL;
    memcpy(ret->key, buf, len);
    ret->len = len;
    return 0;
}

int
alert_sign(const struct alert_secret *secrets, size_t nsecrets, const char *msg_id,
           int64_t timestamp_s, const void *body, size_t body_len, char *buf, size_t size)
{
    char ts[24];
    size_t used = 0;

    if (!msg_id[0] || strchr(msg_id, '.') || nsecrets == 0)
        return -EINVAL;
    (void)snprintf(ts, sizeof(ts), "%lld", (long long)timestamp_s);
    size_t idlen = strlen(msg_id), tslen = strlen(ts), mlen;
    unsigned char *msg;

    if (!util_add_size(idlen + tslen + 2, body_len, &mlen))
        return -E2BIG;
    msg = malloc(mlen ? mlen : 1);
    if (!msg)
        return -ENOMEM;
    memcpy(msg, msg_id, idlen);
    msg[idlen] = '.';
    memcpy(msg + idlen + 1, ts, tslen);
    msg[idlen + 1 + tslen] = '.';
    if (body_len)
        memcpy(msg + idlen + tslen + 2, body, body_len);
    for (size_t i = 0; i < nsecrets; i++) {
        uint8_t mac[EVP_MAX_MD_SIZE];
        unsigned maclen = 0;
        char b64[4 * ((EVP_MAX_MD_SIZE + 2) / 3) + 1];

        if (!HMAC(EVP_sha256(), secrets[i].key, (int)secrets[i].len, msg, mlen, mac, &maclen)) {
            free(msg);
            return -EIO;
        }
        (void)EVP_EncodeBlock((unsigned char *)b64, mac, (int)maclen);
        int w = snprintf(buf + used, size - used, "%sv1,%s", i ? " " : "", b64);
        if (w < 0 || (size_t)w >= size - used) {
            free(msg);
            return -E2BIG;
        }
        used += (size_t)w;
    }
    free(msg);
    return 0;
}

/* --- escaping ---------------------------------------------------------------------- */

int
alert_append_text(struct strbuf *b, const char *p, size_t len, size_t cap,
                  enum alert_text_mode mode)
{
    const unsigned char *s = (const unsigned char *)p;
    size_t i = 0;
    int r = 0;

    while (i < len && r == 0) {
        size_t n = util_utf8_len(s + i, len - i);
        size_t in = n ? n : 1;

        if (i + in > cap)
            break;
        if (n != 1) {
            /* strbuf_append_json's rule: U+FFFD for a bad byte, steering code points escaped */
            r = strbuf_append_json(b, p + i, in);
        } else {
            char c = p[i];
            if (mode == ALERT_TEXT_SLACK_CODE && c == '`') {
                /* removed: it would close the code span */
            } else if (mode == ALERT_TEXT_SLACK_CODE && (c == '\n' || c == '\t' || c == '\r')) {
                r = strbuf_append(b, " ", 1);
            } else if (mode != ALERT_TEXT_JSON && c == '&') {
                r = strbuf_appends(b, "&amp;");
            } else if (mode != ALERT_TEXT_JSON && c == '<') {
                r = strbuf_appends(b, "&lt;");
            } else if (mode != ALERT_TEXT_JSON && c == '>') {
                r = strbuf_appends(b, "&gt;");
            } else {
                r = strbuf_append_json(b, &c, 1);
            }
        }
        i += in;
    }
    return r;
}

/* --- outcome of an attempt ----------------------------------------------------------- */

enum alert_outcome
alert_classify(enum alert_dest_type type, const struct http_response *r)
{
    int s = r->status;

    switch (r->error) {
    case HTTP_OK:
        break;
    case HTTP_ERR_CONFIG:
        return ALERT_CONFIG;
    default:
        return ALERT_RETRY; /* timeouts, network, TLS: verification stays on */
    }
    if (s >= 200 && s < 300)
        return ALERT_DELIVERED;
    if (type == ALERT_DEST_SLACK && strstr(r->body, "team_disabled"))
        return ALERT_DISABLE;
    if (s == 404 || s == 410)
        return ALERT_DISABLE;
    if (s == 408 || s == 429 || s >= 500)
        return ALERT_RETRY;
    return ALERT_PERMANENT; /* 3xx (redirects are not followed), other 4xx, nonsense */
}

const char *
alert_outcome_name(enum alert_outcome o)
{
    static const char *const names[] = {
        [ALERT_DELIVERED] = "delivered", [ALERT_RETRY] = "retried",
        [ALERT_PERMANENT] = "failed",    [ALERT_DISABLE] = "disabled",
        [ALERT_CONFIG] = "config_error",
    };

    return (unsigned)o < N_ELEMS(names) ? names[o] : "?";
}

int64_t
alert_backoff_ms(unsigned attempt, int64_t retry_after_s, uint64_t random)
{
    int64_t ceiling = ALERT_BACKOFF_BASE_MS, delay;

    for (unsigned i = 1; i < attempt && ceiling < ALERT_BACKOFF_CAP_MS; i++)
        ceiling *= 2;
    if (ceiling > ALERT_BACKOFF_CAP_MS)
        ceiling = ALERT_BACKOFF_CAP_MS;
    delay = (int64_t)(random % (uint64_t)(ceiling + 1));
    if (retry_after_s >= 0) {
        if (retry_after_s > HTTP_RETRY_AFTER_MAX_S)
            retry_after_s = HTTP_RETRY_AFTER_MAX_S;
        if (delay < retry_after_s * 1000)
            delay = retry_after_s * 1000;
    }
    return delay;
}

/* --- token bucket ------------------------------------------------------------------- */

void
alert_bucket_init(struct alert_bucket *b, double rate, double burst, int64_t now_ms)
{
    *b = (struct alert_bucket){ .rate = rate, .burst = burst, .tokens = burst, .last_ms = now_ms };
}

static double
alert_bucket_rate(const struct alert_bucket *b, int64_t now_ms)
{
    return now_ms < b->slow_until_ms ? b->rate / 2 : b->rate;
}

static void
alert_bucket_refill(struct alert_bucket *b, int64_t now_ms)
{
    if (now_ms > b->last_ms) {
        b->tokens += (double)(now_ms - b->last_ms) / 1000.0 * alert_bucket_rate(b, now_ms);
        if (b->tokens > b->burst)
            b->tokens = b->burst;
        b->last_ms = now_ms;
    }
}

bool
alert_bucket_take(struct alert_bucket *b, int64_t now_ms)
{
    alert_bucket_refill(b, now_ms);
    if (b->tokens < 1.0)
        return false;
    b->tokens -= 1.0;
    return true;
}

int64_t
alert_bucket_wait_ms(struct alert_bucket *b, int64_t now_ms)
{
    double rate;

    alert_bucket_refill(b, now_ms);
    if (b->tokens >= 1.0)
        return 0;
    rate = alert_bucket_rate(b, now_ms);
    if (rate <= 0)
        return INT64_MAX;
    return (int64_t)((1.0 - b->tokens) * 1000.0 / rate) + 1;
}

void
alert_bucket_slow(struct alert_bucket *b, int64_t now_ms)
{
    alert_bucket_refill(b, now_ms);
    b->slow_until_ms = now_ms + ALERT_SLOW_MS;
}

const char *
alert_dest_type_name(enum alert_dest_type type)
{
    static const char *const names[ALERT_DEST_TYPES] = {
        [ALERT_DEST_SLACK] = "slack",
        [ALERT_DEST_WEBHOOK] = "webhook",
        [ALERT_DEST_ALERTMANAGER] = "alertmanager",
    };

    return (unsigned)type < ALERT_DEST_TYPES ? names[type] : "?";
}
