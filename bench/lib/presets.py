"""The five seed schemas for the benchmark's `hot-<preset>` scenarios: each in a database of its
own on the benchmark's PostgreSQL, with the tables tests/e2e/seed_tables.py creates (the same
DDL the end-to-end tests use), and 1,000 keys inserted the way the seed's project stores them.
keygate serves each with `store: {schema: custom, preset: ...}`."""
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "e2e"))
from seed_tables import SEED_DDL, bcrypt_hash, new_key, sha256_hex  # noqa: E402

PRESETS = tuple(SEED_DDL)
USER = "00000000-0000-4000-8000-000000000001"


def _values(rows):
    return ",\n".join("(" + ", ".join(rows_i) + ")" for rows_i in rows)


def _q(text):
    return "'" + text.replace("'", "''") + "'"


def insert_sql(preset, keys):
    """The INSERT for these keys (not for auth_api_key, whose trigger makes the tokens)."""
    if preset == "supabase_api_keys":
        rows = [(_q(USER), _q("bench"), _q(k), "'[\"bench\"]'::jsonb") for k in keys]
        return (f"INSERT INTO public.users (id) VALUES ({_q(USER)});\n"
                "INSERT INTO public.api_keys (user_id, name, key, permissions) VALUES\n" + _values(rows))
    if preset == "user_api_key":
        rows = [(f"gen_random_uuid()", _q("bench"), _q(sha256_hex(k)), _q(USER)) for k in keys]
        return (f'INSERT INTO api."user" (user_id) VALUES ({_q(USER)});\n'
                "INSERT INTO api.user_api_key (api_key_id, key_name, key_id, user_id) VALUES\n" + _values(rows))
    if preset == "api_keys_bcrypt":
        # Cost 4, so that 1,000 hashes take a second to make: once a key is verified keygate
        # serves it from its cache, and the cost only changes the first request (see README).
        rows = [(_q(USER), _q(bcrypt_hash(k, cost=4)), _q(k[:12]), _q("bench"), "'{bench}'") for k in keys]
        return ("INSERT INTO api_keys (user_id, key_hash, key_prefix, name, scopes) VALUES\n" + _values(rows))
    if preset == "owner_abilities":
        rows = [(_q("App\\Models\\User"), "1", _q("bench"), _q(sha256_hex(k)), "'[\"*\"]'::jsonb") for k in keys]
        return ("INSERT INTO api_keys (owner_type, owner_id, name, key_hash, abilities) VALUES\n" + _values(rows))
    raise ValueError(preset)


def load(psql_base, preset, count):
    """Creates database bench_<preset> with the seed's tables and `count` keys; returns the keys.
    `psql_base` is the psql command line for the server (its -d is replaced)."""
    database = f"bench_{preset}"
    admin = [a for a in psql_base]
    admin[admin.index("-d") + 1] = "postgres"
    subprocess.run(admin + ["-qc", f"CREATE DATABASE {database}"], check=True, stdout=subprocess.DEVNULL)
    psql = [a for a in psql_base]
    psql[psql.index("-d") + 1] = database
    run = lambda sql, **kw: subprocess.run(psql + ["-v", "ON_ERROR_STOP=1", "-qAt"], input=sql, text=True,
                                           check=True, stdout=subprocess.PIPE, **kw).stdout
    run(SEED_DDL[preset])
    if preset == "auth_api_key":
        run('INSERT INTO auth."user" DEFAULT VALUES')
        out = run("INSERT INTO auth.api_key (user_id, description, expires_at) "
                  f"SELECT 1, 'bench', now() + interval '1 day' FROM generate_series(1, {count}) RETURNING token")
        keys = out.split()
    else:
        keys = [new_key("sk_live_") for _ in range(count)]
        run(insert_sql(preset, keys))
    run("VACUUM (ANALYZE)")
    return database, keys


def store_yaml(preset):
    return f"""store:
  schema: custom
  preset: {preset}
"""
