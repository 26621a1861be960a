"""Seed 002 (../shared/seeds/002_*): api.user_api_key from a SQLAlchemy model, with is_active
and no scopes or expiry. Its key_id named the gateway's key (AWS API Gateway); with keygate as
the gateway it holds the SHA-256 (hex) of the key, which is what the preset looks it up by.
Served unchanged with `store: {schema: custom, preset: user_api_key}`."""
import json
import unittest
import uuid

import harness
from seed_tables import SEED_DDL, SeedTableTest, literal, new_key, sha256_hex



class SeedUserApiKey(SeedTableTest):
    preset = "user_api_key"
    ddl = SEED_DDL["user_api_key"]
    keys = {}
    user = str(uuid.uuid4())

    @classmethod
    def add(cls, label, is_active=True):
        """As UserApiKey(key_name=..., key_id=..., user_id=..., is_active=...) is committed."""
        key = new_key("sgapi_")
        api_key_id = str(uuid.uuid4())  # the model's default=uuid.uuid4
        cls.sql("INSERT INTO api.user_api_key (api_key_id, key_name, key_id, user_id, is_active) VALUES "
                f"({literal(api_key_id)}, {literal(label)}, {literal(sha256_hex(key))}, {literal(cls.user)}, "
                f"{'true' if is_active else 'false'})")
        cls.keys[label] = (key, api_key_id)

    @classmethod
    def insert_rows(cls):
        cls.sql(f'INSERT INTO api."user" (user_id) VALUES ({literal(cls.user)})')
        cls.add("Production API Key")
        cls.add("Old key", is_active=False)
        cls.add("Deactivated later")
        cls.add("notified")
        cls.add("polled")
        cls.add("last-used")

    def test_an_active_key_passes_with_its_user(self):
        key, key_id = self.keys["Production API Key"]
        self.assertPasses(key, owner=f"user:{self.user}", key_id=key_id)

    def test_no_scopes_column_means_no_scopes(self):
        self.assertRefused(self.keys["Production API Key"][0], 403, "insufficient_scope", "/orders/1")

    def test_an_inactive_key_is_refused(self):
        self.assertRefused(self.keys["Old key"][0], 401, "revoked_key")

    def test_deactivating_takes_effect_within_the_cache_ttl(self):
        key, key_id = self.keys["Deactivated later"]
        self.assertPasses(key)
        self.sql(f"UPDATE api.user_api_key SET is_active = false WHERE api_key_id = {literal(key_id)}")
        harness.poll_until(lambda: self.get("/open/x", key).status == 401, timeout=5.0)
        self.assertRefused(key, 401, "revoked_key")

    def test_migrate_and_keys_show_refuse_the_custom_table_in_one_line(self):
        for args, line in ((["keys", "show", "x"], "keygate: keys show: not available with store.schema: custom"),
                           (["migrate", "up"], "keygate: migrate: store.schema is custom")):
            r = harness.run_cli(["--config", self.kg.config_path, *args], self.dsn, check=False)
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertTrue(r.stderr.startswith(line), r.stderr)
            self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
        self.assertEqual(self.sql("SELECT to_regclass('public.schema_migrations') IS NULL"), "t")

    def test_an_unknown_key_is_invalid(self):
        self.assertRefused(new_key("sgapi_"), 401, "invalid_key")

    def test_with_the_notify_trigger_a_deactivation_takes_effect_within_a_second(self):
        key, key_id = self.keys["notified"]
        self.check_revocation_within_a_second(
            key, f"UPDATE api.user_api_key SET is_active = false WHERE api_key_id = {literal(key_id)}")

    def test_polled_without_a_trigger_a_deactivation_is_refused_within_a_second(self):
        key, key_id = self.keys["polled"]
        self.check_revocation_by_poll(
            key, f"UPDATE api.user_api_key SET is_active = false WHERE api_key_id = {literal(key_id)}", "api.user_api_key")

    def test_keys_create_list_and_revoke_work_on_the_table(self):
        created = self.check_keys_commands(f"user:{self.user}")
        self.assertEqual(self.sql(f"SELECT key_id FROM api.user_api_key WHERE api_key_id = {literal(created['id'])}"),
                         sha256_hex(created["key"]))
        r = self.keys_cli("create", "--owner", f"user:{self.user}", "--name", "x", "--scopes", "a", check=False)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("the table has no scopes column", r.stderr)

    def test_keys_create_with_the_preset_and_no_config_fills_key_id(self):
        # No config file: --preset names the table. key_id gets the SHA-256 (hex) of the new
        # key and api_key_id a gen_random_uuid(), as the model's own defaults would.
        r = harness.run_cli(["keys", "create", "--preset", "user_api_key", "--owner", f"user:{self.user}",
                             "--name", "from --preset", "--json"], self.dsn)
        created = json.loads(r.stdout)
        self.assertEqual(self.sql(f"SELECT key_id || ' ' || key_name FROM api.user_api_key "
                                  f"WHERE api_key_id = {literal(created['id'])}"),
                         f"{sha256_hex(created['key'])} from --preset")
        self.assertPasses(created["key"], owner=f"user:{self.user}", key_id=created["id"])
        for args, line in ((["--preset", "firebase"], "keygate: --preset: expected one of supabase_api_keys"),
                           (["--preset"], "keygate: --preset: missing preset name")):
            r = harness.run_cli(["keys", "list", *args], self.dsn, check=False)
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertTrue(r.stderr.startswith(line), r.stderr)
        r = harness.run_cli(["--config", self.kg.config_path, "keys", "list", "--preset", "owner_abilities"],
                            self.dsn, check=False)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("the config's store section already names preset user_api_key", r.stderr)

    def test_a_request_updates_last_used_in_utc(self):
        key, key_id = self.keys["last-used"]
        self.check_last_used(key, "api.user_api_key", "last_used", f"api_key_id = {literal(key_id)}",
                             without_time_zone=True)


if __name__ == "__main__":
    unittest.main()
