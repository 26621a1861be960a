"""Stores failing under a running keygate. This class starts its OWN PostgreSQL and Redis
(scripts/lib/stores.py) so that it can stop and restart them; each test starts its own keygate
and leaves both stores running when it ends, also when it fails."""
import hashlib
import os
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

    def warm(self, kg, key, tries=5):
        """Uses the key until keygate answers it from its L1 cache (seen in /metrics), so the
        test knows it is cached before taking the stores away."""
        for _ in range(tries):
            before = harness.metric_value(kg.metrics(), "keygate_key_lookups_total", tier="l1", outcome="hit") or 0
            self.assertStatus(self.call(kg, key["key"]), 200, kg)
            after = harness.metric_value(kg.metrics(), "keygate_key_lookups_total", tier="l1", outcome="hit") or 0
            if after > before:
                return
        self.fail(f"the key was not answered from the L1 cache in {tries} requests")

    def key_pools(self, n=8):
        """n valid keys and n unknown keys (created, then deleted), none seen by keygate yet:
        each answers from PostgreSQL the first time it is used."""
        valid = [self.create_key() for _ in range(n)]
        unknown = [self.create_key() for _ in range(n)]
        ids = ",".join(f"'{k['id']}'" for k in unknown)
        self.sql(f"DELETE FROM api_keys WHERE id IN ({ids})")
        return valid, unknown

    def await_recovered(self, kg, valid, unknown, timeout=15.0, streak=8):
        """After a store came back: polls with keys that need PostgreSQL (each used once, alternately
        valid and unknown) until `streak` answers in a row are the right decisions (200 /
        401 invalid_key). 503 store_unavailable is allowed on the way (each worker thread
        reconnects on its own schedule); a wrong decision fails at once."""
        valid, unknown = list(valid), list(unknown)
        start = time.monotonic()
        in_a_row, unavailable, turn = 0, 0, 0
        while time.monotonic() - start < timeout:
            pool, want = (valid, 200) if turn % 2 == 0 else (unknown, 401)
            if not pool:
                self.fail(f"ran out of fresh keys after {in_a_row} right answers in a row "
                          f"({unavailable} answers 503)")
            r = self.call(kg, pool[0]["key"])
            if r.status == 503:
                self.assertError(r, 503, "store_unavailable", kg)
                in_a_row, unavailable = 0, unavailable + 1
                time.sleep(0.1)
                continue
            self.assertStatus(r, want, kg, "(a wrong decision while PostgreSQL came back)")
            pool.pop(0)
            turn += 1
            in_a_row += 1
            if in_a_row >= streak:
                return time.monotonic() - start
        self.fail(f"keygate did not recover within {timeout}s ({unavailable} answers 503)\n{kg.log_tail()}")

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
        valid, unknown = self.key_pools()
        never_used, gone = valid[0], unknown[0]
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

        # Back: the keys that got 503 (never_used, gone) now get their real answers, from
        # every worker: keygate recovers without a restart and cached no 503.
        self.stores.pg.start()
        self.await_recovered(kg, valid, unknown)
        self.assertError(self.call(kg, gone["key"]), 401, "invalid_key", kg)
        self.assertStatus(self.call(kg, never_used["key"]), 200, kg)

    # ---- both down ----

    def test_both_down_then_restarted_keygate_recovers_without_restart(self):
        kg = self.start(ttl="30s")
        valid, unknown = self.key_pools()
        uncached = valid[0]
        cached = self.create_key()
        self.warm(kg, cached)
        self.stores.redis.stop()
        self.stores.pg.stop()

        self.assertStatus(self.call(kg, cached["key"]), 200, kg, "(in L1: passes with both stores down)")
        self.assertError(self.call(kg, uncached["key"]), 503, "store_unavailable", kg)

        self.stores.pg.start()
        self.stores.redis.start()
        self.await_recovered(kg, valid, unknown)

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

        def refused():  # 503 (a worker still reconnecting) is not an answer yet
            r = self.call(kg, fresh["key"])
            return r if r.status not in (200, 503) else None

        r, elapsed = harness.poll_until(refused, timeout=1.0, interval=0.02)
        self.assertIsNotNone(r, "after the stores restarted, a revoked key still passes 1 s later "
                                f"(invalidation lost)\n{kg.log_tail()}")
        self.assertError(r, 401, "revoked_key", kg)

    # ---- a custom table polled for changes (store.revocation: poll) ----

    def test_a_polled_custom_table_is_polled_again_after_a_postgres_restart(self):
        """Seed 002's table served with revocation: poll: PostgreSQL goes away and comes back;
        the cached key passes meanwhile, keygate drops its cache on reconnecting, polls again,
        and a deactivation after the restart is refused within a second."""
        from seed_tables import SEED_DDL, literal, new_key, sha256_hex
        self.sql(SEED_DDL["user_api_key"])
        self.addCleanup(self.sql, "DROP SCHEMA api CASCADE")
        user, key, key_id = "00000000-0000-4000-8000-00000000000a", new_key("sgapi_"), "00000000-0000-4000-8000-00000000000b"
        self.sql(f'INSERT INTO api."user" (user_id) VALUES ({literal(user)})')
        self.sql("INSERT INTO api.user_api_key (api_key_id, key_name, key_id, user_id) VALUES "
                 f"({literal(key_id)}, 'polled', {literal(sha256_hex(key))}, {literal(user)})")
        config = self.keygate_config(cache={"ttl": "30s", "negative_ttl": "1s"})
        config["store"] = {"schema": "custom", "preset": "user_api_key", "revocation": "poll",
                           "poll_interval": "200ms"}
        kg = self.start_keygate_for_test(config=config)
        for _ in range(3):
            self.assertStatus(self.call(kg, key), 200, kg)

        self.stores.pg.stop()
        self.assertPassesFor(kg, key, 1.0)  # from L1 while PostgreSQL is away
        self.stores.pg.start()
        back, _ = harness.poll_until(lambda: "key changes: polling again" in kg.log_text(), timeout=10.0)
        self.assertTrue(back, f"keygate did not poll again\n{kg.log_tail()}")
        harness.poll_until(lambda: self.call(kg, key).status == 200, timeout=6.0)  # workers reconnected
        self.sql(f"UPDATE api.user_api_key SET is_active = false WHERE api_key_id = {literal(key_id)}")

        def refused():  # 503 (a worker still reconnecting) is not an answer yet
            r = self.call(kg, key)
            return r if r.status not in (200, 503) else None

        r, elapsed = harness.poll_until(refused, timeout=1.0, interval=0.02)
        self.assertIsNotNone(r, f"a deactivation after the restart still passes 1 s later\n{kg.log_tail()}")
        self.assertError(r, 401, "revoked_key", kg)

    # ---- a change made while keygate cannot hear about it ----

    def test_revocation_committed_while_keygate_cannot_listen_is_not_lost(self):
        """A key is revoked while keygate cannot reach PostgreSQL, so no change notice can reach
        it: the same data directory is started on another port, the key revoked there, and
        the server moved back to keygate's port. Once keygate is connected again it must stop
        trusting its cached copies (L1 and Redis): whatever it missed while it was not
        listening is unknown. Deadline: 6 s after the server is back (the LISTEN retry pause
        is at most 2 s, a worker's connection retry pause at most 5 s)."""
        kg = self.start(ttl="30s")
        key = self.create_key()
        for _ in range(3):
            self.assertStatus(self.call(kg, key["key"]), 200, kg)
        found, _ = harness.poll_until(lambda: self.redis_record(key["key"]), timeout=2.0)
        self.assertTrue(found, "the key record was never cached in Redis")

        self.stores.pg.stop()
        self.assertPassesFor(kg, key["key"], 1.0)  # the caches serve meanwhile
        elsewhere = harness.stores_module().Postgres(os.path.dirname(self.stores.pg.dir),
                                                     port=harness.free_port())
        elsewhere.start()
        try:
            harness.revoke_key(elsewhere.dsn(self.db.name), key["id"], self.redis_url)
        finally:
            elsewhere.stop()
        self.stores.pg.start()

        statuses = []

        def refused():  # 503 (a worker still reconnecting) is not an answer yet
            r = self.call(kg, key["key"])
            statuses.append(r.status)
            return r if r.status not in (200, 503) else None

        r, _ = harness.poll_until(refused, timeout=6.0, interval=0.05)
        if r is None:
            record = self.redis_record(key["key"]) or b""
            in_redis = ("an invalidation marker" if record and key["id"].encode() not in record
                        else "the record from before the revocation" if record else "nothing")
            listening = self.sql("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                 "AND query ILIKE 'LISTEN %'")
            self.fail(f"a key revoked while keygate was cut off from PostgreSQL still passes 6 s after "
                      f"it reconnected (answers: {statuses.count(200)}x 200, {statuses.count(503)}x 503; "
                      f"last {statuses[-1] if statuses else None}): a cached copy is still trusted "
                      f"(Redis holds {in_redis}; LISTEN connections now: {listening})\n{kg.log_tail()}")
        self.assertError(r, 401, "revoked_key", kg)

if __name__ == "__main__":
    unittest.main()
