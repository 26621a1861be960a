#!/usr/bin/env python3
"""Floods of client connections for test_floods.py, run as a process of their own so that they
do not share the GIL (or the descriptor limit) with the client that measures. Standard
library only; loopback only; every wait bounded.

    flood.py slow --port P --connections N [--max-seconds S]
        Opens N connections, prints "open N" (or "open K failed M") once they are all up,
        then sends each one byte of a request header a second, spread evenly, until its stdin
        closes (or S seconds pass). Prints one JSON line: opened, closed_by_server (any byte
        or a close from keygate counts), bytes_sent, open_seconds (to open them all), seconds
        (of trickling).

    flood.py drop --port P --count N [--concurrency C]
        N connections, C at a time, each dropped at one point of a request (see PATTERNS),
        every other round of patterns with FIN and the others with RST (SO_LINGER 0). The key
        for the requests that get forwarded is in $FLOOD_KEY (never on the command line).
        Prints one JSON line: count per pattern and close kind, and errors (connects that
        failed, unexpected answers).
"""
import argparse
import asyncio
import json
import os
import resource
import selectors
import socket
import struct
import sys
import time

HOST = "127.0.0.1"


def raise_descriptor_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# ---- slow: one header byte a second per connection ---------------------------------------------

# Never completes within a test: 1 byte a second, and the header goes on and on.
TRICKLE = b"GET /trickle HTTP/1.1\r\nHost: keygate\r\nX-Trickle: " + b"a" * 60000


def open_connections(port, n, deadline):
    socks, failed = [], 0
    for _ in range(n):
        if time.monotonic() > deadline:
            failed += 1
            continue
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(5.0)
        try:
            s.connect((HOST, port))
        except OSError:
            s.close()
            failed += 1
            continue
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        socks.append(s)
    return socks, failed


def run_slow(args):
    raise_descriptor_limit()
    started = time.monotonic()
    socks, failed = open_connections(args.port, args.connections, started + 60.0)
    print(f"open {len(socks)} failed {failed}" if failed else f"open {len(socks)}", flush=True)

    sel = selectors.DefaultSelector()
    for i, s in enumerate(socks):
        sel.register(s, selectors.EVENT_READ, i)
    sel.register(sys.stdin, selectors.EVENT_READ, None)
    alive = [True] * len(socks)
    sent = [0] * len(socks)
    closed_by_server = 0
    bytes_sent = 0
    trickle_started = time.monotonic()
    end = trickle_started + args.max_seconds
    # Connection i sends its k-th byte at trickle_started + k + i / n: an even spread.
    n = max(1, len(socks))
    next_index = 0  # the next connection due, cycling
    next_round = 0
    stop = False
    while not stop and time.monotonic() < end:
        now = time.monotonic()
        while True:
            due = trickle_started + next_round + next_index / n
            if due > now:
                break
            i = next_index
            if alive[i]:
                try:
                    k = socks[i].send(TRICKLE[sent[i]:sent[i] + 1])
                    sent[i] += k
                    bytes_sent += k
                except BlockingIOError:
                    pass
                except OSError:
                    alive[i] = False
                    closed_by_server += 1
                    sel.unregister(socks[i])
            next_index += 1
            if next_index == n:
                next_index, next_round = 0, next_round + 1
        due = trickle_started + next_round + next_index / n
        for key, _ in sel.select(timeout=max(0.0, min(due, end) - time.monotonic())):
            if key.data is None:  # stdin: closed (or anything) means stop
                stop = True
                continue
            i = key.data
            try:
                data = socks[i].recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            # keygate sending anything (a 408) or closing: it cut a slow client.
            if alive[i]:
                alive[i] = False
                closed_by_server += 1
                sel.unregister(socks[i])
    for s in socks:
        s.close()
    print(json.dumps({"opened": len(socks), "failed": failed, "closed_by_server": closed_by_server,
                      "bytes_sent": bytes_sent, "open_seconds": round(trickle_started - started, 2),
                      "seconds": round(time.monotonic() - trickle_started, 2)}),
          flush=True)
    return 0


# ---- drop: connections abandoned mid-request ---------------------------------------------------

def _with_key(lines, key):
    return ("\r\n".join(lines + [f"Authorization: Bearer {key}", "", ""])).encode()


async def _pattern_connect_only(reader, writer, key):
    pass


async def _pattern_request_line(reader, writer, key):
    writer.write(b"GET /drop/request-li")
    await writer.drain()
    await asyncio.sleep(0.005)


async def _pattern_header(reader, writer, key):
    writer.write(b"GET /drop/header HTTP/1.1\r\nHost: keygate\r\nUser-Agent: flood\r\nAuthoriz")
    await writer.drain()
    await asyncio.sleep(0.005)


async def _pattern_body(reader, writer, key):
    # Authorized and forwarded: keygate has sent the header (and this much body) upstream
    # when the client goes.
    writer.write(_with_key(["POST /drop/body HTTP/1.1", "Host: keygate", "Content-Length: 65536",
                            "Content-Type: application/octet-stream"], key) + b"b" * 4000)
    await writer.drain()
    await asyncio.sleep(0.03)


async def _pattern_slow_upstream(reader, writer, key):
    # Gone while keygate waits for the upstream's answer (upstream.py /slow).
    writer.write(_with_key(["GET /slow?ms=150 HTTP/1.1", "Host: keygate"], key))
    await writer.drain()
    await asyncio.sleep(0.04)


async def _pattern_response(reader, writer, key):
    # Gone in the middle of a response body too large for the socket buffers.
    writer.write(_with_key(["GET /big?bytes=1048576 HTTP/1.1", "Host: keygate"], key))
    await writer.drain()
    data = await asyncio.wait_for(reader.read(16384), 5.0)
    if not data.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"unexpected answer {data[:40]!r}")


PATTERNS = [
    ("connect_only", _pattern_connect_only),
    ("request_line", _pattern_request_line),
    ("header", _pattern_header),
    ("body", _pattern_body),
    ("slow_upstream", _pattern_slow_upstream),
    ("response", _pattern_response),
]


async def _one(port, i, key, counts, errors):
    name, pattern = PATTERNS[i % len(PATTERNS)]
    reset = (i // len(PATTERNS)) % 2 == 1
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), 10.0)
    except (OSError, asyncio.TimeoutError) as e:
        errors.append(f"connect: {e!r}")
        return
    try:
        await pattern(reader, writer, key)
    except (OSError, RuntimeError, asyncio.TimeoutError) as e:
        errors.append(f"{name}: {e!r}")
    sock = writer.get_extra_info("socket")
    if reset:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass
    kind = f"{name}/{'rst' if reset else 'fin'}"
    counts[kind] = counts.get(kind, 0) + 1


async def _drop_all(port, count, concurrency, key):
    counts, errors = {}, []
    gate = asyncio.Semaphore(concurrency)

    async def limited(i):
        async with gate:
            await _one(port, i, key, counts, errors)

    await asyncio.gather(*(limited(i) for i in range(count)))
    return counts, errors


def run_drop(args):
    raise_descriptor_limit()
    key = os.environ.get("FLOOD_KEY", "")
    started = time.monotonic()
    counts, errors = asyncio.run(_drop_all(args.port, args.count, args.concurrency, key))
    print(json.dumps({"counts": counts, "errors": errors[:20], "error_count": len(errors),
                      "seconds": round(time.monotonic() - started, 2)}), flush=True)
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    slow = sub.add_parser("slow")
    slow.add_argument("--port", type=int, required=True)
    slow.add_argument("--connections", type=int, required=True)
    slow.add_argument("--max-seconds", type=float, default=60.0)
    drop = sub.add_parser("drop")
    drop.add_argument("--port", type=int, required=True)
    drop.add_argument("--count", type=int, required=True)
    drop.add_argument("--concurrency", type=int, default=200)
    args = parser.parse_args(argv)
    return run_slow(args) if args.mode == "slow" else run_drop(args)


if __name__ == "__main__":
    sys.exit(main())
