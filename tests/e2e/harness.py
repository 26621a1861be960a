"""Shared machinery for keygate's end-to-end tests (Python 3 standard library only).

Everything here is real: the keygate binary ($KEYGATE_BIN), PostgreSQL and Redis (the shared
throwaway instances scripts/test exported, or our own started with scripts/lib/stores.py), and
an upstream process (upstream.py). Every process started here is stopped by PID, also when a
test fails; every wait has a deadline.

Typical use:

    class MyTest(harness.KeygateTestCase):
        @classmethod
        def setUpClass(cls):
            super().setUpClass()              # scratch database (migrated) + upstream
            cls.kg = cls.start_keygate()      # keygate serve, ready on /readyz
            cls.key = cls.create_key(scopes=["a", "b"])

        def test_x(self):
            r = harness.request(self.kg.port, "GET", "/x", headers=harness.bearer(self.key["key"]))
            self.assertStatus(r, 200, self.kg)
"""
import copy
import hashlib
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import zlib
from urllib.parse import urlsplit, urlunsplit

HERE = os.path.dirname(os.path.abspath(__file__))


# ---- environment ----------------------------------------------------------------------------

def require_env(name):
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(f"{name} is not set: run the e2e tests through ctest / scripts/test, "
                           f"or export it (see tests/CMakeLists.txt)")
    return value


def keygate_bin():
    path = require_env("KEYGATE_BIN")
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"KEYGATE_BIN={path} is not an executable file")
    return path


def source_dir():
    return require_env("KEYGATE_SOURCE_DIR")


def _stores_module():
    lib = os.path.join(source_dir(), "scripts", "lib")
    if lib not in sys.path:
        sys.path.insert(0, lib)
    import stores  # noqa: E402  (scripts/lib/stores.py)
    return stores


def stores_module():
    return _stores_module()


def clean_env(extra=None):
    """The process environment without any KEYGATE_* setting (so a developer's shell cannot
    change what a test configures), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYGATE_")}
    env.update(extra or {})
    return env


# ---- ports, processes, waiting --------------------------------------------------------------

def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, timeout=10.0, host="127.0.0.1"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.02)
    return False


def stop_process(proc, timeout=10.0):
    """SIGTERM, then SIGKILL after `timeout`; returns the exit code (None if it was not running)."""
    if proc is None:
        return None
    if proc.poll() is not None:
        return proc.returncode
    try:
        proc.send_signal(signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(timeout=10)


def poll_until(predicate, timeout, interval=0.02):
    """Calls predicate() until it returns a truthy value or `timeout` seconds pass.
    Returns (value, elapsed seconds); value is the last result (falsy on timeout)."""
    start = time.monotonic()
    deadline = start + timeout
    value = None
    while True:
        value = predicate()
        if value:
            return value, time.monotonic() - start
        if time.monotonic() >= deadline:
            return value, time.monotonic() - start
        time.sleep(interval)


def read_proc_status(pid):
    """VmRSS and VmHWM of a process, in bytes."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                out[name] = int(rest.split()[0]) * 1024
    return out


# What AddressSanitizer, LeakSanitizer and UndefinedBehaviorSanitizer print (./scripts/test
# --sanitize builds keygate with them): any of these in a keygate's output fails its test,
# whatever its exit status.
_SANITIZER_REPORT = re.compile(
    r"^(==\d+==ERROR: (AddressSanitizer|LeakSanitizer)|.*:\d+:\d+: runtime error: |"
    r"SUMMARY: (AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer))", re.M)


def sanitizer_report(text):
    """The sanitizer report in `text` (from its first line on, at most 12,000 characters),
    or None when there is none."""
    m = _SANITIZER_REPORT.search(text)
    return text[m.start():m.start() + 12000] if m else None


# Anything shaped like an API key (prefix_ + 38 base62 characters) is hidden in test output.
_KEY_SHAPE = re.compile(r"([a-z][a-z0-9_]{0,31}_)[0-9A-Za-z]{38}(?![0-9A-Za-z])")


def redact(text):
    return _KEY_SHAPE.sub(lambda m: m.group(1) + "<redacted>", text)


# ---- HTTP -----------------------------------------------------------------------------------

class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # http.client.HTTPMessage: case-insensitive get()/get_all()
        self.body = body

    @property
    def json(self):
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            return None

    def header(self, name):
        return self.headers.get(name)

    def __repr__(self):  # a little of the body, with anything that looks like a key hidden
        body = self.body[:600].decode(errors="replace")
        return redact(f"<Response {self.status} headers={dict(self.headers.items())} body={body!r}>")


def bearer(key):
    return {"Authorization": f"Bearer {key}"}


def request(port, method, path, headers=None, body=None, timeout=10.0, host="127.0.0.1"):
    """One request on a fresh connection; returns a Response."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return Response(r.status, r.msg, r.read())
    finally:
        conn.close()


class Client:
    """A keep-alive connection (reconnects if the server closed it between requests)."""

    def __init__(self, port, timeout=10.0, host="127.0.0.1"):
        self.conn = http.client.HTTPConnection(host, port, timeout=timeout)

    def request(self, method, path, headers=None, body=None):
        self.conn.request(method, path, body=body, headers=headers or {})
        r = self.conn.getresponse()
        return Response(r.status, r.msg, r.read())

    def close(self):
        self.conn.close()


# ---- Prometheus text ------------------------------------------------------------------------

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """Prometheus text -> list of (name, {label: value}, float)."""
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            continue
        labels = dict(_LABEL.findall(m.group(2) or ""))
        samples.append((m.group(1), labels, float(m.group(3))))
    return samples


def metric_value(samples, name, **labels):
    """Sum of the samples called `name` whose labels include `labels`; None if there is none."""
    found = [v for n, l, v in samples if n == name and all(l.get(k) == x for k, x in labels.items())]
    return sum(found) if found else None


# ---- Redis (a few commands over RESP, for inspecting the store) ------------------------------

def redis_command(url, *args, timeout=2.0):
    u = urlsplit(url)
    with socket.create_connection((u.hostname or "127.0.0.1", u.port or 6379), timeout=timeout) as s:
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        s.sendall(out)
        f = s.makefile("rb")
        return _read_resp(f)


def _read_resp(f):
    line = f.readline().rstrip(b"\r\n")
    kind, rest = line[:1], line[1:]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RuntimeError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        return None if n < 0 else f.read(n + 2)[:-2]
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_read_resp(f) for _ in range(n)]
    raise RuntimeError(f"unexpected Redis reply {line!r}")


# ---- PostgreSQL -----------------------------------------------------------------------------

def dsn_with_database(dsn, database):
    u = urlsplit(dsn)
    return urlunsplit((u.scheme, u.netloc, "/" + database, u.query, u.fragment))


def psql(dsn, sql, timeout=30.0):
    """Runs SQL with psql; returns its unaligned, tuples-only output."""
    r = subprocess.run(["psql", "-d", dsn, "-v", "ON_ERROR_STOP=1", "-qAtX", "-c", sql],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout,
                       env=clean_env())
    if r.returncode != 0:
        raise RuntimeError(f"psql failed ({r.returncode}): {r.stderr.strip()}\nSQL: {sql}")
    return r.stdout.strip()


class ScratchDatabase:
    """CREATE DATABASE kg_e2e_<random> on a server; drop() removes it (connections too)."""

    def __init__(self, server_dsn):
        self.name = "kg_e2e_" + secrets.token_hex(6)
        self.admin_dsn = dsn_with_database(server_dsn, "postgres")
        psql(self.admin_dsn, f"CREATE DATABASE {self.name}")
        self.dsn = dsn_with_database(server_dsn, self.name)

    def drop(self):
        psql(self.admin_dsn, f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")


# ---- the keygate command line ---------------------------------------------------------------

def run_cli(args, dsn, redis_url=None, timeout=30.0, check=True):
    """Runs `keygate ARGS` from an empty temporary folder (no config.yaml) with the stores
    given through the environment. Returns the CompletedProcess (text)."""
    env = {"KEYGATE_POSTGRES_DSN": dsn}
    if redis_url:
        env["KEYGATE_REDIS_URL"] = redis_url
    with tempfile.TemporaryDirectory(prefix="kg-cli-") as cwd:
        r = subprocess.run([keygate_bin()] + list(args), cwd=cwd, env=clean_env(env),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           timeout=timeout)
    report = sanitizer_report(r.stderr)
    if report:
        raise AssertionError(f"keygate {' '.join(args)}: sanitizer report\n{redact(report)}")
    if check and r.returncode != 0:
        # The command line never holds a key, so it is safe to show; stdout might (create).
        raise RuntimeError(f"keygate {' '.join(args)} exited {r.returncode}: {r.stderr.strip()}")
    return r


def migrate_up(dsn):
    run_cli(["migrate", "up"], dsn)


def create_key(dsn, owner="user:1", name="t", scopes=("a", "b"), expires_in=None,
               allowed_ips=None, rate_limit=None, quota=None, redis_url=None):
    """keygate keys create ... --json; returns the parsed object (id, key, owner, scopes, ...)."""
    args = ["keys", "create", "--owner", owner, "--name", name, "--json"]
    if scopes:
        args += ["--scopes", ",".join(scopes)]
    if expires_in:
        args += ["--expires-in", expires_in]
    if allowed_ips:
        args += ["--allowed-ips", ",".join(allowed_ips)]
    if rate_limit:
        args += ["--rate-limit", rate_limit]
    if quota is not None:
        args += ["--quota", str(quota)]
    r = run_cli(args, dsn, redis_url)
    try:
        created = json.loads(r.stdout)
    except ValueError:
        raise RuntimeError("keygate keys create --json did not print one JSON object") from None
    for field in ("id", "key"):
        if not created.get(field):
            raise RuntimeError(f"keygate keys create --json: no '{field}' in its output")
    return created


def revoke_key(dsn, key_id, redis_url=None):
    return run_cli(["keys", "revoke", key_id], dsn, redis_url)


def expire_key(dsn, key_id):
    """Moves a key's expiry 1 s into the past (created_at too: the schema wants
    expires_at > created_at). The row change makes running keygates drop their copy."""
    psql(dsn, "UPDATE api_keys SET created_at = now() - interval '1 hour', "
              f"expires_at = now() - interval '1 second' WHERE id = '{key_id}'")


BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _other_char(c):
    return BASE62[(BASE62.index(c) + 1) % len(BASE62)] if c in BASE62 else "A"


def unknown_key(prefix="kg_live"):
    """A key keygate accepts as well-formed (valid checksum) but has never stored."""
    body = f"{prefix}_" + "".join(secrets.choice(BASE62) for _ in range(32))
    crc = zlib.crc32(body.encode())
    digits = []
    for _ in range(6):
        digits.append(BASE62[crc % 62])
        crc //= 62
    return body + "".join(reversed(digits))


def with_bad_checksum(key):
    """The key with one checksum character changed (the last 6 characters are the checksum)."""
    return key[:-1] + _other_char(key[-1])


def with_typo(key):
    """The key with one character of its random part changed: the checksum no longer matches."""
    i = len(key) - 20
    return key[:i] + _other_char(key[i]) + key[i + 1:]


# ---- YAML (enough for keygate's config) -----------------------------------------------------

def _scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if v is None:
        return "null"
    return json.dumps(str(v))  # a double-quoted YAML scalar


def to_yaml(obj, indent=0):
    pad = " " * indent
    lines = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, dict) and v:
                lines.append(f"{pad}{k}:")
                lines.append(to_yaml(v, indent + 2))
            elif isinstance(v, list) and v and any(isinstance(x, dict) for x in v):
                lines.append(f"{pad}{k}:")
                lines.append(to_yaml(v, indent + 2))
            elif isinstance(v, list):
                lines.append(f"{pad}{k}: [{', '.join(_scalar(x) for x in v)}]")
            elif isinstance(v, dict):
                lines.append(f"{pad}{k}: {{}}")
            else:
                lines.append(f"{pad}{k}: {_scalar(v)}")
    elif isinstance(obj, list):
        for item in obj:
            body = to_yaml(item, indent + 2).lstrip(" ") if isinstance(item, dict) else _scalar(item)
            lines.append(f"{pad}- {body}")
    return "\n".join(lines)


def deep_merge(base, overrides):
    out = copy.deepcopy(base)
    for k, v in (overrides or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


DEFAULT_ROUTES = [
    {"path": "/public/*", "public": True},
    {"path": "/inventory/*", "methods": ["GET"], "scopes": ["inventory:read"]},
    {"path": "/inventory/*", "methods": ["POST", "PUT", "DELETE"], "scopes": ["inventory:write"]},
]

# Far above anything a test sends: rate limiting (issue #4) must not interfere here.
HIGH_RATE_LIMIT = "1000000/60s"


def base_config(pg_dsn, redis_url, upstream_port=None, **overrides):
    config = {
        "mode": "proxy",
        "listen": f"127.0.0.1:{free_port()}",
        "admin_listen": f"127.0.0.1:{free_port()}",
        "upstream": f"http://127.0.0.1:{upstream_port or free_port()}",
        "threads": 2,
        "postgres": {"dsn": pg_dsn, "pool_size": 2},
        "redis": {"url": redis_url},
        "cache": {"ttl": "30s", "negative_ttl": "5s"},
        "rate_limit": {"default": HIGH_RATE_LIMIT},
        "usage": {"enabled": False},
        "routes": DEFAULT_ROUTES,
        # Most tests request paths of their own; test_decisions checks the default (deny).
        "routes_default": "key",
    }
    return deep_merge(config, overrides)


# ---- processes: upstream and keygate --------------------------------------------------------

class Upstream:
    """tests/e2e/upstream.py as a child process on a free port."""

    def __init__(self, workdir, extra_args=()):
        self.workdir = workdir
        self.extra_args = list(extra_args)  # e.g. ["--record", FILE]
        self.proc = None
        self.port = None

    def start(self, timeout=10.0):
        log = open(os.path.join(self.workdir, f"upstream-{secrets.token_hex(3)}.log"), "wb")
        self.proc = subprocess.Popen([sys.executable, os.path.join(HERE, "upstream.py"), "--port", "0",
                                      *self.extra_args],
                                     stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL,
                                     env=clean_env())
        log.close()
        line = [None]

        def read_first_line():
            line[0] = self.proc.stdout.readline().decode()

        t = threading.Thread(target=read_first_line, daemon=True)
        t.start()
        t.join(timeout)
        if not line[0] or not line[0].startswith("port "):
            self.stop()
            raise RuntimeError(f"upstream.py did not report its port within {timeout}s")
        self.port = int(line[0].split()[1])
        if not wait_for_port(self.port, timeout):
            self.stop()
            raise RuntimeError(f"upstream.py does not accept connections on {self.port}")
        return self

    def stop(self):
        stop_process(self.proc)
        if self.proc and self.proc.stdout:
            self.proc.stdout.close()


class Keygate:
    """`keygate serve --config F` with a config written from a dict; stdout/stderr to a log."""

    def __init__(self, workdir, config, env=None, name="keygate"):
        self.workdir = workdir
        self.config = config
        self.extra_env = env or {}
        self.name = f"{name}-{secrets.token_hex(3)}"
        self.config_path = os.path.join(workdir, f"{self.name}.yaml")
        self.log_path = os.path.join(workdir, f"{self.name}.log")
        self.proc = None
        self.port = int(config["listen"].rsplit(":", 1)[1])
        self.admin_port = int(config["admin_listen"].rsplit(":", 1)[1])

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def start(self, timeout=20.0):
        with open(self.config_path, "w") as f:
            f.write(to_yaml(self.config) + "\n")
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([keygate_bin(), "serve", "--config", self.config_path],
                                     cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=clean_env(self.extra_env))
        log.close()
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout=20.0):
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"keygate exited with {self.proc.returncode} before it was ready"
                                   f"\n--- config ---\n{self._config_text()}\n--- log ---\n{self.log_tail()}")
            try:
                r = request(self.admin_port, "GET", "/readyz", timeout=1.0)
                if r.status == 200:
                    return
                last = f"/readyz answered {r.status}"
            except OSError as e:
                last = str(e)
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"keygate not ready within {timeout}s ({last})"
                           f"\n--- config ---\n{self._config_text()}\n--- log ---\n{self.log_tail()}")

    def stop(self, timeout=10.0):
        """SIGTERM (SIGKILL after `timeout`); returns the exit code. Raises AssertionError when
        keygate printed a sanitizer report (so a test cleanup that stops it fails the test)."""
        code = stop_process(self.proc, timeout)
        self.check_sanitizers()
        return code

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def check_sanitizers(self):
        """Raises AssertionError with the report if keygate's output holds a sanitizer report
        (once: the cleanup's stop() after a test's own check does not report it again)."""
        if getattr(self, "_sanitizers_checked", False):
            return
        report = sanitizer_report(self.log_text())
        if report:
            self._sanitizers_checked = True
            raise AssertionError(f"{self.name} (pid {self.pid}): sanitizer report\n{redact(report)}")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def _config_text(self):
        try:
            with open(self.config_path) as f:
                return f.read()
        except OSError:
            return "(none)"

    def log_tail(self, lines=40):
        """The end of keygate's log (keys hidden), and how it ended if it is not running."""
        try:
            with open(self.log_path, "rb") as f:
                data = f.read().decode(errors="replace").splitlines()
        except OSError:
            data = ["(no log)"]
        if self.proc is not None and self.proc.poll() is not None:
            code = self.proc.returncode
            how = f"killed by signal {-code}" if code < 0 else f"exited with {code}"
            data.append(f"(keygate pid {self.proc.pid} is not running: {how})")
        return redact("\n".join(data[-lines:]))

    def metrics_text(self):
        r = request(self.admin_port, "GET", "/metrics", timeout=5.0)
        if r.status != 200:
            raise RuntimeError(f"/metrics answered {r.status}")
        return r.body.decode()

    def metrics(self):
        return parse_metrics(self.metrics_text())

    def memory(self):
        return read_proc_status(self.pid)

    def get(self, path, key=None, headers=None, **kw):
        h = dict(headers or {})
        if key is not None:
            h.update(bearer(key))
        return request(self.port, "GET", path, headers=h, **kw)


NGINX_BIN = "/usr/sbin/nginx"


class Nginx:
    """A real nginx (Debian's nginx-light) with its own prefix folder under `workdir`, its
    config from `conf` (relative paths in it are under the prefix, which has a tmp/ folder
    for the temp paths), in the foreground, stopped by PID."""

    def __init__(self, workdir, conf, port):
        self.dir = os.path.join(workdir, f"nginx-{secrets.token_hex(3)}")
        self.conf = conf
        self.port = port
        self.proc = None

    def start(self, timeout=10.0):
        os.makedirs(os.path.join(self.dir, "tmp"))
        os.chmod(os.path.dirname(self.dir), 0o755)  # workers run unprivileged under root
        os.chmod(self.dir, 0o755)
        conf_path = os.path.join(self.dir, "nginx.conf")
        with open(conf_path, "w") as f:
            f.write(self.conf)
        log = open(os.path.join(self.dir, "stderr.log"), "wb")
        self.proc = subprocess.Popen([NGINX_BIN, "-p", self.dir + "/", "-c", conf_path,
                                      "-g", "daemon off;"],
                                     stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        if not wait_for_port(self.port, timeout=timeout) or self.proc.poll() is not None:
            self.stop()
            raise RuntimeError(f"nginx did not start:\n{self.log_tail()}")
        return self

    def stop(self):
        return stop_process(self.proc)

    def log_tail(self):
        out = []
        for name in ("stderr.log", "error.log"):
            try:
                with open(os.path.join(self.dir, name), errors="replace") as f:
                    out.append(f"--- {name} ---\n" + f.read()[-3000:])
            except OSError:
                pass
        return redact("\n".join(out))


# ---- the base test case ---------------------------------------------------------------------

class StoreSet:
    """Where a test class's PostgreSQL server and Redis are: the shared ones scripts/test
    exported, or (own=True, or when none were exported) our own under `workdir`, which the
    test may stop and restart."""

    def __init__(self, workdir, own=False):
        self.own = own or not (os.environ.get("KEYGATE_TEST_PG_DSN") and
                               os.environ.get("KEYGATE_TEST_REDIS_URL"))
        self.pg = None
        self.redis = None
        if self.own:
            stores = stores_module()
            base = os.path.join(workdir, "stores")
            os.makedirs(base, exist_ok=True)
            os.chmod(workdir, 0o755)  # initdb runs as user postgres when we are root
            self.pg = stores.Postgres(base)
            self.redis = stores.Redis(base)
            try:
                self.pg.start()
                self.redis.start()
            except Exception:
                self.stop()
                raise
            self.server_dsn = self.pg.dsn()
            self.redis_url = self.redis.url()
        else:
            self.server_dsn = os.environ["KEYGATE_TEST_PG_DSN"]
            self.redis_url = os.environ["KEYGATE_TEST_REDIS_URL"]

    def stop(self):
        if self.redis:
            self.redis.stop()
        if self.pg:
            self.pg.stop()


class KeygateTestCase(unittest.TestCase):
    """Per class: a work folder, stores (shared or own), a migrated scratch database and an
    upstream process. Everything is undone by class cleanups, also when setUpClass fails."""

    own_stores = False
    start_upstream = True
    migrate = True  # keygate's native schema; False for a test that brings its own key table

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        keygate_bin()  # fail early and clearly
        cls.workdir = tempfile.mkdtemp(prefix="kg-e2e-")
        cls.addClassCleanup(shutil.rmtree, cls.workdir, True)
        cls.stores = StoreSet(cls.workdir, own=cls.own_stores)
        cls.addClassCleanup(cls.stores.stop)
        cls.db = ScratchDatabase(cls.stores.server_dsn)
        cls.addClassCleanup(cls._drop_database)
        cls.dsn = cls.db.dsn
        cls.redis_url = cls.stores.redis_url
        if cls.migrate:
            migrate_up(cls.dsn)
        cls.upstream = None
        if cls.start_upstream:
            cls.upstream = Upstream(cls.workdir).start()
            cls.addClassCleanup(cls.upstream.stop)

    @classmethod
    def _drop_database(cls):
        try:
            cls.db.drop()
        except Exception as e:  # the server may have been stopped by the test on purpose
            print(f"note: could not drop {cls.db.name}: {e}", file=sys.stderr)

    @classmethod
    def keygate_config(cls, **overrides):
        return base_config(cls.dsn, cls.redis_url, cls.upstream.port if cls.upstream else None,
                           **overrides)

    @classmethod
    def start_keygate(cls, config=None, env=None, name="keygate", **overrides):
        """Starts keygate for the whole class (stopped by a class cleanup)."""
        kg = Keygate(cls.workdir, config or cls.keygate_config(**overrides), env=env, name=name)
        cls.addClassCleanup(kg.stop)
        kg.start()
        return kg

    def start_keygate_for_test(self, config=None, env=None, name="keygate", **overrides):
        """Starts keygate for one test (stopped by a test cleanup)."""
        kg = Keygate(self.workdir, config or self.keygate_config(**overrides), env=env, name=name)
        self.addCleanup(kg.stop)
        kg.start()
        return kg

    @classmethod
    def create_key(cls, **kw):
        kw.setdefault("redis_url", cls.redis_url)
        return create_key(cls.dsn, **kw)

    @classmethod
    def sql(cls, statement):
        return psql(cls.dsn, statement)

    # ---- assertions ----

    def assertStatus(self, response, status, kg=None, msg=""):
        if response.status != status:
            tail = f"\n--- keygate log ---\n{kg.log_tail()}" if kg else ""
            self.fail(f"expected {status}, got {response!r} {msg}{tail}")

    def assertError(self, response, status, code, kg=None):
        """A rejection: status, JSON body {"error": code, "message": text}, JSON content type."""
        self.assertStatus(response, status, kg)
        body = response.json
        self.assertIsInstance(body, dict, f"error body is not a JSON object: {response!r}")
        self.assertEqual(body.get("error"), code, f"{response!r}")
        self.assertIsInstance(body.get("message"), str, f"{response!r}")
        self.assertTrue(body["message"], f"empty message: {response!r}")
        ctype = response.header("Content-Type") or ""
        self.assertTrue(ctype.startswith("application/json"), f"Content-Type {ctype!r}")

    def assertRateLimitHeaders(self, response, limit=None):
        values = {}
        for name in ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"):
            v = response.header(name)
            self.assertIsNotNone(v, f"{name} missing: {response!r}")
            self.assertRegex(v.strip(), r"^\d+$", f"{name}: {v!r}")
            values[name] = int(v)
        self.assertLessEqual(values["RateLimit-Remaining"], values["RateLimit-Limit"])
        if limit is not None:
            self.assertEqual(values["RateLimit-Limit"], limit, f"{response!r}")
        return values


def sha256_of_stream(chunks):
    h = hashlib.sha256()
    n = 0
    for c in chunks:
        h.update(c)
        n += len(c)
    return n, h.hexdigest()
