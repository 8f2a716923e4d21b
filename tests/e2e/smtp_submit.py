#!/usr/bin/env python3
"""Fallback SMTP submitter for exim-harness.sh when swaks is not installed.

usage: smtp_submit.py PORT AUTH_USER PASSWORD FROM TO SUBJECT [PLAIN|LOGIN]
Prints the server's reply to RCPT and exits 0 when the message was accepted, 1 when a
recipient was refused (5xx or 4xx), 2 on other errors. Loopback only.
"""
import smtplib
import sys


def main():
    port, user, pw, frm, to, subj = sys.argv[1:7]
    mech = sys.argv[7] if len(sys.argv) > 7 else "PLAIN"
    msg = f"From: {frm}\r\nTo: {to}\r\nSubject: {subj}\r\n\r\nfloodgate e2e\r\n"
    try:
        with smtplib.SMTP("127.0.0.1", int(port), timeout=20) as s:
            s.ehlo("e2e.test")
            s.user, s.password = user, pw
            code, resp = s.auth(mech, s.auth_plain if mech == "PLAIN" else s.auth_login)
            s.mail(frm)
            code, resp = s.rcpt(to)
            print(f"RCPT {code} {resp.decode(errors='replace')}")
            if code >= 400:
                return 1
            code, resp = s.data(msg)
            print(f"DATA {code} {resp.decode(errors='replace')}")
            return 0 if code == 250 else 1
    except smtplib.SMTPException as e:
        print(f"ERROR {e}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
