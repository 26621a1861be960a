#!/usr/bin/env python3
"""A real upstream service for keygate's end-to-end tests, the demo and the benchmark.

It answers every method on every path with JSON describing what it received:
    {"method", "path", "query", "headers" (lower-case name -> value, repeats joined by ", "),
     "raw_headers" ([name, value] pairs in arrival order), "body_bytes", "body_sha256"}
The request body (Content-Length or chunked) is read in small pieces and only counted and
hashed, never held, so a 100 MB body costs this process no memory.

Special paths:
    /slow?ms=N        waits N milliseconds (at most 60 s), then answers as usual
    /status/N         answers with status N (and the usual JSON, except for 204/304)
    /big?bytes=N      streams N bytes (Content-Length; add &chunked=1 for chunked encoding)

Usage: upstream.py [--port N] [--host 127.0.0.1] [--record FILE]
Prints "port N" as its first line on stdout once it listens (useful with --port 0).

--record FILE appends one JSON line per event to FILE, so that a test can tell what arrived
even when no answer went back:
    {"event": "head", "method", "path", "headers" ([name, value] pairs)}   header received
    {"event": "body", "method", "path", "complete", "body_bytes"}         body read or cut
"""
import argparse
import hashlib
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

READ_CHUNK = 64 * 1024
BIG_CHUNK = bytes(range(256)) * 256  # 64 KiB of a known pattern
MAX_SLOW_MS = 60_000


class BodyError(Exception):
    pass


class EventLog:
    """--record: one JSON line per event, appended and flushed at once (handlers run in
    threads, hence the lock)."""

    def __init__(self, path):
        self.file = open(path, "a", encoding="utf-8")
        self.lock = threading.Lock()

    def append(self, event):
        line = json.dumps(event) + "\n"
        with self.lock:
            self.file.write(line)
            self.file.flush()


EVENTS = None  # an EventLog with --record


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    # Without TCP_NODELAY, a keep-alive response written in pieces waits ~40 ms for the peer's
    # delayed ACK (Nagle): every request on a reused connection would take that long.
    disable_nagle_algorithm = True
    server_version = "keygate-test-upstream/1"

    def log_message(self, fmt, *args):  # quiet: tests read the JSON, not a log
        pass

    # Every method goes through one handler.
    def __getattr__(self, name):
        if name.startswith("do_"):
            return self._handle
        raise AttributeError(name)

    # ---- request body, streamed -------------------------------------------------------------

    def _read_exact(self, n, digest):
        left = n
        while left > 0:
            chunk = self.rfile.read(min(READ_CHUNK, left))
            if not chunk:
                raise BodyError("connection closed inside the body")
            digest.update(chunk)
            left -= len(chunk)
        return n

    def _read_line(self):
        line = self.rfile.readline(65537)
        if not line:
            raise BodyError("connection closed inside a chunked body")
        return line

    def _consume_body(self):
        """Reads the whole request body; returns (byte count, sha256 hex)."""
        digest = hashlib.sha256()
        total = 0
        encoding = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in encoding:
            while True:
                size_line = self._read_line().split(b";", 1)[0].strip()
                size = int(size_line, 16)
                if size == 0:
                    while self._read_line() not in (b"\r\n", b"\n"):  # trailers
                        pass
                    break
                total += self._read_exact(size, digest)
                self._read_line()  # CRLF after each chunk
        else:
            length = int(self.headers.get("Content-Length") or 0)
            total = self._read_exact(length, digest)
        return total, digest.hexdigest()

    # ---- answers ----------------------------------------------------------------------------

    def _send_json(self, status, obj):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)) if status not in (204, 304) else "0")
        self.end_headers()
        if self.command != "HEAD" and status not in (204, 304):
            self.wfile.write(body)

    def _send_big(self, n, chunked):
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(n))
        self.end_headers()
        if self.command == "HEAD":
            return
        left = n
        while left > 0:
            piece = BIG_CHUNK[: min(len(BIG_CHUNK), left)]
            if chunked:
                self.wfile.write(b"%x\r\n" % len(piece) + piece + b"\r\n")
            else:
                self.wfile.write(piece)
            left -= len(piece)
        if chunked:
            self.wfile.write(b"0\r\n\r\n")

    def _record(self, event, **fields):
        if EVENTS is not None:
            EVENTS.append({"event": event, "method": self.command, "path": self.path, **fields})

    def parse_request(self):
        ok = super().parse_request()
        if not ok and EVENTS is not None:  # answered 400/505 by http.server itself
            EVENTS.append({"event": "refused", "requestline": self.requestline})
        return ok

    def _handle(self):
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        self._record("head", headers=[[n, v] for n, v in self.headers.items()])
        try:
            body_bytes, body_sha = self._consume_body()
            self._record("body", complete=True, body_bytes=body_bytes)
        except (BodyError, ValueError) as e:
            self._record("body", complete=False, error=str(e))
            self.close_connection = True
            try:
                self._send_json(400, {"error": "bad_body", "message": str(e)})
            except OSError:
                pass
            return
        headers = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        status = 200
        if url.path == "/slow":
            ms = min(int(query.get("ms", ["0"])[0]), MAX_SLOW_MS)
            time.sleep(ms / 1000.0)
        elif url.path.startswith("/status/"):
            status = int(url.path.split("/")[2])
        elif url.path == "/big":
            self._send_big(int(query.get("bytes", ["0"])[0]), query.get("chunked", ["0"])[0] == "1")
            return
        self._send_json(status, {
            "method": self.command,
            "path": url.path,
            "query": url.query,
            "headers": headers,
            "raw_headers": [[n, v] for n, v in self.headers.items()],
            "body_bytes": body_bytes,
            "body_sha256": body_sha,
        })


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024


def main(argv=None):
    parser = argparse.ArgumentParser(description="keygate test upstream")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--record", metavar="FILE", help="append one JSON line per event")
    args = parser.parse_args(argv)
    global EVENTS
    if args.record:
        EVENTS = EventLog(args.record)
    server = Server((args.host, args.port), Handler)
    print(f"port {server.server_address[1]}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
