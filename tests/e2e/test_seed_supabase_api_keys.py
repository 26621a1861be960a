"""Seed 000 (../shared/seeds/000_*): Supabase's public.api_keys, which keeps the key itself in
`key` and the permissions as a jsonb array, under row-level security. Served unchanged with
`store: {schema: custom, preset: supabase_api_keys}`; keygate warns about the plain keys at
startup and caches only their SHA-256."""
import unittest
import uuid

import harness

from seed_tables import SEED_DDL, SeedTableTest, literal, new_key



class SeedSupabaseApiKeys(SeedTableTest):
    preset = "supabase_api_keys"
    ddl = SEED_DDL["supabase_api_keys"]
    keys = {}
    user = str(uuid.uuid4())

    @classmethod
    def add(cls, label, permissions='["orders:read"]', expires_at="NULL"):
        """As a Supabase client inserts: the generated key as it is, permissions as jsonb."""
        key = new_key("sb_")
        key_id = cls.sql(
            "INSERT INTO public.api_keys (user_id, name, key, permissions, expires_at) VALUES "
            f"({literal(cls.user)}, {literal(label)}, {literal(key)}, {literal(permissions)}::jsonb, {expires_at}) "
            "RETURNING id")
        cls.keys[label] = (key, key_id)

    @classmethod
    def insert_rows(cls):
        cls.sql(f"INSERT INTO public.users (id) VALUES ({literal(cls.user)})")
        cls.add("good")
        cls.add("none", permissions="[]")
        cls.add("expired", expires_at="now() - interval '1 second'")
        cls.add("expiring", expires_at="now() + interval '1 day'")
        cls.add("doomed")
        cls.add("notified")
        cls.add("polled")
        cls.add("last-used")

    def test_a_key_with_the_permission_passes(self):
        key, key_id = self.keys["good"]
        self.assertPasses(key, "/orders/1", owner=f"user:{self.user}", key_id=key_id)

    def test_a_key_without_the_permission_is_refused(self):
        self.assertRefused(self.keys["none"][0], 403, "insufficient_scope", "/orders/1")
        self.assertPasses(self.keys["none"][0], "/open/x")

    def test_expiry_is_enforced(self):
        self.assertRefused(self.keys["expired"][0], 401, "expired_key")
        self.assertPasses(self.keys["expiring"][0])

    def test_deleting_the_row_revokes_the_key_within_the_cache_ttl(self):
        key, key_id = self.keys["doomed"]
        self.assertPasses(key)
        self.sql(f"DELETE FROM public.api_keys WHERE id = {literal(key_id)}")
        harness.poll_until(lambda: self.get("/open/x", key).status == 401, timeout=5.0)
        self.assertRefused(key, 401, "invalid_key")

    def test_plain_keys_are_warned_about_and_never_logged(self):
        log = self.kg.log_text()
        self.assertIn("store.credential.encoding: plain", log)
        for key, _ in self.keys.values():
            self.assertNotIn(key, log)

    def test_an_unknown_key_is_invalid(self):
        self.assertRefused(new_key("sb_"), 401, "invalid_key")

    def test_with_the_notify_trigger_a_deleted_key_is_refused_within_a_second(self):
        key, key_id = self.keys["notified"]
        self.check_revocation_within_a_second(key, f"DELETE FROM public.api_keys WHERE id = {literal(key_id)}")

    def test_polled_without_a_trigger_a_deleted_key_is_refused_within_a_second(self):
        key, key_id = self.keys["polled"]
        self.check_revocation_by_poll(key, f"DELETE FROM public.api_keys WHERE id = {literal(key_id)}", "public.api_keys")

    def test_keys_create_and_list_work_and_revoke_says_what_the_table_lacks(self):
        self.check_keys_commands(f"user:{self.user}", ["--scopes", "orders:read"], revocable=False)
        r = self.keys_cli("create", "--owner", "team:1", "--name", "x", check=False)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("every key's owner type is user", r.stderr)

    def test_a_request_updates_last_used(self):
        key, key_id = self.keys["last-used"]
        self.check_last_used(key, "public.api_keys", "last_used", f"id = {literal(key_id)}")


if __name__ == "__main__":
    unittest.main()
