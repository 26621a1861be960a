"""keygate on a Redis Cluster (issue 15): the real binary with redis.cluster naming the seeds of a
real cluster (3 masters + 3 replicas of redis-server; the shared one scripts/test exported as
KEYGATE_TEST_REDIS_CLUSTER, or our own), beside a keygate on one Redis for comparison.

- A key is authorized, and its record is cached in the cluster (read back with redis-cli -c,
  which follows the cluster's redirections itself).
- A rate limit is held exactly as with one Redis: the same answers and RateLimit-* headers,
  request for request, and the counter is in the cluster.
- A revocation is seen within a second, and the record in the cluster is replaced by the
  invalidation marker.
"""
import hashlib
import os
import subprocess
import time
import unittest

import harness
from harness import bearer, request

LIMIT = 5


def cluster_cli(seed, *args):
    """redis-cli -c (follows MOVED/ASK) against one seed; the reply as text."""
    host, port = seed.rsplit(":", 1)
    r = subprocess.run(["redis-cli", "-c", "-h", host, "-p", port, *map(str, args)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=10,
                       stdin=subprocess.DEVNULL)
    return r.stdout.strip()


class RedisClusterTest(harness.KeygateTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        shared = os.environ.get("KEYGATE_TEST_REDIS_CLUSTER")
        if shared:
            cls.seeds = shared.split(",")
        else:
            cluster = harness.stores_module().RedisCluster(cls.workdir)
            cls.addClassCleanup(cluster.stop)
            cls.seeds = cluster.start().seeds()
        config = cls.keygate_config(threads=2)
        config["redis"] = {"cluster": cls.seeds, "command_timeout": "250ms"}
        cls.kg = cls.start_keygate(config=config, name="keygate-cluster")
        cls.single = cls.start_keygate(name="keygate-one-redis", threads=2)

    def record_key(self, key):
        return "kg:key:" + hashlib.sha256(key["key"].encode()).hexdigest()

    def test_a_key_is_authorized_and_its_record_cached_in_the_cluster(self):
        key = self.create_key()
        r = request(self.kg.port, "GET", "/things/1", headers=bearer(key["key"]))
        self.assertStatus(r, 200, self.kg)
        cached, _ = harness.poll_until(lambda: cluster_cli(self.seeds[0], "EXISTS", self.record_key(key)) == "1", 5)
        self.assertTrue(cached, f"no record in the cluster\n{self.kg.log_tail()}")
        samples = self.kg.metrics()
        self.assertGreaterEqual(harness.metric_value(samples, "keygate_redis_cluster_slot_refreshes_total"), 2,
                                "each worker read the slot map")

    def test_a_rate_limit_is_held_exactly_as_with_one_redis(self):
        answers = {}
        for kg in (self.kg, self.single):
            key = self.create_key(rate_limit=f"{LIMIT}/60s")
            seen = []
            for _ in range(LIMIT + 3):
                r = request(kg.port, "GET", "/things/1", headers=bearer(key["key"]))
                seen.append((r.status, r.header("RateLimit-Limit"), r.header("RateLimit-Remaining")))
            answers[kg.name] = seen
            if kg is self.kg:
                counts = cluster_cli(self.seeds[0], "HVALS", f"kg:rl:{{{key['id']}}}:60s").split()
                self.assertEqual(sum(int(c) for c in counts), LIMIT, "the counter in the cluster")
        cluster, single = answers[self.kg.name], answers[self.single.name]
        self.assertEqual([s for s, _, _ in cluster], [200] * LIMIT + [429] * 3, f"{cluster}\n{self.kg.log_tail()}")
        self.assertEqual(cluster, single)

    def test_a_revocation_is_seen_and_marks_the_record_in_the_cluster(self):
        key = self.create_key()
        for _ in range(3):
            self.assertStatus(request(self.kg.port, "GET", "/things/1", headers=bearer(key["key"])), 200, self.kg)
        harness.poll_until(lambda: cluster_cli(self.seeds[0], "EXISTS", self.record_key(key)) == "1", 5)
        revoked_at = time.monotonic()
        harness.revoke_key(self.dsn, key["id"], self.redis_url)

        def refused():
            r = request(self.kg.port, "GET", "/things/1", headers=bearer(key["key"]), timeout=2.0)
            return r if r.status != 200 else None

        r, elapsed = harness.poll_until(refused, 5)
        self.assertTrue(r, f"still passing 5 s after the revocation\n{self.kg.log_tail()}")
        self.assertError(r, 401, "revoked_key", self.kg)
        self.assertLessEqual(time.monotonic() - revoked_at, 2.0)
        marked, _ = harness.poll_until(
            lambda: cluster_cli(self.seeds[0], "GET", self.record_key(key)) == "!revoked", 2)
        self.assertTrue(marked, "the record in the cluster was not replaced by the marker")


if __name__ == "__main__":
    unittest.main()
