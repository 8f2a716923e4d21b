#!/usr/bin/env python3
"""Hostile SMTP submissions for floodgate's e2e tests (loopback only).

usage: smtp_hostile.py PORT COUNT PREFIX [options]
  --helo NAME         EHLO argument, sent as is (default e2e.test)
  --auth USER         AUTH PLAIN as USER with the harness password (default: no AUTH)
  --from ADDR         MAIL FROM address; "" gives MAIL FROM:<> (default: the AUTH user)
  --header-from ADDR  From: header (default: --from, or the AUTH user)
  --to-domain DOMAIN  recipient r<i>@DOMAIN (default remote.example)
  --subject TEXT      Subject: header (default PREFIX-<i>)
  --message-id TEXT   Message-ID: header value, as is (default: none)
  --linger FILE       keep each connection open after DATA until FILE exists (at most
                      30 s), so other sessions' log lines come before this one's last

Sends COUNT messages, each on its own connection, as fast as the server answers, and
prints one tab-separated line per message:

    <i> <RCPT code> <DATA code or -> <queue id or -> <PREFIX-i>

The body's first line is "X-Tag: PREFIX-i" in a header so a message can be found in the
spool whatever its subject. Every connection has a 20 s timeout; exits 0 unless the server
could not be reached.
"""
import argparse
import os
import re
import smtplib
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("count", type=int)
    ap.add_argument("prefix")
    ap.add_argument("--helo", default="e2e.test")
    ap.add_argument("--auth")
    ap.add_argument("--password", default="fg-test-password")
    ap.add_argument("--from", dest="frm")
    ap.add_argument("--header-from")
    ap.add_argument("--to-domain", default="remote.example")
    ap.add_argument("--subject")
    ap.add_argument("--message-id")
    ap.add_argument("--linger")
    a = ap.parse_args()
    frm = a.frm if a.frm is not None else (a.auth or "anon@remote.example")
    hfrom = a.header_from or frm or a.auth or "anon@remote.example"
    reached = False
    for i in range(1, a.count + 1):
        tag = f"{a.prefix}-{i}"
        to = f"r{i}@{a.to_domain}"
        subj = a.subject if a.subject is not None else tag
        hdr = f"From: {hfrom}\r\nTo: {to}\r\nSubject: {subj}\r\nX-Tag: {tag}\r\n"
        if a.message_id is not None:
            hdr += f"Message-ID: {a.message_id}\r\n"
        msg = hdr + "\r\nfloodgate e2e hostile\r\n"
        rcpt, data, qid = "-", "-", "-"
        printed = False
        try:
            s = smtplib.SMTP("127.0.0.1", a.port, local_hostname="e2e.test", timeout=20)
            try:
                # the EHLO argument is sent verbatim: smtplib does not check it
                code, _ = s.docmd("EHLO " + a.helo)
                if code != 250:
                    raise smtplib.SMTPResponseException(code, b"EHLO refused")
                s.ehlo_resp, s.does_esmtp = b"", True
                s.esmtp_features = {"auth": "PLAIN LOGIN"}
                reached = True
                if a.auth:
                    s.user, s.password = a.auth, a.password
                    s.auth("PLAIN", s.auth_plain)
                code, resp = s.docmd(f"MAIL FROM:<{frm}>")
                if code >= 400:
                    raise smtplib.SMTPResponseException(code, resp)
                code, _ = s.docmd(f"RCPT TO:<{to}>")
                rcpt = str(code)
                if code < 400:
                    code, resp = s.data(msg)
                    data = str(code)
                    m = re.search(rb"id=([0-9A-Za-z-]+)", resp)
                    if m:
                        qid = m.group(1).decode()
                print(f"{i}\t{rcpt}\t{data}\t{qid}\t{tag}", flush=True)
                printed = True
                if a.linger:
                    for _ in range(300):
                        if os.path.exists(a.linger):
                            break
                        time.sleep(0.1)
            finally:
                try:
                    s.send("QUIT\r\n")
                except (smtplib.SMTPException, OSError):
                    pass
                s.close()
        except (smtplib.SMTPException, OSError) as e:
            data = "ERR:" + type(e).__name__
        if not printed:
            print(f"{i}\t{rcpt}\t{data}\t{qid}\t{tag}", flush=True)
    return 0 if reached else 2


if __name__ == "__main__":
    sys.exit(main())
