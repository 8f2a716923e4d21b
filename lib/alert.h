#ifndef FLOODGATE_ALERT_H
#define FLOODGATE_ALERT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http.h"
#include "util.h"

/*
 * lib/alert: the pure part of alert delivery (alerting.md §2-§5): Standard Webhooks
 * signatures, escaping of log text for Slack mrkdwn and JSON, the classification of an
 * attempt's outcome, backoff with full jitter, and the per-destination token bucket.
 * Bytes and times in, values out; no I/O, no clock, no randomness of its own.
 */

enum alert_dest_type { ALERT_DEST_SLACK = 0, ALERT_DEST_WEBHOOK, ALERT_DEST_ALERTMANAGER };
#define ALERT_DEST_TYPES 3 /* the values of enum alert_dest_type */
/* "slack", "webhook", "alertmanager" ("?" for anything else). */
const char *alert_dest_type_name(enum alert_dest_type type);

/* --- Standard Webhooks ------------------------------------------------------------- */

#define ALERT_SECRET_MAX  64 /* decoded key bytes (spec: 24 to 64) */
#define ALERT_SECRET_MIN  24
#define ALERT_SIG_MAX     64 /* "v1," + base64 of 32 bytes + NUL */
#define ALERT_SECRETS_MAX 2  /* new and old during a rotation */

struct alert_secret {
    uint8_t key[ALERT_SECRET_MAX];
    size_t len;
};

/*
 * Decode "whsec_<base64>" (standard alphabet, padded) into @ret. The prefix is optional,
 * as in the reference libraries. -EINVAL on bad base64 or a key outside [ALERT_SECRET_MIN,
 * ALERT_SECRET_MAX] bytes (the message never quotes the secret).
 */
int alert_secret_decode(const char *text, struct alert_secret *ret);

/*
 * The webhook-signature header value for one attempt: "v1,<sig>" per secret, separated
 * by spaces, signing "<msg_id>.<timestamp>.<body>". -EINVAL when @msg_id contains '.' or
 * is empty, -E2BIG when @size is too small.
 */
int alert_sign(const struct alert_secret *secrets, size_t nsecrets, const char *msg_id,
               int64_t timestamp_s, const void *body, size_t body_len, char *buf, size_t size);

/* --- escaping ---------------------------------------------------------------------- */

/*
 * Append log text as the body of a JSON string: at most @cap bytes of the input (cut at a
 * UTF-8 character boundary), bytes that are not valid UTF-8 replaced by U+FFFD, '"' '\\'
 * and control characters escaped. Slack mode also replaces '&' '<' '>' by their entities
 * (Slack's formatting rules: nothing else), so log text can neither mention @channel nor
 * forge a link; code mode (inside `...`) removes backticks and turns newlines and tabs
 * into spaces as well.
 */
enum alert_text_mode { ALERT_TEXT_JSON = 0, ALERT_TEXT_SLACK, ALERT_TEXT_SLACK_CODE };
int alert_append_text(struct strbuf *b, const char *p, size_t len, size_t cap,
                      enum alert_text_mode mode);

/* --- outcome of an attempt ----------------------------------------------------------- */

enum alert_outcome {
    ALERT_DELIVERED = 0, /* 2xx */
    ALERT_RETRY,         /* 408, 429, 5xx, timeouts, network errors, TLS (slowly) */
    ALERT_PERMANENT,     /* other 4xx, 3xx: this event fails, the destination stays */
    ALERT_DISABLE,       /* 404, 410 (Slack: also a "team_disabled" body) */
    ALERT_CONFIG,        /* bad URL or protocol: never retried */
};

enum alert_outcome alert_classify(enum alert_dest_type type, const struct http_response *r);
const char *alert_outcome_name(enum alert_outcome o);

/*
 * Delay before retry number @attempt (1 = the first retry): full jitter,
 * uniform(0, min(cap, base * 2^(attempt-1))) drawn from @random, then at least
 * @retry_after_s seconds (clamped to HTTP_RETRY_AFTER_MAX_S) when the answer carried one
 * (-1: none).
 */
#define ALERT_BACKOFF_BASE_MS 2000
#define ALERT_BACKOFF_CAP_MS  600000
int64_t alert_backoff_ms(unsigned attempt, int64_t retry_after_s, uint64_t random);

/* --- token bucket (alerting.md §5.7) ------------------------------------------------ */

#define ALERT_SLOW_MS (10 * 60 * 1000) /* a 429 halves the rate this long */

struct alert_bucket {
    double rate;  /* tokens per second */
    double burst; /* bucket size */
    double tokens;
    int64_t last_ms;
    int64_t slow_until_ms; /* rate halved until then */
};

void alert_bucket_init(struct alert_bucket *b, double rate, double burst, int64_t now_ms);
/* Take one token if there is one. */
bool alert_bucket_take(struct alert_bucket *b, int64_t now_ms);
/* Milliseconds until a token is there (0: now). */
int64_t alert_bucket_wait_ms(struct alert_bucket *b, int64_t now_ms);
/* A 429: halve the rate for ALERT_SLOW_MS. */
void alert_bucket_slow(struct alert_bucket *b, int64_t now_ms);

#endif
