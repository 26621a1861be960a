"""Rate limits and quotas end to end (issue #4): the real keygate binary, its own PostgreSQL and
Redis (so this test may restart Redis and count its commands), a real upstream.

- 429 answers carry Retry-After and {"error": "rate_limited"}; every answer for which a limit
  was consulted carries RateLimit-*; those refused before the rate-limit step (403, 401
  expired) carry none.
- Two keygate processes on one Redis enforce one limit.
- A flood of 50 000 requests from one over-limit key costs Redis fewer than 100 script calls
  (INFO commandstats: evalsha + eval), thanks to the over-limit near cache.
- A quota survives a Redis restart (reloaded from PostgreSQL, not handed out again).
- Redis killed mid-run: on_redis_error local keeps limiting; error is a store error, answered
  503 by on_store_error: closed and let through (for the verified key) by on_store_error: open.
"""
import socket
import threading
import time
import unittest

import harness


def script_calls(redis_url):
    """evalsha + eval calls Redis has served (INFO commandstats)."""
    info = harness.redis_command(redis_url, "INFO", "commandstats").decode()
    total = 0
    for line in info.splitlines():
        if line.startswith(("cmdstat_evalsha:", "cmdstat_eval:")):
            fields = dict(kv.split("=", 1) for kv in line.split(":", 1)[1].split(","))
            total += int(fields["calls"])
    return total


def pipelined_flood(port, key, total, threads=4, batch=100, deadline_s=40.0):
    """`total` GETs from `threads` keep-alive connections, `batch` requests pipelined per write.
    Returns {status: count}; stops early at the deadline."""
    request = (f"GET /flood HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n\r\n").encode()
    counts = {}
    lock = threading.Lock()
    stop_at = time.monotonic() + deadline_s

    def worker(n):
        local = {}
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            reader = s.makefile("rb")
            sent = 0
            while sent < n and time.monotonic() < stop_at:
                k = min(batch, n - sent)
                s.sendall(request * k)
                for _ in range(k):
                    status = int(reader.readline().split()[1])
                    length = 0
                    while True:
                        line = reader.readline()
                        if line in (b"\r\n", b""):
                            break
                        name, _, value = line.partition(b":")
                        if name.strip().lower() == b"content-length":
                            length = int(value.strip())
                    reader.read(length)
                    local[status] = local.get(status, 0) + 1
                sent += k
        with lock:
            for status, c in local.items():
                counts[status] = counts.get(status, 0) + c

    per = total // threads
    pool = [threading.Thread(target=worker, args=(per + (1 if i < total % threads else 0),))
            for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(deadline_s + 15)
    return counts


class RateLimitTest(harness.KeygateTestCase):
    own_stores = True  # this test restarts Redis and reads its command counters

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.kg = cls.start_keygate()

    def keygate(self, **overrides):
        config = self.keygate_config(threads=1, **overrides)
        return self.start_keygate_for_test(config=config)

    def wait_redis_back(self, kg, before):
        """Redis was restarted: wait (bounded) until keygate has reconnected."""
        def reconnected():
            return (harness.metric_value(kg.metrics(), "keygate_redis_reconnects_total") or 0) > before
        ok, _ = harness.poll_until(reconnected, 10.0)
        self.assertTrue(ok, "keygate did not reconnect to Redis within 10 s\n" + kg.log_tail())

    # ---- answers ---------------------------------------------------------------------------

    def test_429_carries_retry_after_json_and_ratelimit_headers(self):
        key = self.create_key(rate_limit="3/60s", scopes=["a"])["key"]
        client = harness.Client(self.kg.port)
        self.addCleanup(client.close)
        for remaining in (2, 1, 0):
            r = client.request("GET", "/anything", harness.bearer(key))
            self.assertStatus(r, 200, self.kg)
            values = self.assertRateLimitHeaders(r, limit=3)
            self.assertEqual(values["RateLimit-Remaining"], remaining, r)
        r = client.request("GET", "/anything", harness.bearer(key))
        self.assertError(r, 429, "rate_limited", self.kg)
        retry = r.header("Retry-After")
        self.assertRegex(retry or "", r"^\d+$", r)
        self.assertGreaterEqual(int(retry), 1)
        self.assertLessEqual(int(retry), 61)
        values = self.assertRateLimitHeaders(r, limit=3)
        self.assertEqual(values["RateLimit-Remaining"], 0)
        self.assertGreaterEqual(values["RateLimit-Reset"], int(retry))

        # Refused before the rate-limit step (a 403 for a missing scope): no limit was
        # consulted, so no RateLimit-* and no Retry-After.
        r = client.request("GET", "/inventory/1", harness.bearer(key))
        self.assertError(r, 403, "insufficient_scope", self.kg)
        self.assertIsNone(r.header("RateLimit-Limit"))
        self.assertIsNone(r.header("Retry-After"))

    def test_answers_refused_before_the_limit_carry_no_ratelimit_headers(self):
        created = self.create_key(rate_limit="7/60s")
        r = self.kg.get("/x", key=created["key"])
        self.assertStatus(r, 200, self.kg)
        self.assertEqual(self.assertRateLimitHeaders(r, limit=7)["RateLimit-Remaining"], 6)
        harness.expire_key(self.dsn, created["id"])

        def refused():
            return self.kg.get("/x", key=created["key"]).status == 401
        ok, _ = harness.poll_until(refused, 10.0)
        self.assertTrue(ok, "the expired key still passes after 10 s")
        r = self.kg.get("/x", key=created["key"])
        self.assertError(r, 401, "expired_key", self.kg)
        self.assertIsNone(r.header("RateLimit-Limit"))  # refused before the limit step
        # No key identified: no RateLimit-*.
        r = self.kg.get("/x", key=harness.with_typo(created["key"]))
        self.assertError(r, 401, "invalid_key", self.kg)
        self.assertIsNone(r.header("RateLimit-Limit"))

    # ---- shared limit, Redis calls --------------------------------------------------------

    def test_two_processes_share_one_limit(self):
        limit = 40
        key = self.create_key(rate_limit=f"{limit}/60s")["key"]
        a = self.keygate()
        b = self.keygate()
        ok = {a.port: 0, b.port: 0}
        clients = {kg.port: harness.Client(kg.port) for kg in (a, b)}
        for c in clients.values():
            self.addCleanup(c.close)
        for i in range(150):
            port = a.port if i % 2 == 0 else b.port
            r = clients[port].request("GET", "/shared", harness.bearer(key))
            self.assertIn(r.status, (200, 429), r)
            if r.status == 200:
                ok[port] += 1
        total = ok[a.port] + ok[b.port]
        print(f"\n  shared limit {limit}/60s over two keygates: {ok[a.port]} + {ok[b.port]} = {total} "
              f"allowed of 150", flush=True)
        # One Lua script decides for both: within one 3 s bucket the count is exact (bound 0).
        self.assertLessEqual(total, limit)
        self.assertGreaterEqual(total, limit)
        self.assertGreater(ok[a.port], 0)
        self.assertGreater(ok[b.port], 0)

    def test_flood_from_an_over_limit_key_makes_few_redis_calls(self):
        key = self.create_key(rate_limit="5/60s")["key"]
        self.assertStatus(self.kg.get("/warm", key=key), 200, self.kg)  # key cached, 1 used
        before = script_calls(self.redis_url)
        start = time.monotonic()
        counts = pipelined_flood(self.kg.port, key, 50_000)
        elapsed = time.monotonic() - start
        calls = script_calls(self.redis_url) - before
        print(f"\n  flood: {sum(counts.values())} requests in {elapsed:.1f} s, statuses {counts}, "
              f"{calls} Redis script calls", flush=True)
        self.assertEqual(sum(counts.values()), 50_000, counts)
        self.assertLessEqual(counts.get(200, 0), 4, counts)
        self.assertLess(calls, 100)

    # ---- quotas ----------------------------------------------------------------------------

    def test_quota_survives_a_redis_restart(self):
        kg = self.keygate()
        created = self.create_key(quota=8)
        key, key_id = created["key"], created["id"]
        for _ in range(5):
            self.assertStatus(kg.get("/q", key=key), 200, kg)

        def persisted():
            return self.sql(f"SELECT used FROM api_key_quota_usage WHERE api_key_id = '{key_id}'") == "5"
        ok, waited = harness.poll_until(persisted, 10.0)
        self.assertTrue(ok, "the quota count did not reach PostgreSQL within 10 s")

        reconnects = harness.metric_value(kg.metrics(), "keygate_redis_reconnects_total") or 0
        self.stores.redis.restart()  # an empty Redis on the same port
        self.wait_redis_back(kg, reconnects)
        statuses = []
        for _ in range(6):
            r = kg.get("/q", key=key)
            statuses.append(r.status)
            if r.status == 429:
                self.assertError(r, 429, "quota_exceeded", kg)
                self.assertRateLimitHeaders(r)
        print(f"\n  quota 8, 5 used (persisted after {waited:.1f} s), Redis restarted: {statuses}",
              flush=True)
        self.assertEqual(statuses, [200, 200, 200, 429, 429, 429])
        stored = harness.redis_command(self.redis_url, "GET", f"kg:q:{{{key_id}}}:0")
        self.assertEqual(stored, b"8")  # counted in Redis again, from PostgreSQL's 5

    # ---- Redis down ------------------------------------------------------------------------

    def redis_down(self, mode, on_store_error="closed"):
        kg = self.keygate(rate_limit={"default": "1000/60s", "on_redis_error": mode},
                          on_store_error=on_store_error)
        key = self.create_key(rate_limit="5/60s")["key"]
        self.assertStatus(kg.get("/before", key=key), 200, kg)  # cached in L1, 1 used in Redis
        self.stores.redis.stop()
        self.addCleanup(lambda: self.stores.redis.proc is None and self.stores.redis.start())
        client = harness.Client(kg.port)
        self.addCleanup(client.close)
        responses = [client.request("GET", "/down", harness.bearer(key)) for _ in range(12)]
        without = harness.metric_value(kg.metrics(), "keygate_ratelimit_decided_without_redis_total")
        self.stores.redis.start()
        print(f"\n  Redis down, on_redis_error {mode}: {[r.status for r in responses]}", flush=True)
        self.assertGreaterEqual(without, 12)
        return kg, responses

    def test_redis_down_local_keeps_limiting(self):
        kg, responses = self.redis_down("local")
        statuses = [r.status for r in responses]
        self.assertEqual(statuses[:5], [200] * 5, statuses)  # counted from zero in this process
        self.assertEqual(statuses[5:], [429] * 7, statuses)
        self.assertError(responses[-1], 429, "rate_limited", kg)
        self.assertIsNotNone(responses[-1].header("Retry-After"))

    def test_redis_down_error_closed_answers_503_without_ratelimit_headers(self):
        kg, responses = self.redis_down("error", on_store_error="closed")
        for r in responses:
            self.assertError(r, 503, "store_unavailable", kg)
            self.assertEqual(r.header("Retry-After"), "1")
            self.assertIsNone(r.header("RateLimit-Remaining"))  # no limit could be consulted

    def test_redis_down_error_open_lets_verified_keys_pass(self):
        kg, responses = self.redis_down("error", on_store_error="open")
        for r in responses:
            self.assertStatus(r, 200, kg)
            self.assertIsNone(r.header("RateLimit-Remaining"))


if __name__ == "__main__":
    unittest.main()
