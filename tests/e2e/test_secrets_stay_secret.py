"""Nothing secret escapes (issue #12 part 5).

One full run of keygate collects every text keygate or its command line produces -- each
process's stderr/stdout (log lines, access log lines), the access log file, /metrics and every
admin endpoint, every response status, header and body, what the upstream received (its
--record file), every CLI stdout and stderr, and the rows keygate wrote to PostgreSQL -- and
then searches all of it for every secret of the run:

  keys       every key created (the full key, and its secret parts alone: the random part, the
             part after the 12-character display prefix, each half of the random part)
  presented  keys sent but refused: bad checksum, typo, truncated, unknown, revoked, expired
  pepper     keys.pepper given through ${VAR}, written in the file, given as KEYGATE_PEPPER,
             and a changed one offered by a reload
  passwords  a PostgreSQL role's password in the DSN (URI and key=value forms; the test cluster
             trusts loopback, so it is not checked, but it is a secret all the same), DSNs with
             passwords pointing at a closed port or malformed, Redis ACL and default-user
             passwords (a redis-server of our own with requirepass and an ACL user), a wrong
             Redis password,
             a Redis password for a closed port

each as written and percent-encoded, form-encoded, JSON-escaped, hex and base64 (at each of
the three alignments a secret can have inside a longer base64 text, e.g. a Basic header), and
for passwords and peppers also every 12-character piece. The one legitimate place a key
appears is the stdout of the `keys create` / `keys rotate` that made it (where it must appear
exactly once); with keys.hide_credentials: false the upstream's record and echo of a forwarded
key are allowed too. A finding names the secret's kind, its label, the form and the source,
never the secret: the context shown has every secret replaced.
"""
import base64
import json
import os
import re
import secrets
import signal
import socket
import string
import subprocess
import sys
import tempfile
import time
import unittest
import uuid
from urllib.parse import quote, quote_plus, urlsplit

import harness
from harness import bearer

ALNUM = string.ascii_letters + string.digits
PIECE = 12           # a password or pepper piece this long found anywhere is a leak
KEY_TAIL = 38        # '_' excluded: 32 random base62 characters + 6 of checksum (authz/key_format.hpp)
KEY_RANDOM = 32
KEY_DISPLAY = 12     # the prefix `keys list` shows, stored as api_keys.key_prefix: not secret
WAIT_S = 10.0        # any log line or state the test waits for


def random_text(n):
    return "".join(secrets.choice(ALNUM) for _ in range(n))


unknown_key = harness.unknown_key


def closed_port():
    return harness.free_port()  # nothing listens there once the probe socket is closed


# ---- secrets and the forms they could take ----------------------------------------------------

def base64_pieces(data, encode):
    """The part of encode(pad + data) that depends only on `data`, for each of the three
    alignments `data` can have inside a longer text that was base64-encoded as a whole."""
    pieces = []
    for offset in range(3):
        encoded = encode(b"\0" * offset + data).decode().rstrip("=")
        start = -(-8 * offset // 6)             # the first character made of data bits only
        end = (8 * (offset + len(data))) // 6   # past the last such character
        if end - start >= 8:
            pieces.append((f"base64 at offset {offset}", encoded[start:end]))
    return pieces


def encodings(text):
    """(form name, text) for each way `text` could be written out, as is first."""
    forms = [("as is", text),
             ("percent-encoded", quote(text, safe="")),
             ("percent-encoded, lower-case hex",
              re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), quote(text, safe=""))),
             ("percent-encoded path", quote(text)),
             ("form-encoded", quote_plus(text)),
             ("JSON-escaped", json.dumps(text)[1:-1]),
             ("JSON-escaped with \\/", json.dumps(text).replace("/", "\\/")[1:-1]),
             ("hex", text.encode().hex())]
    forms += [(f"{name} (standard)", p) for name, p in base64_pieces(text.encode(), base64.b64encode)]
    forms += [(f"{name} (url-safe)", p) for name, p in base64_pieces(text.encode(), base64.urlsafe_b64encode)]
    seen, out = set(), []
    for name, form in forms:
        if form and form not in seen:
            seen.add(form)
            out.append((name, form))
    return out


class Secret:
    """A value that must not appear in any collected text. `forms` are what is searched."""

    def __init__(self, kind, label, value, pieces=(), parent=None):
        self.kind, self.label, self.value = kind, label, value
        self.parent = parent  # a key this one was made from: allowed wherever that one is
        self.forms = encodings(value) + [(name, p) for name, p in pieces if p and p != value]

    def redacted(self):
        if self.kind.endswith("key") and len(self.value) > KEY_TAIL:
            return f"{self.value[:len(self.value) - KEY_TAIL]}<{KEY_TAIL} characters>"
        return f"<{len(self.value)} characters>"

    def __repr__(self):  # never the value
        return f"<Secret {self.kind}: {self.label} {self.redacted()}>"


def key_secret(kind, label, key, parent=None):
    """A key and its secret parts alone. A key made from another one (`parent`: a bad checksum,
    a typo, truncated) is searched as a whole only: its parts are the other key's."""
    pieces = []
    if parent is None:
        tail = key[-KEY_TAIL:]
        random_part = tail[:KEY_RANDOM]
        pieces = [("random part and checksum", tail), ("random part", random_part),
                  ("all but the display prefix", key[KEY_DISPLAY:]),
                  ("first half of the random part", random_part[:KEY_RANDOM // 2]),
                  ("second half of the random part", random_part[KEY_RANDOM // 2:])]
    return Secret(kind, label, key, pieces, parent)


def text_secret(kind, label, value):
    """A password or pepper: also every PIECE-character piece of it, as is and percent-encoded."""
    pieces = []
    for name, form in (("as is", value), ("percent-encoded", quote(value, safe=""))):
        for i in range(0, max(len(form) - PIECE, 0) + 1):
            pieces.append((f"a {PIECE}-character piece ({name})", form[i:i + PIECE]))
    return Secret(kind, label, value, pieces if len(value) > PIECE else ())


class Source:
    def __init__(self, name, text, allowed=()):
        self.name, self.text = name, text
        self.allowed = {id(s) for s in allowed}


class Finding:
    def __init__(self, secret, form_name, form, source, at):
        self.secret, self.form_name, self.form, self.source, self.at = secret, form_name, form, source, at


def find_leaks(all_secrets, sources):
    """Every (secret, source) pair where a form of the secret is in the source's text and the
    source is not one where that secret is allowed; the first form found per pair."""
    findings = []
    for source in sources:
        for secret in all_secrets:
            if id(secret) in source.allowed or id(secret.parent) in source.allowed:
                continue
            for form_name, form in secret.forms:
                at = source.text.find(form)
                if at >= 0:
                    findings.append(Finding(secret, form_name, form, source, at))
                    break
    return findings


def masked(text, all_secrets, mark, at):
    """`text` with every occurrence of every form of every secret replaced, and where position
    `at` of `text` is in it. Covered characters are found first (occurrences may overlap, e.g.
    two pieces of one password), then each run of them becomes one placeholder, mark(secret)."""
    owner = [None] * len(text)
    for secret in sorted(all_secrets, key=lambda s: mark(s).startswith("<<")):  # marked ones win
        for _, form in secret.forms:
            found = text.find(form)
            while found >= 0:
                owner[found:found + len(form)] = [secret] * len(form)
                found = text.find(form, found + 1)
    out, i, out_at = [], 0, 0
    while i < len(text):
        j = i + 1
        while owner[i] is not None and j < len(text) and owner[j] is owner[i]:
            j += 1
        if i <= at < j:
            out_at = len("".join(out))
        out.append(text[i] if owner[i] is None else mark(owner[i]))
        i = j
    return "".join(out), out_at


def describe(finding, all_secrets, context=70):
    """One line for a finding: the secret's kind, label and redacted form, the form found, the
    source, and the text around where it was found, with every secret replaced."""
    marker = f"<<{finding.secret.kind.upper()} HERE>>"
    text, at = masked(finding.source.text, all_secrets,
                      lambda s: marker if s is finding.secret else f"<{s.kind}>", finding.at)
    around = harness.redact(text[max(at - context, 0):at + len(marker) + context]).replace("\n", "\\n")
    return (f"{finding.secret.kind} \"{finding.secret.label}\" {finding.secret.redacted()}, "
            f"{finding.form_name}, in {finding.source.name}: ...{around}...")


# ---- processes of our own ----------------------------------------------------------------------

class PasswordRedis:
    """redis-server on a free loopback port that wants a password: `requirepass` for the default
    user and an ACL user; its config file (not its command line) holds them. Stopped by PID."""

    def __init__(self, workdir, default_password, user, user_password):
        self.dir = os.path.join(workdir, "redis-auth")
        os.makedirs(self.dir, exist_ok=True)
        self.port = harness.free_port()
        self.conf = os.path.join(self.dir, "redis.conf")
        with open(self.conf, "w") as f:
            f.write(f"port {self.port}\nbind 127.0.0.1\nsave \"\"\nappendonly no\n"
                    f"dir {self.dir}\nrequirepass \"{default_password}\"\n"
                    f"user {user} on >{user_password} ~* &* +@all\n")
        self.proc = None

    def start(self):
        log = open(os.path.join(self.dir, "server.log"), "ab")
        self.proc = subprocess.Popen(["redis-server", self.conf], stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        if not harness.wait_for_port(self.port):
            self.stop()
            raise RuntimeError(f"redis-server with a password did not start on {self.port}")
        return self

    def stop(self):
        harness.stop_process(self.proc)
        self.proc = None


class UnreadyKeygate(harness.Keygate):
    """A keygate whose stores are unreachable on purpose: it never becomes ready, so it is
    waited for on /healthz instead of /readyz."""

    def wait_ready(self, timeout=20.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"keygate exited with {self.proc.returncode}\n{self.log_tail()}")
            try:
                if harness.request(self.admin_port, "GET", "/healthz", timeout=1.0).status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"keygate did not answer /healthz within {timeout}s\n{self.log_tail()}")


def log_messages(kg):
    out = []
    for line in kg.log_text().splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def wait_for_log(kg, predicate, count=1, timeout=WAIT_S):
    """Waits until `count` of keygate's JSON log lines satisfy predicate(line)."""
    value, _ = harness.poll_until(
        lambda: len([m for m in log_messages(kg) if predicate(m)]) >= count, timeout, 0.05)
    if not value:
        raise AssertionError(f"{kg.name}: waited {timeout}s for a log line\n{kg.log_tail()}")


def msg_starts(prefix):
    return lambda m: str(m.get("msg", "")).startswith(prefix)


def raw_exchange(port, data):
    """Sends bytes keygate must answer and then close (they say Connection: close, or are a
    framing error); returns what came back, decoded."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(data.encode())
        answer = b""
        try:
            while chunk := s.recv(65536):
                answer += chunk
        except ConnectionResetError:  # keygate may close with the request partly unread
            pass
    return answer.decode(errors="replace")


def replaced(text, old, new):
    """text with `old` replaced; `old` must be there (a reload test must change something)."""
    if old not in text:
        raise AssertionError(f"{old!r} is not in the config text")
    return text.replace(old, new)


def response_text(r):
    headers = "\n".join(f"{k}: {v}" for k, v in r.headers.items())
    return f"HTTP {r.status}\n{headers}\n\n{r.body.decode(errors='replace')}"


# ---- the test ----------------------------------------------------------------------------------

class SecretsStaySecretTest(harness.KeygateTestCase):
    start_upstream = False  # ours record what they receive
    keys_created = 0

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.secrets = []
        cls.sources = []
        w = cls.workdir

        # PostgreSQL: a role with a password (superuser: it migrates, LISTENs and creates usage
        # partitions); dropped with the databases it owns objects in.
        cls.role = "kg_e2e_" + secrets.token_hex(5)
        cls.pg_password = cls.secret_text("PostgreSQL password", "the role's password in the DSN",
                                          random_text(14) + "@/" + random_text(10))
        harness.psql(cls.db.admin_dsn, f"CREATE ROLE {cls.role} LOGIN SUPERUSER PASSWORD "
                                       f"'{cls.pg_password}'")
        cls.db2 = harness.ScratchDatabase(cls.stores.server_dsn)  # for migrate down/up
        cls.addClassCleanup(cls.drop_role)
        server = urlsplit(cls.stores.server_dsn)
        cls.pg_host, cls.pg_port = server.hostname, server.port
        cls.dsn_uri = cls.pg_uri(cls.pg_password, cls.pg_port, cls.db.name)
        escaped = cls.pg_password.replace("\\", "\\\\").replace("'", "\\'")
        cls.dsn_kv = (f"host={cls.pg_host} port={cls.pg_port} dbname={cls.db.name} "
                      f"user={cls.role} password='{escaped}'")

        # Redis that wants a password: the default user's and an ACL user's.
        cls.redis_default_password = cls.secret_text("Redis password", "requirepass (default user)",
                                                     random_text(12) + "/@" + random_text(10))
        cls.redis_user_password = cls.secret_text("Redis password", "ACL user's password",
                                                  random_text(12) + ":@" + random_text(10))
        cls.redis = PasswordRedis(w, cls.redis_default_password, "kguser", cls.redis_user_password)
        cls.addClassCleanup(cls.redis.stop)
        cls.redis.start()
        cls.redis_url_user = (f"redis://kguser:{quote(cls.redis_user_password, safe='')}"
                              f"@127.0.0.1:{cls.redis.port}")
        cls.redis_url_default = (f"redis://:{quote(cls.redis_default_password, safe='')}"
                                 f"@127.0.0.1:{cls.redis.port}")

        cls.pepper_env = cls.secret_text("pepper", "keys.pepper from ${KG_PEPPER}", random_text(32))
        cls.pepper_file = cls.secret_text("pepper", "keys.pepper written in the file", random_text(32))

        cls.record_a = os.path.join(w, "upstream-a.jsonl")
        cls.upstream = harness.Upstream(w, ["--record", cls.record_a]).start()
        cls.addClassCleanup(cls.upstream.stop)
        cls.record_d = os.path.join(w, "upstream-d.jsonl")
        cls.upstream_d = harness.Upstream(w, ["--record", cls.record_d]).start()
        cls.addClassCleanup(cls.upstream_d.stop)

        cls.env_a = {"KG_PG_DSN": cls.dsn_uri, "KG_REDIS_URL": cls.redis_url_user,
                     "KG_PEPPER": cls.pepper_env}
        cls.config_a = cls.write_config("a.yaml", cls.proxy_config(cls.upstream.port, "a"))
        cls.config_b = cls.write_config("b.yaml", cls.authz_config())

    @classmethod
    def drop_role(cls):
        for db in (cls.db2, cls.db):
            try:
                db.drop()
            except Exception as e:
                print(f"note: could not drop {db.name}: {e}", file=sys.stderr)
        harness.psql(cls.db.admin_dsn, f"DROP ROLE IF EXISTS {cls.role}")

    # ---- building blocks ----

    @classmethod
    def pg_uri(cls, password, port, database):
        return f"postgresql://{cls.role}:{quote(password, safe='')}@127.0.0.1:{port}/{database}"

    @classmethod
    def secret_text(cls, kind, label, value):
        cls.secrets.append(text_secret(kind, label, value))
        return value

    @classmethod
    def secret_key(cls, kind, label, key, parent=None):
        secret = key_secret(kind, label, key, parent)
        cls.secrets.append(secret)
        return secret

    @classmethod
    def collect(cls, name, text, allowed=()):
        cls.sources.append(Source(name, text, allowed))

    @classmethod
    def write_config(cls, name, config):
        path = os.path.join(cls.workdir, name)
        with open(path, "w") as f:
            f.write(harness.to_yaml(config) + "\n")
        return path

    @classmethod
    def proxy_config(cls, upstream_port, run, **overrides):
        routes = harness.DEFAULT_ROUTES + [{"path": "/status/*"}, {"path": "/echo/*"}]
        config = harness.base_config("${KG_PG_DSN}", "${KG_REDIS_URL}", upstream_port,
                                     routes=routes, routes_default="deny")
        return harness.deep_merge(config, harness.deep_merge({
            "keys": {"headers": ["authorization", "x-api-key"], "query_parameter": "api_key",
                     "pepper": "${KG_PEPPER}", "hide_credentials": True},
            "cache": {"ttl": "2s", "negative_ttl": "1s"},
            "usage": {"enabled": True, "flush_interval": "200ms", "last_used_interval": "1s",
                      "spill_path": os.path.join(cls.workdir, f"usage-{run}.spill")},
            "access_log": {"mode": "all", "path": os.path.join(cls.workdir, f"access-{run}.log")},
            "shutdown_timeout": "3s",
        }, overrides))

    @classmethod
    def authz_config(cls):
        config = harness.base_config(cls.dsn_kv, cls.redis_url_default, None,
                                     routes=harness.DEFAULT_ROUTES, routes_default="deny")
        return harness.deep_merge(config, {
            "mode": "authz",
            "trusted_proxies": ["127.0.0.1/32"],
            "keys": {"headers": ["authorization", "x-api-key"], "query_parameter": "api_key",
                     "pepper": cls.pepper_file},
            "access_log": {"mode": "all", "path": "stderr"},
            "shutdown_timeout": "3s",
        })

    def cli(self, args, config=None, env=None, expect=0, label=None):
        """Runs `keygate [--config FILE] ARGS` from an empty folder and collects its stdout and
        stderr. Returns the CompletedProcess, with the Source of its stdout as .stdout_source."""
        cmd = [harness.keygate_bin()] + (["--config", config] if config else []) + list(args)
        label = label or harness.redact(" ".join(args))
        with tempfile.TemporaryDirectory(prefix="kg-cli-") as cwd:
            r = subprocess.run(cmd, cwd=cwd, env=harness.clean_env(env), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, timeout=30)
        self.collect(f"`keygate {label}` stdout", r.stdout)
        r.stdout_source = self.sources[-1]
        self.collect(f"`keygate {label}` stderr", r.stderr)
        report = harness.sanitizer_report(r.stderr)
        self.assertIsNone(report, f"keygate {label}: sanitizer report")
        if expect is not None and r.returncode != expect:
            # Noted, not raised: the run goes on, so that one wrong exit code does not hide
            # the leaks of the commands after it (both are reported at the end).
            self.wrong_exits.append(f"keygate {label}: exit {r.returncode}, expected {expect}")
        return r

    def shown_once(self, r, key, label):
        """The key `r` (keys create or rotate) printed: a secret allowed in that stdout only,
        where it must appear exactly once."""
        secret = self.secret_key("key", label, key)
        r.stdout_source.allowed.add(id(secret))
        self.assertEqual(r.stdout.count(key), 1, f"{label}: the key is shown exactly once")
        return secret

    def create_key(self, name, *flags, config=None, env=None):
        """keys create, its text and --json outputs alternately; returns (record, Secret)."""
        config = config or self.config_a
        env = self.env_a if env is None else env
        type(self).keys_created += 1
        as_json = self.keys_created % 2 == 0
        args = ["keys", "create", "--owner", "team:secrets", "--name", name, *flags]
        r = self.cli(args + (["--json"] if as_json else []), config, env, label=" ".join(
            ["keys", "create", name] + (["--json"] if as_json else [])))
        if as_json:
            record = json.loads(r.stdout)
        else:
            lines = r.stdout.splitlines()
            record = {"id": lines[0].split()[2],
                      "key": next(l.strip() for l in lines if l.startswith("    "))}
        return record, self.shown_once(r, record["key"], f"{name} (created)")

    def ask(self, kg, label, method="GET", path="/inventory/1", headers=None, body=None, expect=None):
        r = harness.request(kg.port, method, path, headers=headers, body=body)
        self.collect(f"{kg.name}: response to {label}", response_text(r))
        if expect is not None:
            self.assertStatus(r, expect, kg, f"({label})")
        return r

    def collect_admin(self, kg):
        for method, path in (("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics"),
                             ("HEAD", "/metrics"), ("POST", "/metrics"), ("GET", "/nope?x=1")):
            r = harness.request(kg.admin_port, method, path)
            self.collect(f"{kg.name}: admin {method} {path}", response_text(r))

    def collect_process(self, kg, access_log=None):
        kg.stop()
        self.collect(f"{kg.name}: stderr and stdout", kg.log_text())
        if access_log:
            with open(access_log, errors="replace") as f:
                self.collect(f"{kg.name}: access log file", f.read())

    def reload(self, kg, text, outcome):
        """Writes `text` as kg's config file, sends SIGHUP, waits for the reload's log line."""
        msg = "configuration reloaded" if outcome == "applied" else "reload rejected"
        before = len([m for m in log_messages(kg) if m.get("msg", "").startswith(msg)])
        with open(kg.config_path, "w") as f:
            f.write(text)
        kg.proc.send_signal(signal.SIGHUP)
        wait_for_log(kg, msg_starts(msg), before + 1)

    def start(self, config, env, name, unready=False):
        cls = UnreadyKeygate if unready else harness.Keygate
        kg = cls(self.workdir, config, env=env, name=name)
        self.addCleanup(kg.stop)
        kg.start()
        return kg

    # ---- the run ----

    def test_nothing_secret_escapes_a_full_run(self):
        self.wrong_exits = []
        try:
            self.run_cli_before_serving()
            self.run_proxy_with_secrets_from_the_environment()
            self.run_proxy_that_forwards_the_key()
            self.run_authz_mode_with_the_pepper_in_the_file()
            self.run_with_every_store_unreachable()
            self.run_cli_after_serving()
            self.run_cli_with_failing_stores_and_bad_configs()
            self.collect_database()
        finally:
            self.assertNoSecretsIn(self.sources)
        self.assertEqual(self.wrong_exits, [], "commands that exited with another code")

    def assertNoSecretsIn(self, sources):
        self.assertGreater(len(sources), 0)
        findings = find_leaks(self.secrets, sources)
        if findings:
            exits = "".join(f"\n(also: {line})" for line in getattr(self, "wrong_exits", []))
            lines = [describe(f, self.secrets) for f in findings[:40]]
            more = f"\n(and {len(findings) - 40} more)" if len(findings) > 40 else ""
            self.fail(f"{len(findings)} secret(s) found in {len({id(f.source) for f in findings})} "
                      f"of {len(sources)} sources:\n" + "\n".join(lines) + more + exits)

    def run_cli_before_serving(self):
        a, env = self.config_a, self.env_a
        for args, code in ((["--help"], 0), (["help"], 0), (["-h"], 0), ([], 2), (["version"], 0),
                           (["frobnicate"], 2), (["migrate", "status"], 0), (["migrate", "up"], 0),
                           (["migrate", "sideways"], 2), (["keys"], 2), (["keys", "frob"], 2),
                           (["serve", "now"], 2), (["keys", "list"], 0)):
            self.cli(args, a, env, expect=code)
        k = {}
        k["reader"], self.reader_secret = self.create_key("reader", "--scopes", "inventory:read")
        k["writer"], _ = self.create_key("writer", "--scopes", "inventory:write")
        k["revoked"], _ = self.create_key("revoked", "--scopes", "inventory:read")
        k["expired"], _ = self.create_key("expired", "--scopes", "inventory:read", "--expires-in", "30d")
        k["ip"], _ = self.create_key("ip-limited", "--scopes", "inventory:read", "--allowed-ips", "10.9.9.9/32")
        k["limited"], _ = self.create_key("limited", "--scopes", "inventory:read", "--rate-limit", "2/60s")
        k["quota"], _ = self.create_key("quota", "--scopes", "inventory:read", "--quota", "1")
        k["rotating"], _ = self.create_key("rotating", "--scopes", "inventory:read",
                                           "--description", "rotated below")
        k["b_reader"], _ = self.create_key("authz reader", "--scopes", "inventory:read",
                                           config=self.config_b, env={})
        k["b_revoked"], _ = self.create_key("authz revoked", config=self.config_b, env={})
        self.cli(["keys", "revoke", k["b_revoked"]["id"]], self.config_b, {})
        harness.expire_key(self.dsn, k["expired"]["id"])
        for args, code in ((["keys", "create", "--owner", "team:x", "--name", "n", "--rate-limit", "lots"], 2),
                           (["keys", "create", "--name", "no-owner"], 2),
                           (["keys", "create", "--owner", "team:x", "--name", "n", "--allowed-ips", "nope"], 2),
                           (["keys", "create", "--owner", "team:x", "--name", "n", "--quota", "-1"], 2),
                           (["keys", "list", "--json"], 0), (["keys", "list", "--owner", "team:secrets"], 0),
                           (["keys", "show", k["reader"]["id"]], 0),
                           (["keys", "show", k["reader"]["id"], "--json"], 0),
                           (["keys", "show", str(uuid.uuid4())], 1), (["keys", "show", "not-a-uuid"], 1)):
            self.cli(args, a, env, expect=code)
        self.keys = k

    def run_proxy_with_secrets_from_the_environment(self):
        k = self.keys
        kg = self.start(self.proxy_config(self.upstream.port, "a"), self.env_a, "proxy-env")
        reader, writer = k["reader"]["key"], k["writer"]["key"]
        unknown = unknown_key()
        self.secret_key("presented key", "unknown (never stored)", unknown)
        bad_sum = harness.with_bad_checksum(reader)
        typo = harness.with_typo(writer)
        truncated = reader[:-3]
        writer_secret = next(s for s in self.secrets if s.value == writer)
        for label, value, parent in (("reader with a bad checksum", bad_sum, self.reader_secret),
                                     ("writer with a typo", typo, writer_secret),
                                     ("reader truncated", truncated, self.reader_secret)):
            self.secret_key("presented key", label, value, parent)
        basic = base64.b64encode(f"user:{reader}".encode()).decode()

        self.ask(kg, "public route", path="/public/a", expect=200)
        self.ask(kg, "Bearer", headers=bearer(reader), expect=200)
        self.ask(kg, "X-API-Key", headers={"X-API-Key": reader}, expect=200)
        self.ask(kg, "query parameter", path=f"/inventory/1?api_key={reader}&x=1", expect=200)
        self.ask(kg, "Bearer and query, the same key", path=f"/inventory/1?api_key={reader}",
                 headers=bearer(reader), expect=200)
        self.ask(kg, "POST with a body", "POST", headers={"X-API-Key": writer}, body=b"x" * 100, expect=200)
        self.ask(kg, "HEAD (no route lists it)", "HEAD", headers=bearer(reader), expect=405)
        self.ask(kg, "upstream answers 500", path="/status/500", headers=bearer(reader), expect=500)
        self.ask(kg, "an echo path with the key in the query", path=f"/echo/x?api_key={writer}", expect=200)
        self.ask(kg, "no key", expect=401)
        self.ask(kg, "not a key", headers=bearer("not-a-key"), expect=401)
        self.ask(kg, "a truncated key", headers=bearer(truncated), expect=401)
        self.ask(kg, "a bad checksum", headers=bearer(bad_sum), expect=401)
        self.ask(kg, "a bad checksum in the query", path=f"/inventory/1?api_key={bad_sum}", expect=401)
        self.ask(kg, "a typo in X-API-Key", headers={"X-API-Key": typo}, expect=401)
        self.ask(kg, "an unknown key", headers=bearer(unknown), expect=401)
        self.ask(kg, "an unknown key in the query", path=f"/inventory/1?api_key={unknown}", expect=401)
        self.ask(kg, "an expired key", headers=bearer(k["expired"]["key"]), expect=401)
        self.ask(kg, "a wrong scope", headers=bearer(writer), expect=403)
        self.ask(kg, "an IP not allowed", headers=bearer(k["ip"]["key"]), expect=403)
        self.ask(kg, "no route", path="/nowhere", headers=bearer(reader), expect=403)
        self.ask(kg, "a method no route lists", "PATCH", headers=bearer(reader), expect=405)
        self.ask(kg, "two different keys", headers={**bearer(reader), "X-API-Key": writer}, expect=400)
        self.ask(kg, "Basic with the key as password", headers={"Authorization": f"Basic {basic}"}, expect=401)
        for i in range(3):
            self.ask(kg, f"rate-limited key, request {i + 1}", headers=bearer(k["limited"]["key"]),
                     expect=429 if i == 2 else 200)
        for i in range(2):
            self.ask(kg, f"quota key, request {i + 1}", headers=bearer(k["quota"]["key"]),
                     expect=429 if i == 1 else 200)

        # Revoked while keygate runs (the NOTIFY path), then presented again.
        revoked = k["revoked"]["key"]
        self.ask(kg, "the key to be revoked", headers=bearer(revoked), expect=200)
        self.cli(["keys", "revoke", k["revoked"]["id"]], self.config_a, self.env_a)
        self.cli(["keys", "revoke", k["revoked"]["id"]], self.config_a, self.env_a, label="keys revoke (again)")
        value, _ = harness.poll_until(
            lambda: harness.request(kg.port, "GET", "/inventory/1", headers=bearer(revoked)).status == 401, WAIT_S)
        self.assertTrue(value, "the revoked key is refused")
        self.ask(kg, "a revoked key", headers=bearer(revoked), expect=401)

        # Rotated: the new key is shown once by rotate; both pass (the old one has a grace).
        for flags in (["--grace", "1h"], ["--grace", "1h", "--json"]):
            r = self.cli(["keys", "rotate", k["rotating"]["id"], *flags], self.config_a, self.env_a)
            new = (json.loads(r.stdout)["key"] if "--json" in flags else
                   next(l.strip() for l in r.stdout.splitlines() if l.startswith("    ")))
            self.shown_once(r, new, f"rotated ({' '.join(flags)})")
            k["rotating"] = {"id": json.loads(r.stdout)["id"] if "--json" in flags else
                             r.stdout.split("the new key is ")[1].split(".")[0], "key": new}
            self.ask(kg, f"the rotated key ({' '.join(flags)})", headers=bearer(new), expect=200)

        # Refused before any key is looked up, each with a key in it.
        head = "GET /inventory/1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        for label, status, data in (
                ("Content-Length with Transfer-Encoding", 400,
                 f"{head}Authorization: Bearer {reader}\r\nTransfer-Encoding: chunked\r\n"
                 f"Content-Length: 5\r\n\r\n"),
                ("a control byte in the key header", 400, f"{head}X-API-Key: {reader}\x01\r\n\r\n"),
                ("obs-fold in Authorization", 400, f"{head}Authorization: Bearer\r\n {reader}\r\n\r\n"),
                ("a target over 8 KiB with the key in the query", 414,
                 f"GET /inventory/1?api_key={reader}&pad={'a' * 9000} HTTP/1.1\r\nHost: x\r\n"
                 "Connection: close\r\n\r\n"),
                ("HTTP/2.0 with a key", 505, head.replace("HTTP/1.1", "HTTP/2.0") +
                 f"Authorization: Bearer {reader}\r\n\r\n"),
                ("headers over the limit with a key", 431,
                 f"{head}X-API-Key: {reader}\r\nX-Pad: {'p' * 20000}\r\n\r\n")):
            answer = raw_exchange(kg.port, data)
            self.collect(f"{kg.name}: raw answer to {label}", answer)
            self.assertTrue(answer.startswith(f"HTTP/1.1 {status} "), f"{label}: {answer[:40]!r}")

        # Redis goes away mid-run and comes back.
        self.redis.stop()
        wait_for_log(kg, lambda m: m.get("msg", "").startswith(("redis: connection lost", "redis: cannot connect")))
        self.ask(kg, "Bearer, Redis down", headers=bearer(reader), expect=200)
        self.ask(kg, "an unknown key, Redis down", headers=bearer(unknown_key()), expect=401)
        connected = len([m for m in log_messages(kg) if m.get("msg", "").startswith("redis: connected")])
        self.redis.start()
        wait_for_log(kg, msg_starts("redis: connected"), connected + 1, timeout=15)
        self.ask(kg, "Bearer, Redis back", headers=bearer(reader), expect=200)

        # SIGHUP: invalid files next to the secrets are rejected, without echoing them.
        good = harness.to_yaml(kg.config) + "\n"
        pepper = 'pepper: "${KG_PEPPER}"'
        pepper_new = self.secret_text("pepper", "a changed pepper offered by a reload", random_text(32))
        bad_redis = f"redis://kguser:{quote(self.redis_user_password, safe='')}@127.0.0.1:99999"
        dsn = 'dsn: "${KG_PG_DSN}"'
        for text in (
                replaced(good, pepper, pepper + '\n  prefix: "Not A Prefix"'),
                replaced(good, pepper, f'pepper: "{pepper_new}"'),
                replaced(good, 'url: "${KG_REDIS_URL}"', f'url: "{bad_redis}"'),
                replaced(replaced(good, dsn, f'dsn: "{self.dsn_uri}"'), "pool_size: 2", "pool_size: 0"),
                replaced(good, pepper, f'pepper: {{{self.pepper_env}'),
                replaced(good, pepper, f'pepper: "{self.pepper_env}"\n  peper: x')):
            self.reload(kg, text, "rejected")
        # Applied, with a changed DSN that needs a restart (named, not shown).
        self.reload(kg, replaced(good, dsn, f"dsn: {json.dumps(self.dsn_kv)}"), "applied")
        wait_for_log(kg, msg_starts("changed options need a restart"))
        self.reload(kg, good, "applied")
        self.ask(kg, "Bearer, after the reloads", headers=bearer(reader), expect=200)
        reloads = harness.metric_value(kg.metrics(), "keygate_config_reloads_total", outcome="rejected")
        self.assertEqual(reloads, 6)

        self.collect_admin(kg)
        self.collect_process(kg, kg.config["access_log"]["path"])
        with open(self.record_a) as f:
            self.collect("upstream A: what it received (hide_credentials: true)", f.read())

    def run_proxy_that_forwards_the_key(self):
        """keys.hide_credentials: false: the upstream gets the key (allowed in its record and
        in its echo of the request); keygate's own output still must not show it."""
        reader = self.keys["reader"]["key"]
        allowed = [self.reader_secret]
        config = self.proxy_config(self.upstream_d.port, "d", keys={"hide_credentials": False},
                                   access_log={"path": "stdout"})
        kg = self.start(config, self.env_a, "proxy-forwarding")
        for label, kw in (("Bearer", {"headers": bearer(reader)}),
                          ("X-API-Key", {"headers": {"X-API-Key": reader}}),
                          ("query parameter", {"path": f"/inventory/1?api_key={reader}"})):
            r = harness.request(kg.port, "GET", kw.get("path", "/inventory/1"), headers=kw.get("headers"))
            self.assertStatus(r, 200, kg)
            self.collect(f"{kg.name}: upstream's echo of a forwarded key ({label})", response_text(r), allowed)
        self.ask(kg, "a bad checksum (not forwarded)",
                 headers=bearer(harness.with_bad_checksum(self.keys["writer"]["key"])), expect=401)
        self.collect_admin(kg)
        self.collect_process(kg)
        with open(self.record_d) as f:
            self.collect("upstream D: what it received (hide_credentials: false)", f.read(), allowed)

    def run_authz_mode_with_the_pepper_in_the_file(self):
        k = self.keys
        kg = self.start(self.authz_config(), {}, "authz-file-pepper")
        b_reader = k["b_reader"]["key"]
        original = lambda uri, method="GET": {"X-Original-URI": uri, "X-Original-Method": method}
        self.ask(kg, "Bearer", headers={**bearer(b_reader), **original("/inventory/1")}, expect=200)
        self.ask(kg, "the key in X-Original-URI's query",
                 headers=original(f"/inventory/1?api_key={b_reader}"), expect=200)
        self.ask(kg, "the key in X-Forwarded-Uri's query",
                 headers={"X-Forwarded-Uri": f"/inventory/2?api_key={b_reader}", "X-Forwarded-Method": "GET"},
                 expect=200)
        self.ask(kg, "a wrong scope", headers={"X-API-Key": b_reader, **original("/inventory/1", "POST")}, expect=403)
        self.ask(kg, "no key", headers=original("/inventory/1"), expect=401)
        self.ask(kg, "a revoked key", headers={**bearer(k["b_revoked"]["key"]), **original("/inventory/1")},
                 expect=401)
        self.ask(kg, "a key made with another pepper", headers={**bearer(k["reader"]["key"]),
                                                                 **original("/inventory/1")}, expect=401)
        self.ask(kg, "a bad checksum in the query",
                 headers=original(f"/inventory/1?api_key={harness.with_bad_checksum(b_reader)}"), expect=401)
        good = harness.to_yaml(kg.config) + "\n"
        pepper = f'pepper: "{self.pepper_file}"'
        self.reload(kg, replaced(good, pepper, pepper + '\n  hide_credentials: "perhaps"'), "rejected")
        self.reload(kg, replaced(good, pepper, f"pepper: [{self.pepper_file}"), "rejected")
        self.collect_admin(kg)
        self.collect_process(kg)

    def run_with_every_store_unreachable(self):
        """Passwords for a closed PostgreSQL port and a closed Redis port (the connect error
        paths); then a malformed DSN with a password, and a wrong Redis password."""
        pg_closed = self.secret_text("PostgreSQL password", "DSN for a closed port", random_text(20))
        redis_closed = self.secret_text("Redis password", "URL for a closed port", random_text(20))
        pepper_override = self.secret_text("pepper", "KEYGATE_PEPPER", random_text(32))
        env = {"KG_PG_DSN": self.pg_uri(pg_closed, closed_port(), "kg"),
               "KG_REDIS_URL": f"redis://:{redis_closed}@127.0.0.1:{closed_port()}",
               "KG_PEPPER": self.pepper_env, "KEYGATE_PEPPER": pepper_override}
        config = self.proxy_config(closed_port(), "c", access_log={"path": "stderr"})
        kg = self.start(config, env, "stores-closed", unready=True)
        wait_for_log(kg, msg_starts("key changes: not listening"))
        wait_for_log(kg, msg_starts("redis: cannot connect"))
        self.ask(kg, "a key that cannot be looked up", headers=bearer(self.keys["reader"]["key"]), expect=503)
        self.ask(kg, "a bad checksum", headers=bearer(harness.with_bad_checksum(self.keys["reader"]["key"])),
                 expect=401)
        self.ask(kg, "a public route, upstream closed", path="/public/a", expect=502)
        good = harness.to_yaml(kg.config) + "\n"
        self.reload(kg, replaced(good, 'pepper: "${KG_PEPPER}"', 'pepper: "${KG_PEPPER_UNSET}"'), "rejected")
        self.reload(kg, replaced(good, 'url: "${KG_REDIS_URL}"',
                                 f'url: "redis://:{redis_closed}@127.0.0.1:{closed_port()}/zero"'), "rejected")
        self.collect_admin(kg)
        self.collect_process(kg)

        # A DSN libpq cannot parse (a raw '%' in the password) and a wrong Redis password.
        pg_malformed = self.secret_text("PostgreSQL password", "malformed DSN (raw %)",
                                        random_text(10) + "%zz" + random_text(10))
        redis_wrong = self.secret_text("Redis password", "a wrong password", random_text(20))
        env = {"KG_PG_DSN": f"postgresql://{self.role}:{pg_malformed}@127.0.0.1:{self.pg_port}/kg",
               "KG_REDIS_URL": f"redis://kguser:{redis_wrong}@127.0.0.1:{self.redis.port}",
               "KG_PEPPER": self.pepper_env}
        kg = self.start(self.proxy_config(closed_port(), "e", access_log={"path": "stderr"}), env,
                        "dsn-malformed", unready=True)
        wait_for_log(kg, msg_starts("key changes: not listening"))
        wait_for_log(kg, lambda m: m.get("msg", "").startswith("redis: ") and "AUTH" in m.get("msg", ""))
        self.ask(kg, "a key that cannot be looked up", headers=bearer(self.keys["reader"]["key"]), expect=503)
        self.collect_admin(kg)
        self.collect_process(kg)

    def run_cli_after_serving(self):
        k, a, env = self.keys, self.config_a, self.env_a
        reader = k["reader"]
        for args, code in ((["usage", reader["id"]], 0), (["usage", reader["id"], "--since", "1h", "--json"], 0),
                           (["usage", "--since", "soon"], 2), (["keys", "list"], 0),
                           (["keys", "show", k["rotating"]["id"]], 0)):
            self.cli(args, a, env, expect=code)
        # A key pasted where an id or another value belongs.
        for args, code in ((["keys", "show", reader["key"]], 2), (["keys", "revoke", reader["key"]], 2),
                           (["keys", "rotate", k["writer"]["key"]], 2), (["usage", reader["key"]], 2),
                           (["keys", "show", harness.with_bad_checksum(reader["key"])], 2),
                           (["keys", "show", reader["id"], reader["key"]], 2),
                           (["keys", "create", "--owner", reader["key"], "--name", "n"], 2),
                           (["keys", "list", "--owner", k["writer"]["key"]], 2),
                           ([reader["key"]], 2), (["migrate", reader["key"]], 2),
                           (["keys", reader["key"]], 2), (["serve", reader["key"]], 2)):
            self.cli(args, a, env, expect=code)
        # migrate down and up, as the password role, on a database of its own.
        db2 = {"KG_PG_DSN": self.pg_uri(self.pg_password, self.pg_port, self.db2.name),
               "KG_REDIS_URL": self.redis_url_user, "KG_PEPPER": self.pepper_env}
        for args in (["migrate", "up"], ["migrate", "status"], ["migrate", "down"],
                     ["migrate", "down", "--all"], ["migrate", "status"], ["migrate", "up"]):
            self.cli(args, a, db2)

    def run_cli_with_failing_stores_and_bad_configs(self):
        reader_id = self.keys["reader"]["id"]
        closed = closed_port()
        typo_password = self.secret_text("PostgreSQL password", "unquoted password with a space",
                                         random_text(14) + " " + random_text(14))
        bad_redis_password = self.secret_text("Redis password", "in a malformed URL", random_text(20))
        pepper_cli = self.secret_text("pepper", "written in a bad config file", random_text(32))
        dsn_closed = self.pg_uri(self.pg_password, closed, "kg")
        failing = (
            ("closed port", {"KEYGATE_POSTGRES_DSN": dsn_closed}, 1),
            ("closed port, key=value", {"KEYGATE_POSTGRES_DSN": self.dsn_kv.replace(
                f"port={self.pg_port}", f"port={closed}")}, 1),
            ("unquoted password with a space", {"KEYGATE_POSTGRES_DSN":
                f"host=127.0.0.1 port={closed} user={self.role} password={typo_password}"}, 1),
            ("raw % in the password", {"KEYGATE_POSTGRES_DSN":
                f"postgresql://{self.role}:{typo_password.split()[0]}%zz@127.0.0.1:{closed}/kg"}, 1),
            ("unclosed [ in the host", {"KEYGATE_POSTGRES_DSN":
                f"postgresql://{self.role}:{quote(self.pg_password, safe='')}@[::1:{closed}/kg"}, 1),
            ("a bad port", {"KEYGATE_POSTGRES_DSN":
                f"postgresql://{self.role}:{quote(self.pg_password, safe='')}@127.0.0.1:notaport/kg"}, 1),
            ("a bad Redis URL", {"KEYGATE_POSTGRES_DSN": dsn_closed, "KEYGATE_REDIS_URL":
                f"redis://u:{bad_redis_password}@127.0.0.1:notaport"}, 2),
            ("a pepper and a closed port", {"KEYGATE_POSTGRES_DSN": dsn_closed,
                                            "KEYGATE_PEPPER": pepper_cli}, 1),
        )
        for label, env, code in failing:
            for args in (["keys", "list"], ["migrate", "status"], ["usage", reader_id],
                         ["keys", "create", "--owner", "team:x", "--name", "n"]):
                self.cli(args, None, env, expect=code, label=f"{' '.join(args)} ({label})")

        dsn = self.dsn_uri
        bad_files = (
            ("bad prefix next to the pepper", f'keys:\n  pepper: "{pepper_cli}"\n  prefix: "Not A Prefix"\n'),
            ("a misspelt option next to the pepper", f'keys:\n  pepper: "{pepper_cli}"\n  pepperr: "{pepper_cli}"\n'),
            ("the pepper twice", f'keys:\n  pepper: "{pepper_cli}"\n  pepper: "{self.pepper_env}"\n'),
            ("the pepper as a list", f'keys:\n  pepper: ["{pepper_cli}"]\n'),
            ("the pepper as a mapping", f'keys:\n  pepper: {{"{pepper_cli}": 1}}\n'),
            ("invalid YAML after the pepper", f'keys:\n  pepper: "{pepper_cli}"\n  prefix: [kg\n'),
            ("an unclosed mapping with the pepper", f'keys: {{pepper: {pepper_cli}\n'),
            ("an unset variable for the pepper", 'keys:\n  pepper: "${KG_NO_SUCH_PEPPER}"\n'),
            ("a bad pool size next to the DSN", f'postgres:\n  dsn: "{dsn}"\n  pool_size: 0\n'),
            ("a misspelt option next to the DSN", f'postgres:\n  dsn: "{dsn}"\n  dns: "{dsn}"\n'),
            ("the DSN as a list", f'postgres:\n  dsn: ["{dsn}"]\n'),
            ("a Redis URL with a bad port", f'redis:\n  url: "{self.redis_url_user}:99"\n'),
            ("a Redis URL without a colon", f'redis:\n  url: "redis://{self.redis_default_password}@127.0.0.1"\n'),
            ("a Redis URL with a query", f'redis:\n  url: "{self.redis_url_default}/0?tls=1"\n'),
            ("credentials in the upstream", f'upstream: "http://u:{quote(self.pg_password, safe="")}@127.0.0.1:1"\n'),
            ("a section as a value", f'postgres: "{dsn}"\n'),
        )
        for label, text in bad_files:
            path = os.path.join(self.workdir, "bad.yaml")
            with open(path, "w") as f:
                f.write(text)
            self.cli(["keys", "list"], path, {}, expect=2, label=f"keys list (config: {label})")
        self.cli(["serve"], path, {}, expect=2, label="serve (config: a section as a value)")

    def collect_database(self):
        for table in ("api_keys", "api_key_usage", "api_key_quota_usage"):
            self.collect(f"PostgreSQL {table} rows", harness.psql(self.dsn, f"SELECT row_to_json(t) FROM {table} t"))


class CheckerTest(unittest.TestCase):
    """The search itself: every form is found, allowed sources are skipped, and the report
    never shows the secret."""

    def test_each_form_is_found_and_the_report_hides_the_secret(self):
        key = unknown_key()
        password = random_text(12) + "@/" + random_text(10)
        k, p = key_secret("key", "k", key), text_secret("password", "p", password)
        basic = base64.b64encode(f"u:{key}".encode()).decode()
        sources = [
            Source("as is", f"x {key} y"),
            Source("random part only", f'"secret":"{key[-KEY_TAIL:-6]}"'),
            Source("second half", f"..{key[-22:-6]}.."),
            Source("Basic", f"Authorization: Basic {basic}"),
            Source("base64 inside a longer text", base64.b64encode(b"ab" + key.encode()).decode()),
            Source("percent-encoded password", f"postgresql://u:{quote(password, safe='')}@h/d"),
            Source("lower-case percent-encoding", "x=" + quote(password, safe="").replace("%2F", "%2f")),
            Source("a piece of the password", f'token: "{password[3:3 + PIECE + 2]}"'),
            Source("JSON", json.dumps({"p": password})),
            Source("allowed", key, [k]),
            Source("clean", "nothing here " + key[:KEY_DISPLAY]),
        ]
        findings = find_leaks([k, p], sources)
        found = sorted(f.source.name for f in findings)
        self.assertEqual(found, sorted(s.name for s in sources if s.name not in ("allowed", "clean")))
        for f in findings:
            report = describe(f, [k, p])
            for _, form in k.forms + p.forms:
                self.assertNotIn(form, report)
            self.assertIn(f.source.name, report)
            if f.source.name == "a piece of the password":  # overlapping pieces: nothing left over
                self.assertIn('token: "<<PASSWORD HERE>>"', report)


if __name__ == "__main__":
    unittest.main()
