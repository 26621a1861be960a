"""Seed 003 (../shared/seeds/003_*): api_keys with a bcrypt hash in key_hash and the key's first
12 characters in key_prefix, plus api_key_usage. Served unchanged with
`store: {schema: custom, preset: api_keys_bcrypt}`: the prefix finds the candidate rows,
bcrypt verifies the key once, and from then on the key is served from the cache by its
SHA-256 (one bcrypt per key, not per request)."""
import unittest
import uuid

import harness
from seed_tables import SEED_DDL, SeedTableTest, bcrypt_hash, literal, new_key



class SeedApiKeysBcrypt(SeedTableTest):
    preset = "api_keys_bcrypt"
    ddl = SEED_DDL["api_keys_bcrypt"]
    keys = {}
    user = str(uuid.uuid4())

    @classmethod
    def add(cls, label, key=None, scopes="{inventory:read,orders:read}", **columns):
        key = key or new_key("sk_live_")
        values = {"user_id": literal(cls.user), "key_hash": literal(bcrypt_hash(key)),
                  "key_prefix": literal(key[:12]), "name": literal(label), "scopes": literal(scopes)}
        values.update(columns)
        key_id = cls.sql(f"INSERT INTO api_keys ({', '.join(values)}) VALUES ({', '.join(values.values())}) "
                         "RETURNING id")
        cls.keys[label] = (key, key_id)

    @classmethod
    def insert_rows(cls):
        cls.add("good")
        # Two keys that share their first 12 characters: both candidates, bcrypt tells them apart.
        twin = new_key("sk_live_")
        cls.add("twin-a", key=twin[:12] + "A" + twin[13:], scopes="{}")
        cls.add("twin-b", key=twin[:12] + "B" + twin[13:])
        cls.add("expired", expires_at="now() - interval '1 second'")
        cls.add("inactive", is_active="false")
        cls.add("revoked", revoked_at="now()")
        cls.add("notified")
        cls.add("polled")
        cls.add("last-used")
        cls.add("usage")

    def test_a_key_passes_and_bcrypt_runs_once_for_it(self):
        key, key_id = self.keys["good"]
        before = self.postgres_key_queries()
        for _ in range(5):
            self.assertPasses(key, "/orders/1", owner=f"user:{self.user}", key_id=key_id)
        # One lookup by prefix (and so one bcrypt); the other four come from the cache.
        self.assertEqual(self.postgres_key_queries() - before, 1)

    def test_keys_sharing_a_prefix_are_told_apart_by_bcrypt(self):
        a, a_id = self.keys["twin-a"]
        b, b_id = self.keys["twin-b"]
        self.assertPasses(b, "/orders/1", key_id=b_id)
        self.assertRefused(a, 403, "insufficient_scope", "/orders/1")
        self.assertPasses(a, "/open/x", key_id=a_id)

    def test_a_wrong_key_with_a_known_prefix_is_invalid(self):
        key = self.keys["good"][0]
        self.assertRefused(key[:-1] + ("x" if key[-1] != "x" else "y"), 401, "invalid_key")

    def test_expired_inactive_and_revoked_keys_are_refused(self):
        self.assertRefused(self.keys["expired"][0], 401, "expired_key")
        self.assertRefused(self.keys["inactive"][0], 401, "revoked_key")
        self.assertRefused(self.keys["revoked"][0], 401, "revoked_key")

    def test_the_key_never_reaches_the_log(self):
        key = self.keys["good"][0]
        self.assertPasses(key)
        log = self.kg.log_text()
        self.assertNotIn(key, log)
        self.assertNotIn(key[12:], log)

    def postgres_key_queries(self):
        samples = harness.parse_metrics(self.kg.metrics_text())
        return harness.metric_value(samples, "keygate_postgres_key_queries_total") or 0

    def test_with_the_notify_trigger_a_revocation_takes_effect_within_a_second(self):
        key, key_id = self.keys["notified"]
        self.check_revocation_within_a_second(key, f"UPDATE api_keys SET revoked_at = now() WHERE id = {key_id}")

    def test_polled_without_a_trigger_a_revocation_takes_effect_within_a_second(self):
        key, key_id = self.keys["polled"]
        self.check_revocation_by_poll(key, f"UPDATE api_keys SET revoked_at = now() WHERE id = {key_id}", "api_keys")

    def test_a_usage_table_that_does_not_fit_is_refused_at_startup_naming_the_column(self):
        self.sql("CREATE TABLE usage_without_method (api_key_id integer, endpoint text, status_code integer, "
                 "ip_address inet, user_agent text, response_time_ms integer, created_at timestamptz)")
        self.sql("CREATE TABLE usage_text_status (LIKE api_key_usage)")
        self.sql("ALTER TABLE usage_text_status ALTER COLUMN status_code TYPE text")
        self.assertStartRefused({"usage_table": "usage_without_method"},
                                "store.usage_table: table usage_without_method has no column method")
        self.assertStartRefused({"usage_table": "usage_text_status"},
                                "store.usage_table: column usage_text_status.status_code is text; "
                                "expected integer, smallint or bigint")
        self.assertStartRefused({"usage_table": "no_such_usage"}, "store.usage_table: no table no_such_usage")

    def test_keys_create_list_and_revoke_work_on_the_table(self):
        created = self.check_keys_commands(f"user:{self.user}", ["--scopes", "orders:read", "--expires-in", "1d"])
        stored = self.sql(f"SELECT key_prefix || ' ' || key_hash FROM api_keys WHERE id = {created['id']}")
        prefix, hashed = stored.split()
        self.assertEqual(prefix, created["key"][:12])
        self.assertTrue(hashed.startswith("$2b$10$"), hashed)

    def test_a_request_updates_last_used_at(self):
        key, key_id = self.keys["last-used"]
        self.check_last_used(key, "api_keys", "last_used_at", f"id = {key_id}")

    def test_every_request_is_a_row_of_api_key_usage(self):
        key, key_id = self.keys["usage"]
        for path in ("/orders/1", "/orders/2", "/admin/x"):
            harness.request(self.kg.port, "GET", path, headers={**harness.bearer(key), "User-Agent": "seed-003"})
        read = ("SELECT string_agg(concat_ws(' ', endpoint, method, status_code, host(ip_address), user_agent, "
                "response_time_ms >= 0, created_at > now() - interval '1 minute'), ',' ORDER BY endpoint) "
                f"FROM api_key_usage WHERE api_key_id = {key_id}")
        rows, _ = harness.poll_until(lambda: self.sql(read).count(",") == 2 and self.sql(read), timeout=10.0)
        self.assertEqual(rows, "/admin/x GET 403 127.0.0.1 seed-003 t t,"
                               "/orders/1 GET 200 127.0.0.1 seed-003 t t,"
                               "/orders/2 GET 200 127.0.0.1 seed-003 t t")


if __name__ == "__main__":
    unittest.main()
