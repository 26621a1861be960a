"""Stores failing under a running keygate. This class starts its OWN PostgreSQL and Redis
(scripts/lib/stores.py) so that it can stop and restart them; each test starts its own keygate
and leaves both stores running when it ends, also when it fails."""
import hashlib
import time
import unittest

import harness
from harness import bearer, request

REQUEST_BOUND = 5.0  # no request may hang longer than this while a store is down


class StoreFailureTest(harness.KeygateTestCase):
    own_stores = True

    def setUp(self):
        self.addCleanup(self.ensure_stores_running)

    def ensure_stores_running(self):
        if not harness.wait_for_port(self.stores.redis.port, timeout=0.2):
            self.stores.redis.start()
        if not harness.wait_for_port(self.stores.pg.port, timeout=0.2):
            self.stores.pg.start()

    def start(self, ttl="1s"):
        return self.start_keygate_for_test(cache={"ttl": ttl, "negative_ttl": "1s", "redis_ttl": "300s"})

    def call(self, kg, key, path="/things/1"):
        start = time.monotonic()
        headers = bearer(key) if key is not None else {}
        r = request(kg.port, "GET", path, headers=headers, timeout=REQUEST_BOUND + 5)
        elapsed = time.monotonic() - start
        self.assertLess(elapsed, REQUEST_BOUND, f"a request took {elapsed:.2f}s: {r!r}")
        return r

    def assertPassesFor(self, kg, key, seconds):
        """Every request with `key` passes for `seconds` (spanning L1 TTL expiries)."""
        end = time.monotonic() + seconds
        n = 0
        while time.monotonic() < end and n < 500:
            self.assertStatus(self.call(kg, key), 200, kg, f"(request {n + 1})")
            n += 1
            time.sleep(0.05)

    def await_pass(self, kg, key, timeout):
        r, elapsed = harness.poll_until(lambda: (lambda x: x if x.status == 200 else None)(
            request(kg.port, "GET", "/things/1", headers=bearer(key), timeout=REQUEST_BOUND + 5)),
            timeout=timeout, interval=0.2)
        self.assertIsNotNone(r, f"keygate did not recover within {timeout}s\n{kg.log_tail()}")
        return elapsed

    def redis_record(self, key):
        """keygate's cached record of `key` in Redis (kg:key:<sha256 hex>), or None."""
        digest = hashlib.sha256(key.encode()).hexdigest()
        try:
            return harness.redis_command(self.redis_url, "GET", f"kg:key:{digest}")
        except OSError:
            return None

    def await_listener(self, kg, timeout=10.0):
        """Waits until keygate's LISTEN connection is back (seen in pg_stat_activity)."""
        count, _ = harness.poll_until(lambda: int(self.sql(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND query ILIKE 'LISTEN %'")), timeout=timeout, interval=0.1)
        self.assertTrue(count, f"keygate did not LISTEN again within {timeout}s\n{kg.log_tail()}")

    # ---- Redis down ----

    def test_redis_down_valid_keys_still_pass_via_postgres(self):
        kg = self.start()
        warm = self.create_key()
        self.assertStatus(self.call(kg, warm["key"]), 200, kg)
        self.stores.redis.stop()

        fresh = self.create_key()  # never seen by any cache
        self.assertStatus(self.call(kg, fresh["key"]), 200, kg)
        self.assertPassesFor(kg, warm["key"], 1.5)  # past the 1 s L1 TTL: PostgreSQL answers
        gone = self.create_key()
        self.sql(f"DELETE FROM api_keys WHERE id = '{gone['id']}'")
        self.assertError(self.call(kg, gone["key"]), 401, "invalid_key", kg)
        revoked = self.create_key()
        harness.revoke_key(self.dsn, revoked["id"], self.redis_url)  # works with Redis down
        self.assertError(self.call(kg, revoked["key"]), 401, "revoked_key", kg)

        # Redis back: keygate uses it again without a restart (it fills records back in).
        self.stores.redis.start()

        def refilled():
            k = self.create_key()
            if self.call(kg, k["key"]).status != 200:
                return None
            found, _ = harness.poll_until(lambda: self.redis_record(k["key"]), timeout=0.5)
            return found

        record, elapsed = harness.poll_until(refilled, timeout=15.0, interval=0.2)
        self.assertTrue(record, f"keygate did not write key records to the restarted Redis\n{kg.log_tail()}")
        self.assertTrue(kg.alive())

    # ---- PostgreSQL down ----

    def test_postgres_down_cached_keys_pass_uncached_keys_get_503(self):
        kg = self.start()
        cached = self.create_key()
        never_used = self.create_key()
        gone = self.create_key()
        self.sql(f"DELETE FROM api_keys WHERE id = '{gone['id']}'")
        self.assertStatus(self.call(kg, cached["key"]), 200, kg)
        self.stores.pg.stop()

        # In L1, then (after the 1 s TTL) in Redis: passes throughout.
        self.assertPassesFor(kg, cached["key"], 1.5)
        # Not cached anywhere and PostgreSQL cannot answer: fail closed, as an error.
        self.assertError(self.call(kg, never_used["key"]), 503, "store_unavailable", kg)
        self.assertError(self.call(kg, gone["key"]), 503, "store_unavailable", kg)
        # Decisions that need no store still come out right.
        self.assertError(self.call(kg, None), 401, "missing_key", kg)
        self.assertError(self.call(kg, harness.with_typo(cached["key"])), 401, "invalid_key", kg)
        self.assertStatus(self.call(kg, None, "/public/x"), 200, kg)

        self.stores.pg.start()
        self.await_pass(kg, never_used["key"], timeout=15.0)
        self.assertError(self.call(kg, gone["key"]), 401, "invalid_key", kg)  # the 503 was not cached

    # ---- both down ----

    def test_both_down_then_restarted_keygate_recovers_without_restart(self):
        kg = self.start(ttl="30s")
        cached = self.create_key()
        uncached = self.create_key()
        self.assertStatus(self.call(kg, cached["key"]), 200, kg)
        self.stores.redis.stop()
        self.stores.pg.stop()

        self.assertStatus(self.call(kg, cached["key"]), 200, kg, "(in L1: passes with both stores down)")
        self.assertError(self.call(kg, uncached["key"]), 503, "store_unavailable", kg)

        self.stores.pg.start()
        self.stores.redis.start()
        self.await_pass(kg, uncached["key"], timeout=20.0)

        # Redis is used again: records of newly seen keys appear there.
        def refilled():
            k = self.create_key()
            if self.call(kg, k["key"]).status != 200:
                return None
            found, _ = harness.poll_until(lambda: self.redis_record(k["key"]), timeout=0.5)
            return k if found else None

        fresh, _ = harness.poll_until(refilled, timeout=15.0, interval=0.2)
        self.assertTrue(fresh, f"keygate did not write key records to the restarted Redis\n{kg.log_tail()}")

        # Change notices are received again: once keygate LISTENs again, a key cached in L1
        # (30 s) and Redis is refused within 1 s of its revocation.
        self.await_listener(kg)
        harness.revoke_key(self.dsn, fresh["id"], self.redis_url)
        committed = time.monotonic()

        def refused():
            r = self.call(kg, fresh["key"])
            return r if r.status != 200 else None

        r, elapsed = harness.poll_until(refused, timeout=1.0, interval=0.02)
        self.assertIsNotNone(r, "after the stores restarted, a revoked key still passes 1 s later "
                                f"(invalidation lost)\n{kg.log_tail()}")
        self.assertError(r, 401, "revoked_key", kg)
        self.assertLessEqual(time.monotonic() - committed, 1.5)

    # ---- a change made while keygate cannot hear about it ----

    def test_revocation_committed_before_keygate_listens_again_is_not_lost(self):
        """PostgreSQL restarts; the key is revoked as soon as it is back, possibly before
        keygate's LISTEN connection has reconnected (its retry pause grows to 2 s while the
        server is down). keygate must not go on trusting its cached copies (L1 and Redis):
        the key must be refused within 3 s (2 s retry pause + 1 s)."""
        kg = self.start(ttl="30s")
        key = self.create_key()
        for _ in range(3):
            self.assertStatus(self.call(kg, key["key"]), 200, kg)
        found, _ = harness.poll_until(lambda: self.redis_record(key["key"]), timeout=2.0)
        self.assertTrue(found, "the key record was never cached in Redis")
        self.stores.pg.stop()
        # Let the listener's retry pause grow (100 ms doubling to 2 s): 3 s of requests that
        # must keep passing from the caches meanwhile.
        self.assertPassesFor(kg, key["key"], 3.0)
        self.stores.pg.start()
        harness.revoke_key(self.dsn, key["id"], self.redis_url)
        revoked_at = time.monotonic()

        def refused():
            r = self.call(kg, key["key"])
            return r if r.status != 200 else None

        r, elapsed = harness.poll_until(refused, timeout=3.0, interval=0.05)
        if r is None:
            record = self.redis_record(key["key"]) or b""
            in_redis = ("an invalidation marker" if b"revoked" in record and key["id"].encode() not in record
                        else "the record from before the revocation" if record else "nothing")
            listening = self.sql("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                 "AND query ILIKE 'LISTEN %'")
            self.fail("a key revoked right after PostgreSQL came back still passes 3 s later: the "
                      f"change notice was missed and a cached copy is still trusted (Redis holds "
                      f"{in_redis}; LISTEN connections now: {listening})\n{kg.log_tail()}")
        self.assertError(r, 401, "revoked_key", kg)
        self.assertLessEqual(time.monotonic() - revoked_at, 3.5)


if __name__ == "__main__":
    unittest.main()
