#!/usr/bin/env python3
"""A scriptable HTTP/1.1 receiver on loopback for the alerting tests (stdlib only).

usage: http_sink.py --port-file F --log FILE [--secret whsec_...]... [--port N]
                    [--tls-cert CERT.pem --tls-key KEY.pem]

Binds 127.0.0.1 (port 0: any free one), writes the port to F once listening and runs until
SIGTERM; with --tls-cert/--tls-key it speaks HTTPS with that certificate. Every POST to a path other than /__control is appended to FILE as one JSON line:

  {"t": <unix time>, "path": ..., "headers": {lower-case name: value},
   "body": <utf-8 text> (or "body_b64" when the body is not UTF-8),
   "status": <status answered, null when none>, "mode": <mode used>,
   "sig_ok": true | false | null}

sig_ok is the Standard Webhooks check of webhook-signature over "id.timestamp.body",
done here independently of floodgate against every --secret (null without --secret or
without the header).

Behaviour is a queue of modes, replaced by POST /__control with a JSON body
  {"modes": ["200", "500", "429:7", "503:<HTTP date>", "hang", "close", "trickle"],
   "default": "200", "body": "ok"}
Each request takes the next mode, then "default" once the queue is empty:
  NNN     answer that status with the body
  NNN:X   the same with "Retry-After: X"
  hang    read the request, never answer; keep the socket until the client closes it
          (at most HANG_MAX_S)
  close   close the connection without answering
  trickle send the status line and headers, then one body byte per second
GET /__control answers {"count": N}, the requests logged so far. A test makes the sink
"down" by killing it and starting it again on the same --port.
"""
import argparse
import base64
import binascii
import hashlib
import hmac
import json
import os
import select
import signal
import socket
import ssl
import sys
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BODY_MAX = 8 << 20  # request bytes accepted (an Alertmanager notification of 2,000 alerts is ~2 MB)
HANG_MAX_S = 120
TRICKLE_MAX_S = 120


class State:
    def __init__(self, log_path, secrets):
        self.lock = threading.Lock()
        self.modes = deque()
        self.default = "200"
        self.body = "ok"
        self.count = 0
        self.log = open(log_path, "a", encoding="utf-8")
        self.keys = []
        for s in secrets:
            raw = s[len("whsec_"):] if s.startswith("whsec_") else s
            self.keys.append(base64.b64decode(raw))

    def next_mode(self):
        with self.lock:
            mode = self.modes.popleft() if self.modes else self.default
            return mode, self.body

    def record(self, entry):
        line = json.dumps(entry, sort_keys=True)
        with self.lock:
            self.log.write(line + "\n")
            self.log.flush()
            self.count += 1

    def sig_ok(self, headers, body):
        sig = headers.get("webhook-signature")
        if not self.keys or sig is None:
            return None
        msg_id = headers.get("webhook-id", "")
        ts = headers.get("webhook-timestamp", "")
        signed = msg_id.encode() + b"." + ts.encode() + b"." + body
        given = []
        for part in sig.split(" "):
            version, _, value = part.partition(",")
            if version == "v1" and value:
                try:
                    given.append(base64.b64decode(value, validate=True))
                except (binascii.Error, ValueError):
                    pass
        for key in self.keys:
            want = hmac.new(key, signed, hashlib.sha256).digest()
            if any(hmac.compare_digest(want, g) for g in given):
                return True
        return False


STATE = None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fg-http-sink"
    sys_version = ""

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass

    def setup(self):
        if hasattr(self.request, "do_handshake"):
            self.request.settimeout(10)
            self.request.do_handshake()  # a client refusing our certificate ends here
            self.request.settimeout(None)
        super().setup()
        # headers and body go out in two writes: without this, Nagle holds the body until
        # the client's delayed ACK (40 ms), and the sink, not floodgate, sets the pace
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _answer(self, status, body, extra=()):
        data = body.encode("utf-8")
        self.send_response(status)
        for name, value in extra:
            self.send_header(name, value)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _read_body(self):
        """The request body, or None when it is over BODY_MAX or malformed."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                line = self.rfile.readline(64)
                try:
                    n = int(line.split(b";")[0].strip(), 16)
                except ValueError:
                    return None
                if n == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                if len(out) + n > BODY_MAX:
                    return None
                out += self.rfile.read(n)
                self.rfile.readline(8)
        try:
            n = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            return None
        if n < 0 or n > BODY_MAX:
            return None
        return self.rfile.read(n)

    def do_GET(self):
        if self.path == "/__control":
            with STATE.lock:
                count = STATE.count
            self._answer(200, json.dumps({"count": count}))
        else:
            self._answer(404, "not found")

    def _control(self, body):
        try:
            req = json.loads(body.decode("utf-8"))
            modes = [str(m) for m in req.get("modes", [])]
        except (ValueError, AttributeError, TypeError):
            self._answer(400, "bad control body")
            return
        with STATE.lock:
            STATE.modes = deque(modes)
            if "default" in req:
                STATE.default = str(req["default"])
            if "body" in req:
                STATE.body = str(req["body"])
        self._answer(200, json.dumps({"ok": True}))

    def do_POST(self):
        body = self._read_body()
        if body is None:
            self.close_connection = True
            self._answer(413, "too large")
            return
        if self.path == "/__control":
            self._control(body)
            return
        mode, answer = STATE.next_mode()
        headers = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = headers[key] + ", " + value if key in headers else value
        status = None
        extra = []
        if mode not in ("hang", "close", "trickle"):
            code, _, retry_after = mode.partition(":")
            try:
                status = int(code)
            except ValueError:
                status = 500
            if retry_after:
                extra.append(("Retry-After", retry_after))
            if 300 <= status < 400:
                extra.append(("Location", "http://127.0.0.1:1/elsewhere"))
        elif mode == "trickle":
            status = 200
        entry = {"t": time.time(), "path": self.path, "headers": headers, "status": status,
                 "mode": mode, "sig_ok": STATE.sig_ok(headers, body)}
        try:
            entry["body"] = body.decode("utf-8")
        except UnicodeDecodeError:
            entry["body_b64"] = base64.b64encode(body).decode("ascii")
        STATE.record(entry)
        if mode == "hang":
            self._hang()
        elif mode == "close":
            self.close_connection = True
        elif mode == "trickle":
            self._trickle()
        else:
            self._answer(status, answer, extra)

    def _hang(self):
        self.close_connection = True
        self.wfile.flush()
        deadline = time.monotonic() + HANG_MAX_S
        sock = self.connection
        while time.monotonic() < deadline:
            ready, _, _ = select.select([sock], [], [], 1.0)
            if ready:
                try:
                    if not sock.recv(4096):
                        return  # the client closed
                except OSError:
                    return

    def _trickle(self):
        self.close_connection = True
        try:
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                             b"Content-Length: %d\r\n\r\n" % TRICKLE_MAX_S)
            self.wfile.flush()
            for _ in range(TRICKLE_MAX_S):
                time.sleep(1)
                self.wfile.write(b".")
                self.wfile.flush()
        except OSError:
            pass


class Server(ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 64
    tls = None  # an ssl.SSLContext: the handshake runs in the request's thread

    def get_request(self):
        sock, addr = self.socket.accept()
        if self.tls:
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr


def write_port_file(path, port):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="ascii") as f:
        f.write("%d\n" % port)
    os.replace(tmp, path)


def main():
    global STATE
    ap = argparse.ArgumentParser(description="scriptable HTTP sink for floodgate tests")
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--secret", action="append", default=[])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    args = ap.parse_args()

    STATE = State(args.log, args.secret)
    server = Server(("127.0.0.1", args.port), Handler)
    server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if args.tls_cert:
        server.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server.tls.load_cert_chain(args.tls_cert, args.tls_key)

    def stop(signum, frame):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    write_port_file(args.port_file, server.server_address[1])
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        STATE.log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
