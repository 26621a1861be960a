"""Bulk API keys for the benchmark, in keygate's own format, without going through keygate.

keygate's format (authz/key_format.cpp): <prefix>_<32 base62 chars><6 base62 chars of the
CRC-32 (zlib's) of everything before>, the checksum most significant digit first. The stored
hash is SHA-256 of the whole key (no pepper). Rows are streamed into PostgreSQL with COPY.
"""
import hashlib
import os
import random
import subprocess
import time
import zlib

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
RANDOM_LENGTH = 32
CHECKSUM_LENGTH = 6
DISPLAY_LENGTH = 12

# Every benchmark key may make 1e9 requests a minute: far above anything measured here. A
# minute, like the default limit (100/60s): a worker's lease on a counter lasts one sub-window
# (W/20, here 3 s); with a 1 s window it would last 50 ms and nearly every request of `hot`
# (about 15 a second per key) would be its own Redis call.
HUGE_LIMIT = (1_000_000_000, 60)
# The `limited` key: one request an hour, so every request of the run is over its limit.
TINY_LIMIT = (1, 3600)


def checksum(body):
    v = zlib.crc32(body.encode())
    out = []
    for _ in range(CHECKSUM_LENGTH):
        out.append(BASE62[v % 62])
        v //= 62
    return "".join(reversed(out))


class KeyFactory:
    def __init__(self, prefix="kg_live", seed=None):
        self.prefix = prefix
        self.rng = random.Random(seed if seed is not None else os.urandom(16))

    def bodies(self, count):
        """`count` key bodies (prefix_ + 32 random base62), generated in one batch."""
        chars = "".join(self.rng.choices(BASE62, k=RANDOM_LENGTH * count))
        head = self.prefix + "_"
        return [head + chars[i:i + RANDOM_LENGTH] for i in range(0, len(chars), RANDOM_LENGTH)]

    def keys(self, count):
        return [b + checksum(b) for b in self.bodies(count)]

    def bad_checksum_keys(self, count):
        """Well-formed keys whose checksum is wrong (keygate rejects them with no I/O)."""
        out = []
        for b in self.bodies(count):
            good = checksum(b)
            bad = good[:-1] + BASE62[(BASE62.index(good[-1]) + 1) % 62]
            out.append(b + bad)
        return out


def write_lines(path, lines):
    with open(path, "w") as f:
        f.write("\n".join(lines))
        f.write("\n")


def load_keys(psql_args, total, factory, batch=50_000, keep=0, special_limits=None):
    """Generates `total` valid keys and COPYs them into api_keys through `psql_args`.
    Returns the first `keep` keys. special_limits: {index: (rate_limit, window_seconds)}."""
    special_limits = special_limits or {}
    copy = ("COPY api_keys (owner_type, owner_id, name, key_prefix, key_hash, rate_limit, "
            "window_seconds) FROM STDIN")
    proc = subprocess.Popen(psql_args + ["-v", "ON_ERROR_STOP=1", "-qc", copy],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    kept = []
    started = time.monotonic()
    index = 0
    try:
        while index < total:
            n = min(batch, total - index)
            rows = []
            for key in factory.keys(n):
                rl, ws = special_limits.get(index, HUGE_LIMIT)
                digest = hashlib.sha256(key.encode()).hexdigest()
                rows.append(f"bench\tb{index}\tbench-{index}\t{key[:DISPLAY_LENGTH]}\t"
                            f"\\\\x{digest}\t{rl}\t{ws}\n")
                if index < keep:
                    kept.append(key)
                index += 1
            proc.stdin.write("".join(rows).encode())
        proc.stdin.close()
        out = proc.stdout.read().decode()
        if proc.wait(timeout=600) != 0:
            raise RuntimeError(f"COPY into api_keys failed: {out.strip()}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return kept, time.monotonic() - started
