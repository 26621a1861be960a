"""Host names are resolved off the event loop: while every Redis (re)connect waits on a DNS
server that never answers, requests for a cached key keep being answered at once.

keygate runs in a mount namespace of its own (unshare -m) in which /etc/hosts is a file of this
test's that maps kg-pg.test to 127.0.0.1, and /etc/resolv.conf names a DNS server on
127.53.x.y:53 that this test binds and never answers: a black hole. Nothing outside
127.0.0.0/8 is ever a target. postgres.dsn names kg-pg.test (the hosts file answers at once);
redis.url names kg-redis.test, which only that DNS server could answer, so each Redis
connect attempt waits for DNS (resolv.conf timeout 3 s; glibc gives up on a lookup after 3-6 s).
A blocking getaddrinfo on a worker's loop stalls that worker all that time; keygate must not.

Needs root and unshare(1) (util-linux); skipped, saying why, without them."""
import os
import random
import shutil
import socket
import statistics
import subprocess
import threading
import time
import unittest
from urllib.parse import urlsplit, urlunsplit

import harness
from harness import bearer, request

PG_NAME = "kg-pg.test"
REDIS_NAME = "kg-redis.test"
DNS_TIMEOUT_S = 3           # resolv.conf `timeout`: how long glibc waits for each answer
MEASURE_S = 6.0             # spans more than one hung Redis lookup and the retries between
LATENCY_BOUND_S = 0.25      # every cached-key request; a blocked worker takes seconds

# In the new mount namespace: our hosts and resolv.conf over the real ones, then keygate
# (exec: the PID the test holds is keygate's own).
NAMESPACE_SCRIPT = ('mount --bind "$1" /etc/hosts && mount --bind "$2" /etc/resolv.conf && '
                    'shift 2 && exec "$@"')


def namespace_support():
    """None when keygate can be run in a private mount namespace here, else why not."""
    if os.geteuid() != 0:
        return "needs root (mount namespaces and a DNS socket on port 53)"
    if shutil.which("unshare") is None:
        return "needs unshare(1) from util-linux"
    r = subprocess.run(["unshare", "-m", "--propagation", "private", "true"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=10)
    if r.returncode != 0:
        return f"unshare -m does not work here: {r.stderr.strip()}"
    return None


class BlackHoleDns:
    """A UDP socket on 127.53.x.y:53 that reads queries and never answers; counts them."""

    def __init__(self):
        self.sock = None
        for _ in range(20):
            address = f"127.53.{random.randint(1, 254)}.{random.randint(1, 254)}"
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                s.bind((address, 53))
            except OSError:
                s.close()
                continue
            self.sock, self.address = s, address
            break
        if self.sock is None:
            raise RuntimeError("no free 127.53.x.y:53 for the black-hole DNS server")
        self.queries = 0
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._swallow, daemon=True)
        self.thread.start()

    def _swallow(self):
        while True:
            try:
                self.sock.recvfrom(4096)
            except OSError:
                return  # closed
            with self.lock:
                self.queries += 1

    def count(self):
        with self.lock:
            return self.queries

    def close(self):
        self.sock.close()
        self.thread.join(timeout=5)


class NamespacedKeygate(harness.Keygate):
    """harness.Keygate, started inside a private mount namespace with our hosts/resolv.conf."""

    def __init__(self, workdir, config, hosts_file, resolv_file, **kw):
        super().__init__(workdir, config, **kw)
        self.hosts_file = hosts_file
        self.resolv_file = resolv_file

    def start(self, timeout=30.0):
        with open(self.config_path, "w") as f:
            f.write(harness.to_yaml(self.config) + "\n")
        command = ["unshare", "-m", "--propagation", "private", "sh", "-c", NAMESPACE_SCRIPT, "sh",
                   self.hosts_file, self.resolv_file,
                   harness.keygate_bin(), "serve", "--config", self.config_path]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(command, cwd=self.workdir, stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=harness.clean_env(self.extra_env))
        self.wait_ready(timeout)
        return self


def with_host(url, host):
    u = urlsplit(url)
    netloc = u.netloc.rsplit("@", 1)
    hostport = f"{host}:{u.port}"
    netloc = f"{netloc[0]}@{hostport}" if len(netloc) == 2 else hostport
    return urlunsplit((u.scheme, netloc, u.path, u.query, u.fragment))


def summary(latencies):
    ms = sorted(x * 1000 for x in latencies)
    p95 = ms[min(len(ms) - 1, int(len(ms) * 0.95))]
    return (f"{len(ms)} requests: p50 {statistics.median(ms):.1f} ms, p95 {p95:.1f} ms, "
            f"max {ms[-1]:.1f} ms")


class NameResolutionTest(harness.KeygateTestCase):

    @classmethod
    def setUpClass(cls):
        why_not = namespace_support()
        if why_not:
            raise unittest.SkipTest(why_not)
        super().setUpClass()
        cls.dns = BlackHoleDns()
        cls.addClassCleanup(cls.dns.close)
        cls.hosts_file = os.path.join(cls.workdir, "hosts")
        with open(cls.hosts_file, "w") as f:
            f.write(f"127.0.0.1 localhost\n127.0.0.1 {PG_NAME}\n")
        cls.resolv_file = os.path.join(cls.workdir, "resolv.conf")
        with open(cls.resolv_file, "w") as f:
            f.write(f"nameserver {cls.dns.address}\noptions timeout:{DNS_TIMEOUT_S} attempts:1\n")

    def start_namespaced(self):
        config = self.keygate_config(
            postgres={"dsn": with_host(self.dsn, PG_NAME), "pool_size": 2},
            redis={"url": with_host(self.redis_url, REDIS_NAME)},
            routes_default="key",  # /things/1 needs a valid key, whatever the default
        )
        kg = NamespacedKeygate(self.workdir, config, self.hosts_file, self.resolv_file)
        self.addCleanup(kg.stop)
        kg.start()
        return kg

    def timed_get(self, kg, key):
        start = time.monotonic()
        r = request(kg.port, "GET", "/things/1", headers=bearer(key), timeout=30)
        return r, time.monotonic() - start

    def test_cached_keys_answer_at_once_while_redis_names_hang_in_dns(self):
        key = self.create_key()
        kg = self.start_namespaced()

        # The first request reads the key from PostgreSQL (reached by its hosts-file name)
        # and puts it in the in-process cache; Redis has no address, so it is not consulted.
        r, first = self.timed_get(kg, key["key"])
        self.assertStatus(r, 200, kg)
        queries_before, _ = harness.poll_until(self.dns.count, timeout=10)
        self.assertTrue(queries_before, "keygate never asked the DNS server for kg-redis.test")

        latencies = []
        end = time.monotonic() + MEASURE_S
        while time.monotonic() < end:
            r, elapsed = self.timed_get(kg, key["key"])  # a fresh connection: any worker
            self.assertStatus(r, 200, kg, f"(request {len(latencies) + 1})")
            latencies.append(elapsed)
            time.sleep(0.01)
        stats = summary(latencies)
        print(f"\ncached-key requests while Redis lookups hang in DNS: {stats} "
              f"(first request {first * 1000:.1f} ms, DNS queries {self.dns.count()})")

        # Redis kept trying (more lookups reached the black hole) and stayed unresolved.
        self.assertGreater(self.dns.count(), queries_before, "no Redis reconnect attempt was seen")
        slow = [x for x in latencies if x >= LATENCY_BOUND_S]
        self.assertFalse(slow, f"{len(slow)} cached-key requests took {LATENCY_BOUND_S * 1000:.0f} ms "
                               f"or more while Redis names hung in DNS: {stats}\n{kg.log_tail()}")

        # The failure is one log line naming the host (the JSON line escapes the quotes).
        with open(kg.log_path, encoding="utf-8", errors="replace") as f:
            log = f.read()
        self.assertIn(f'redis: cannot connect (could not resolve \\"{REDIS_NAME}\\"', log)
        self.assertEqual(request(kg.admin_port, "GET", "/readyz").status, 200,
                         "PostgreSQL (by its hosts-file name) answers, so keygate is ready")

    def test_uncached_keys_are_read_from_postgres_by_name_meanwhile(self):
        kg = self.start_namespaced()
        keys = [self.create_key() for _ in range(5)]  # created after start: cached nowhere
        latencies = []
        for key in keys:
            r, elapsed = self.timed_get(kg, key["key"])
            self.assertStatus(r, 200, kg)
            latencies.append(elapsed)
            time.sleep(0.3)
        print(f"\nuncached keys through {PG_NAME} while Redis hangs in DNS: {summary(latencies)}")
        self.assertLess(max(latencies), 1.0, f"{summary(latencies)}\n{kg.log_tail()}")


if __name__ == "__main__":
    unittest.main()
