"""Shared by the five bring-your-own-table tests (test_seed_*.py): a scratch database holding
one seed schema of ../shared/seeds exactly as its project creates it (no keygate migration),
rows inserted the way that project's code inserts them, and the real keygate binary serving
requests against it with `store.schema: custom` and the seed's preset."""
import hashlib
import json
import os
import secrets
import time
import string
import warnings
from urllib.parse import urlsplit, urlunsplit

import harness

ALPHABET = string.ascii_letters + string.digits

# /orders/* needs a scope; /open/* any valid key.
ROUTES = [
    {"path": "/orders/*", "methods": ["GET"], "scopes": ["orders:read"]},
    {"path": "/admin/*", "methods": ["GET"], "scopes": ["admin"]},
    {"path": "/open/*", "methods": ["GET"]},
]

# Each seed's tables as its project creates them (PostgreSQL; seed 004 translated from MySQL:
# bigint identity, jsonb, char(64)). bench/lib/presets.py loads the same tables.
SEED_DDL = {
    "supabase_api_keys": """
CREATE SCHEMA auth;
CREATE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql STABLE
    AS $$ SELECT nullif(current_setting('request.jwt.claim.sub', true), '')::uuid $$;
CREATE TABLE public.users (id uuid PRIMARY KEY);
CREATE TABLE public.api_keys (
    id uuid PRIMARY KEY NOT NULL DEFAULT gen_random_uuid(),
    user_id uuid NOT NULL REFERENCES public.users(id),
    name text NOT NULL,
    key text NOT NULL,
    permissions jsonb NOT NULL DEFAULT '[]'::jsonb,
    last_used timestamp with time zone,
    created_at timestamp with time zone NOT NULL DEFAULT now(),
    expires_at timestamp with time zone
);
ALTER TABLE public.api_keys ENABLE ROW LEVEL SECURITY;
CREATE POLICY "Users can manage own API keys" ON public.api_keys USING (auth.uid() = user_id);
CREATE POLICY "Users can see own API keys" ON public.api_keys FOR SELECT USING (auth.uid() = user_id);
""",
    "auth_api_key": """
-- The dump's public.gen_random_uuid() is pgcrypto's.
CREATE EXTENSION IF NOT EXISTS pgcrypto WITH SCHEMA public;
CREATE SCHEMA auth;
CREATE TABLE auth."user" (id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY);
CREATE FUNCTION auth.uid() RETURNS integer LANGUAGE sql STABLE
    AS $$ SELECT nullif(current_setting('app.user_id', true), '')::integer $$;
CREATE TABLE auth.api_key (
    id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    jti uuid NOT NULL DEFAULT public.gen_random_uuid() UNIQUE,
    user_id integer NOT NULL REFERENCES auth."user"(id) ON DELETE CASCADE,
    description text,
    created_at timestamp with time zone NOT NULL DEFAULT now(),
    expires_at timestamp with time zone NOT NULL,
    revoked_at timestamp with time zone,
    token text
);
CREATE INDEX api_key_user_id_idx ON auth.api_key (user_id);
ALTER TABLE auth.api_key ENABLE ROW LEVEL SECURITY;
CREATE POLICY delete_own_api_keys ON auth.api_key FOR DELETE USING (user_id = auth.uid());
CREATE POLICY insert_own_api_keys ON auth.api_key FOR INSERT WITH CHECK (user_id = auth.uid());
CREATE POLICY revoke_own_api_keys ON auth.api_key FOR UPDATE
    USING (user_id = auth.uid()) WITH CHECK (user_id = auth.uid());
CREATE POLICY select_own_api_keys ON auth.api_key FOR SELECT USING (user_id = auth.uid());
CREATE FUNCTION auth.generate_api_key_token() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.token := 'ak_' || encode(sha256(convert_to(gen_random_uuid()::text || clock_timestamp()::text, 'UTF8')), 'hex');
    RETURN NEW;
END $$;
CREATE TRIGGER generate_api_key_token_trigger BEFORE INSERT ON auth.api_key
    FOR EACH ROW EXECUTE FUNCTION auth.generate_api_key_token();
""",
    "user_api_key": """
CREATE SCHEMA api;
CREATE TABLE api."user" (user_id uuid PRIMARY KEY);
CREATE TABLE api.user_api_key (
    api_key_id uuid PRIMARY KEY,
    key_name text NOT NULL,
    key_id text NOT NULL,
    user_id uuid NOT NULL REFERENCES api."user"(user_id) ON DELETE CASCADE,
    last_used timestamp,
    is_active boolean NOT NULL DEFAULT true,
    created_at timestamp NOT NULL DEFAULT now(),
    updated_at timestamp NOT NULL DEFAULT now()
);
CREATE INDEX user_api_key_user_id_idx ON api.user_api_key (user_id);
""",
    "api_keys_bcrypt": """
CREATE TABLE api_keys (
    id SERIAL PRIMARY KEY,
    user_id UUID NOT NULL,
    key_hash VARCHAR(255) NOT NULL,
    key_prefix VARCHAR(20) NOT NULL,
    name VARCHAR(255) NOT NULL,
    description TEXT,
    scopes TEXT[] DEFAULT '{}',
    is_active BOOLEAN DEFAULT true,
    expires_at TIMESTAMP WITH TIME ZONE,
    last_used_at TIMESTAMP WITH TIME ZONE,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now(),
    revoked_at TIMESTAMP WITH TIME ZONE
);
CREATE INDEX idx_api_keys_user_id ON api_keys (user_id);
CREATE INDEX idx_api_keys_key_hash ON api_keys (key_hash);
CREATE INDEX idx_api_keys_is_active ON api_keys (is_active);
CREATE TABLE api_key_usage (
    id SERIAL PRIMARY KEY,
    api_key_id INTEGER REFERENCES api_keys(id) ON DELETE CASCADE,
    endpoint VARCHAR(255),
    method VARCHAR(10),
    status_code INTEGER,
    ip_address INET,
    user_agent TEXT,
    response_time_ms INTEGER,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now()
);
CREATE INDEX idx_api_key_usage_key_id ON api_key_usage (api_key_id);
CREATE INDEX idx_api_key_usage_created_at ON api_key_usage (created_at);
""",
    "owner_abilities": """
CREATE TABLE api_keys (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    owner_type VARCHAR(50) NOT NULL,
    owner_id BIGINT NOT NULL,
    name VARCHAR(255) NOT NULL,
    key_hash CHAR(64) NOT NULL UNIQUE,
    abilities JSONB NOT NULL,
    last_used_at TIMESTAMP NULL,
    expires_at TIMESTAMP NULL,
    is_active BOOLEAN NOT NULL DEFAULT TRUE,
    created_by BIGINT NULL,
    revoked_at TIMESTAMP NULL,
    rate_limit INT NULL,
    window_seconds INT NOT NULL DEFAULT 60,
    allowed_ips JSONB NULL,
    created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP NULL DEFAULT NULL
);
CREATE INDEX idx_owner ON api_keys (owner_type, owner_id);
CREATE INDEX idx_active ON api_keys (is_active);
CREATE INDEX idx_expires_at ON api_keys (expires_at);
""",
}


def new_key(prefix="sk_live_"):
    """A key in the project's own format (no keygate checksum)."""
    return prefix + "".join(secrets.choice(ALPHABET) for _ in range(32))


def bcrypt_hash(key, cost=10):
    """bcrypt ($2b$, libxcrypt through Python's crypt), as seed 003's backend stores a key
    (bcrypt.hash(key, 10))."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # Python 3.11 still ships it
        import crypt
    return crypt.crypt(key, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=1 << cost))


def sha256_hex(key):
    return hashlib.sha256(key.encode()).hexdigest()


def literal(text):
    """A SQL string literal (the tests' own values only)."""
    return "'" + text.replace("'", "''") + "'"


class SeedTableTest(harness.KeygateTestCase):
    migrate = False
    preset = None          # store.preset
    ddl = ""               # the seed's tables, as written (PostgreSQL)
    store_overrides = {}   # more store.* options
    dsn_user = None        # connect as this role instead of the superuser

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.sql(cls.ddl)
        cls.insert_rows()
        cls.kg = cls.start_keygate(config=cls.seed_config())

    @classmethod
    def insert_rows(cls):
        """Inserts the rows the tests use (each test class's own)."""

    @classmethod
    def seed_config(cls, **store):
        dsn = cls.dsn
        if cls.dsn_user:
            u = urlsplit(dsn)
            dsn = urlunsplit((u.scheme, f"{cls.dsn_user}@{u.hostname}:{u.port}", u.path, u.query, u.fragment))
        config = cls.keygate_config(routes=ROUTES, routes_default="deny",
                                    cache={"ttl": "1s", "negative_ttl": "1s"})
        config["postgres"]["dsn"] = dsn
        config["usage"] = {"enabled": True, "flush_interval": "200ms", "last_used_interval": "500ms",
                           "spill_path": os.path.join(cls.workdir, f"usage-{secrets.token_hex(3)}.spill")}
        config["store"] = {"schema": "custom", "preset": cls.preset, **cls.store_overrides, **store}
        return config

    def get(self, path, key, kg=None):
        return harness.request((kg or self.kg).port, "GET", path, headers=harness.bearer(key))

    def assertPasses(self, key, path="/open/x", owner=None, key_id=None):
        r = self.get(path, key)
        self.assertStatus(r, 200, self.kg)
        headers = r.json["headers"]
        self.assertNotIn("authorization", headers, "the credential reached the upstream")
        if owner is not None:
            self.assertEqual(headers.get("x-api-key-owner"), owner)
        if key_id is not None:
            self.assertEqual(headers.get("x-api-key-id"), str(key_id))
        return headers

    def assertRefused(self, key, status, code, path="/open/x"):
        self.assertError(self.get(path, key), status, code, self.kg)

    def check_revocation_within_a_second(self, key, change_sql):
        """With the preset's optional NOTIFY trigger (deploy/presets/<preset>.notify.up.sql,
        the file as shipped) installed, `change_sql` refuses `key` within a second although
        keygate caches keys for a minute. (Called by each seed's test; not a test itself, so
        that the base class runs nothing.)"""
        with open(os.path.join(harness.source_dir(), "deploy", "presets", f"{self.preset}.notify.up.sql")) as f:
            self.sql(f.read())
        self.addCleanup(self.drop_notify_trigger)
        config = self.seed_config()
        config["cache"] = {"ttl": "60s", "negative_ttl": "60s"}
        kg = self.start_keygate_for_test(config=config, name="notified")
        self.assertStatus(self.get("/open/x", key, kg), 200, kg)
        self.assertStatus(self.get("/open/x", key, kg), 200, kg)  # from the cache now
        self.sql(change_sql)
        refused, elapsed = harness.poll_until(lambda: self.get("/open/x", key, kg).status == 401, timeout=5.0)
        self.assertTrue(refused, f"still served 5 s after the change\n{kg.log_tail()}")
        self.assertLess(elapsed, 1.0)
        print(f"{self.preset}: refused {elapsed * 1000:.0f} ms after the change", flush=True)

    def check_revocation_by_poll(self, key, change_sql, table):
        """Without the trigger, `store.revocation: poll` (every 250 ms) refuses `key` within a
        second of `change_sql` although keygate caches keys for a minute; and polls that find
        nothing changed drop nothing. (Usage is off here: each last-used write is an UPDATE,
        which the poll sees as a change and drops the cache for.)"""
        # Other keygates of this class write last used too: wait until the table is still.
        signature = "SELECT count(*)::text || ':' || sum(xmin::text::bigint)::text FROM " + table
        last, still_since = None, time.monotonic()
        while time.monotonic() - still_since < 1.0:
            now = self.sql(signature)
            if now != last:
                last, still_since = now, time.monotonic()
            time.sleep(0.1)
        config = self.seed_config(revocation="poll", poll_interval="250ms")
        config["cache"] = {"ttl": "60s", "negative_ttl": "60s"}
        config["usage"] = {"enabled": False}
        kg = self.start_keygate_for_test(config=config, name="polled")
        self.assertIn('"revocation":"poll every 250 ms"', kg.log_text())
        self.assertStatus(self.get("/open/x", key, kg), 200, kg)
        deadline = time.monotonic() + 1.5  # six polls
        while time.monotonic() < deadline:
            self.assertStatus(self.get("/open/x", key, kg), 200, kg)
            time.sleep(0.05)
        samples = kg.metrics()
        self.assertEqual(harness.metric_value(samples, "keygate_l1_invalidations_total"), 0,
                         "a poll that found nothing changed dropped the cache")
        self.assertGreater(harness.metric_value(samples, "keygate_key_lookups_total", tier="l1", outcome="hit"), 20)
        self.sql(change_sql)
        refused, elapsed = harness.poll_until(lambda: self.get("/open/x", key, kg).status == 401, timeout=5.0)
        self.assertTrue(refused, f"still served 5 s after the change\n{kg.log_tail()}")
        self.assertLess(elapsed, 1.0)
        self.assertEqual(harness.metric_value(kg.metrics(), "keygate_l1_invalidations_total"), 1)
        print(f"{self.preset}: polled, refused {elapsed * 1000:.0f} ms after the change", flush=True)

    def check_last_used(self, key, table, column, where, without_time_zone=False):
        """A request with `key` sets `table`.`column` of the row `where` (NULL before) to about
        now; a timestamp without time zone holds UTC."""
        read = f"SELECT {column} FROM {table} WHERE {where}"
        self.assertEqual(self.sql(read), "")
        self.assertPasses(key)
        value, _ = harness.poll_until(lambda: self.sql(read), timeout=10.0)
        self.assertTrue(value, f"last used never written\n{self.kg.log_tail()}")
        now = "(now() AT TIME ZONE 'UTC')" if without_time_zone else "now()"
        age = float(self.sql(f"SELECT extract(epoch FROM {now} - {column}) FROM {table} WHERE {where}"))
        self.assertLess(abs(age), 30.0, f"last used is {age} s away from now")

    def keys_cli(self, *args, check=True):
        """`keygate --config <this class's keygate config> keys ARGS` as the table's owner."""
        return harness.run_cli(["--config", self.kg.config_path, "keys", *args], self.dsn, check=check)

    def check_keys_commands(self, owner, create_args=(), revocable=True):
        """keys create makes a key keygate serves; keys list shows it; keys revoke refuses it
        (or, for a table with no revoked_at / is_active, says so in one line, exit 2)."""
        created = json.loads(self.keys_cli("create", "--owner", owner, "--name", "from keygate",
                                           "--json", *create_args).stdout)
        self.assertPasses(created["key"], owner=owner, key_id=created["id"])
        listed = json.loads(self.keys_cli("list", "--owner", owner, "--json").stdout)
        self.assertIn(created["id"], [k["id"] for k in listed])
        self.assertNotIn(created["key"], json.dumps(listed))
        revoked = self.keys_cli("revoke", created["id"], check=False)
        if revocable:
            self.assertEqual(revoked.returncode, 0, revoked.stderr)
            harness.poll_until(lambda: self.get("/open/x", created["key"]).status == 401, timeout=5.0)
            self.assertRefused(created["key"], 401, "revoked_key")
            again = self.keys_cli("revoke", created["id"], check=False)
            self.assertEqual(again.returncode, 1, again.stderr)
        else:
            self.assertEqual(revoked.returncode, 2, revoked.stderr)
            self.assertIn("delete the row to revoke the key", revoked.stderr)
            self.assertEqual(len(revoked.stderr.strip().splitlines()), 1, revoked.stderr)
        return created

    def drop_notify_trigger(self):
        with open(os.path.join(harness.source_dir(), "deploy", "presets", f"{self.preset}.notify.down.sql")) as f:
            self.sql(f.read())

    def assertStartRefused(self, store, line):
        """keygate with this store mapping exits at startup with `line` in its output."""
        kg = harness.Keygate(self.workdir, self.seed_config(**store), name="refused")
        self.addCleanup(kg.stop)
        with self.assertRaises(RuntimeError):
            kg.start(timeout=10)
        self.assertIn(line, kg.log_text())
        self.assertEqual(kg.proc.returncode, 2, kg.log_tail())
