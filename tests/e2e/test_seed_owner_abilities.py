"""Seed 004 (../shared/seeds/004_*): a polymorphic owner, Laravel-style `abilities`, allowed IPs
as JSON and a per-key rate limit, in its PostgreSQL translation (bigint identity, jsonb,
char(64), timestamp without time zone read as UTC), served unchanged with
`store: {schema: custom, preset: owner_abilities}`."""
import unittest

import harness
from seed_tables import SEED_DDL, SeedTableTest, literal, new_key, sha256_hex



class SeedOwnerAbilities(SeedTableTest):
    preset = "owner_abilities"
    ddl = SEED_DDL["owner_abilities"]
    keys = {}

    @classmethod
    def add(cls, label, abilities='["orders:read"]', **columns):
        """As the project's code does: hash('sha256', $plain) into key_hash, the rest as given."""
        key = new_key()
        values = {"owner_type": literal("App\\Models\\Team"), "owner_id": "42", "name": literal(label),
                  "key_hash": literal(sha256_hex(key)), "abilities": literal(abilities) + "::jsonb"}
        values.update(columns)
        key_id = cls.sql(f"INSERT INTO api_keys ({', '.join(values)}) VALUES ({', '.join(values.values())}) "
                         "RETURNING id")
        cls.keys[label] = (key, key_id)

    @classmethod
    def insert_rows(cls):
        cls.add("good", expires_at="(now() AT TIME ZONE 'UTC') + interval '1 hour'")
        cls.add("everything", abilities='["*"]')
        cls.add("expired", expires_at="(now() AT TIME ZONE 'UTC') - interval '1 minute'")
        cls.add("inactive", is_active="false")
        cls.add("revoked", revoked_at="now() AT TIME ZONE 'UTC'")
        cls.add("elsewhere", allowed_ips=literal('["10.0.0.0/8", "192.168.1.7"]'))
        cls.add("here", allowed_ips=literal('["127.0.0.0/8"]'))
        cls.add("limited", rate_limit="3", window_seconds="60")
        cls.add("unreadable", abilities='{"orders": "read"}')
        cls.add("used")
        cls.add("notified")
        cls.add("last-used")

    def test_a_key_with_the_ability_passes_with_its_owner_and_id(self):
        key, key_id = self.keys["good"]
        self.assertPasses(key, "/orders/1", owner="App\\Models\\Team:42", key_id=key_id)

    def test_the_star_ability_grants_every_scope(self):
        self.assertPasses(self.keys["everything"][0], "/admin/x")

    def test_a_key_without_the_ability_is_refused(self):
        self.assertRefused(self.keys["good"][0], 403, "insufficient_scope", "/admin/x")

    def test_expired_is_read_as_utc_and_refused(self):
        self.assertRefused(self.keys["expired"][0], 401, "expired_key")

    def test_inactive_and_revoked_keys_are_refused(self):
        self.assertRefused(self.keys["inactive"][0], 401, "revoked_key")
        self.assertRefused(self.keys["revoked"][0], 401, "revoked_key")

    def test_allowed_ips_are_enforced(self):
        self.assertRefused(self.keys["elsewhere"][0], 403, "ip_not_allowed")
        self.assertPasses(self.keys["here"][0])

    def test_the_rows_rate_limit_applies(self):
        key = self.keys["limited"][0]
        for _ in range(3):
            r = self.get("/open/x", key)
            self.assertStatus(r, 200, self.kg)
            self.assertEqual(r.header("RateLimit-Limit"), "3")
        r = self.get("/open/x", key)
        self.assertError(r, 429, "rate_limited", self.kg)
        self.assertIsNotNone(r.header("Retry-After"))

    def test_unknown_and_malformed_keys_are_invalid(self):
        self.assertRefused(new_key(), 401, "invalid_key")
        self.assertRefused("short", 401, "invalid_key")
        self.assertRefused(new_key() + " x", 401, "invalid_key")

    def test_a_row_keygate_cannot_read_is_refused_and_logged_without_the_key(self):
        key = self.keys["unreadable"][0]
        self.assertRefused(key, 503, "store_unavailable")
        log = self.kg.log_text()
        self.assertIn("column api_keys.abilities: not an array of strings", log)
        self.assertNotIn(key, log)

    def test_a_revocation_in_the_table_takes_effect_within_the_cache_ttl(self):
        key, key_id = self.keys["used"]
        self.assertPasses(key)
        self.sql(f"UPDATE api_keys SET revoked_at = now() AT TIME ZONE 'UTC' WHERE id = {key_id}")
        harness.poll_until(lambda: self.get("/open/x", key).status == 401, timeout=5.0)
        self.assertRefused(key, 401, "revoked_key")

    def test_a_mapping_that_does_not_fit_the_table_is_refused_at_startup(self):
        self.assertStartRefused({"columns": {"scopes": "name"}},
                                "store: column api_keys.name is character varying; expected text[], "
                                "json or jsonb (an array of strings)")
        self.assertStartRefused({"columns": {"last_used_at": "seen_at"}},
                                "store: table api_keys has no column seen_at")

    def test_a_view_served_with_revocation_poll_is_refused_at_startup(self):
        # A view serves lookups (the mapping reads its columns) but has no row versions to poll.
        self.sql("CREATE OR REPLACE VIEW active_api_keys AS SELECT * FROM api_keys WHERE is_active")
        self.assertStartRefused({"table": "active_api_keys", "revocation": "poll", "usage_table": "none",
                                 "columns": {"last_used_at": "none"}},
                                "store.revocation: poll cannot read the row versions of active_api_keys")

    def test_with_the_notify_trigger_a_revocation_takes_effect_within_a_second(self):
        key, key_id = self.keys["notified"]
        self.check_revocation_within_a_second(
            key, f"UPDATE api_keys SET is_active = false WHERE id = {key_id}")

    def test_keys_create_list_and_revoke_work_on_the_table(self):
        created = self.check_keys_commands("team:7", ["--scopes", "orders:read"])
        self.assertEqual(self.sql(f"SELECT owner_type || ' ' || abilities::text FROM api_keys WHERE id = {created['id']}"),
                         'team ["orders:read"]')

    def test_a_request_updates_last_used_at_in_utc(self):
        key, key_id = self.keys["last-used"]
        self.check_last_used(key, "api_keys", "last_used_at", f"id = {key_id}", without_time_zone=True)


if __name__ == "__main__":
    unittest.main()
