"""1,000 concurrent requests for one uncached key cost at most one PostgreSQL lookup per worker
thread: concurrent misses for the same key hash wait for the one query in flight.
Counted by keygate_postgres_key_queries_total on the admin listener's /metrics."""
import hashlib
import threading
import time
import unittest

import harness
from harness import bearer

THREADS = 2
CONNECTIONS = 50
PER_CONNECTION = 20
METRIC = "keygate_postgres_key_queries_total"


class LookupCoalescingTest(harness.KeygateTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.kg = cls.start_keygate(threads=THREADS, cache={"ttl": "30s", "negative_ttl": "30s"})

    def queries(self):
        value = harness.metric_value(self.kg.metrics(), METRIC)
        self.assertIsNotNone(value, f"{METRIC} is not in /metrics")
        return value

    def forget_in_redis(self, key):
        """Removes the key's record from Redis (if the CLI put one there), so the burst must
        reach PostgreSQL: the L1 cache is cold because the key was never used."""
        digest = hashlib.sha256(key.encode()).hexdigest()
        harness.redis_command(self.redis_url, "DEL", f"kg:key:{digest}")

    def burst(self, key):
        """CONNECTIONS keep-alive connections, opened first, then released together by a
        barrier, each sending PER_CONNECTION requests. Returns (statuses, errors)."""
        barrier = threading.Barrier(CONNECTIONS)
        statuses, errors = [], []
        lock = threading.Lock()

        def worker():
            client = harness.Client(self.kg.port, timeout=20.0)
            try:
                client.conn.connect()
                barrier.wait(timeout=20.0)
                mine = []
                for i in range(PER_CONNECTION):
                    mine.append(client.request("GET", f"/things/{i}", headers=bearer(key)).status)
                with lock:
                    statuses.extend(mine)
            except Exception as e:  # recorded and asserted on below
                with lock:
                    errors.append(f"{type(e).__name__}: {e}")
            finally:
                client.close()

        threads = [threading.Thread(target=worker, daemon=True) for _ in range(CONNECTIONS)]
        start = time.monotonic()
        for t in threads:
            t.start()
        deadline = start + 90.0
        for t in threads:
            t.join(max(0.1, deadline - time.monotonic()))
        self.assertFalse(any(t.is_alive() for t in threads), "the burst did not finish in 90 s")
        return statuses, errors

    def test_burst_for_one_uncached_valid_key_costs_at_most_one_query_per_worker(self):
        key = self.create_key()
        self.forget_in_redis(key["key"])
        before = self.queries()
        statuses, errors = self.burst(key["key"])
        after = self.queries()
        self.assertEqual(errors, [])
        self.assertEqual(len(statuses), CONNECTIONS * PER_CONNECTION)
        self.assertEqual({s: statuses.count(s) for s in set(statuses)}, {200: len(statuses)})
        self.assertGreaterEqual(after - before, 1, "the uncached key was never looked up in PostgreSQL")
        self.assertLessEqual(after - before, THREADS,
                             f"{after - before:.0f} PostgreSQL lookups for one key with {THREADS} workers")

    def test_burst_for_one_unknown_key_costs_at_most_one_query_per_worker(self):
        gone = self.create_key()
        self.sql(f"DELETE FROM api_keys WHERE id = '{gone['id']}'")
        self.forget_in_redis(gone["key"])
        before = self.queries()
        statuses, errors = self.burst(gone["key"])
        after = self.queries()
        self.assertEqual(errors, [])
        self.assertEqual({s: statuses.count(s) for s in set(statuses)}, {401: CONNECTIONS * PER_CONNECTION})
        self.assertGreaterEqual(after - before, 1, "the unknown key was never looked up in PostgreSQL")
        self.assertLessEqual(after - before, THREADS,
                             f"{after - before:.0f} PostgreSQL lookups for one unknown key with {THREADS} workers")

    def l1_hits(self):
        return harness.metric_value(self.kg.metrics(), "keygate_key_lookups_total", tier="l1", outcome="hit") or 0

    def test_key_looked_up_while_other_keys_change_is_cached(self):
        """Change notices for OTHER keys arriving while a key is being looked up must not keep
        that key out of the L1 cache (else it is not "cached" when the stores go down).
        Each round: create a key, delete four others (four notices), use the key once, then
        once more: the second use must be an L1 hit."""
        lost = []
        for round_ in range(10):
            key = self.create_key()
            others = [self.create_key() for _ in range(4)]
            self.sql("DELETE FROM api_keys WHERE id IN (%s)" % ",".join(f"'{k['id']}'" for k in others))
            self.assertEqual(self.kg.get("/things/1", key=key["key"]).status, 200)
            before = self.l1_hits()
            self.assertEqual(self.kg.get("/things/1", key=key["key"]).status, 200)
            if self.l1_hits() == before:
                lost.append(round_)
        self.assertEqual(lost, [], f"in {len(lost)} of 10 rounds the key looked up during other keys' "
                                   "change notices was not kept in the L1 cache")


if __name__ == "__main__":
    unittest.main()
