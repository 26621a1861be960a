"""RFC 9112 / RFC 9110 conformance of keygate's request path, with nginx 1.22 (Debian's
nginx-light, a plain proxy_pass reverse proxy to the same upstream.py) as the reference.

Each shape in SHAPES is sent over a raw socket, with a valid key so that only its syntax can
make it fail, to keygate and to nginx, followed on the same connection by a keyless request
for a marker path (pipelined). The upstream records every request head and body it receives
(upstream.py --record). Asserted, shape by shape:
- keygate answers the status given in the table (the RFC's where the RFC names one);
- whenever nginx itself rejects a shape, keygate rejects it too;
- the upstream never receives a shape keygate rejected (a chunked body that turns bad after
  forwarding began: never a complete one, and its upstream connection is closed), and never
  the pipelined keyless request;
- keygate closes the connection where the table (the RFC) says so.
The table (shape, RFC section, nginx, keygate) is printed so that the run shows it.
"""
import json
import os
import socket
import time
import unittest
from collections import namedtuple

import harness

HOST = "app.test"
SCOPE = "rfc:send"
READ_TIMEOUT = 2.0  # each exchange; a server still waiting for bytes is "open" after it

# expect: keygate's status. close: keygate must close the connection after it (the RFC
# demands it for every framing error; keygate closes after every 400). body_error: the error
# is in the chunked body, found only after the head was forwarded. rfc: what the RFC says.
Shape = namedtuple("Shape", "id section rfc expect close body_error raw")


def head(line="GET {P} HTTP/1.1", *fields, host=True, body=""):
    """A request with the valid key; {P} is the marker path."""
    lines = [line] + ([f"Host: {HOST}"] if host else []) + ["Authorization: Bearer {K}"]
    return "\r\n".join(lines + list(fields)) + "\r\n\r\n" + body


def host_is(value):
    return head("GET {P} HTTP/1.1", f"Host: {value}", host=False)


def post(*fields, body="", version="1.1"):
    return head(f"POST {{P}} HTTP/{version}", *fields, body=body)


def chunked(body, *fields):
    return post("Transfer-Encoding: chunked", *fields, body=body)


def shape(id, section, rfc, expect, raw, close=None, body_error=False):
    if close is None:
        close = expect >= 400
    return Shape(id, section, rfc, expect, close, body_error, raw)


LONG = "/x" * 4600  # a 9200-byte target: over keygate's 8 KiB and nginx's 8 KiB
HUGE = "/x" * 10000  # over keygate's 16 KiB header limit too

SHAPES = [
    # 2.2 message parsing
    shape("leading-empty-line", "9112 2.2", "SHOULD ignore", 200, "\r\n" + head()),
    shape("lf-line-endings", "9112 2.2", "MAY accept", 400,
          head().replace("\r\n", "\n")),
    shape("bare-cr-in-value", "9112 2.2", "MUST reject or SP", 400, head("GET {P} HTTP/1.1", "X-Note: a\rb")),
    shape("space-after-request-line", "9112 2.2", "MUST reject or skip", 400,
          "GET {P} HTTP/1.1\r\n X-Note: 1\r\nHost: app.test\r\nAuthorization: Bearer {K}\r\n\r\n"),
    # 3 request line
    shape("lower-case-method", "9110 9.1", "case-sensitive", 400, head("get {P} HTTP/1.1")),
    shape("bad-method-char", "9112 3.1", "method = token", 400, head("G<T {P} HTTP/1.1")),
    shape("two-spaces", "9112 3", "SHOULD 400", 400, head("GET  {P} HTTP/1.1")),
    shape("tab-separator", "9112 3", "SHOULD 400", 400, head("GET\t{P} HTTP/1.1")),
    shape("space-after-version", "9112 3", "SHOULD 400", 400, head("GET {P} HTTP/1.1 ")),
    shape("no-version", "9112 3", "no HTTP/0.9", 400, "GET {P}\r\n\r\n"),
    shape("fragment", "9112 3.2", "not in target", 400, head("GET {P}#frag HTTP/1.1")),
    shape("target-too-long", "9112 3", "MUST 414", 414, head("GET {P}" + LONG + " HTTP/1.1")),
    shape("target-over-header-limit", "9112 3", "MUST 414", 414, head("GET {P}" + HUGE + " HTTP/1.1")),
    shape("asterisk-form-get", "9112 3.2.4", "OPTIONS only", 400, head("GET * HTTP/1.1")),
    shape("asterisk-form-options", "9112 3.2.4", "not a server-wide OPTIONS", 501,
          head("OPTIONS * HTTP/1.1"), close=False),
    shape("authority-form-get", "9112 3.2.3", "CONNECT only", 400, head("GET app.test:80 HTTP/1.1")),
    shape("connect", "9110 9.3.6", "not a forward proxy", 405, head("CONNECT app.test:443 HTTP/1.1")),
    shape("connect-origin-form", "9110 9.3.6", "not a forward proxy", 405, head("CONNECT {P} HTTP/1.1")),
    shape("absolute-form", "9112 3.2.2", "MUST accept", 200, head("GET http://absolute.test:8080{P} HTTP/1.1")),
    shape("absolute-form-other-scheme", "9112 3.2.2", "http(s) only", 400, head("GET ftp://absolute.test{P} HTTP/1.1")),
    shape("absolute-form-userinfo", "9110 4.2.4", "SHOULD reject", 400, head("GET http://u@absolute.test{P} HTTP/1.1")),
    shape("absolute-form-empty-host", "9110 4.2.1", "MUST reject", 400, head("GET http://{P} HTTP/1.1")),
    # 3.2 Host
    shape("no-host", "9112 3.2", "MUST 400", 400, head(host=False)),
    shape("no-host-http10", "9112 3.2", "allowed", 200, head("GET {P} HTTP/1.0", host=False), close=True),
    shape("two-hosts", "9112 3.2", "MUST 400", 400, head("GET {P} HTTP/1.1", "Host: other.test")),
    shape("two-same-hosts", "9112 3.2", "MUST 400", 400, head("GET {P} HTTP/1.1", f"Host: {HOST}")),
    shape("host-list", "9112 3.2", "MUST 400", 400, host_is("a.test, b.test")),
    shape("host-slash", "9112 3.2", "MUST 400", 400, host_is("app.test/x")),
    shape("host-userinfo", "9112 3.2", "MUST 400", 400, host_is("u@app.test")),
    shape("host-bad-port", "9112 3.2", "MUST 400", 400, host_is("app.test:8o")),
    shape("host-empty", "9110 4.2.1", "MUST reject", 400, host_is("")),
    shape("host-double-dot", "9112 3.2", "empty label", 400, host_is("app..test")),
    shape("host-ipv6", "9112 3.2", "valid", 200, host_is("[::1]:8080")),
    # 5 field syntax
    shape("space-before-colon", "9112 5.1", "MUST 400", 400, head("GET {P} HTTP/1.1", "X-Note : 1")),
    shape("tab-before-colon", "9112 5.1", "MUST 400", 400, head("GET {P} HTTP/1.1", "X-Note\t: 1")),
    shape("obs-fold", "9112 5.2", "MUST 400 or SP", 400, head("GET {P} HTTP/1.1", "X-Note: a", " b")),
    shape("bad-name-char", "9110 5.1", "token", 400, head("GET {P} HTTP/1.1", "X(Note): 1")),
    shape("empty-name", "9110 5.1", "token", 400, head("GET {P} HTTP/1.1", ": 1")),
    shape("no-colon", "9112 5", "field-line", 400, head("GET {P} HTTP/1.1", "X-Note")),
    shape("nul-in-value", "9110 5.5", "MUST reject or SP", 400, head("GET {P} HTTP/1.1", "X-Note: a\0b")),
    shape("ctl-in-value", "9110 5.5", "field-vchar", 400, head("GET {P} HTTP/1.1", "X-Note: a\x01b")),
    shape("del-in-value", "9110 5.5", "field-vchar", 400, head("GET {P} HTTP/1.1", "X-Note: a\x7fb")),
    shape("obs-text-in-value", "9110 5.5", "valid", 200, head("GET {P} HTTP/1.1", "X-Note: caf\xe9")),
    shape("underscore-transfer-encoding", "9112 6.1", "smuggling alias", 400,
          post("Transfer_Encoding: chunked", "Content-Length: 5", body="hello")),
    # 6 message body
    shape("te-in-http10", "9112 6.1", "MUST 400+close", 400,
          post("Transfer-Encoding: chunked", body="5\r\nhello\r\n0\r\n\r\n", version="1.0")),
    shape("te-gzip", "9112 6.1", "MUST 400+close", 400, post("Transfer-Encoding: gzip", body="hello")),
    shape("te-chunked-gzip", "9112 6.1", "MUST 400+close", 400,
          chunked("5\r\nhello\r\n0\r\n\r\n").replace("chunked", "chunked, gzip", 1)),
    shape("te-gzip-chunked", "9112 6.1", "SHOULD 501", 501,
          chunked("5\r\nhello\r\n0\r\n\r\n").replace("chunked", "gzip, chunked", 1)),
    shape("te-chunked-twice", "9112 6.1", "MUST NOT twice", 400,
          chunked("5\r\nhello\r\n0\r\n\r\n").replace("chunked", "chunked, chunked", 1)),
    shape("te-two-lines", "9112 6.1", "MUST NOT twice", 400,
          chunked("5\r\nhello\r\n0\r\n\r\n", "Transfer-Encoding: chunked")),
    shape("te-empty", "9112 6.1", "MUST 400+close", 400, post("Transfer-Encoding:", body="hello")),
    shape("te-identity", "9112 6.1", "MUST 400+close", 400, post("Transfer-Encoding: identity", body="")),
    shape("te-chunked-parameter", "9112 6.1", "chunked has none", 400,
          chunked("5\r\nhello\r\n0\r\n\r\n").replace("chunked", "chunked;q=1", 1)),
    shape("te-upper-case", "9112 7", "case-insensitive", 200,
          chunked("5\r\nhello\r\n0\r\n\r\n").replace("chunked", "CHUNKED", 1)),
    shape("te-and-cl", "9112 6.1", "MUST close", 400, chunked("5\r\nhello\r\n0\r\n\r\n", "Content-Length: 5")),
    shape("cl-and-te", "9112 6.1", "MUST close", 400,
          post("Content-Length: 5", "Transfer-Encoding: chunked", body="5\r\nhello\r\n0\r\n\r\n")),
    shape("cl-negative", "9112 6.3", "MUST 400+close", 400, post("Content-Length: -1")),
    shape("cl-plus", "9112 6.3", "MUST 400+close", 400, post("Content-Length: +5", body="hello")),
    shape("cl-hex", "9112 6.3", "MUST 400+close", 400, post("Content-Length: 0x5", body="hello")),
    shape("cl-empty", "9112 6.3", "MUST 400+close", 400, post("Content-Length:", body="hello")),
    shape("cl-space-inside", "9112 6.3", "MUST 400+close", 400, post("Content-Length: 5 5", body="hello")),
    shape("cl-list-differs", "9112 6.3", "MUST 400+close", 400, post("Content-Length: 5, 6", body="hello!")),
    shape("cl-list-same", "9110 8.6", "MAY accept", 400, post("Content-Length: 5, 5", body="hello")),
    shape("cl-twice-same", "9110 8.6", "MAY accept", 400,
          post("Content-Length: 5", "Content-Length: 5", body="hello")),
    shape("cl-twice-differs", "9112 6.3", "MUST 400+close", 400,
          post("Content-Length: 5", "Content-Length: 6", body="hello!")),
    shape("cl-overflow", "9112 6.3", "MUST 400+close", 400,
          post("Content-Length: 99999999999999999999999", body="hello")),
    shape("cl-leading-zeros", "9110 8.6", "valid", 200, post("Content-Length: 005", body="hello")),
    # 7 chunked transfer coding; a good chunk first, so the error shows once forwarding began
    shape("chunk-size-not-hex", "9112 7.1", "MUST 400+close", 400,
          chunked("5\r\nhello\r\nzz\r\nhello\r\n0\r\n\r\n"), body_error=True),
    shape("chunk-size-0x", "9112 7.1", "MUST 400+close", 400,
          chunked("5\r\nhello\r\n0x5\r\nhello\r\n0\r\n\r\n"), body_error=True),
    shape("chunk-size-negative", "9112 7.1", "MUST 400+close", 400,
          chunked("5\r\nhello\r\n-5\r\nhello\r\n0\r\n\r\n"), body_error=True),
    shape("chunk-size-overflow", "9112 7.1", "MUST 400+close", 400,
          chunked("5\r\nhello\r\n10000000000000005\r\nhello\r\n0\r\n\r\n"), body_error=True),
    shape("chunk-size-first-bad", "9112 7.1", "MUST 400+close", 400, chunked("zz\r\nhello\r\n0\r\n\r\n")),
    shape("chunk-size-space", "9112 7.1.1", "BWS only before ;", 400,
          chunked("5\r\nhello\r\n5 \r\nhello\r\n0\r\n\r\n"), body_error=True),
    shape("chunk-ext-no-name", "9112 7.1.1", "MUST 400+close", 400,
          chunked("5\r\nhello\r\n5;=x\r\nhello\r\n0\r\n\r\n"), body_error=True),
    # Beast 1.81 reads a quoted chunk-ext across the line end, waiting for a closing quote:
    # keygate answers when the body deadline (body_timeout) ends.
    shape("chunk-ext-open-quote", "9112 7.1.1", "SHOULD 400+close", 408,
          chunked('5\r\nhello\r\n5;a="x\r\nhello\r\n0\r\n\r\n'), body_error=True),
    shape("chunk-ext-valid", "9112 7.1.1", "MUST ignore", 200, chunked('5;a=b;c="d"\r\nhello\r\n0;e\r\n\r\n')),
    shape("chunk-ext-bws", "9112 7.1.1", "valid", 200, chunked("5 ; a = b\r\nhello\r\n0\r\n\r\n")),
    shape("chunk-ext-too-long", "9112 7.1.1", "SHOULD limit", 400,
          chunked("5\r\nhello\r\n5;" + "a" * 100000 + "\r\nhello\r\n0\r\n\r\n"), body_error=True),
    shape("chunk-data-too-long", "9112 7.1", "MUST 400+close", 400,
          chunked("5\r\nhello\r\n2\r\nhello\r\n0\r\n\r\n"), body_error=True),
    shape("chunk-data-lf-only", "9112 7.1", "MUST 400+close", 400,
          chunked("5\r\nhello\r\n5\r\nhello\n0\r\n\r\n"), body_error=True),
    shape("chunk-no-last-chunk", "9112 7.1", "MUST 400+close", 400, chunked("5\r\nhello\r\n"), body_error=True),
    shape("trailer-bad-line", "9112 7.1.2", "field-line", 400,
          chunked("5\r\nhello\r\n0\r\nX Bad: 1\r\n\r\n"), body_error=True),
    shape("trailer-space-before-colon", "9112 7.1.2", "MUST 400", 400,
          chunked("5\r\nhello\r\n0\r\nX-T : 1\r\n\r\n"), body_error=True),
    shape("trailer-valid", "9112 7.1.2", "valid", 200, chunked("5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n")),
    # Beast unfolds it (RFC 9112 5.2 allows SP instead); keygate forwards no trailers anyway.
    shape("trailer-obs-fold", "9112 5.2", "MUST 400 or SP", 200,
          chunked("5\r\nhello\r\n0\r\nX-T: a\r\n b\r\n\r\n")),
    # 2.3 HTTP version
    shape("version-lower-case", "9112 2.3", "case-sensitive", 400, head("GET {P} http/1.1")),
    shape("version-2", "9110 6.2", "505", 505, head("GET {P} HTTP/2.0")),
    shape("version-0.9", "9110 6.2", "505", 505, head("GET {P} HTTP/0.9")),
    shape("version-3-no-minor", "9110 6.2", "505", 505, head("GET {P} HTTP/3")),
    shape("version-1.2", "9110 2.5", "SHOULD as 1.1", 400, head("GET {P} HTTP/1.2")),
    shape("version-two-digits", "9112 2.3", "major 11", 505, head("GET {P} HTTP/11.1")),
    shape("version-no-minor", "9112 2.3", "DIGIT.DIGIT", 400, head("GET {P} HTTP/1")),
]

Result = namedtuple("Result", "statuses closed")


def read_responses(sock, wanted, timeout):
    """Reads until `wanted` responses, the peer's close, or `timeout`. Returns (statuses,
    closed); a reply without a status line (HTTP/0.9) counts as status 0."""
    data = b""
    closed = False
    deadline = time.monotonic() + timeout
    while True:
        statuses = parse_responses(data, closed)
        if len(statuses) >= wanted or closed:
            return statuses, closed
        left = deadline - time.monotonic()
        if left <= 0:
            return statuses, False
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return statuses, False
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            closed = True
        data += chunk


def parse_responses(data, closed):
    """The statuses of the complete responses at the start of `data` (`closed`: all of it
    has arrived)."""
    statuses = []
    while data:
        if not data.startswith(b"HTTP/"):
            return statuses + [0]
        end = data.find(b"\r\n\r\n")
        if end < 0:
            return statuses
        lines = data[:end].decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        fields = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
        rest = data[end + 4:]
        if "content-length" in fields:
            length = int(fields["content-length"])
            if len(rest) < length:
                return statuses
            data = rest[length:]
        elif fields.get("transfer-encoding", "").lower() == "chunked":
            data = skip_chunked(rest)
            if data is None:
                return statuses
        else:  # to the end of the connection
            if not closed:
                return statuses
            data = b""
        statuses.append(status)
    return statuses


def skip_chunked(data):
    """What follows a complete chunked body at the start of `data`, or None."""
    while True:
        eol = data.find(b"\r\n")
        if eol < 0:
            return None
        size = int(data[:eol].split(b";")[0], 16)
        data = data[eol + 2:]
        if size == 0:
            end = data.find(b"\r\n")  # no trailers from these servers
            return None if end < 0 else data[end + 2:]
        if len(data) < size + 2:
            return None
        data = data[size + 2:]


def exchange(port, payload, wanted):
    with socket.create_connection(("127.0.0.1", port), timeout=READ_TIMEOUT) as sock:
        try:
            sock.sendall(payload)
        except OSError:  # closed early: what it answered is still readable
            pass
        return Result(*read_responses(sock, wanted, READ_TIMEOUT))


def nginx_conf(port, upstream_port):
    return f"""worker_processes 1;
pid nginx.pid;
error_log error.log info;
events {{ worker_connections 64; }}
http {{
    access_log access.log;
    client_body_temp_path tmp/client_body;
    proxy_temp_path tmp/proxy;
    fastcgi_temp_path tmp/fastcgi;
    uwsgi_temp_path tmp/uwsgi;
    scgi_temp_path tmp/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{ proxy_pass http://127.0.0.1:{upstream_port}; }}
    }}
}}
"""


class Rfc9112Test(harness.KeygateTestCase):
    """keygate and nginx in front of one recording upstream."""
    start_upstream = False

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.record_path = os.path.join(cls.workdir, "upstream-events.jsonl")
        cls.upstream = harness.Upstream(cls.workdir, ["--record", cls.record_path]).start()
        cls.addClassCleanup(cls.upstream.stop)
        routes = [{"path": "/rfc/*", "scopes": [SCOPE]}] + harness.DEFAULT_ROUTES
        # Short deadlines: a body whose rest never comes is a 408 after body_timeout
        # (chunk-ext-open-quote); an idle connection closes after idle_timeout.
        cls.kg = cls.start_keygate(routes=routes, limits={"idle_timeout": "1s", "body_timeout": "1s"})
        cls.key = cls.create_key(scopes=[SCOPE])
        nginx_port = harness.free_port()
        cls.nginx = harness.Nginx(cls.workdir, nginx_conf(nginx_port, cls.upstream.port), nginx_port)
        cls.addClassCleanup(cls.nginx.stop)
        cls.nginx.start()

    def send(self, port, shape, marker):
        path = f"/rfc/{marker}/{shape.id}"
        raw = shape.raw.replace("{P}", path).replace("{K}", self.key["key"])
        pipelined = f"GET {path}/pipelined HTTP/1.1\r\nHost: {HOST}\r\n\r\n"
        return exchange(port, (raw + pipelined).encode("latin-1"), wanted=2)

    def upstream_events(self):
        """Every recorded event, once the file has stopped growing."""
        sizes = [-1]

        def settled():
            sizes.append(os.path.getsize(self.record_path) if os.path.exists(self.record_path) else 0)
            return sizes[-1] == sizes[-2]

        harness.poll_until(settled, timeout=5.0, interval=0.3)
        if not os.path.exists(self.record_path):
            return []
        with open(self.record_path) as f:
            return [json.loads(line) for line in f]

    def test_every_shape_against_nginx(self):
        results = [(s, self.send(self.nginx.port, s, "ngx"), self.send(self.kg.port, s, "kg"))
                   for s in SHAPES]
        events = self.upstream_events()

        def seen(path, event=None, **fields):
            return [e for e in events if e.get("path", "").split("?")[0] == path
                    and (event is None or e["event"] == event)
                    and all(e.get(k) == v for k, v in fields.items())]

        print(f"\n{'shape':30} {'RFC':11} {'says':26} {'nginx':>6} {'keygate':>8}  closed")
        for s, ngx, kg in results:
            nginx_status = ngx.statuses[0] if ngx.statuses else "-"
            if seen(f"/rfc/ngx/{s.id}", "head") and ngx.statuses and ngx.statuses[0] >= 400:
                nginx_status = f"{nginx_status}u"  # the upstream's answer, forwarded
            kg_status = kg.statuses[0] if kg.statuses else "-"
            print(f"{s.id:30} {s.section:11} {s.rfc:26} {nginx_status!s:>6} {kg_status!s:>8}  "
                  f"{'yes' if kg.closed else 'no'}")
        print("(u: nginx forwarded the shape and this is the upstream's answer)")

        for s, ngx, kg in results:
            with self.subTest(shape=s.id):
                path = f"/rfc/kg/{s.id}"
                kg_status = kg.statuses[0] if kg.statuses else None
                self.assertEqual(kg_status, s.expect, f"keygate's answer to {s.id}")
                nginx_refused = (ngx.statuses and ngx.statuses[0] >= 400
                                 and not seen(f"/rfc/ngx/{s.id}", "head"))
                if nginx_refused:
                    self.assertGreaterEqual(kg_status or 0, 400, "nginx rejects it, keygate did not")
                pipelined = [e for e in events
                             if path + "/pipelined" in e.get("path", e.get("requestline", ""))]
                self.assertEqual(pipelined, [], "the keyless pipelined request reached the upstream")
                if s.expect >= 400:
                    self.assertEqual(seen(path, "body", complete=True), [], "a rejected shape reached the upstream")
                    if s.body_error:
                        # Forwarding began (head and first chunk), then the upstream saw its
                        # connection end inside the body: closed, not pooled.
                        self.assertEqual(len(seen(path, "head")), 1, "forwarding never began")
                        self.assertEqual(len(seen(path, "body", complete=False)), 1)
                    else:
                        self.assertEqual(seen(path), [], "a rejected head reached the upstream")
                else:
                    self.assertEqual(len(seen(path, "body", complete=True)), 1, "an accepted shape did not arrive")
                if s.close:
                    self.assertTrue(kg.closed, "keygate kept the connection open")
                    self.assertEqual(len(kg.statuses), 1, "keygate answered the pipelined request")
                elif not kg.closed:
                    self.assertEqual(kg.statuses[1:], [401], "the pipelined keyless request")

    def test_absolute_form_is_forwarded_in_origin_form_with_the_targets_host(self):
        path = "/rfc/kg/absolute-host"
        raw = head("GET http://absolute.test:8080{P}?q=1 HTTP/1.1")
        r = exchange(self.kg.port, raw.replace("{P}", path).replace("{K}", self.key["key"]).encode(), 1)
        self.assertEqual(r.statuses, [200])
        events = [e for e in self.upstream_events() if e["event"] == "head" and e["path"].startswith(path)]
        self.assertEqual(len(events), 1)
        self.assertEqual(events[0]["path"], path + "?q=1")
        hosts = [v for n, v in events[0]["headers"] if n.lower() == "host"]
        self.assertEqual(hosts, ["absolute.test:8080"])


if __name__ == "__main__":
    unittest.main()
