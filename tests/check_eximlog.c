/*
 * check_eximlog.c - the Exim log parser and record splitter.
 *
 * Tables of good and bad records for every record type (exim-log-format.md 4-8, the
 * examples E1-E20 of section 11, the injections of 5.2 and 9.1), joiner scenarios, and
 * whole logs: the shared corpus (skipped when absent) and a generated fixture must split
 * and parse without a single -EBADMSG.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "eximlog.h"
#include "testrun.h"

/* A parsed record with its expectations. NULL string fields are not checked; "" means
 * "absent or empty". */
struct good {
    const char *name;
    const char *line;
    int ret;
    enum exim_type type;
    uint32_t flags;   /* must be set */
    uint32_t noflags; /* must be clear */
    const char *msgid;
    const char *sender;
    const char *host_ip;
    const char *ident;
    const char *proto;
    const char *auth;
    const char *set_id;
    int64_t size; /* -1: not checked */
    const char *subject;
    int nrcpt; /* -1: not checked */
    const char *addr;
    const char *router;
    const char *transport;
    const char *text;
    const char *cwd;
    int argc; /* -1: not checked */
    const char *args;
    int64_t ts_ms; /* 0: not checked */
    int pid;       /* -1: not checked, 0: must be absent */
    const char *host;
};

/* G() presets "not checked" values that a case may override. */
#pragma GCC diagnostic ignored "-Woverride-init"
#define G(...)                                                                                     \
    {                                                                                              \
        .size = -1, .nrcpt = -1, .argc = -1, .pid = -1, __VA_ARGS__                                \
    }

/* 2019-04-21 04:33:14 read as UTC */
#define TS_E1 INT64_C(1555821194000)

static const struct good good[] = {
    /* ---- arrivals ---- */
    G(.name = "E1 cPanel authenticated arrival",
      .line = "2019-04-21 04:33:14 1hIAif-00H7J4-Lb <= user@customer.example "
              "H=client.isp.example (LAPTOP) [203.0.113.213]:64606 P=esmtpsa "
              "X=TLSv1.2:ECDHE-RSA-AES256-GCM-SHA384:256 CV=no "
              "A=dovecot_login:user@customer.example S=91991 "
              "id=012901d4f836$03fad680$0bf08380$@com T=\"RE: (subject replaced)\" for "
              "a@partner.example b@customer.example",
      .ret = 1, .type = EXIM_ARRIVAL,
      .noflags = EXIM_F_ANOMALOUS | EXIM_F_LOCAL | EXIM_F_AMBIGUOUS_HOST,
      .msgid = "1hIAif-00H7J4-Lb", .sender = "user@customer.example", .host_ip = "203.0.113.213",
      .host = "client.isp.example (LAPTOP) [203.0.113.213]:64606", .proto = "esmtpsa",
      .auth = "dovecot_login", .set_id = "user@customer.example", .size = 91991,
      .subject = "RE: (subject replaced)", .nrcpt = 2, .ts_ms = TS_E1, .pid = 0),
    G(.name = "E14 spec arrival with ident",
      .line = "2002-10-31 08:57:53 16ZCW1-0005MB-00 <= kryten@dwarf.fict.example "
              "H=mailer.fict.example [192.168.123.123] U=exim P=smtp S=5678 "
              "id=incoming.message.id@dwarf.fict.example",
      .ret = 1, .type = EXIM_ARRIVAL, .noflags = EXIM_F_LOCAL, .host_ip = "192.168.123.123",
      .ident = "exim", .proto = "smtp", .size = 5678, .nrcpt = 0),
    G(.name = "E17 23-char id, A=login:userx",
      .line = "1999-03-02 09:44:33 10HmbC-000000005vi-0000 <= userx@cus.cam.ac.uk "
              "H=(test.host) [10.0.0.1] U=CALLER P=esmtpa A=login:userx S=1234 for "
              "userx11@test.ex",
      .ret = 1, .type = EXIM_ARRIVAL, .noflags = EXIM_F_ANOMALOUS,
      .msgid = "10HmbC-000000005vi-0000", .host_ip = "10.0.0.1", .ident = "CALLER",
      .proto = "esmtpa", .auth = "login", .set_id = "userx", .size = 1234, .nrcpt = 1),
    G(.name = "E18 escaped subject over lines",
      .line = "1999-03-02 09:44:33 10HmbA-000000005vi-0000 <= CALLER@test.ex U=CALLER P=local "
              "S=77 T=\"subject contains \\\"quotes\\\" and \\\\backslashes\\\\ and\\n  \\007 "
              "non-prints over multiple\\n  lines\"",
      .ret = 1, .type = EXIM_ARRIVAL, .flags = EXIM_F_LOCAL, .noflags = EXIM_F_ANOMALOUS,
      .ident = "CALLER", .proto = "local", .size = 77,
      .subject = "subject contains \\\"quotes\\\" and \\\\backslashes\\\\ and\\n  \\007 "
                 "non-prints over multiple\\n  lines"),
    G(.name = "E19 arrival with pid",
      .line = "1999-03-02 09:44:33 [1234] 10HmaX-000000005vi-0000 <= CALLER@myhost.test.ex "
              "U=CALLER P=local S=300",
      .ret = 1, .type = EXIM_ARRIVAL, .flags = EXIM_F_LOCAL, .pid = 1234, .size = 300),
    G(.name = "all prefix parts, reproduced 4.96",
      .line = "2026-11-23 00:12:15.672 +0000 [14736] 1xVHfL-0003pg-29 <= "
              "root@host.test.example U=root P=local S=314 T=\"t2\" for rcpt@example.net",
      .ret = 1, .type = EXIM_ARRIVAL, .flags = EXIM_F_LOCAL, .pid = 14736,
      .ts_ms = INT64_C(1795392735672), .msgid = "1xVHfL-0003pg-29", .nrcpt = 1),
    G(.name = "zone +0100 is subtracted",
      .line = "2026-11-23 01:12:15.672 +0100 1xVHfL-0003pg-29 <= a@b U=root P=local S=1", .ret = 1,
      .type = EXIM_ARRIVAL, .ts_ms = INT64_C(1795392735672), .pid = 0),
    G(.name = "zone -0730 is added",
      .line = "2026-11-22 16:42:15 -0730 [7] 1xVHfL-0003pg-29 <= a@b U=root P=local S=1", .ret = 1,
      .type = EXIM_ARRIVAL, .ts_ms = INT64_C(1795392735000), .pid = 7),
    G(.name = "fakereject (=",
      .line = "2026-11-23 00:12:15 1xVHfL-0003pg-29 (= a@b H=[192.0.2.1]:25 P=esmtp S=10", .ret = 1,
      .type = EXIM_ARRIVAL, .flags = EXIM_F_FAKEREJECT, .host_ip = "192.0.2.1"),
    G(.name = "null sender bounce with R=",
      .line = "2026-11-23 00:12:15 1xVHfL-0003pg-29 <= <> R=1xVHex-0003oU-1h U=mailnull "
              "P=local S=2000 T=\"Mail delivery failed: returning message to sender\" for "
              "x@example.org",
      .ret = 1, .type = EXIM_ARRIVAL, .flags = EXIM_F_LOCAL, .sender = "<>", .ident = "mailnull",
      .nrcpt = 1),
    G(.name = "IPv6 peer with port",
      .line = "2026-11-23 00:12:15 1xVHfL-0003pg-29 <= a@b H=mail.example (helo) "
              "[2001:db8::25]:49152 I=[2001:db8::1]:25 P=esmtps X=TLS1.3:TLS_AES:256 CV=no "
              "S=10 for c@d",
      .ret = 1, .type = EXIM_ARRIVAL, .host_ip = "2001:db8::25", .noflags = EXIM_F_ANOMALOUS),
    G(.name = "HELO is an address literal",
      .line = "2026-11-23 00:12:15 1xVHfL-0003pg-29 <= a@b H=([10.21.32.43]) [192.168.8.34]:25 "
              "P=esmtp S=10",
      .ret = 1, .type = EXIM_ARRIVAL, .host_ip = "192.168.8.34",
      .noflags = EXIM_F_AMBIGUOUS_HOST | EXIM_F_ANOMALOUS),
    G(.name = "quoted sender with spaces",
      .line = "2026-11-23 00:12:15 1xVHfL-0003pg-29 <= \"john smith\"@example.org U=u P=local "
              "S=10 for a@example.net \"x y\"@example.org",
      .ret = 1, .type = EXIM_ARRIVAL, .sender = "\"john smith\"@example.org", .nrcpt = 2),
    G(.name = "sender with A= inside quotes",
      .line = "2026-11-23 00:12:15 1xVHfL-0003pg-29 <= \"x A=dovecot_login:ceo@bank S=1\"@e.org "
              "U=u P=local S=10",
      .ret = 1, .type = EXIM_ARRIVAL, .auth = "", .set_id = "", .size = 10, .ident = "u"),
    G(.name = "5.2 subject injection",
      .line = "2026-11-23 00:12:15 1xVHfL-0003pg-29 <= root@host.test.example U=root P=local "
              "S=402 T=\"Hello \\\"quoted\\\" \\\\back A=dovecot_login:ceo@bank.example S=1\" "
              "for a@example.net \"john smith\"@example.org",
      .ret = 1, .type = EXIM_ARRIVAL, .flags = EXIM_F_LOCAL, .noflags = EXIM_F_ANOMALOUS,
      .auth = "", .set_id = "", .size = 402, .nrcpt = 2),
    G(.name = "5.2 message-id injection",
      .line = "2026-11-23 00:12:15 1xVHfL-0003pg-29 <= root@host.test.example U=root P=local "
              "S=471 id=\"a A=dovecot_login:v@d S=1\"@example.com T=\"x\"",
      .ret = 1, .type = EXIM_ARRIVAL, .noflags = EXIM_F_ANOMALOUS, .auth = "", .set_id = "",
      .size = 471, .subject = "x"),
    G(.name = "5.2 HELO injection: the injected reading runs into the real peer, only one holds",
      .line = "2026-11-23 00:12:15 1xVHfL-0003pg-29 <= \"a b\"@example.org H=(junk) "
              "[198.51.100.9]:25 P=esmtpsa A=dovecot_login:victim@example.com S=1 (x) "
              "[192.0.2.7]:5555 U=root P=esmtpa A=pl:u s:e r@example.com S=313 "
              "T=\"smtp test\" for r@example.net",
      .ret = 1, .type = EXIM_ARRIVAL, .noflags = EXIM_F_AMBIGUOUS_HOST | EXIM_F_ANOMALOUS,
      .host_ip = "192.0.2.7", .proto = "esmtpa", .auth = "pl", .set_id = "u s:e r@example.com",
      .ident = "root"),
    G(.name = "HELO injection with for-list tail: (x) is no address, one reading",
      .line = "2026-11-23 00:12:15 1xVHfL-0003pg-29 <= a@example.org H=(junk) "
              "[198.51.100.9]:25 P=esmtpsa A=dovecot_login:victim@example.com S=1 for (x) "
              "[192.0.2.7]:5555 P=esmtp S=313 for r@example.net",
      .ret = 1, .type = EXIM_ARRIVAL, .noflags = EXIM_F_AMBIGUOUS_HOST | EXIM_F_ANOMALOUS,
      .host_ip = "192.0.2.7", .proto = "esmtp", .auth = "", .set_id = "", .nrcpt = 1),
    G(.name = "HELO with spaces and brackets, one candidate",
      .line = "2026-11-23 00:12:15 1xVHfL-0003pg-29 <= a@b H=(my [pc] name=x) [192.0.2.7]:5 "
              "P=esmtpa A=dovecot_plain:a@b S=1",
      .ret = 1, .type = EXIM_ARRIVAL, .noflags = EXIM_F_AMBIGUOUS_HOST | EXIM_F_ANOMALOUS,
      .host_ip = "192.0.2.7", .set_id = "a@b", .auth = "dovecot_plain"),
    G(.name = "set_id with spaces runs to S= (5.6, reproduced)",
      .line = "2026-11-23 00:12:15 1xVHfL-0003pg-29 <= a@b H=[192.0.2.7]:5 P=esmtpa "
              "A=pl:u s:e r@example.com S=313",
      .ret = 1, .type = EXIM_ARRIVAL, .noflags = EXIM_F_ANOMALOUS, .auth = "pl",
      .set_id = "u s:e r@example.com"),
    G(.name = "A= followed by K and PRDR",
      .line = "2026-11-23 00:12:15 1xVHfL-0003pg-29 <= a@b H=[192.0.2.7]:5 P=esmtpa "
              "A=dovecot_login:u+d.example PRDR K S=3",
      .ret = 1, .type = EXIM_ARRIVAL, .noflags = EXIM_F_ANOMALOUS, .set_id = "u+d.example",
      .size = 3),
    G(.name = "set_id with colon kept whole",
      .line = "2026-11-23 00:12:15 1xVHfL-0003pg-29 <= a@b H=[192.0.2.7]:5 P=esmtpa "
              "A=dovecot_login:user:domain.example S=3",
      .ret = 1, .type = EXIM_ARRIVAL, .set_id = "user:domain.example", .noflags = EXIM_F_ANOMALOUS),
    G(.name = "all optional arrival fields in order",
      .line = "2026-11-23 00:12:15 1xVHfL-0003pg-29 <= a@b R=1xVHfL-0003pg-28 DS "
              "H=h.example [192.0.2.7]:5 I=[192.0.2.1]:587 TFO* U=ident Ci=12345 P=esmtpsa L- "
              "X=TLS1.3:TLS_AES_256_GCM_SHA384:256* CV=yes DN=\"/CN=a \"b\" c\" "
              "SNI=mail.example A=dovecot_login:a@b PRDR PRX=192.0.2.9 K S=99 M8S=8 "
              "DKIM=example.com ARC RT=0.5s Q=slow id*=abc@def T=\"s\" from <a@b> for c@d "
              "e@f <trunc>",
      .ret = 1, .type = EXIM_ARRIVAL, .flags = EXIM_F_RCPT_TRUNC,
      .noflags = EXIM_F_ANOMALOUS | EXIM_F_LOCAL, .ident = "ident", .proto = "esmtpsa",
      .set_id = "a@b", .size = 99, .subject = "s", .nrcpt = 2),
    G(.name = "SNI quoted (<= 4.94)",
      .line = "2026-11-23 00:12:15 1xVHfL-0003pg-29 <= a@b H=[192.0.2.7] P=esmtps X=x CV=no "
              "SNI=\"mail example\" S=9",
      .ret = 1, .type = EXIM_ARRIVAL, .noflags = EXIM_F_ANOMALOUS, .size = 9),
    G(.name = "from <> with quoted sender",
      .line = "2026-11-23 00:12:15 1xVHfL-0003pg-29 <= a@b U=u P=local S=9 "
              "from <\"x> y\"@e.org> for c@d",
      .ret = 1, .type = EXIM_ARRIVAL, .noflags = EXIM_F_ANOMALOUS, .nrcpt = 1),
    G(.name = "out-of-order tag is anomalous",
      .line = "2026-11-23 00:12:15 1xVHfL-0003pg-29 <= a@b P=local U=u S=9", .ret = 1,
      .type = EXIM_ARRIVAL, .flags = EXIM_F_ANOMALOUS),
    G(.name = "P=local-esmtp is local",
      .line = "2026-11-23 00:12:15 1xVHfL-0003pg-29 <= a@b U=u P=local-esmtp S=9", .ret = 1,
      .type = EXIM_ARRIVAL, .flags = EXIM_F_LOCAL),
    G(.name = "localhost SMTP is not local",
      .line = "2026-11-23 00:12:15 1xVHfL-0003pg-29 <= a@b H=localhost (x) [127.0.0.1]:4321 "
              "P=esmtp S=9",
      .ret = 1, .type = EXIM_ARRIVAL, .noflags = EXIM_F_LOCAL, .host_ip = "127.0.0.1"),
    G(.name = "generator: K flag and IPv6",
      .line = "2026-03-02 00:00:04.583 [2293723] 1vwqhg-00FE36-Nf <= tyhivc@comcast.net "
              "H=mail-kgh.aol.com [2001:db8:9ada::e34]:587 P=esmtps "
              "X=TLS1.3:TLS_AES_128_GCM_SHA256:128 CV=no K S=70991 id=n@outlook.com T=\"P\" "
              "for a@b",
      .ret = 1, .type = EXIM_ARRIVAL, .noflags = EXIM_F_ANOMALOUS, .host_ip = "2001:db8:9ada::e34",
      .pid = 2293723, .nrcpt = 1),
    G(.name = "subject containing a TAB",
      .line = "2026-11-23 00:12:15 1xVHfL-0003pg-29 <= a@b U=u P=local S=9 T=\"a\tb\" for c@d",
      .ret = 1, .type = EXIM_ARRIVAL, .subject = "a\tb", .nrcpt = 1),

    /* ---- deliveries ---- */
    G(.name = "E19 local delivery",
      .line = "1999-03-02 09:44:33 [1235] 10HmaX-000000005vi-0000 => userx <userx@test.ex> "
              "R=r1 T=t1",
      .ret = 1, .type = EXIM_DELIVERY, .addr = "userx", .router = "r1", .transport = "t1",
      .pid = 1235),
    G(.name = "E20 -> with C=",
      .line = "1999-03-02 09:44:33 10HmaX-000000005vi-0000 -> two@remote <list@test.ex> R=all "
              "T=smtp H=127.0.0.1 [127.0.0.1] C=\"250 OK\"",
      .ret = 1, .type = EXIM_DELIVERY, .addr = "two@remote", .router = "all", .transport = "smtp"),
    G(.name = "E20 *> suppressed",
      .line = "1999-03-02 09:44:33 10HmaX-000000005vi-0000 *> accept <accept@y> R=accept "
              "T=appendfile",
      .ret = 1, .type = EXIM_DELIVERY, .addr = "accept", .router = "accept",
      .transport = "appendfile"),
    G(.name = "cutthrough >>",
      .line = "1999-03-02 09:44:33 10HmaX-000000005vi-0000 >> a@b R=r T=t H=x [1.2.3.4]", .ret = 1,
      .type = EXIM_DELIVERY, .addr = "a@b", .router = "r", .transport = "t"),
    G(.name = "parents, quoted address",
      .line = "1999-03-02 09:44:33 10HmaX-000000005vi-0000 => \"a b\"@gmail.com (p1@x, p2@y) "
              "<top@x> F=<s@x> R=dkim_lookuphost T=dkim_remote_smtp",
      .ret = 1, .type = EXIM_DELIVERY, .addr = "\"a b\"@gmail.com", .router = "dkim_lookuphost",
      .transport = "dkim_remote_smtp"),
    G(.name = "blackhole",
      .line = "1999-03-02 09:44:33 10HmaX-000000005vi-0000 => :blackhole: <a@b> R=bh", .ret = 1,
      .type = EXIM_DELIVERY, .addr = ":blackhole:", .router = "bh"),
    G(.name = "E15 spec deferral",
      .line = "2002-12-19 16:20:23 16aiQz-0002Q5-00 == marvin@endrest.example R=dnslookup "
              "T=smtp defer (146): Connection refused",
      .ret = 1, .type = EXIM_DEFER, .noflags = EXIM_F_RETRY_WAIT, .addr = "marvin@endrest.example",
      .router = "dnslookup", .transport = "smtp", .text = "defer (146): Connection refused"),
    G(.name = "routing defer",
      .line = "2002-12-19 16:20:23 16aiQz-0002Q5-00 == xxx@local.test.ex routing defer (-56): "
              "domain is in queue_domains",
      .ret = 1, .type = EXIM_DEFER, .addr = "xxx@local.test.ex", .router = ""),
    G(.name = "retry time not reached",
      .line = "2002-12-19 16:20:23 16aiQz-0002Q5-00 == a@b R=lookuphost T=remote_smtp defer "
              "(-53): retry time not reached for any host for 'b'",
      .ret = 1, .type = EXIM_DEFER, .flags = EXIM_F_RETRY_WAIT),
    G(.name = "retry text in remote reply is not a retry wait",
      .line = "2002-12-19 16:20:23 16aiQz-0002Q5-00 == a@b R=lookuphost T=remote_smtp defer "
              "(-44): SMTP error from remote mail server after RCPT TO:<a@b>: 451 retry time "
              "not reached",
      .ret = 1, .type = EXIM_DEFER, .noflags = EXIM_F_RETRY_WAIT),
    G(.name = "cPanel hold deferral is enforced",
      .line = "2002-12-19 16:20:23 16aiQz-0002Q5-00 == a@defer.example R=enforce_mail_permissions "
              "defer (-1): \"Sender x has an outgoing mail hold.  Message will be reattempted "
              "later\"",
      .ret = 1, .type = EXIM_DEFER, .flags = EXIM_F_ENFORCED, .router = "enforce_mail_permissions"),
    G(.name = "E4 cPanel failure, enforced",
      .line = "2019-04-21 04:33:14 1hIAif-00H7J4-Lb ** b@partner.example <B@partner.example> "
              "R=enforce_mail_permissions: Domain customer.example has exceeded the max defers "
              "and failures per hour (5/5 (100%)) allowed. Message discarded.",
      .ret = 1, .type = EXIM_FAIL, .flags = EXIM_F_ENFORCED, .addr = "b@partner.example",
      .router = "enforce_mail_permissions",
      .text = "Domain customer.example has exceeded the max defers and failures per hour (5/5 "
              "(100%)) allowed. Message discarded."),
    G(.name = "E11 failure with DN",
      .line = "2017-02-15 22:59:44 [20235] 1ce4no-0002RM-TB ** x@aol.com F=<s@gmail.example> "
              "P=<s@gmail.example> R=dnslookup T=remote_smtp H=mailin-03.mx.aol.com "
              "[64.12.88.163]:25 I=[176.58.109.90]:50692 X=TLSv1:DHE-RSA-AES256-SHA:256 CV=yes "
              "DN=\"/C=US/ST=Virginia/L=Dulles/O=AOL Inc./OU=AOL Mail/CN=mx.aol.com\": SMTP error "
              "from remote mail server after RCPT TO:<x@aol.com>: 550 5.1.1 <x@aol.com>: "
              "Recipient address rejected: aol.com",
      .ret = 1, .type = EXIM_FAIL, .addr = "x@aol.com", .router = "dnslookup",
      .transport = "remote_smtp", .pid = 20235,
      .text = "SMTP error from remote mail server after RCPT TO:<x@aol.com>: 550 5.1.1 "
              "<x@aol.com>: Recipient address rejected: aol.com"),
    G(.name = "E20 4.99 ' : ' separator",
      .line = "1999-03-02 09:44:33 10HmaX-000000005vi-0000 ** userx@mxt1.test.ex R=others : "
              "lowest numbered MX record points to local host",
      .ret = 1, .type = EXIM_FAIL, .addr = "userx@mxt1.test.ex", .router = "others",
      .text = "lowest numbered MX record points to local host"),
    G(.name = "failure without router",
      .line = "2026-11-23 00:12:15 1xVHfL-0003pg-29 ** defer@example.net: retry timeout exceeded",
      .ret = 1, .type = EXIM_FAIL, .addr = "defer@example.net", .router = "",
      .text = "retry timeout exceeded"),
    G(.name = "failure T= with colon",
      .line = "2026-11-23 00:12:15 1xVHfL-0003pg-29 ** a@b <c@d> R=r T=t: SMTP error", .ret = 1,
      .type = EXIM_FAIL, .router = "r", .transport = "t", .text = "SMTP error"),

    /* ---- other message records ---- */
    G(.name = "Completed", .line = "2019-04-21 04:33:14 1hIAif-00H7J4-Lb Completed", .ret = 1,
      .type = EXIM_COMPLETED, .msgid = "1hIAif-00H7J4-Lb"),
    G(.name = "Completed QT=", .line = "2019-04-21 04:33:14 1hIAif-00H7J4-Lb Completed QT=1s",
      .ret = 1, .type = EXIM_COMPLETED),
    G(.name = "frozen by root", .line = "2019-04-21 04:33:14 1hIAif-00H7J4-Lb frozen by root",
      .ret = 1, .type = EXIM_FROZEN, .text = "root"),
    G(.name = "Frozen (delivery error message)",
      .line = "2019-04-21 04:33:14 1hIAif-00H7J4-Lb Frozen (delivery error message)", .ret = 1,
      .type = EXIM_FROZEN),
    G(.name = "unfrozen by root", .line = "2019-04-21 04:33:14 1hIAif-00H7J4-Lb unfrozen by root",
      .ret = 1, .type = EXIM_UNFROZEN, .text = "root"),
    G(.name = "Unfrozen by auto-thaw",
      .line = "2019-04-21 04:33:14 1hIAif-00H7J4-Lb Unfrozen by auto-thaw", .ret = 1,
      .type = EXIM_UNFROZEN, .text = "auto-thaw"),
    G(.name = "E3 Sender identification",
      .line = "2019-04-21 04:33:14 1hIAif-00H7J4-Lb Sender identification U=acct4 "
              "D=customer.example S=user@customer.example",
      .ret = 1, .type = EXIM_MSG_OTHER,
      .text = "Sender identification U=acct4 D=customer.example S=user@customer.example"),
    G(.name = "E12 DROP in ACL with id",
      .line = "2016-03-21 04:07:49 [25874] 1ahr79-0006jK-G9 SMTP connection from "
              "(voyeur.webair.com) [174.137.147.204]:44884 I=[172.89.0.6]:25 closed by DROP in ACL",
      .ret = 1, .type = EXIM_MSG_OTHER, .pid = 25874),
    G(.name = "rejected after DATA carries an id",
      .line = "2016-03-21 04:07:49 1ahr79-0006jK-G9 H=(x) [1.2.3.4]:5 F=<a@b> rejected after "
              "DATA: spam",
      .ret = 1, .type = EXIM_MSG_OTHER),

    /* ---- cwd= ---- */
    G(.name = "E2 delivery re-exec",
      .line = "2019-04-21 04:33:14 cwd=/var/spool/exim 3 args: /usr/sbin/exim -Mc 1hIAif-00H7J4-Lb",
      .ret = 1, .type = EXIM_CWD, .noflags = EXIM_F_CWD_SUBMISSION, .cwd = "/var/spool/exim",
      .argc = 3, .args = "/usr/sbin/exim -Mc 1hIAif-00H7J4-Lb"),
    G(.name = "E5 PHP sendmail -t -i",
      .line = "2003-06-27 14:06:18 cwd=/home/usersite/public_html/forums 3 args: "
              "/usr/sbin/sendmail -t -i",
      .ret = 1, .type = EXIM_CWD, .flags = EXIM_F_CWD_SUBMISSION,
      .cwd = "/home/usersite/public_html/forums", .argc = 3, .args = "/usr/sbin/sendmail -t -i"),
    G(.name = "E6 -Mrm",
      .line = "2015-10-26 21:50:31 cwd=/usr/local/cpanel/whostmgr/docroot 4 args: /usr/sbin/exim "
              "-v -Mrm 1ZqoiG-00047M-Tz",
      .ret = 1, .type = EXIM_CWD, .noflags = EXIM_F_CWD_SUBMISSION, .argc = 4),
    G(.name = "E6 daemon",
      .line = "2015-10-26 22:01:30 cwd=/usr/local/cpanel/whostmgr/docroot 5 args: /usr/sbin/exim "
              "-bd -q1h -oP /var/spool/exim/exim-daemon.pid",
      .ret = 1, .type = EXIM_CWD, .noflags = EXIM_F_CWD_SUBMISSION, .argc = 5),
    G(.name = "E7 -bpc", .line = "2019-09-20 14:18:00 cwd=/root 2 args: exim -bpc", .ret = 1,
      .type = EXIM_CWD, .noflags = EXIM_F_CWD_SUBMISSION, .cwd = "/root", .argc = 2,
      .args = "exim -bpc"),
    G(.name = "PHP with -f",
      .line = "2019-09-20 14:18:00 [77] cwd=/home/u/public_html 4 args: /usr/sbin/sendmail -t -i "
              "-fuser@domain",
      .ret = 1, .type = EXIM_CWD, .flags = EXIM_F_CWD_SUBMISSION, .pid = 77, .argc = 4),
    G(.name = "plain recipients",
      .line = "2019-09-20 14:18:00 cwd=/home/u 4 args: sendmail -f a@b rcpt@example.net", .ret = 1,
      .type = EXIM_CWD, .flags = EXIM_F_CWD_SUBMISSION),
    G(.name = "-oi with recipient",
      .line = "2019-09-20 14:18:00 cwd=/home/u 3 args: sendmail -oi r@x", .ret = 1,
      .type = EXIM_CWD, .flags = EXIM_F_CWD_SUBMISSION),
    G(.name = "-bs", .line = "2019-09-20 14:18:00 cwd=/home/u 2 args: sendmail -bs", .ret = 1,
      .type = EXIM_CWD, .flags = EXIM_F_CWD_SUBMISSION),
    G(.name = "bounce generation -f <> -E",
      .line = "2019-09-20 14:18:00 cwd=/var/spool/exim 7 args: /usr/sbin/exim -t -oem -oi -f <> "
              "-E1hIAif-00H7J4-Lb",
      .ret = 1, .type = EXIM_CWD, .noflags = EXIM_F_CWD_SUBMISSION, .argc = 7),
    G(.name = "queue runner -q", .line = "2019-09-20 14:18:00 cwd=/ 2 args: /usr/sbin/exim -qG",
      .ret = 1, .type = EXIM_CWD, .noflags = EXIM_F_CWD_SUBMISSION),
    G(.name = "freeze -Mf",
      .line = "2019-09-20 14:18:00 cwd=/ 3 args: /usr/sbin/exim -Mf 1hIAif-00H7J4-Lb", .ret = 1,
      .type = EXIM_CWD, .noflags = EXIM_F_CWD_SUBMISSION),
    G(.name = "-bV / -bP are not submissions",
      .line = "2019-09-20 14:18:00 cwd=/ 3 args: /usr/sbin/exim -bP x", .ret = 1, .type = EXIM_CWD,
      .noflags = EXIM_F_CWD_SUBMISSION),
    G(.name = "cwd with spaces and 'args:' in dir; last wins",
      .line = "2019-09-20 14:18:00 cwd=/home/u/a 9 args: b 3 args: sendmail -t -i", .ret = 1,
      .type = EXIM_CWD, .flags = EXIM_F_CWD_SUBMISSION | EXIM_F_CWD_MULTI,
      .cwd = "/home/u/a 9 args: b", .argc = 3, .args = "sendmail -t -i"),
    G(.name = "cwd (failed)", .line = "2019-09-20 14:18:00 cwd= (failed) 2 args: exim -bpc",
      .ret = 1, .type = EXIM_CWD, .cwd = " (failed)", .argc = 2),
    G(.name = "9.1 forged cwd joined record",
      .line = "2026-11-23 00:11:51 [14662] cwd=/home/acct/x\n2026-11-23 00:00:00 [4242] "
              "1xVHer-0003ns-2T <= victim@example.com H=(pc) [192.0.2.7]:5555 P=esmtpsa "
              "A=dovecot_login:victim@example.com S=999 for z@example.net 8 args: exim -C "
              "<config> -odq -f attacker@example.org -i rcpt@example.net",
      .ret = 1, .type = EXIM_CWD, .flags = EXIM_F_CWD_FORGED | EXIM_F_CWD_SUBMISSION, .argc = 8,
      .pid = 14662, .auth = "", .set_id = "",
      .args = "exim -C <config> -odq -f attacker@example.org -i rcpt@example.net"),

    /* ---- records without an id ---- */
    G(.name = "E8 auth failure pre-4.99",
      .line = "2014-01-12 02:07:48 dovecot_login authenticator failed for "
              "h1832461.stratoserver.net (User) [85.214.85.40]: 535 Incorrect authentication "
              "data (set_id=scanner)",
      .ret = 1, .type = EXIM_AUTH_FAIL, .auth = "dovecot_login", .set_id = "scanner",
      .host_ip = "85.214.85.40"),
    G(.name = "E9 auth failure ms pid port I=",
      .line = "2020-05-12 17:31:41.630 [23229] auth_login authenticator failed for (User) "
              "[185.143.75.81]:28556 I=[192.168.56.110]:25: 535 Incorrect authentication data "
              "(set_id=dropped@kiev.ua)",
      .ret = 1, .type = EXIM_AUTH_FAIL, .auth = "auth_login", .set_id = "dropped@kiev.ua",
      .host_ip = "185.143.75.81", .pid = 23229, .ts_ms = INT64_C(1589304701630)),
    G(.name = "E10 auth failure 4.99 H= U=",
      .line = "1999-03-02 09:44:33 plain authenticator failed for H=(test.host) [10.0.0.1] "
              "U=CALLER: 535 Incorrect authentication data",
      .ret = 1, .type = EXIM_AUTH_FAIL, .auth = "plain", .set_id = "", .host_ip = "10.0.0.1"),
    G(.name = "auth failure set_id with spaces and parens",
      .line = "1999-03-02 09:44:33 dovecot_plain authenticator failed for (x) [10.0.0.1]:1: 535 "
              "Incorrect authentication data (set_id=a b (set_id=c))",
      .ret = 1, .type = EXIM_AUTH_FAIL, .set_id = "a b (set_id=c)"),
    G(.name = "reject RCPT",
      .line = "2026-11-23 00:12:15 H=(x) [192.0.2.1]:4455 F=<a@b> rejected RCPT <c@d>: relay "
              "not permitted",
      .ret = 1, .type = EXIM_REJECT, .host_ip = "192.0.2.1", .sender = "a@b", .addr = "c@d",
      .text = "rejected RCPT <c@d>: relay not permitted"),
    G(.name = "reject with A= and suspension",
      .line = "2026-11-23 00:12:15 H=(x) [192.0.2.1]:4455 X=TLS1.3:x:256 CV=no F=<a@b> "
              "A=dovecot_login:a@b rejected RCPT <c@d>: Outgoing mail from \"a@b\" has been "
              "suspended.",
      .ret = 1, .type = EXIM_REJECT, .auth = "dovecot_login", .set_id = "a@b", .addr = "c@d"),
    G(.name = "temporarily rejected",
      .line = "2026-11-23 00:12:15 H=mx.example [192.0.2.1]:4455 F=<> temporarily rejected RCPT "
              "<c@d>: greylisted",
      .ret = 1, .type = EXIM_REJECT, .sender = "", .addr = "c@d"),
    G(.name = "F= rejected without host",
      .line = "2026-11-23 00:12:15 F=<a@b> rejected by non-SMTP ACL: nope", .ret = 1,
      .type = EXIM_REJECT, .sender = "a@b"),
    G(.name = "H= warning is other",
      .line = "2026-11-23 00:12:15 H=(x) [192.0.2.1]:4455 Warning: \"SpamAssassin ...\"", .ret = 0,
      .type = EXIM_OTHER),
    G(.name = "connection open",
      .line = "2026-11-23 00:12:15 SMTP connection from [192.0.2.1]:4455 (TCP/IP connection "
              "count = 3)",
      .ret = 1, .type = EXIM_CONNECTION, .host_ip = "192.0.2.1"),
    G(.name = "connection closed by QUIT",
      .line = "2026-11-23 00:12:15 SMTP connection from mx.example (helo) [2001:db8::9]:4455 "
              "I=[2001:db8::1]:25 D=1s closed by QUIT",
      .ret = 1, .type = EXIM_CONNECTION, .host_ip = "2001:db8::9"),
    G(.name = "E13 no MAIL",
      .line = "2016-03-21 06:38:05 [5718] no MAIL in SMTP connection from www3005.sakura.ne.jp "
              "[49.212.207.15]:28890 I=[172.89.0.6]:25 D=21s C=EHLO,STARTTLS",
      .ret = 1, .type = EXIM_CONNECTION, .host_ip = "49.212.207.15", .pid = 5718),
    G(.name = "E16 queue run with zone",
      .line = "2003-04-25 11:17:07 +0100 Start queue run: pid=12762", .ret = 1,
      .type = EXIM_QUEUE_RUN, .ts_ms = INT64_C(1051265827000)),
    G(.name = "End queue run", .line = "2003-04-25 11:17:07 End queue run: pid=12762", .ret = 1,
      .type = EXIM_QUEUE_RUN),
    G(.name = "cPanel SMTP connection identification is other",
      .line = "2003-04-25 11:17:07 SMTP connection identification H=localhost A=127.0.0.1 "
              "P=38822 U=acct ID=1001 S=acct B=identify_local_connection",
      .ret = 0, .type = EXIM_OTHER, .host_ip = ""),
    G(.name = "daemon started is other",
      .line = "2003-04-25 11:17:07 exim 4.99.1 daemon started: pid=1, -q1h, listening for SMTP",
      .ret = 0, .type = EXIM_OTHER, .pid = 0),
    G(.name = "environment warning is other",
      .line = "2026-11-23 00:11:51 +0000 Warning: purging the environment.\n Suggested action: "
              "use keep_environment.",
      .ret = 0, .type = EXIM_OTHER),
    G(.name = "overflow marker",
      .line = "2026-11-23 00:11:51 **** log string overflowed log buffer ****", .ret = 0,
      .type = EXIM_OTHER, .flags = EXIM_F_OVERFLOW),
    G(.name = "overflow marker on a cut cwd (4.98+)",
      .line = "2026-11-23 00:11:51 cwd=/home/x 700 args: sendmail a b c**** log string "
              "overflowed log buffer ****",
      .ret = 1, .type = EXIM_CWD, .flags = EXIM_F_OVERFLOW),
    G(.name = "overflow marker on a cut arrival",
      .line = "2026-11-23 00:11:51 1xVHfL-0003pg-29 <= a@b U=x P=local**** log string "
              "overflowed log buffer ****",
      .ret = 0, .type = EXIM_OTHER, .flags = EXIM_F_OVERFLOW),
    G(.name = "argument list tail ...", .line = "2026-11-23 00:11:51 ... more args", .ret = 0,
      .type = EXIM_OTHER),
};

struct bad {
    const char *name;
    const char *line;
    int ret;
};

static const struct bad bad[] = {
    { "arrival without S=", "2026-11-23 00:12:15 1xVHfL-0003pg-29 <= a@b U=u P=local", -EBADMSG },
    { "arrival with S=x", "2026-11-23 00:12:15 1xVHfL-0003pg-29 <= a@b U=u P=local S=x", -EBADMSG },
    { "arrival with empty S=", "2026-11-23 00:12:15 1xVHfL-0003pg-29 <= a@b U=u P=local S=",
      -EBADMSG },
    { "arrival without sender", "2026-11-23 00:12:15 1xVHfL-0003pg-29 <= ", -EBADMSG },
    { "arrival with open sender quote",
      "2026-11-23 00:12:15 1xVHfL-0003pg-29 <= \"x U=u P=local S=1", -EBADMSG },
    { "arrival with unterminated subject",
      "2026-11-23 00:12:15 1xVHfL-0003pg-29 <= a@b U=u P=local S=1 T=\"abc", -EBADMSG },
    { "arrival H= without address",
      "2026-11-23 00:12:15 1xVHfL-0003pg-29 <= a@b H=host.example P=esmtp S=1", -EBADMSG },
    { "arrival without id", "2026-11-23 00:12:15 <= a@b U=u P=local S=1", -EBADMSG },
    { "arrival with bad id (underscore)",
      "2026-11-23 00:12:15 1xVHfL-0003pg-2_ <= a@b U=u P=local S=1", -EBADMSG },
    { "arrival with bad id (length)",
      "2026-11-23 00:12:15 1xVHfL-0003pgg-29 <= a@b U=u P=local S=1", -EBADMSG },
    { "delivery with bad id", "2026-11-23 00:12:15 1xVHfL-000000003pg-29 => a@b R=r T=t",
      -EBADMSG },
    { "delivery without address", "2026-11-23 00:12:15 1xVHfL-0003pg-29 => ", -EBADMSG },
    { "defer without address", "2026-11-23 00:12:15 1xVHfL-0003pg-29 ==", -EBADMSG },
    { "bad month", "2026-13-23 00:12:15 1xVHfL-0003pg-29 Completed", -EBADMSG },
    { "bad day", "2026-02-30 00:12:15 1xVHfL-0003pg-29 Completed", -EBADMSG },
    { "not a leap year", "2025-02-29 00:12:15 Start queue run: pid=1", -EBADMSG },
    { "bad hour", "2026-11-23 24:12:15 1xVHfL-0003pg-29 Completed", -EBADMSG },
    { "letters in date: not an entry", "2026-1a-23 00:12:15 1xVHfL-0003pg-29 Completed", 0 },
    { "no prefix is not an error", "hello world", 0 },
    { "empty: not an entry", "", 0 },
    { "time glued to text", "2026-11-23 00:12:15x Completed", -EBADMSG },
    { "cwd without args", "2026-11-23 00:12:15 cwd=/home/x", -EBADMSG },
    { "cwd with huge argc", "2026-11-23 00:12:15 cwd=/x 99999999999 args: a", -EBADMSG },
    { "auth failure without address",
      "2026-11-23 00:12:15 dovecot_login authenticator failed for (x): 535 nope", -EBADMSG },
};

static void
check_str(const char *name, const char *field, struct fg_str got, const char *want)
{
    if (!want)
        return;
    size_t n = strlen(want);
    ck_assert_msg(got.len == n && (n == 0 || memcmp(got.p, want, n) == 0),
                  "%s: %s is '%.*s', want '%s'", name, field, (int)got.len, got.p ? got.p : "",
                  want);
}

START_TEST(test_good)
{
    const struct good *g = &good[_i];
    struct exim_event ev;
    int r = eximlog_parse(g->line, strlen(g->line), &ev);
    ck_assert_msg(r == g->ret, "%s: returned %d, want %d", g->name, r, g->ret);
    ck_assert_msg(ev.type == g->type, "%s: type %s, want %s", g->name, eximlog_type_name(ev.type),
                  eximlog_type_name(g->type));
    ck_assert_msg((ev.flags & g->flags) == g->flags, "%s: flags 0x%x lack 0x%x", g->name, ev.flags,
                  g->flags);
    ck_assert_msg((ev.flags & g->noflags) == 0, "%s: flags 0x%x have 0x%x", g->name, ev.flags,
                  ev.flags & g->noflags);
    check_str(g->name, "msgid", ev.msgid, g->msgid);
    check_str(g->name, "sender", ev.sender, g->sender);
    check_str(g->name, "host_ip", ev.host_ip, g->host_ip);
    check_str(g->name, "host", ev.host, g->host);
    check_str(g->name, "ident", ev.ident, g->ident);
    check_str(g->name, "proto", ev.proto, g->proto);
    check_str(g->name, "auth", ev.auth, g->auth);
    check_str(g->name, "set_id", ev.set_id, g->set_id);
    check_str(g->name, "subject", ev.subject, g->subject);
    check_str(g->name, "addr", ev.addr, g->addr);
    check_str(g->name, "router", ev.router, g->router);
    check_str(g->name, "transport", ev.transport, g->transport);
    check_str(g->name, "text", ev.text, g->text);
    check_str(g->name, "cwd", ev.cwd, g->cwd);
    check_str(g->name, "args", ev.args, g->args);
    if (g->size >= 0)
        ck_assert_msg(ev.size == (uint64_t)g->size, "%s: size %llu, want %lld", g->name,
                      (unsigned long long)ev.size, (long long)g->size);
    if (g->nrcpt >= 0)
        ck_assert_msg(ev.nrcpt == (uint32_t)g->nrcpt, "%s: nrcpt %u, want %d", g->name, ev.nrcpt,
                      g->nrcpt);
    if (g->argc >= 0)
        ck_assert_msg(ev.argc == (uint32_t)g->argc, "%s: argc %u, want %d", g->name, ev.argc,
                      g->argc);
    if (g->ts_ms)
        ck_assert_msg(ev.ts_ms == g->ts_ms, "%s: ts_ms %lld, want %lld", g->name,
                      (long long)ev.ts_ms, (long long)g->ts_ms);
    if (g->pid == 0)
        ck_assert_msg(!ev.has_pid, "%s: unexpected pid", g->name);
    else if (g->pid > 0)
        ck_assert_msg(ev.has_pid && ev.pid == (uint32_t)g->pid, "%s: pid %u, want %d", g->name,
                      ev.pid, g->pid);
    if (r >= 0)
        ck_assert_msg(ev.time.len == 19 && ev.time.p == g->line, "%s: time slice", g->name);
}
END_TEST

START_TEST(test_bad)
{
    const struct bad *b = &bad[_i];
    struct exim_event ev;
    int r = eximlog_parse(b->line, strlen(b->line), &ev);
    ck_assert_msg(r == b->ret, "%s: returned %d, want %d", b->name, r, b->ret);
}
END_TEST

/* ---- joiner ---------------------------------------------------------------------- */

#define JOIN_MAX 64

struct joined {
    size_t n;
    char text[JOIN_MAX][EXIMLOG_RECORD_MAX + 1];
    size_t len[JOIN_MAX];
    uint64_t start[JOIN_MAX], end[JOIN_MAX];
    uint32_t flags[JOIN_MAX];
    bool truncated[JOIN_MAX];
};

static void
joined_add(struct joined *out, const struct eximlog_record *rec)
{
    ck_assert_uint_lt(out->n, JOIN_MAX);
    memcpy(out->text[out->n], rec->text, rec->len);
    out->text[out->n][rec->len] = '\0';
    out->len[out->n] = rec->len;
    out->start[out->n] = rec->start;
    out->end[out->n] = rec->end;
    out->flags[out->n] = rec->flags;
    out->truncated[out->n] = rec->truncated;
    out->n++;
}

/* Push the lines of @text (each ending in '\n'; a final piece without one is pushed too). */
static void
join_text(struct eximlog_joiner *j, const char *text, size_t len, struct joined *out)
{
    const char *p = text, *end = text + len;
    struct eximlog_record rec;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        uint64_t s = (uint64_t)(p - text);
        uint64_t e = (uint64_t)((nl ? nl + 1 : end) - text);
        if (eximlog_joiner_push(j, p, (size_t)(le - p), s, e, &rec) == 1)
            joined_add(out, &rec);
        p = nl ? nl + 1 : end;
    }
}

static struct eximlog_joiner jo;
static struct joined jd;

static void
join_all(const char *text, bool force)
{
    struct eximlog_record rec;
    eximlog_joiner_init(&jo);
    memset(&jd, 0, sizeof(jd));
    join_text(&jo, text, strlen(text), &jd);
    if (eximlog_joiner_flush(&jo, force, &rec) == 1)
        joined_add(&jd, &rec);
}

START_TEST(test_join_continuation)
{
    join_all("2026-11-23 00:11:51 Warning: purging the environment.\n"
             " Suggested action: use keep_environment.\n"
             "2026-11-23 00:11:52 Start queue run: pid=1\n"
             "\tTAB continued\n",
             false);
    ck_assert_uint_eq(jd.n, 2);
    ck_assert_str_eq(jd.text[0], "2026-11-23 00:11:51 Warning: purging the environment.\n"
                                 " Suggested action: use keep_environment.");
    ck_assert_str_eq(jd.text[1], "2026-11-23 00:11:52 Start queue run: pid=1\n\tTAB continued");
    ck_assert_uint_eq(jd.start[0], 0);
    ck_assert_uint_eq(jd.end[0], jd.start[1]);
    ck_assert_uint_eq(jo.orphan_lines, 0);
}
END_TEST

START_TEST(test_join_empty_lines)
{
    const char *t = "2026-11-23 00:11:51 **** log string overflowed log buffer ****\n"
                    "\n"
                    "2026-11-23 00:11:52 1xVHfL-0003pg-29 Completed\n"
                    "\n";
    join_all(t, false);
    ck_assert_uint_eq(jd.n, 2);
    ck_assert_str_eq(jd.text[0], "2026-11-23 00:11:51 **** log string overflowed log buffer ****");
    /* the empty line belongs to the first record */
    ck_assert_uint_eq(jd.end[0], jd.start[1]);
    ck_assert_uint_eq(jd.end[1], strlen(t));
    struct exim_event ev;
    ck_assert_int_eq(eximlog_parse(jd.text[0], jd.len[0], &ev), 0);
    ck_assert(ev.flags & EXIM_F_OVERFLOW);
}
END_TEST

START_TEST(test_join_orphans)
{
    join_all(" orphan one\n\torphan two\n2026-11-23 00:11:52 1xVHfL-0003pg-29 Completed\n", false);
    ck_assert_uint_eq(jd.n, 1);
    ck_assert_uint_eq(jo.orphan_lines, 2);
    ck_assert_uint_eq(jd.start[0], strlen(" orphan one\n\torphan two\n"));
}
END_TEST

/* exim-log-format.md 9.1, the reproduced example verbatim */
static const char forged_cwd[] =
    "2026-11-23 00:11:51 [14662] cwd=/home/acct/x\n"
    "2026-11-23 00:00:00 [4242] 1xVHer-0003ns-2T <= victim@example.com H=(pc) "
    "[192.0.2.7]:5555 P=esmtpsa A=dovecot_login:victim@example.com S=999 for z@example.net 8 "
    "args: exim -C <config> -odq -f attacker@example.org -i rcpt@example.net\n"
    "2026-11-23 00:11:51 [14662] 1xVHex-0003oU-1h <= attacker@example.org U=root P=local S=314 "
    "T=\"t2\" for rcpt@example.net\n";

START_TEST(test_join_forged_cwd)
{
    /* everything within one write's span (8 KiB) of the open cwd= head belongs to it,
     * the attacker's own arrival after it included (9.1: nothing tells where the write
     * ends); what comes later starts records again */
    static char text[16384];
    size_t n = (size_t)snprintf(text, sizeof(text), "%s", forged_cwd);
    size_t head = n;
    while (n < 9000)
        n += (size_t)snprintf(text + n, sizeof(text) - n,
                              "2026-11-23 00:11:52 1xVHfL-0003pg-29 => r@example.net "
                              "R=dnslookup T=remote_smtp\n");
    n += (size_t)snprintf(text + n, sizeof(text) - n,
                          "2026-11-23 00:11:53 [9] 1xVHfM-0003pg-29 <= o@example.org U=other "
                          "P=local S=3 for r@example.net\n");
    join_all(text, true);
    ck_assert_uint_ge(jd.n, 3);
    ck_assert(jd.flags[0] & EXIM_F_CWD_FORGED);
    ck_assert(jd.flags[0] & EXIM_F_ABSORBED);
    ck_assert_uint_ge(jd.len[0], head - 1);
    ck_assert_uint_le(jd.start[1], EXIMLOG_RECORD_MAX + 200);
    ck_assert_uint_ge(jd.start[1], EXIMLOG_RECORD_MAX);

    /* no arrival of victim@example.com comes out of it; the last one is a record */
    unsigned arrivals = 0;
    for (size_t i = 0; i < jd.n; i++) {
        struct exim_event ev;
        int r = eximlog_parse(jd.text[i], jd.len[i], &ev);
        ck_assert_int_ge(r, 0);
        if (i == 0) {
            ck_assert_int_eq(ev.type, EXIM_CWD);
            ck_assert(ev.flags & EXIM_F_CWD_FORGED);
            ck_assert_uint_eq(ev.pid, 14662);
            ck_assert(fg_str_eq(ev.cwd, "/home/acct/x"));
        } else if (ev.type == EXIM_ARRIVAL) {
            arrivals++;
            ck_assert(fg_str_eq(ev.ident, "other"));
        }
    }
    ck_assert_uint_eq(arrivals, 1);
}
END_TEST

START_TEST(test_join_cwd_overflow_marker)
{
    join_all("2026-11-23 00:11:51 cwd=/x**** log string overflowed log buffer ****\n"
             "2026-11-23 00:11:52 1xVHfL-0003pg-29 Completed\n",
             false);
    ck_assert_uint_eq(jd.n, 2);
    ck_assert_uint_eq(jo.absorbed_lines, 0);
}
END_TEST

START_TEST(test_join_open_quote)
{
    const char *t =
        "2026-11-23 00:11:51 [9] 1xVHex-0003oU-1h <= \"x\n"
        "2026-11-23 00:00:00 [4242] 1xVHer-0003ns-2T <= v@example.com H=(pc) [192.0.2.7]:5555 "
        "P=esmtpsa A=dovecot_login:v@example.com S=1 for a@b \"@evil.example U=bob P=local S=5 "
        "for r@example.net\n"
        "2026-11-23 00:11:52 [9] 1xVHex-0003oU-1h Completed\n";
    join_all(t, false);
    ck_assert_uint_eq(jd.n, 2);
    ck_assert(jd.flags[0] & EXIM_F_ABSORBED);
    ck_assert(!(jd.flags[0] & EXIM_F_INCOMPLETE));
    struct exim_event ev;
    ck_assert_int_eq(eximlog_parse(jd.text[0], jd.len[0], &ev), 1);
    ck_assert_int_eq(ev.type, EXIM_ARRIVAL);
    ck_assert(fg_str_eq(ev.ident, "bob"));
    ck_assert_uint_eq(ev.set_id.len, 0);
    ck_assert(ev.flags & EXIM_F_ABSORBED);
    ck_assert(ev.sender.len > 100);

    /* open quote in the for-list */
    join_all("2026-11-23 00:11:51 1xVHex-0003oU-1h <= a@b U=bob P=local S=5 for \"r\n"
             "2026-11-23 00:00:00 1xVHer-0003ns-2T <= fake@x U=root P=local S=1 for q\"@x\n",
             false);
    ck_assert_uint_eq(jd.n, 1);
    ck_assert_int_eq(eximlog_parse(jd.text[0], jd.len[0], &ev), 1);
    ck_assert(fg_str_eq(ev.ident, "bob"));
    ck_assert_uint_eq(ev.nrcpt, 1);

    /* a subject with escaped quotes does not open anything */
    join_all("2026-11-23 00:11:51 1xVHex-0003oU-1h <= a@b U=bob P=local S=5 T=\"a \\\" b\"\n"
             "2026-11-23 00:11:52 1xVHex-0003oU-1h Completed\n",
             false);
    ck_assert_uint_eq(jd.n, 2);
}
END_TEST

START_TEST(test_join_flush)
{
    struct eximlog_record rec;
    eximlog_joiner_init(&jo);
    memset(&jd, 0, sizeof(jd));
    const char *l1 = "2026-11-23 00:11:51 [14662] cwd=/home/acct/x";
    ck_assert_int_eq(eximlog_joiner_push(&jo, l1, strlen(l1), 100, 100 + strlen(l1) + 1, &rec), 0);
    /* open syntax: not handed out without force */
    ck_assert_int_eq(eximlog_joiner_flush(&jo, false, &rec), 0);
    ck_assert_uint_eq(eximlog_joiner_resume(&jo, 7), 100);
    ck_assert_int_eq(eximlog_joiner_flush(&jo, true, &rec), 1);
    ck_assert(rec.flags & EXIM_F_INCOMPLETE);
    ck_assert_uint_eq(rec.start, 100);
    ck_assert_uint_eq(rec.end, 100 + strlen(l1) + 1);
    struct exim_event ev;
    ck_assert_int_eq(eximlog_parse(rec.text, rec.len, &ev), -EBADMSG);
    /* nothing pending any more */
    ck_assert_int_eq(eximlog_joiner_flush(&jo, true, &rec), 0);
    ck_assert_uint_eq(eximlog_joiner_resume(&jo, 7), 7);

    /* a closed record flushes without force; later continuations are orphans */
    const char *l2 = "2026-11-23 00:11:52 1xVHfL-0003pg-29 Completed";
    ck_assert_int_eq(eximlog_joiner_push(&jo, l2, strlen(l2), 200, 247, &rec), 0);
    ck_assert_uint_eq(eximlog_joiner_resume(&jo, 150), 200);
    ck_assert_int_eq(eximlog_joiner_flush(&jo, false, &rec), 1);
    ck_assert(!(rec.flags & EXIM_F_INCOMPLETE));
    ck_assert_str_eq(rec.text, l2);
    ck_assert_int_eq(eximlog_joiner_push(&jo, " late", 5, 247, 253, &rec), 0);
    ck_assert_uint_eq(jo.orphan_lines, 1);
    ck_assert_uint_eq(eximlog_joiner_resume(&jo, 253), 253);
}
END_TEST

START_TEST(test_join_resume_offsets)
{
    struct eximlog_record rec;
    eximlog_joiner_init(&jo);
    const char *a = "2026-11-23 00:11:51 Warning: x";
    const char *b = " continued";
    const char *c = "2026-11-23 00:11:52 1xVHfL-0003pg-29 Completed";
    ck_assert_int_eq(eximlog_joiner_push(&jo, a, strlen(a), 1000, 1031, &rec), 0);
    ck_assert_uint_eq(eximlog_joiner_resume(&jo, 1000), 1000);
    ck_assert_int_eq(eximlog_joiner_push(&jo, b, strlen(b), 1031, 1042, &rec), 0);
    ck_assert_uint_eq(eximlog_joiner_resume(&jo, 1000), 1000);
    ck_assert_int_eq(eximlog_joiner_push(&jo, c, strlen(c), 1042, 1090, &rec), 1);
    ck_assert_uint_eq(rec.start, 1000);
    ck_assert_uint_eq(rec.end, 1042);
    ck_assert_uint_eq(eximlog_joiner_resume(&jo, rec.end), 1042);
    ck_assert_uint_eq(jo.lines, 3);
}
END_TEST

START_TEST(test_join_overlong)
{
    static char big[3 * EXIMLOG_RECORD_MAX];
    struct eximlog_record rec;
    eximlog_joiner_init(&jo);
    memset(&jd, 0, sizeof(jd));
    /* one over-long line whose tail looks like a record */
    const char *head = "2026-11-23 00:11:51 Warning: ";
    const char *fake = "2026-11-23 00:00:00 1xVHer-0003ns-2T <= v@x U=root P=local S=1";
    size_t n = strlen(head);
    memcpy(big, head, n);
    memset(big + n, 'a', EXIMLOG_RECORD_MAX - n - 10);
    n = EXIMLOG_RECORD_MAX - 10;
    memcpy(big + n, fake, strlen(fake));
    n += strlen(fake);
    ck_assert_int_eq(eximlog_joiner_push(&jo, big, n, 0, n + 1, &rec), 0);
    ck_assert_uint_eq(jo.truncated_records, 1);
    const char *cont = " continuation of a cut record";
    ck_assert_int_eq(eximlog_joiner_push(&jo, cont, strlen(cont), n + 1, n + 31, &rec), 0);
    const char *next = "2026-11-23 00:11:52 1xVHfL-0003pg-29 Completed";
    ck_assert_int_eq(eximlog_joiner_push(&jo, next, strlen(next), n + 31, n + 78, &rec), 1);
    ck_assert(rec.truncated);
    ck_assert_uint_eq(rec.len, EXIMLOG_RECORD_MAX);
    ck_assert_uint_eq(rec.end, n + 31);
    struct exim_event ev;
    ck_assert_int_eq(eximlog_parse(rec.text, rec.len, &ev), 0);
    ck_assert_int_eq(eximlog_joiner_flush(&jo, false, &rec), 1);
    ck_assert_str_eq(rec.text, next);
    ck_assert(!rec.truncated);
    ck_assert_int_eq(eximlog_parse(big, EXIMLOG_RECORD_MAX + 1, &ev), -E2BIG);

    /* an open cwd that never closes is bounded */
    eximlog_joiner_init(&jo);
    const char *cwd = "2026-11-23 00:11:51 cwd=/x";
    ck_assert_int_eq(eximlog_joiner_push(&jo, cwd, strlen(cwd), 0, 27, &rec), 0);
    memset(big, 'b', 1000);
    memcpy(big, "2026-11-23 00:11:51 1xVHfL-0003pg-29 Completed", 46);
    uint64_t off = 27;
    /* 8 lines fit in the bound, the 9th is cut; an entry is never longer than 8 KiB, so
     * the lines after that are entries of their own again */
    for (int i = 0; i < 9; i++, off += 1001)
        ck_assert_int_eq(eximlog_joiner_push(&jo, big, 1000, off, off + 1001, &rec), 0);
    ck_assert_uint_eq(jo.truncated_records, 1);
    ck_assert_uint_eq(jo.absorbed_lines, 9);
    ck_assert_int_eq(eximlog_joiner_push(&jo, next, strlen(next), off, off + 47, &rec), 1);
    ck_assert(rec.truncated);
    ck_assert(rec.flags & EXIM_F_CWD_FORGED);
    ck_assert(!(rec.flags & EXIM_F_INCOMPLETE) || rec.truncated);
    ck_assert_uint_eq(rec.len, EXIMLOG_RECORD_MAX);
    ck_assert_uint_eq(rec.start, 0);
    ck_assert_uint_eq(rec.end, off);
    ck_assert_int_eq(eximlog_parse(rec.text, rec.len, &ev), -EBADMSG);
}
END_TEST

START_TEST(test_join_overlong_marker)
{
    struct eximlog_record rec;
    eximlog_joiner_init(&jo);
    const char *a = "2026-11-23 00:11:52 1xVHfL-0003pg-29 Completed";
    ck_assert_int_eq(eximlog_joiner_push(&jo, a, strlen(a), 0, 47, &rec), 0);
    ck_assert_int_eq(eximlog_joiner_overlong(&jo, 47, 20000, &rec), 1);
    ck_assert_str_eq(rec.text, a);
    ck_assert_uint_eq(jo.truncated_records, 1);
    ck_assert_int_eq(eximlog_joiner_push(&jo, " tail", 5, 20000, 20006, &rec), 0);
    ck_assert_uint_eq(jo.orphan_lines, 1);
    ck_assert_uint_eq(eximlog_joiner_resume(&jo, 20006), 20006);
}
END_TEST

/* ---- whole logs ------------------------------------------------------------------ */

struct log_stats {
    uint64_t records, errors, foreign, types[EXIM_TYPE__MAX];
};

/* Does the record start (after NUL padding) like an Exim entry, "dddd-dd-dd dd:dd:dd"? The
 * corpus holds some text that is not Exim output (fail2ban annotations, syslog-wrapped
 * lines, one torn write, SOURCES.md lists them); the parser returns them as EXIM_OTHER flagged
 * EXIM_F_FOREIGN, which the corpus test counts separately. */
static bool
log_has_exim_prefix(const char *p, size_t n)
{
    while (n > 0 && *p == '\0') {
        p++;
        n--;
    }
    static const char pat[] = "dddd-dd-dd dd:dd:dd";
    if (n < sizeof(pat) - 1)
        return false;
    for (size_t i = 0; i < sizeof(pat) - 1; i++) {
        if (pat[i] == 'd' ? (p[i] < '0' || p[i] > '9') : p[i] != pat[i])
            return false;
    }
    return true;
}

static void
log_record(const char *name, const struct eximlog_record *rec, struct log_stats *st)
{
    struct exim_event ev;
    int r = eximlog_parse(rec->text, rec->len, &ev);
    st->records++;
    if (r == 0 && (ev.flags & EXIM_F_FOREIGN)) {
        ck_assert_msg(!log_has_exim_prefix(rec->text, rec->len), "%s: foreign but date-shaped",
                      name);
        st->foreign++;
        if (st->foreign <= 3)
            fprintf(stderr, "%s: not an Exim entry at %llu: %.*s\n", name,
                    (unsigned long long)rec->start, (int)(rec->len < 100 ? rec->len : 100),
                    rec->text);
    } else if (r == -EBADMSG && !(rec->flags & EXIM_F_INCOMPLETE)) {
        st->errors++;
        fprintf(stderr, "%s: -EBADMSG at %llu: %.*s\n", name, (unsigned long long)rec->start,
                (int)rec->len, rec->text);
    } else if (r >= 0) {
        st->types[ev.type]++;
    }
}

static void
log_parse_file(const char *path, struct log_stats *st)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    static char buf[16 << 20];
    size_t n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    struct eximlog_joiner *j = malloc(sizeof(*j));
    ck_assert_ptr_nonnull(j);
    eximlog_joiner_init(j);
    struct eximlog_record rec;
    const char *p = buf, *end = buf + n;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        uint64_t s = (uint64_t)(p - buf), e = (uint64_t)((nl ? nl + 1 : end) - buf);
        size_t len = (size_t)(le - p);
        if (len > 0 && le[-1] == '\r')
            len--;
        if (eximlog_joiner_push(j, p, len, s, e, &rec) == 1)
            log_record(path, &rec, st);
        p = nl ? nl + 1 : end;
    }
    if (eximlog_joiner_flush(j, true, &rec) == 1)
        log_record(path, &rec, st);
    free(j);
}

START_TEST(test_corpus)
{
    const char *dir = FG_SHARED_DIR "/corpus";
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "corpus: %s not found, skipped\n", dir);
        return;
    }
    struct log_stats total = { 0 };
    unsigned files = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t n = strlen(de->d_name);
        if (n < 5 || strcmp(de->d_name + n - 4, ".log") != 0)
            continue;
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        struct log_stats st = { 0 };
        log_parse_file(path, &st);
        total.records += st.records;
        total.errors += st.errors;
        total.foreign += st.foreign;
        for (int t = 0; t < EXIM_TYPE__MAX; t++)
            total.types[t] += st.types[t];
        files++;
    }
    closedir(d);
    fprintf(stderr,
            "corpus: %u files, %llu records, %llu -EBADMSG, %llu not Exim entries, %llu "
            "arrivals, %llu other\n",
            files, (unsigned long long)total.records, (unsigned long long)total.errors,
            (unsigned long long)total.foreign, (unsigned long long)total.types[EXIM_ARRIVAL],
            (unsigned long long)total.types[EXIM_OTHER]);
    ck_assert_uint_eq(total.errors, 0);
}
END_TEST

START_TEST(test_generated_fixture)
{
    struct log_stats st = { 0 };
    log_parse_file(FG_FIXTURES_DIR "/eximlog/generated-mixed.log", &st);
    ck_assert_uint_eq(st.errors, 0);
    ck_assert_uint_eq(st.foreign, 0);
    ck_assert_uint_gt(st.records, 1000);
    ck_assert_uint_gt(st.types[EXIM_ARRIVAL], 50);
    ck_assert_uint_gt(st.types[EXIM_DELIVERY], 50);
    ck_assert_uint_gt(st.types[EXIM_CWD], 10);
    ck_assert_uint_gt(st.types[EXIM_AUTH_FAIL], 0);
}
END_TEST

/* ---- hostile senders: fields chosen by the sender never supply a field ---------- */

#define HID          "2026-11-23 00:12:15 1xVHfL-0003pg-29 "
#define EXIMLOG_MARK "**** log string overflowed log buffer ****"

static void
parse_ok(const char *line, struct exim_event *ev)
{
    int r = eximlog_parse(line, strlen(line), ev);
    ck_assert_msg(r == 1, "parse %d: %s", r, line);
}

START_TEST(test_hostile_subject)
{
    struct exim_event ev;
    parse_ok(HID "<= s@spam.test H=(helo) [192.0.2.7]:5555 P=esmtp S=123 "
                 "T=\"x) [10.0.0.1]:1 P=esmtpa A=dovecot_login:ceo@victim.test S=1 for a@b.c\" "
                 "for r@example.net",
             &ev);
    ck_assert(fg_str_eq(ev.host_ip, "192.0.2.7"));
    ck_assert(fg_str_eq(ev.proto, "esmtp"));
    ck_assert_uint_eq(ev.auth.len + ev.set_id.len + ev.ident.len, 0);
    ck_assert(!(ev.flags & (EXIM_F_AMBIGUOUS_HOST | EXIM_F_ANOMALOUS)));
    ck_assert_uint_eq(ev.nrcpt, 1);
}
END_TEST

START_TEST(test_hostile_msgid_and_rcpt)
{
    struct exim_event ev;
    /* an authenticated spammer's Message-ID */
    parse_ok(HID "<= s@spam.test H=(x) [192.0.2.7]:5555 P=esmtpa A=dovecot_login:s@spam.test "
                 "S=1 id=\"a) [10.0.0.1]:1 P=esmtpa A=dovecot_login:ceo@victim.test S=1\"@x "
                 "for r@example.net",
             &ev);
    ck_assert(fg_str_eq(ev.set_id, "s@spam.test"));
    ck_assert(fg_str_eq(ev.host_ip, "192.0.2.7"));
    ck_assert(!(ev.flags & (EXIM_F_AMBIGUOUS_HOST | EXIM_F_ANOMALOUS)));
    /* a quoted recipient local part */
    parse_ok(HID "<= s@spam.test H=(x) [192.0.2.7]:5555 P=esmtp S=1 for "
                 "\"x) [10.0.0.1]:1 P=esmtpa A=dovecot_login:ceo@victim.test S=1 for a\"@b.c",
             &ev);
    ck_assert_uint_eq(ev.set_id.len, 0);
    ck_assert(fg_str_eq(ev.proto, "esmtp"));
    ck_assert(!(ev.flags & (EXIM_F_AMBIGUOUS_HOST | EXIM_F_ANOMALOUS)));
    ck_assert_uint_eq(ev.nrcpt, 1);
    /* an unquoted recipient with a backslash-escaped quote (parse.c keeps quoted pairs) */
    parse_ok(HID "<= a\\\"b@x U=u P=local S=1 id=m\\\"n@x for c\\\"d@y e@f", &ev);
    ck_assert_uint_eq(ev.nrcpt, 2);
    ck_assert(fg_str_eq(ev.sender, "a\\\"b@x"));
}
END_TEST

START_TEST(test_hostile_helo_two_readings)
{
    struct exim_event ev;
    /* the HELO holds a whole reading whose for-list swallows the real peer part; the
     * real reading (ident a", from an RFC 1413 reply) holds too: Exim's own ambiguity */
    parse_ok(HID "<= s@spam.test H=(junk) [198.51.100.9]:25 P=esmtpsa "
                 "A=dovecot_login:victim@example.com S=1 for x@y\") [192.0.2.7]:5555 U=a\" "
                 "P=esmtp S=313 for \"q\"@z",
             &ev);
    ck_assert(ev.flags & EXIM_F_AMBIGUOUS_HOST);
    ck_assert(!(ev.flags & EXIM_F_ANOMALOUS));
    ck_assert(fg_str_eq(ev.host_ip, "198.51.100.9"));
    ck_assert(fg_str_eq(ev.set_id, "victim@example.com"));
    ck_assert(fg_str_eq(ev.alt.host_ip, "192.0.2.7"));
    ck_assert(fg_str_eq(ev.alt.ident, "a\""));
    ck_assert(fg_str_eq(ev.alt.proto, "esmtp"));
    ck_assert_uint_eq(ev.alt.set_id.len, 0);
}
END_TEST

/* A HELO shaped like a peer is flagged even when only one reading holds; a literal is not. */
START_TEST(test_hostile_helo_forged_flag)
{
    struct exim_event ev;
    parse_ok(HID "<= \"a b\"@example.org H=(junk) [198.51.100.9]:25 P=esmtpsa "
                 "A=dovecot_login:victim@example.com S=1 (x) [192.0.2.7]:5555 U=root P=esmtpa "
                 "A=pl:u s:e r@example.com S=313 T=\"smtp test\" for r@example.net",
             &ev);
    ck_assert(fg_str_eq(ev.host_ip, "192.0.2.7"));
    ck_assert(fg_str_eq(ev.set_id, "u s:e r@example.com"));
    ck_assert(!(ev.flags & EXIM_F_AMBIGUOUS_HOST));
    ck_assert(ev.flags & EXIM_F_HELO_FORGED);
    /* ") [ip]" without a port */
    parse_ok(HID "<= a@b H=(a) [10.0.0.1] b) [192.0.2.7]:5 P=esmtp S=1 for r@x", &ev);
    ck_assert(fg_str_eq(ev.host_ip, "192.0.2.7"));
    ck_assert(ev.flags & EXIM_F_HELO_FORGED);
    /* honest forms: an address-literal HELO, a name and a HELO, none */
    parse_ok(HID "<= a@b H=([10.21.32.43]) [192.168.8.34]:25 P=esmtp S=1 for r@x", &ev);
    ck_assert(!(ev.flags & EXIM_F_HELO_FORGED));
    parse_ok(HID "<= a@b H=mx.example (pc) [192.0.2.7]:25 P=esmtp S=1 for r@x", &ev);
    ck_assert(!(ev.flags & EXIM_F_HELO_FORGED));
    parse_ok(HID "<= a@b H=[192.0.2.7]:25 P=esmtp S=1 for r@x", &ev);
    ck_assert(!(ev.flags & EXIM_F_HELO_FORGED));
    parse_ok(HID "<= a@b U=u P=local S=1 for r@x", &ev);
    ck_assert(!(ev.flags & EXIM_F_HELO_FORGED));
}
END_TEST

START_TEST(test_hostile_anomalous_has_no_identity)
{
    struct exim_event ev;
    parse_ok(HID "<= a@b H=(x) [192.0.2.7]:1 U=root P=esmtpa A=dovecot_login:ceo@v.test S=1 "
                 "ZZ=1 for r@x",
             &ev);
    ck_assert(ev.flags & EXIM_F_ANOMALOUS);
    ck_assert_uint_eq(ev.auth.len + ev.set_id.len + ev.ident.len + ev.proto.len, 0);
    /* for-list junk after the structured part (a forged line's remnant) */
    parse_ok(HID "<= a@b U=victim P=local S=1 for r@x (junk) [1.2.3.4]:5", &ev);
    ck_assert(ev.flags & EXIM_F_ANOMALOUS);
    ck_assert_uint_eq(ev.ident.len + ev.proto.len, 0);
}
END_TEST

START_TEST(test_hostile_authfail_data)
{
    struct exim_event ev;
    parse_ok("2026-11-23 00:12:15 dovecot_login authenticator failed for (x) [192.0.2.7]:5: "
             "535 Incorrect authentication data (set_id=x) [10.0.0.1]:1: b)",
             &ev);
    ck_assert_int_eq(ev.type, EXIM_AUTH_FAIL);
    ck_assert(fg_str_eq(ev.host_ip, "192.0.2.7"));
    ck_assert(!(ev.flags & EXIM_F_AMBIGUOUS_HOST));
    ck_assert(fg_str_eq(ev.set_id, "x) [10.0.0.1]:1: b"));
    parse_ok("2026-11-23 00:12:15 H=(x) [192.0.2.7]:5 F=<a@b> rejected RCPT "
             "<q [10.0.0.1]:1 A=dovecot_login:v@x rejected @x>: no",
             &ev);
    ck_assert_int_eq(ev.type, EXIM_REJECT);
    ck_assert(fg_str_eq(ev.host_ip, "192.0.2.7"));
    ck_assert_uint_eq(ev.set_id.len, 0);
}
END_TEST

/* A quote in a field Exim does not let close it (HELO, id=, the sender as a quoted pair)
 * must not swallow the records after it. */
START_TEST(test_join_quote_in_data_fields)
{
    static const char *const firsts[] = {
        HID "<= a@b H=(x\") [192.0.2.7]:5 P=esmtp S=1 for r@x",
        HID "<= a@b H=(x\\\") [192.0.2.7]:5 P=esmtp S=1 for r@x",
        HID "<= a@b U=u P=local S=1 id=a\\\"b@x for r@x",
        HID "<= a\\\"b@x U=u P=local S=1 for r@x",
        HID "<= a@b U=u P=local S=1 for a\\\"b@x",
        HID "<= a@b H=[192.0.2.7]:5 U=id\" P=esmtp S=1 for r@x",
    };
    for (size_t i = 0; i < N_ELEMS(firsts); i++) {
        char text[1024];
        snprintf(text, sizeof(text),
                 "%s\n2026-11-23 00:12:16 1xVHfM-0003pg-29 <= o@x U=other P=local S=1 for r@x\n"
                 "2026-11-23 00:12:17 1xVHfL-0003pg-29 Completed\n",
                 firsts[i]);
        join_all(text, false);
        ck_assert_msg(jd.n == 3, "case %zu: %zu records", i, (size_t)jd.n);
        ck_assert_uint_eq(jo.absorbed_lines, 0);
        struct exim_event ev;
        ck_assert_int_eq(eximlog_parse(jd.text[0], jd.len[0], &ev), 1);
        ck_assert_msg(!(ev.flags & EXIM_F_ANOMALOUS), "case %zu anomalous", i);
    }
    /* over SMTP an address cannot hold a newline: a reading of the HELO that runs out
     * inside a for-list quote keeps nothing open, even when no reading holds */
    join_all(HID "<= a@b H=(x) [10.0.0.1]:1 P=esmtp S=1 for \"q) [192.0.2.7]:5 P=esmtp "
                 "ZZ=1 S=1 for r@x\n"
                 "2026-11-23 00:12:16 1xVHfM-0003pg-29 <= o@x U=other P=local S=1 for r@x\n",
             false);
    ck_assert_uint_eq(jd.n, 2);
    ck_assert_uint_eq(jo.absorbed_lines, 0);
}
END_TEST

/* -f '"x<newline><fake line>x"@domain': the genuine arrival holds the fake line */
START_TEST(test_join_sender_newline)
{
    join_all("2026-11-23 00:11:51 1xVHex-0003oU-1h <= \"x\n"
             "2026-11-23 00:00:00 1xVHer-0003ns-2T <= v@x H=(pc) [192.0.2.7]:5 P=esmtpa "
             "A=dovecot_login:victim@x S=1 for z@x x\"@evil.example U=bob P=local S=5 "
             "for r@example.net\n"
             "2026-11-23 00:11:52 1xVHex-0003oU-1h Completed\n",
             false);
    ck_assert_uint_eq(jd.n, 2);
    ck_assert(jd.flags[0] & EXIM_F_ABSORBED);
    struct exim_event ev;
    ck_assert_int_eq(eximlog_parse(jd.text[0], jd.len[0], &ev), 1);
    ck_assert(fg_str_eq(ev.ident, "bob"));
    ck_assert(fg_str_eq(ev.proto, "local"));
    ck_assert_uint_eq(ev.set_id.len, 0);
    ck_assert(ev.flags & EXIM_F_ABSORBED);
    /* a backslash before the newline escapes it outside quotes too (parse.c) */
    join_all("2026-11-23 00:11:51 1xVHex-0003oU-1h <= a@b U=bob P=local S=5 for x\\\n"
             "2026-11-23 00:00:00 1xVHer-0003ns-2T <= v@x U=victim P=local S=1 for r@x\n",
             false);
    ck_assert_uint_eq(jd.n, 1);
    ck_assert(jd.flags[0] & EXIM_F_ABSORBED);
    ck_assert_int_eq(eximlog_parse(jd.text[0], jd.len[0], &ev), 1);
    ck_assert(ev.flags & EXIM_F_ABSORBED);
}
END_TEST

/* 9.1: a directory name with " 1 args: x", a newline and a whole fake line */
START_TEST(test_forged_tail)
{
    struct exim_event ev;
    join_all("2026-11-23 00:11:51 [14662] cwd=/home/acct/x 1 args: x\n"
             "2026-11-23 00:00:00 [4242] 1xVHer-0003ns-2T <= victim@example.com H=(pc) "
             "[192.0.2.7]:5555 P=esmtpsa A=dovecot_login:victim@example.com S=999 for "
             "z@example.net 4 args: /usr/sbin/sendmail -t -i -fattacker@example.org\n"
             "2026-11-23 00:11:51 [14662] 1xVHex-0003oU-1h <= attacker@example.org U=acct "
             "P=local S=314 T=\"t2\" for rcpt@example.net\n",
             false);
    ck_assert_uint_eq(jd.n, 3);
    ck_assert_int_eq(eximlog_parse(jd.text[0], jd.len[0], &ev), 1);
    ck_assert_int_eq(ev.type, EXIM_CWD);
    ck_assert(!(ev.flags & EXIM_F_CWD_ARGC));
    ck_assert_int_eq(eximlog_parse(jd.text[1], jd.len[1], &ev), 1);
    ck_assert(ev.flags & EXIM_F_FORGED_TAIL);
    ck_assert_uint_eq(ev.set_id.len, 0);
    ck_assert_int_eq(eximlog_parse(jd.text[2], jd.len[2], &ev), 1);
    ck_assert(!(ev.flags & EXIM_F_FORGED_TAIL));

    /* the fake line leaves its subject open and the caller's last argument closes it */
    parse_ok(HID "<= v@x U=victim P=local S=1 T=\"x 4 args: /usr/sbin/sendmail -t -i -fa\"", &ev);
    ck_assert(ev.flags & EXIM_F_FORGED_TAIL);
    /* the genuine tail on a continuation line (the directory ended in a newline) */
    join_all("2026-11-23 00:00:00 1xVHer-0003ns-2T <= v@x U=victim P=local S=1 for r@x\n"
             " 3 args: sendmail -t -i\n",
             false);
    ck_assert_uint_eq(jd.n, 1);
    ck_assert_int_eq(eximlog_parse(jd.text[0], jd.len[0], &ev), 1);
    ck_assert(ev.flags & EXIM_F_FORGED_TAIL);
    /* a remnant that does not even start like an entry */
    {
        const char *rem = "\\ U=acct1 P=local S=1 for r@x.test 3 args: /usr/sbin/sendmail -t -i";
        ck_assert_int_eq(eximlog_parse(rem, strlen(rem), &ev), 0);
        ck_assert(ev.flags & EXIM_F_FOREIGN);
        ck_assert(ev.flags & EXIM_F_FORGED_TAIL);
    }
    /* another record type forged the same way */
    parse_ok(HID "Completed 2 args: exim -bpc", &ev);
    ck_assert(ev.flags & EXIM_F_FORGED_TAIL);

    /* data, not a remnant: inside a quoted recipient, or a count the words do not fit */
    parse_ok(HID "<= a@b U=u P=local S=1 for \"x 1 args: y\"@d", &ev);
    ck_assert(!(ev.flags & EXIM_F_FORGED_TAIL));
    parse_ok(HID "<= a@b U=u P=local S=1 T=\"2 args: a b c\" for r@x", &ev);
    ck_assert(!(ev.flags & EXIM_F_FORGED_TAIL));
    ck_assert(!(ev.flags & EXIM_F_ANOMALOUS));
}
END_TEST

START_TEST(test_cwd_argc)
{
    static const struct {
        const char *line;
        bool bad;
    } cases[] = {
        { "2026-11-23 00:11:51 cwd=/x 3 args: /usr/sbin/sendmail -t -i", false },
        { "2026-11-23 00:11:51 cwd=/x 4 args: /usr/sbin/sendmail -t -i", true },
        { "2026-11-23 00:11:51 cwd=/x 2 args: /usr/sbin/sendmail -t -i", true },
        { "2026-11-23 00:11:51 cwd=/x 3 args: exim -f \"a b\"", false },
        { "2026-11-23 00:11:51 cwd=/x 3 args: exim -f \"\"", false },
        /* 4.96, reproduced: inner quotes are not escaped */
        { "2026-11-23 00:11:51 cwd=/x 4 args: exim -f \"\"evil\\n2026-11-23 00:00:00 "
          "1xVHer-0003ns-2T <= v@x U=v P=local S=1\"@example.org\" -t",
          false },
        /* a list longer than the 16 KiB work buffer goes on in "..." entries */
        { "2026-11-23 00:11:51 cwd=/x 900 args: exim -t a b c ...", false },
        { "2026-11-23 00:11:51 cwd=/x 1 args: exim -t ...", true },
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        struct exim_event ev;
        parse_ok(cases[i].line, &ev);
        ck_assert_int_eq(ev.type, EXIM_CWD);
        ck_assert_msg(!!(ev.flags & EXIM_F_CWD_ARGC) == cases[i].bad, "case %zu", i);
    }
}
END_TEST

/* 1.2: 4.96 stops adding recipients when LOG_BUFFER_SIZE - ptr < len + 3, no mark */
START_TEST(test_rcpt_cut_496)
{
    static char line[8300];
    size_t n = (size_t)snprintf(line, sizeof(line),
                                HID "<= a@b H=(x) [192.0.2.7]:5 P=esmtpa "
                                    "A=dovecot_login:a@b S=1 T=\"s\" for");
    uint32_t count = 0;
    for (unsigned i = 0; i < 1500; i++) {
        char r[64];
        int k = snprintf(r, sizeof(r), "recipient%04u@example.net", i);
        if (8192 - n < (size_t)k + 3)
            break;
        n += (size_t)snprintf(line + n, sizeof(line) - n, " %s", r);
        count++;
    }
    ck_assert_uint_lt(count, 1500);
    struct exim_event ev;
    ck_assert_int_eq(eximlog_parse(line, n, &ev), 1);
    ck_assert_uint_eq(ev.nrcpt, count);
    ck_assert(ev.flags & EXIM_F_RCPT_CUT);
    ck_assert(ev.flags & EXIM_F_RCPT_TRUNC);
    ck_assert(fg_str_eq(ev.set_id, "a@b"));
    /* the same record with a short list is complete */
    parse_ok(HID "<= a@b H=(x) [192.0.2.7]:5 P=esmtpa A=dovecot_login:a@b S=1 for a@x b@y", &ev);
    ck_assert(!(ev.flags & (EXIM_F_RCPT_CUT | EXIM_F_RCPT_TRUNC)));
    /* 4.98+ marks it: truncated, not cut */
    parse_ok(HID "<= a@b U=u P=local S=1 for a@x <trunc>", &ev);
    ck_assert(ev.flags & EXIM_F_RCPT_TRUNC);
    ck_assert(!(ev.flags & EXIM_F_RCPT_CUT));
}
END_TEST

START_TEST(test_cwd_raw_and_overflowed)
{
    struct exim_event ev;
    /* the directory is written raw: bytes above 127 as they are */
    parse_ok(
        "2026-11-23 00:11:51 cwd=/home/u/\xd0\x9f\xd1\x80\xff 3 args: /usr/sbin/sendmail -t -i",
        &ev);
    ck_assert_int_eq(ev.type, EXIM_CWD);
    ck_assert(fg_str_eq(ev.cwd, "/home/u/\xd0\x9f\xd1\x80\xff"));
    ck_assert(ev.flags & EXIM_F_CWD_SUBMISSION);

    /* 4.98+: the text is cut and the marker replaces its tail */
    static char line[8300];
    size_t n = (size_t)snprintf(line, sizeof(line), "2026-11-23 00:11:51 cwd=/home/u/");
    for (int i = 0; i < 60; i++)
        n += (size_t)snprintf(line + n, sizeof(line) - n, "dddddddddd");
    size_t dirend = n;
    n += (size_t)snprintf(line + n, sizeof(line) - n, " 700 args: /usr/sbin/sendmail");
    while (n < 8100)
        n += (size_t)snprintf(line + n, sizeof(line) - n, " r@example.net");
    n += (size_t)snprintf(line + n, sizeof(line) - n, EXIMLOG_MARK);
    ck_assert_int_eq(eximlog_parse(line, n, &ev), 1);
    ck_assert_int_eq(ev.type, EXIM_CWD);
    ck_assert(ev.flags & EXIM_F_OVERFLOW);
    ck_assert(!(ev.flags & EXIM_F_CWD_ARGC));
    ck_assert_uint_eq(ev.cwd.len, dirend - strlen("2026-11-23 00:11:51 cwd="));
    /* cut inside the directory, before " N args:" */
    n = dirend;
    n += (size_t)snprintf(line + n, sizeof(line) - n, EXIMLOG_MARK);
    ck_assert_int_eq(eximlog_parse(line, n, &ev), 1);
    ck_assert_int_eq(ev.type, EXIM_CWD);
    ck_assert(ev.flags & EXIM_F_OVERFLOW);
    ck_assert_uint_eq(ev.cwd.len, dirend - strlen("2026-11-23 00:11:51 cwd="));
    /* 4.96 replaces the whole text: only the marker is left, nothing names a directory */
    const char *only = "2026-11-23 00:11:51 [14662] " EXIMLOG_MARK;
    ck_assert_int_eq(eximlog_parse(only, strlen(only), &ev), 0);
    ck_assert(ev.flags & EXIM_F_OVERFLOW);
    ck_assert_uint_eq(ev.cwd.len, 0);
}
END_TEST

START_TEST(test_addr_helpers)
{
    /* absent fields are { NULL, 0 }: no pointer arithmetic on NULL (UBSan) */
    {
        size_t pos = 0;
        struct fg_str none = { NULL, 0 }, a;
        ck_assert_int_eq(eximlog_next_addr(none, &pos, &a), 0);
        ck_assert_uint_eq(eximlog_addr_domain(none).len, 0);
        /* the backslash rule outside quotes: one address, not an open quote */
        struct fg_str l = fg_str_make("c\\\"d@y e@f", 10);
        ck_assert_int_eq(eximlog_next_addr(l, &pos, &a), 1);
        ck_assert(fg_str_eq(eximlog_addr_domain(a), "y"));
        ck_assert_int_eq(eximlog_next_addr(l, &pos, &a), 1);
        ck_assert(fg_str_eq(a, "e@f"));
    }

    struct fg_str list = fg_str_make("a@b \"x y\"@c.example  d@e <trunc>", 32);
    size_t pos = 0;
    struct fg_str a;
    const char *want[] = { "a@b", "\"x y\"@c.example", "d@e" };
    for (size_t i = 0; i < 3; i++) {
        ck_assert_int_eq(eximlog_next_addr(list, &pos, &a), 1);
        ck_assert_msg(fg_str_eq(a, want[i]), "addr %zu is %.*s", i, (int)a.len, a.p);
    }
    ck_assert_int_eq(eximlog_next_addr(list, &pos, &a), 0);
    ck_assert(fg_str_eq(eximlog_addr_domain(fg_str_make("\"a@b\"@c.example", 15)), "c.example"));
    ck_assert(fg_str_eq(eximlog_addr_domain(fg_str_make("root", 4)), ""));
    ck_assert(eximlog_msgid_valid(fg_str_make("1hIAif-00H7J4-Lb", 16)));
    ck_assert(eximlog_msgid_valid(fg_str_make("16VDhn-000000001bo-D342", 23)));
    ck_assert(!eximlog_msgid_valid(fg_str_make("1hIAif-00H7J4_Lb", 16)));
    ck_assert(!eximlog_msgid_valid(fg_str_make("1hIAif-00H7J4-L_", 16)));
    ck_assert(!eximlog_msgid_valid(fg_str_make("16VDhn-00000001bo-DD342", 23)));
    ck_assert(!eximlog_msgid_valid(fg_str_make("1hIAif-00H7J4-Lb1", 17)));
    for (int t = 0; t < EXIM_TYPE__MAX; t++)
        ck_assert_str_ne(eximlog_type_name((enum exim_type)t), "unknown");
    ck_assert_str_eq(eximlog_type_name(EXIM_TYPE__MAX), "unknown");
}
END_TEST

int
main(void)
{
    Suite *s = suite_create("eximlog");
    TCase *tc = tcase_create("parse");
    tcase_add_loop_test(tc, test_good, 0, (int)N_ELEMS(good));
    tcase_add_loop_test(tc, test_bad, 0, (int)N_ELEMS(bad));
    tcase_add_test(tc, test_addr_helpers);
    suite_add_tcase(s, tc);
    TCase *tj = tcase_create("joiner");
    tcase_add_test(tj, test_join_continuation);
    tcase_add_test(tj, test_join_empty_lines);
    tcase_add_test(tj, test_join_orphans);
    tcase_add_test(tj, test_join_forged_cwd);
    tcase_add_test(tj, test_join_cwd_overflow_marker);
    tcase_add_test(tj, test_join_open_quote);
    tcase_add_test(tj, test_join_flush);
    tcase_add_test(tj, test_join_resume_offsets);
    tcase_add_test(tj, test_join_overlong);
    tcase_add_test(tj, test_join_overlong_marker);
    suite_add_tcase(s, tj);
    TCase *th = tcase_create("hostile");
    tcase_add_test(th, test_hostile_subject);
    tcase_add_test(th, test_hostile_msgid_and_rcpt);
    tcase_add_test(th, test_hostile_helo_two_readings);
    tcase_add_test(th, test_hostile_helo_forged_flag);
    tcase_add_test(th, test_hostile_anomalous_has_no_identity);
    tcase_add_test(th, test_hostile_authfail_data);
    tcase_add_test(th, test_join_quote_in_data_fields);
    tcase_add_test(th, test_join_sender_newline);
    tcase_add_test(th, test_forged_tail);
    tcase_add_test(th, test_cwd_argc);
    tcase_add_test(th, test_rcpt_cut_496);
    tcase_add_test(th, test_cwd_raw_and_overflowed);
    suite_add_tcase(s, th);

    TCase *tl = tcase_create("logs");
    tcase_set_timeout(tl, 120);
    tcase_add_test(tl, test_corpus);
    tcase_add_test(tl, test_generated_fixture);
    suite_add_tcase(s, tl);
    return testrun_suite(s);
}
