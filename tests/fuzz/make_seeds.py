#!/usr/bin/env python3
"""Writes the seed corpora in tests/fuzz/corpus/<target>/ (committed; rerun after changing a
target's input layout). Targets built on FuzzedDataProvider take their flags from the END of
the input and their strings from the front, a string ending at a backslash followed by another
byte: the seeds are laid out the same way."""
import binascii
import os
import shutil

HERE = os.path.dirname(os.path.abspath(__file__))
ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def key(prefix="kg_live", random="a" * 32):
    body = f"{prefix}_{random}"
    crc = binascii.crc32(body.encode())
    check = ""
    for _ in range(6):
        check = ALPHABET[crc % 62] + check
        crc //= 62
    return body + check


KEY = key(random="Zq3XbT9vLk2WmN8pR4sY7uF1hJ6cD0eG")
OTHER = key("test", "0123456789abcdefghijABCDEFGHIJkl")


def provider_string(text):
    """A string as FuzzedDataProvider.ConsumeRandomLengthString reads it, then its end."""
    return text.replace(b"\\", b"\\\\") + b"\\ "


def write(target, seeds):
    folder = os.path.join(HERE, "corpus", target)
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    for i, seed in enumerate(seeds):
        with open(os.path.join(folder, f"seed-{i:02d}"), "wb") as f:
            f.write(seed if isinstance(seed, bytes) else seed.encode())


def key_format():
    return [KEY, OTHER, KEY[:-1] + ("A" if KEY[-1] != "A" else "B"), "kg_live_short", "",
            "Kg_live_" + "a" * 38, "a" * 128 + "_" + "b" * 38, "x_" + "9" * 38]


def credential():
    cases = [(b"api_key", b"Bearer " + KEY.encode(), b"a=1&api_key=" + KEY.encode() + b"&b=2", 1),
             (b"api_key", b"bearer\t " + KEY.encode() + b"  ", b"api_key=" + OTHER.encode(), 1),
             (b"token", KEY.encode(), b"token=&token=" + KEY.encode(), 0),
             (b"", b"Basic dXNlcjpwYXNz", b"", 1),
             (b"k", b"  ", b"k=1&k=2&&k=", 0)]
    return [provider_string(p) + provider_string(v) + q + bytes([flag]) for p, v, q, flag in cases]


def request_path():
    targets = [b"/inventory/items?x=1", b"/public/../admin", b"/public/%2e%2e/admin", b"//admin",
               b"/a/./b/../c/%7Euser", b"http://example.com:8080/v1/x/items?q", b"HTTPS://h/",
               b"/files/a.txt", b"/%2F", b"/a%00b", b"/..;/admin", b"*", b"host:80", b"/a b\"<>",
               b"/v1/" + b"a/" * 50 + b"items", b"/\xc3\xa9t\xc3\xa9", b"/%zz", b"/admin?api_key=1#f"]
    patterns = [b"/v1/*/items", b"/public/*", b"/a?c", b"/**/*", b"/inventory"]
    return [provider_string(patterns[i % len(patterns)]) + t for i, t in enumerate(targets)]


def ip_network():
    return ["127.0.0.1", "10.0.0.0/8", "::1", "[::1]", "2001:db8::/32", "::ffff:10.1.2.3",
            "192.168.1.0/24", "0.0.0.0/0", "::/0", "fe80::1%eth0", "1.2.3.4/33", "10.0.0.1/8",
            "1:2:3:4:5:6:7:8", "1::8/128", "01.2.3.4", "256.1.1.1"]


def config():
    with open(os.path.join(HERE, "..", "..", "config.yaml")) as f:
        shipped = f.read()
    return [shipped, "upstream: ${UPSTREAM}\nkeys:\n  pepper: ${PEPPER}\n",
            "listen: ${KEYGATE_LISTEN:-127.0.0.1:1}\nrate_limit:\n  default: 10/1s\n",
            "routes:\n  - path: /inventory/*\n    methods: [GET, POST]\n    scopes: [inventory:read]\n"
            "    rate_limit: 5/10s\n  - path: /public/*\n    public: true\n",
            "limits:\n  header_timeout: 1500ms\n  max_connections: 5\ntrusted_proxies: [10.0.0.0/8, ::1]\n",
            "cache: {ttl: 0s, negative_ttl: 5s}\nthreads: auto\nmode: authz\n",
            "tls:\n  cert_file: /nonexistent\n", "a: $${literal}\nb: ${EMPTY:-x}\n", "---\nmode: proxy\n---\n",
            "store:\n  schema: custom\n  preset: owner_abilities\n  columns: { scopes: none, last_used_at: seen }\n"
            "  key_format: { min_length: 20, max_length: 64, alphabet: hex }\n",
            "keys: { pepper: ${PEPPER} }\nstore:\n  schema: custom\n  table: billing.tokens\n"
            "  credential: { column: token, encoding: hmac-sha256 }\n  columns: { id: token_id, rate_limit: rpm }\n"
            "  owner_type: account\n  window: 1m\n  usage_table: none\n",
            "store:\n  schema: custom\n  preset: api_keys_bcrypt\n  credential: { prefix_length: 8 }\n",
            "store:\n  schema: custom\n  preset: user_api_key\n  revocation: poll\n  poll_interval: 250ms\n"]


def key_record():
    return ["kr2;1:k0:0:0:0;0;~;~;~;~;1;~;~;",
            "kr2;36:0b6f3a52-8d1e-4c1b-9a57-3f0d2b7c9e114:user2:423:app2;4:read5:write2;"
            "10:10.0.0.0/83:::1100;60;100000;86400;1;1893456000000000;~;",
            "kr2;1:x4:team1:76:a\x00b;c0;1;9:0.0.0.0/0~;~;~;~;0;~;1700000000000000;", "kg:invalid"]


def redis_reply():
    replies = [b"*5\r\n:1\r\n:-1\r\n:16\r\n:3\r\n:40\r\n",
               b"*14\r\n:0\r\n:-1\r\n:0\r\n" + b":5\r\n" * 11,
               b"$31\r\nkr2;1:k0:0:0:0;0;~;~;~;~;1;~;~;\r\n", b"$-1\r\n", b"+OK\r\n",
               b"-NOSCRIPT No matching script\r\n", b"*-1\r\n", b"*2\r\n*1\r\n:1\r\n$3\r\nabc\r\n",
               b"*3\r\n$7\r\nmessage\r\n$9\r\nkg:revoke\r\n$64\r\n" + b"ab" * 32 + b"\r\n"]
    return [bytes([i * 7 % 64]) + r for i, r in enumerate(replies)]


def request_head():
    heads = [
        b"GET /inventory/1?x=1 HTTP/1.1\r\nHost: app\r\nAuthorization: Bearer " + KEY.encode() + b"\r\n\r\n",
        b"POST /orders HTTP/1.1\r\nHost: app:8080\r\nX-Api-Key: " + KEY.encode() +
        b"\r\nContent-Length: 5\r\nX-Api-Key-Id: forged\r\nConnection: keep-alive, x-foo\r\nX-Foo: 1\r\n\r\nhello",
        b"PUT /u HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"GET http://example.com/a/../b?api_key=" + KEY.encode() + b"&c=d HTTP/1.1\r\nHost: other\r\n\r\n",
        b"GET /x HTTP/1.0\r\nX-Forwarded-For: 1.2.3.4\r\nX-Original-URI: /admin\r\nX-Original-Method: POST\r\n\r\n",
        b"\r\n\r\nDELETE /keys/1 HTTP/1.1\r\nHost: [::1]:80\r\nUpgrade: websocket\r\nTE: trailers\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
        b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", b"get / HTTP/2.0\r\n\r\n",
    ]
    seeds = []
    for i, head in enumerate(heads):
        piece = (1, 7, 4096, 64)[i % 4]
        tail = bytes([i % 11, i % 2]) + bytes([i % 3 == 0, i % 2]) + piece.to_bytes(2, "big")
        seeds.append(provider_string(head) + tail)
    return seeds


if __name__ == "__main__":
    for name in ("key_format", "credential", "request_path", "ip_network", "config", "key_record",
                 "redis_reply", "request_head"):
        write(name, globals()[name]())
