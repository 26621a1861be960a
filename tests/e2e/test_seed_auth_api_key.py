"""Seed 001 (../shared/seeds/001_*): auth.api_key, with row-level security, an integer user id,
a uuid `jti`, `revoked_at`, and a `token` that a BEFORE INSERT trigger generates. keygate
connects as a role of its own with exactly the grants of deploy/presets/auth_api_key.grants.sql,
and serves the table unchanged with `store: {schema: custom, preset: auth_api_key}`."""
import os
import re
import secrets
import unittest

import harness
from seed_tables import SEED_DDL, SeedTableTest, literal, new_key


PRESET_SQL = os.path.join(harness.source_dir(), "deploy", "presets", "auth_api_key.grants.sql")


class SeedAuthApiKey(SeedTableTest):
    preset = "auth_api_key"
    ddl = SEED_DDL["auth_api_key"]
    keys = {}
    dsn_user = "kg_reader_" + secrets.token_hex(4)
    app_role = "kg_app_user_" + secrets.token_hex(4)  # the project's own role

    @classmethod
    def setUpClass(cls):
        harness.KeygateTestCase.setUpClass.__func__(cls)
        cls.sql(cls.ddl)
        # keygate's own role, with the preset's grants (the file, as shipped).
        cls.sql(f"CREATE ROLE {cls.dsn_user} LOGIN")
        cls.addClassCleanup(cls.drop_role)
        with open(PRESET_SQL) as f:
            grants = re.sub(r"\bkeygate\b(?!_)", cls.dsn_user, f.read())
        cls.sql(grants)
        cls.insert_rows()
        cls.kg = cls.start_keygate(config=cls.seed_config())

    @classmethod
    def drop_role(cls):
        cls.sql(f"DROP OWNED BY {cls.dsn_user}, {cls.app_role}; DROP ROLE {cls.dsn_user}; "
                f"DROP ROLE IF EXISTS {cls.app_role}")

    @classmethod
    def add(cls, label, expires="now() + interval '1 day'"):
        """As the project's code inserts, as the user, under its RLS: the trigger makes the token."""
        row = cls.sql(
            f"SET LOCAL app.user_id = '1'; SET LOCAL ROLE {cls.app_role}; "
            f"INSERT INTO auth.api_key (user_id, description, expires_at) VALUES (1, {literal(label)}, {expires}) "
            "RETURNING jti || ' ' || token")
        jti, token = row.split()
        cls.keys[label] = (token, jti)

    @classmethod
    def insert_rows(cls):
        cls.sql('INSERT INTO auth."user" DEFAULT VALUES')
        # The project's own (non-superuser) role, so that its RLS policies apply to the inserts.
        cls.sql(f"CREATE ROLE {cls.app_role} NOLOGIN; GRANT USAGE ON SCHEMA auth TO {cls.app_role}; "
                f"GRANT SELECT, INSERT ON auth.api_key TO {cls.app_role}")
        for label in ("good", "expired", "revoked", "notified"):
            cls.add(label)
        cls.sql(f"UPDATE auth.api_key SET expires_at = now() - interval '1 second' WHERE jti = {literal(cls.keys['expired'][1])}")
        cls.sql(f"UPDATE auth.api_key SET revoked_at = now() WHERE jti = {literal(cls.keys['revoked'][1])}")

    def test_a_trigger_made_token_passes_with_its_jti_and_user(self):
        token, jti = self.keys["good"]
        self.assertPasses(token, owner="user:1", key_id=jti)

    def test_a_key_table_without_scopes_grants_none(self):
        self.assertRefused(self.keys["good"][0], 403, "insufficient_scope", "/orders/1")

    def test_expired_and_revoked_tokens_are_refused(self):
        self.assertRefused(self.keys["expired"][0], 401, "expired_key")
        self.assertRefused(self.keys["revoked"][0], 401, "revoked_key")

    def test_an_unknown_token_is_invalid(self):
        self.assertRefused("ak_" + secrets.token_hex(32), 401, "invalid_key")

    def test_keygates_role_reads_the_keys_but_cannot_change_them(self):
        as_reader = self.seed_config()["postgres"]["dsn"]
        with self.assertRaises(RuntimeError):
            harness.psql(as_reader, "UPDATE auth.api_key SET revoked_at = NULL")
        self.assertEqual(harness.psql(as_reader, "SELECT count(*) FROM auth.api_key"), "4")

    def test_with_the_notify_trigger_a_revocation_takes_effect_within_a_second(self):
        token, jti = self.keys["notified"]
        self.check_revocation_within_a_second(
            token, f"UPDATE auth.api_key SET revoked_at = now() WHERE jti = {literal(jti)}")

    def test_keys_create_returns_the_token_the_tables_trigger_made(self):
        created = self.check_keys_commands("user:1", ["--expires-in", "1d"])
        self.assertTrue(created["key"].startswith("ak_"), "not the trigger's token")


if __name__ == "__main__":
    unittest.main()
