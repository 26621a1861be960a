"""Shared by the five bring-your-own-table tests (test_seed_*.py): a scratch database holding
one seed schema of ../shared/seeds exactly as its project creates it (no keygate migration),
rows inserted the way that project's code inserts them, and the real keygate binary serving
requests against it with `store.schema: custom` and the seed's preset."""
import hashlib
import secrets
import string
from urllib.parse import urlsplit, urlunsplit

import harness

ALPHABET = string.ascii_letters + string.digits

# /orders/* needs a scope; /open/* any valid key.
ROUTES = [
    {"path": "/orders/*", "methods": ["GET"], "scopes": ["orders:read"]},
    {"path": "/admin/*", "methods": ["GET"], "scopes": ["admin"]},
    {"path": "/open/*", "methods": ["GET"]},
]


def new_key(prefix="sk_live_"):
    """A key in the project's own format (no keygate checksum)."""
    return prefix + "".join(secrets.choice(ALPHABET) for _ in range(32))


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

    def assertStartRefused(self, store, line):
        """keygate with this store mapping exits at startup with `line` in its output."""
        kg = harness.Keygate(self.workdir, self.seed_config(**store), name="refused")
        self.addCleanup(kg.stop)
        with self.assertRaises(RuntimeError):
            kg.start(timeout=10)
        self.assertIn(line, kg.log_text())
        self.assertEqual(kg.proc.returncode, 2, kg.log_tail())
