"""keygate migrate / keygate keys, run as the real binary against a real PostgreSQL.

Needs KEYGATE_BIN (the binary) and KEYGATE_TEST_PG_DSN (a server on which scratch databases
can be created; each test class makes its own and drops it). The binary runs from an empty
temporary folder (no config.yaml), so only defaults and KEYGATE_POSTGRES_DSN apply.
"""
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import unittest
import uuid
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit, urlunsplit

PG_BIN = "/usr/lib/postgresql/15/bin"
TIMEOUT = 60  # seconds, for every process we run


def require_env(name):
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(f"{name} is not set: run through ctest / scripts/test")
    return value


def dsn_with_database(dsn, database):
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


def psql(dsn, sql):
    done = subprocess.run(["psql", dsn, "-v", "ON_ERROR_STOP=1", "-qAtc", sql],
                          capture_output=True, text=True, timeout=TIMEOUT)
    if done.returncode != 0:
        raise RuntimeError(f"psql failed: {done.stderr.strip()}")
    return done.stdout.strip()


def pg_dump(dsn, *args):
    done = subprocess.run([os.path.join(PG_BIN, "pg_dump"), "--no-owner", *args, dsn],
                          capture_output=True, text=True, timeout=TIMEOUT)
    if done.returncode != 0:
        raise RuntimeError(f"pg_dump failed: {done.stderr.strip()}")
    # pg_dump 15.14+ fences its output with \restrict/\unrestrict lines holding a random token.
    return "".join(line for line in done.stdout.splitlines(keepends=True)
                   if not line.startswith(("\\restrict ", "\\unrestrict ")))


def closed_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parse_time(text):
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


class ScratchDatabase:
    def __init__(self):
        self.admin_dsn = require_env("KEYGATE_TEST_PG_DSN")
        self.name = "kg_test_" + secrets.token_hex(6)
        psql(self.admin_dsn, f"CREATE DATABASE {self.name}")
        self.dsn = dsn_with_database(self.admin_dsn, self.name)

    def drop(self):
        psql(self.admin_dsn, f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")


class CliTestCase(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.bin = require_env("KEYGATE_BIN")
        cls.cwd = tempfile.mkdtemp(prefix="keygate-cli-")
        cls.db = ScratchDatabase()

    @classmethod
    def tearDownClass(cls):
        cls.db.drop()
        shutil.rmtree(cls.cwd, ignore_errors=True)

    def keygate(self, *args, dsn=None):
        env = {k: v for k, v in os.environ.items() if not k.startswith("KEYGATE_")}
        env["KEYGATE_POSTGRES_DSN"] = dsn or self.db.dsn
        return subprocess.run([self.bin, *args], cwd=self.cwd, env=env, capture_output=True,
                              text=True, timeout=TIMEOUT)

    def ok(self, *args, dsn=None):
        done = self.keygate(*args, dsn=dsn)
        self.assertEqual(done.returncode, 0, f"keygate {' '.join(args)}: {done.stderr}")
        return done.stdout

    def ok_json(self, *args):
        return json.loads(self.ok(*args))

    def assertFails(self, args, code, stderr, dsn=None):
        done = self.keygate(*args, dsn=dsn)
        self.assertEqual((done.returncode, done.stderr), (code, stderr), f"keygate {' '.join(args)}")
        self.assertEqual(done.stdout, "")


class MigrateTest(CliTestCase):
    def tables(self):
        # Without partitions, whose names follow the date.
        return psql(self.db.dsn, "SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class "
                                 "WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p') "
                                 "AND NOT relispartition")

    def test_up_down_up_leaves_the_same_schema(self):
        self.assertIn("applied 0001_api_keys", self.ok("migrate", "up"))
        self.assertEqual(self.tables(), "api_key_audit,api_key_quota_usage,api_key_usage,api_keys,schema_migrations")
        first = pg_dump(self.db.dsn, "--schema-only")
        self.assertIn("CREATE TABLE public.api_keys", first)

        self.assertIn("schema is up to date", self.ok("migrate", "up"))
        status = self.ok("migrate", "status")
        self.assertRegex(status, r"0001_api_keys\s+applied\s+\d{4}-\d\d-\d\dT")

        latest = self.ok("migrate", "down")  # only the latest migration
        self.assertRegex(latest, r"^rolled back \d{4}_\w+\n$")
        self.assertIn("api_keys", self.tables())
        self.assertIn("rolled back 0001_api_keys", self.ok("migrate", "down", "--all"))
        self.assertEqual(self.tables(), "schema_migrations")
        self.assertRegex(self.ok("migrate", "status"), r"0001_api_keys\s+pending\s+-")
        self.assertIn("nothing to roll back", self.ok("migrate", "down", "--all"))

        self.ok("migrate")  # no subcommand: up
        self.assertEqual(pg_dump(self.db.dsn, "--schema-only"), first)

    def test_bad_subcommands_are_usage_errors(self):
        self.assertFails(["migrate", "sideways"], 2,
                         'keygate: migrate: unknown subcommand "sideways" (expected up, down or status)\n')
        self.assertFails(["migrate", "up", "now"], 2, 'keygate: migrate up: unexpected argument "now"\n')
        self.assertFails(["migrate", "down", "--some"], 2,
                         'keygate: migrate down: unexpected argument "--some" (only --all)\n')

    def test_unreachable_postgres_is_one_line_and_exit_1(self):
        port = closed_port()
        self.assertFails(["migrate", "up"], 1,
                         f"keygate: cannot reach PostgreSQL at 127.0.0.1:{port}: connection refused\n",
                         dsn=f"postgresql://keygate:TopSecret99@127.0.0.1:{port}/keygate")


class KeysTest(CliTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        env = {k: v for k, v in os.environ.items() if not k.startswith("KEYGATE_")}
        env["KEYGATE_POSTGRES_DSN"] = cls.db.dsn
        subprocess.run([cls.bin, "migrate", "up"], cwd=cls.cwd, env=env, check=True,
                       capture_output=True, timeout=TIMEOUT)

    def owner(self):
        return "user:" + secrets.token_hex(4)  # rows of one test only

    def stored_hash_count(self, key):
        digest = hashlib.sha256(key.encode()).hexdigest()
        return int(psql(self.db.dsn, f"SELECT count(*) FROM api_keys WHERE key_hash = '\\x{digest}'::bytea"))

    def test_create_prints_the_key_once_and_stores_only_its_hash(self):
        owner = self.owner()
        out = self.ok("keys", "create", "--owner", owner, "--name", "ci", "--scopes", "inventory:read,orders:write",
                      "--expires-in", "30d", "--rate-limit", "100/60s", "--quota", "5000",
                      "--allowed-ips", "10.0.0.0/8,::1", "--description", "nightly build")
        key = re.search(r"^\s+(kg_live_[0-9A-Za-z]{38})$", out, re.M).group(1)
        self.assertIn("will not be shown again", out)
        random_part = key[len("kg_live_"):len("kg_live_") + 32]
        self.assertEqual(self.stored_hash_count(key), 1)

        dump = pg_dump(self.db.dsn)  # schema and data
        self.assertNotIn(key, dump)
        self.assertNotIn(random_part, dump)
        self.assertIn(key[:12], dump)  # the display prefix is stored

        for args in (["keys", "list"], ["keys", "list", "--json"], ["keys", "list", "--owner", owner]):
            listed = self.ok(*args)
            self.assertNotIn(random_part, listed)
            self.assertIn(key[:12], listed)
        shown = json.loads(self.ok("keys", "list", "--owner", owner, "--json"))
        self.assertEqual(len(shown), 1)
        self.assertNotIn(random_part, self.ok("keys", "show", shown[0]["id"]))

    def test_json_shapes(self):
        owner = self.owner()
        created = self.ok_json("keys", "create", "--owner", owner, "--name", "ci", "--scopes", "a,b",
                               "--expires-in", "30d", "--rate-limit", "100/60s", "--json")
        for field in ("id", "key", "key_prefix", "owner", "name", "scopes", "expires_at"):
            self.assertIn(field, created)
        self.assertEqual(str(uuid.UUID(created["id"])), created["id"])
        self.assertRegex(created["key"], r"^kg_live_[0-9A-Za-z]{38}$")
        self.assertEqual(created["key_prefix"], created["key"][:12])
        self.assertEqual(created["owner"], owner)
        self.assertEqual(created["scopes"], ["a", "b"])
        self.assertEqual(created["rate_limit"], "100/60s")
        expires = parse_time(created["expires_at"])
        self.assertLess(abs(expires - datetime.now(timezone.utc) - timedelta(days=30)), timedelta(minutes=5))
        self.assertEqual(self.stored_hash_count(created["key"]), 1)

        listed = self.ok_json("keys", "list", "--owner", owner, "--json")
        self.assertEqual([k["id"] for k in listed], [created["id"]])
        entry = listed[0]
        self.assertNotIn("key", entry)
        for field in ("id", "key_prefix", "owner", "name", "scopes", "expires_at", "description", "rate_limit",
                      "quota", "allowed_ips", "is_active", "revoked_at", "created_at", "last_used_at"):
            self.assertIn(field, entry)
        self.assertIs(entry["is_active"], True)
        self.assertIsNone(entry["revoked_at"])
        self.assertIsNone(entry["quota"])
        self.assertEqual(entry["allowed_ips"], [])
        parse_time(entry["created_at"])

        shown = self.ok_json("keys", "show", created["id"], "--json")
        self.assertEqual(shown, entry)

    def test_list_is_an_aligned_table_without_keys(self):
        owner = self.owner()
        first = self.ok_json("keys", "create", "--owner", owner, "--name", "one", "--json")
        second = self.ok_json("keys", "create", "--owner", owner, "--name", "a longer name", "--json")
        lines = self.ok("keys", "list", "--owner", owner).splitlines()
        self.assertEqual(len(lines), 3)
        self.assertTrue(lines[0].startswith("ID"))
        columns = [line.index(k["key_prefix"]) for line, k in zip(lines[1:], (first, second))]
        self.assertEqual(columns[0], columns[1])
        self.assertEqual(lines[0].index("PREFIX"), columns[0])
        self.assertEqual(self.ok("keys", "list", "--owner", "nobody:0"), "no keys\n")

    def test_revoking_twice_succeeds(self):
        created = self.ok_json("keys", "create", "--owner", self.owner(), "--name", "r", "--json")
        self.assertIn("Revoked key", self.ok("keys", "revoke", created["id"]))
        self.assertIn("already revoked", self.ok("keys", "revoke", created["id"]))
        shown = self.ok_json("keys", "show", created["id"], "--json")
        self.assertIs(shown["is_active"], False)
        self.assertIsNotNone(shown["revoked_at"])

    def test_rotate_gives_the_old_key_an_expiry(self):
        created = self.ok_json("keys", "create", "--owner", self.owner(), "--name", "rot", "--scopes", "x",
                               "--json")
        self.assertIsNone(created["expires_at"])
        rotated = self.ok_json("keys", "rotate", created["id"], "--grace", "1h", "--json")
        self.assertNotEqual(rotated["id"], created["id"])
        self.assertNotEqual(rotated["key"], created["key"])
        self.assertEqual(rotated["previous_id"], created["id"])
        self.assertEqual(rotated["scopes"], ["x"])
        self.assertEqual(self.stored_hash_count(rotated["key"]), 1)
        old = self.ok_json("keys", "show", created["id"], "--json")
        expires = parse_time(old["expires_at"])
        self.assertEqual(old["expires_at"], rotated["previous_expires_at"])
        self.assertLess(abs(expires - datetime.now(timezone.utc) - timedelta(hours=1)), timedelta(minutes=5))

        human = self.ok("keys", "rotate", rotated["id"])  # default grace: 24h
        self.assertIn("(grace 1d)", human)
        self.assertRegex(human, r"(?m)^\s+kg_live_[0-9A-Za-z]{38}$")

    def test_unknown_ids_fail_with_exit_1(self):
        missing = str(uuid.uuid4())
        for verb in ("show", "revoke", "rotate"):
            self.assertFails(["keys", verb, missing], 1, f"keygate: no key with id {missing}\n")
        self.assertFails(["keys", "show", "not-a-uuid"], 1, "keygate: no key with id not-a-uuid\n")

    def test_bad_arguments_are_one_line_and_exit_2(self):
        # Against an unreachable server: arguments are checked before PostgreSQL is contacted.
        dsn = f"postgresql://keygate@127.0.0.1:{closed_port()}/keygate"
        create = ["keys", "create", "--owner", "user:1", "--name", "n"]
        cases = [
            (["keys"], "keys: missing subcommand (create, list, show, revoke or rotate)"),
            (["keys", "erase"], 'keys: unknown subcommand "erase" (expected create, list, show, revoke or rotate)'),
            (["keys", "create", "--name", "n"], "keys create: --owner is required"),
            (["keys", "create", "--owner", "user:1"], "keys create: --name is required"),
            (["keys", "create", "--owner", "user", "--name", "n"],
             '--owner: expected TYPE:ID like user:42, got "user"'),
            (["keys", "create", "--owner", ":1", "--name", "n"], '--owner: expected TYPE:ID like user:42, got ":1"'),
            (create + ["--expires-in", "abc"], '--expires-in: expected a duration like 30d, got "abc"'),
            (create + ["--expires-in", "0s"], '--expires-in: must be more than 0, got "0s"'),
            (create + ["--rate-limit", "100"], '--rate-limit: expected REQUESTS/WINDOW like 100/60s, got "100"'),
            (create + ["--quota", "-5"], '--quota: expected a whole number of requests (0 or more), got "-5"'),
            (create + ["--quota", "lots"], '--quota: expected a whole number of requests (0 or more), got "lots"'),
            (create + ["--allowed-ips", "10.0.0.0/8,nope"],
             '--allowed-ips: expected addresses or CIDR networks like 10.0.0.0/8,::1, got "nope"'),
            (create + ["--scopes", "a,,b"],
             '--scopes: expected comma-separated scopes like inventory:read,orders:write, got "a,,b"'),
            (create + ["--frobnicate"], "keys create: unknown option --frobnicate"),
            (create + ["--name", "again"], "--name: given twice"),
            (create + ["--description"], "--description: missing value"),
            (create + ["--json=yes"], "--json: takes no value"),
            (create + ["stray"], 'keys create: unexpected argument "stray"'),
            (["keys", "list", "--owner", "nobody"], '--owner: expected TYPE:ID like user:42, got "nobody"'),
            (["keys", "show"], "keys show: missing key ID"),
            (["keys", "revoke", "a", "b"], 'keys revoke: unexpected argument "b"'),
            (["keys", "rotate", str(uuid.uuid4()), "--grace", "soon"],
             '--grace: expected a duration like 24h, got "soon"'),
        ]
        for args, message in cases:
            with self.subTest(args=args):
                self.assertFails(args, 2, f"keygate: {message}\n", dsn=dsn)

    def test_unreachable_postgres_is_one_line_and_exit_1(self):
        port = closed_port()
        dsn = f"postgresql://keygate:TopSecret99@127.0.0.1:{port}/keygate"
        expected = f"keygate: cannot reach PostgreSQL at 127.0.0.1:{port}: connection refused\n"
        self.assertFails(["keys", "list"], 1, expected, dsn=dsn)
        self.assertFails(["keys", "create", "--owner", "user:1", "--name", "n"], 1, expected, dsn=dsn)


if __name__ == "__main__":
    unittest.main()
