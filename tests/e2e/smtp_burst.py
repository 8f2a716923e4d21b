#!/usr/bin/env python3
"""A burst of authenticated SMTP submissions for floodgate's e2e tests (loopback only).

usage: smtp_burst.py PORT AUTH_USER PASSWORD FROM COUNT GAP_MS SUBJECT_PREFIX [TO_DOMAIN]

Sends COUNT messages, each on its own connection (AUTH PLAIN, one recipient
r<i>@TO_DOMAIN), GAP_MS milliseconds apart, as fast as the server answers otherwise.
Prints one tab-separated line per message:

    <i> <start ms> <reply ms> <RCPT code> <DATA code or -> <queue id or -> <subject>

(wall-clock milliseconds since the epoch; reply ms is when the DATA reply, or a refusal
at RCPT, arrived; the queue id is parsed from "250 OK id=...").
Every connection has a 20 s timeout; exits 0 unless the server could not be reached.
"""
import re
import smtplib
import sys
import time


def now_ms():
    return int(time.time() * 1000)


def main():
    port, user, pw, frm, count, gap, prefix = sys.argv[1:8]
    domain = sys.argv[8] if len(sys.argv) > 8 else "remote.example"
    count, gap = int(count), int(gap)
    reached = False
    for i in range(1, count + 1):
        subj = f"{prefix}-{i}"
        to = f"r{i}@{domain}"
        msg = f"From: {frm}\r\nTo: {to}\r\nSubject: {subj}\r\n\r\nfloodgate e2e burst\r\n"
        start = now_ms()
        end = None
        rcpt, data, qid = "-", "-", "-"
        try:
            # local_hostname: smtplib would otherwise ask the resolver (socket.getfqdn())
            s = smtplib.SMTP("127.0.0.1", int(port), local_hostname="e2e.test", timeout=20)
            try:
                s.ehlo()
                reached = True
                s.user, s.password = user, pw
                s.auth("PLAIN", s.auth_plain)
                code, resp = s.mail(frm)
                if code >= 400:
                    raise smtplib.SMTPResponseException(code, resp)
                code, _ = s.rcpt(to)
                rcpt = str(code)
                end = now_ms()
                if code < 400:
                    code, resp = s.data(msg)
                    end = now_ms()  # the server logged the arrival just before its reply
                    data = str(code)
                    m = re.search(rb"id=([0-9A-Za-z-]+)", resp)
                    if m:
                        qid = m.group(1).decode()
            finally:
                # QUIT without waiting for the 221: Exim takes ~200 ms to answer it, which
                # would pace the burst instead of the client
                try:
                    s.send("QUIT\r\n")
                except (smtplib.SMTPException, OSError):
                    pass
                s.close()
        except (smtplib.SMTPException, OSError) as e:
            data = "ERR:" + type(e).__name__
        print(f"{i}\t{start}\t{end or now_ms()}\t{rcpt}\t{data}\t{qid}\t{subj}", flush=True)
        if gap > 0 and i < count:
            time.sleep(gap / 1000.0)
    return 0 if reached else 2


if __name__ == "__main__":
    sys.exit(main())
