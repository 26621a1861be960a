#!/usr/bin/env python3
"""keygate's benchmark suite (driven by bench/run; Python 3 standard library only).

Starts, all on 127.0.0.1 and pinned to the "server" core:
  upstream   nginx answering every request with a small 200 (the fast upstream)
  nginx      nginx reverse proxy to the upstream with upstream keep-alive (plain proxy, no auth)
  keygate    `threads: 1`, proxy mode, usage log off, in front of the same upstream
  keygate-usage  the same with usage.enabled: true (only if config.yaml has usage.enabled)
  keygate-authz  `mode: authz`, answering directly
  PostgreSQL and Redis (throwaway, scripts/lib/stores.py) holding the keys
and runs wrk (pinned to the "client" core, same -t/-c everywhere) against each scenario,
interleaved in rounds, then writes results/latest.{md,json,png,svg}.
Every process started here is recorded in WORKDIR/pids and stopped by PID.
"""
import argparse
import datetime
import json
import os
import platform
import re
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = os.path.dirname(HERE)
ROOT = os.path.dirname(BENCH)
sys.path.insert(0, os.path.join(ROOT, "scripts", "lib"))
sys.path.insert(0, HERE)
import keys as keygen  # noqa: E402
import presets  # noqa: E402
import stores  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

# name -> (target, keys file, expected status, description)
SCENARIOS = {
    "direct": ("upstream", "hot", 200, "wrk straight to the upstream nginx"),
    "nginx": ("nginx", "hot", 200, "through the plain nginx reverse proxy (no auth)"),
    "hot": ("keygate", "hot", 200, "keygate, 1,000 valid keys rotating (L1 hits), limits on, not reached"),
    "spread": ("keygate", "spread", 200, "keygate, 100,000 distinct valid keys (Redis / PostgreSQL lookups)"),
    "invalid": ("keygate", "invalid", 401, "keygate, keys with bad checksums (rejected, no I/O)"),
    "unknown": ("keygate", "unknown", 401, "keygate, well-formed unknown keys (negative cache)"),
    "limited": ("keygate", "limited", 429, "keygate, one key far over its limit (1/3600s)"),
    "authz": ("keygate-authz", "hot", 200, "keygate `mode: authz` answering directly, hot keys"),
    "hot-usage": ("keygate-usage", "hot", 200, "as `hot`, with usage.enabled: true"),
}
# One per seed schema (store.schema: custom, bench/lib/presets.py): as `hot`, from that table.
for _preset in presets.PRESETS:
    SCENARIOS[f"hot-{_preset}"] = (f"keygate-{_preset}", _preset, 200,
                                  f"as `hot`, keys in the seed table of preset `{_preset}`")
KEYGATE_TARGETS = ("keygate", "keygate-authz", "keygate-usage") + tuple(f"keygate-{p}" for p in presets.PRESETS)


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---- processes --------------------------------------------------------------------------------

class Procs:
    """Every process started, stopped by PID in reverse order. PIDs also go to WORKDIR/pids so
    bench/run's trap can stop them if this program dies."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.items = []  # (name, pid, stop_fn)

    def add(self, name, pid, stop_fn):
        self.items.append((name, pid, stop_fn))
        if pid:
            self.record(pid, name)

    def record(self, pid, name):
        with open(os.path.join(self.workdir, "pids"), "a") as f:
            f.write(f"{pid} {name}\n")

    def stop_all(self):
        while self.items:
            name, pid, stop_fn = self.items.pop()
            try:
                stop_fn()
            except Exception as e:  # keep stopping the others
                print(f"warning: stopping {name} ({pid}): {e}", file=sys.stderr)


def pin(pid, cpu):
    """All threads of pid to cpu."""
    subprocess.run(["taskset", "-a", "-cp", str(cpu), str(pid)], check=True,
                   stdout=subprocess.DEVNULL)


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def cpu_ticks(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime stime (fields 14, 15)
        except (OSError, IndexError, ValueError):
            pass
    return total


def rss_kb(pid):
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    out[line.split(":")[0]] = int(line.split()[1])
    except OSError:
        pass
    return out


def free_port():
    return stores.free_port()


def http_get(port, path, headers=None, timeout=5.0):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_ready(port, path, timeout=30.0, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            if http_get(port, path, timeout=1.0)[0] == 200:
                return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


def core_times(cpu):
    """(busy, total, irq+softirq) jiffies of one CPU from /proc/stat."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{cpu} "):
                v = [int(x) for x in line.split()[1:9]]
                return sum(v) - v[3] - v[4], sum(v), v[5] + v[6]
    return 0, 1, 0


def machine_idle(seconds=2.0):
    def snap():
        with open("/proc/stat") as f:
            parts = f.readline().split()[1:]
        v = [int(x) for x in parts]
        return v[3] + v[4], sum(v[:8])
    i0, t0 = snap()
    time.sleep(seconds)
    i1, t1 = snap()
    return (i1 - i0) / max(1, t1 - t0)


# ---- nginx --------------------------------------------------------------------------------------

NGINX_COMMON = """
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {dir}/tmp-body;
  proxy_temp_path {dir}/tmp-proxy;
  keepalive_requests 100000000;
  keepalive_timeout 300s;
{body}
}}
"""

UPSTREAM_BODY = """
  server {{
    listen 127.0.0.1:{port};
    location / {{ default_type text/plain; return 200 "ok\\n"; }}
  }}
"""

PROXY_BODY = """
  upstream backend {{
    server 127.0.0.1:{upstream};
    keepalive 64;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
  }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
"""


class Nginx:
    def __init__(self, workdir, name, body, port, cpu, procs):
        self.dir = os.path.join(workdir, name)
        self.name, self.port, self.cpu, self.procs = name, port, cpu, procs
        os.makedirs(self.dir, exist_ok=True)
        self.conf = os.path.join(self.dir, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(NGINX_COMMON.format(dir=self.dir, body=body))
        self.proc = None

    def start(self):
        log_f = open(os.path.join(self.dir, "stderr.log"), "wb")
        self.proc = subprocess.Popen(
            ["taskset", "-c", str(self.cpu), "nginx", "-p", self.dir, "-c", self.conf,
             "-g", "daemon off;"], stdout=log_f, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True)
        log_f.close()
        self.procs.add(self.name, self.proc.pid, self.stop)
        if not stores.wait_for_port(self.port, timeout=10):
            raise RuntimeError(f"{self.name} did not start: see {self.dir}/error.log")
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            stores.stop_pid(self.proc.pid, signal.SIGTERM, timeout=10)
        if self.proc:
            self.proc.wait()

    def pids(self):
        """master + workers (the worker does the work; CPU is summed)."""
        return [self.proc.pid] + children(self.proc.pid)

    def main_pid(self):
        kids = children(self.proc.pid)
        return kids[0] if kids else self.proc.pid


# ---- keygate ------------------------------------------------------------------------------------

def keygate_yaml(mode, port, admin, upstream, dsn, redis_url, usage, spill, cache_ttl="30s",
                 default_limit="100/60s", extra=""):
    return f"""mode: {mode}
listen: 127.0.0.1:{port}
upstream: http://127.0.0.1:{upstream}
admin_listen: 127.0.0.1:{admin}
threads: 1
# No routes: every path needs a valid key and no scope (routes_default is deny by default).
routes_default: key
postgres:
  dsn: {dsn}
  pool_size: 4
redis:
  url: {redis_url}
keys:
  prefix: kg_live
cache:
  ttl: {cache_ttl}
  negative_ttl: 5s
  max_entries: 200000
  redis_ttl: 300s
rate_limit:
  default: {default_limit}
""" + extra + (f"""usage:
  enabled: {"true" if usage else "false"}
  spill_path: {spill}
""" if usage is not None else "")


class Keygate:
    def __init__(self, binary, workdir, name, cpu, procs, mode, upstream, dsn, redis_url, usage,
                 wrapper=None, cache_ttl="30s", default_limit="100/60s", extra=""):
        self.binary, self.name, self.cpu, self.procs = binary, name, cpu, procs
        self.port, self.admin = free_port(), free_port()
        self.config = os.path.join(workdir, f"{name}.yaml")
        self.log = os.path.join(workdir, f"{name}.log")
        self.wrapper = wrapper or []
        with open(self.config, "w") as f:
            f.write(keygate_yaml(mode, self.port, self.admin, upstream, dsn, redis_url, usage,
                                 os.path.join(workdir, f"{name}-usage.spill"), cache_ttl,
                                 default_limit, extra))
        self.proc = None

    def start(self, timeout=30.0):
        env = {k: v for k, v in os.environ.items() if not k.startswith("KEYGATE_")}
        log_f = open(self.log, "ab")
        self.proc = subprocess.Popen(
            ["taskset", "-c", str(self.cpu)] + self.wrapper +
            [self.binary, "serve", "--config", self.config],
            stdout=log_f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            start_new_session=True)
        log_f.close()
        self.procs.add(self.name, self.proc.pid, self.stop)
        if not wait_ready(self.admin, "/readyz", timeout, self.proc):
            raise RuntimeError(f"{self.name} not ready; log tail:\n{self.tail()}")
        return self

    def stop(self, timeout=20):
        if self.proc and self.proc.poll() is None:
            stores.stop_pid(self.proc.pid, signal.SIGTERM, timeout=timeout)
        if self.proc:
            self.proc.wait()

    def tail(self, n=20):
        try:
            with open(self.log, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def pids(self):
        return [self.proc.pid]

    def main_pid(self):
        return self.proc.pid

    def metrics(self):
        try:
            status, body = http_get(self.admin, "/metrics", timeout=3.0)
        except OSError:
            return {}
        out = {}
        for line in body.decode(errors="replace").splitlines():
            if not line or line.startswith("#"):
                continue
            name, _, value = line.rpartition(" ")
            try:
                out[name] = float(value)
            except ValueError:
                pass
        return out


def metric_deltas(before, after):
    keep = ("keygate_key_lookups_total", "keygate_responses_total", "keygate_usage_events_total",
            "keygate_postgres_key_queries_total", "keygate_ratelimit_decided_without_redis_total",
            "keygate_upstream_errors_total")
    out = {}
    for name, v in after.items():
        if name.startswith(keep):
            d = v - before.get(name, 0.0)
            if d:
                out[name] = d
    return out


def lookup_summary(deltas):
    """'l1:hit=123 redis:miss=4' from keygate_key_lookups_total deltas."""
    parts = []
    for name, v in sorted(deltas.items()):
        m = re.match(r'keygate_key_lookups_total\{tier="([^"]+)",outcome="([^"]+)"\}', name)
        if m:
            parts.append(f"{m.group(1)}:{m.group(2)}={int(v)}")
    return " ".join(parts)


# ---- wrk ----------------------------------------------------------------------------------------

def run_wrk(args, port, keys_file, duration, warm=False, stop_after=None):
    cmd = ["taskset", "-c", str(args.client_cpu), "wrk", f"-t{args.wrk_threads}",
           f"-c{args.connections}", f"-d{duration}s", "--latency", "--timeout", "2s",
           "-s", os.path.join(HERE, "rotate.lua"), f"http://127.0.0.1:{port}/bench"]
    env = dict(os.environ, BENCH_KEYS=keys_file, BENCH_HEADER="authorization",
               BENCH_PATH="/bench")
    if stop_after:
        env["BENCH_STOP_AFTER"] = str(stop_after)
    r = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=duration + 30)
    out = r.stdout.decode(errors="replace")
    m = re.search(r"^BENCH_RESULT (\{.*\})$", out, re.M)
    if r.returncode != 0 or not m:
        raise RuntimeError(f"wrk failed (exit {r.returncode}):\n{out}")
    res = json.loads(m.group(1))
    res["raw"] = out
    return res, " ".join(shlex.quote(c) for c in cmd)


# ---- the suite ----------------------------------------------------------------------------------

class Suite:
    def __init__(self, args):
        self.args = args
        self.workdir = args.workdir
        self.procs = Procs(self.workdir)
        self.targets = {}
        self.key_files = {}
        self.results = []  # one dict per run
        self.notes = []
        self.wrk_cmd = ""

    # setup
    def start_stores(self):
        log("starting throwaway PostgreSQL and Redis")
        self.pg = stores.Postgres(self.workdir)
        self.procs.add("postgres", 0, self.pg.stop)
        self.pg.start()
        self.redis = stores.Redis(self.workdir)
        self.procs.add("redis", 0, self.redis.stop)
        self.redis.start()
        # The stores are servers: on the server core with keygate (their CPU is part of what a
        # keyed request costs). PostgreSQL's backends inherit the postmaster's affinity.
        for pid in [self.pg.pid()] + children(self.pg.pid()) + [self.redis.pid()]:
            pin(pid, self.args.server_cpu)
        self.dsn = self.pg.dsn()
        self.psql = ["psql", "-h", "127.0.0.1", "-p", str(self.pg.port), "-U", "postgres",
                     "-d", "keygate"]

    def migrate_and_load(self):
        cfg = os.path.join(self.workdir, "migrate.yaml")
        with open(cfg, "w") as f:
            f.write(keygate_yaml("proxy", 1, 2, 3, self.dsn, self.redis.url(), None, ""))
        env = {k: v for k, v in os.environ.items() if not k.startswith("KEYGATE_")}
        r = subprocess.run([self.args.keygate, "migrate", "up", "--config", cfg], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"keygate migrate up failed: {r.stdout.decode()}")
        total = self.args.keys
        spread = self.args.spread_keys
        hot = 1000
        need = 1 + hot + spread
        if total < need:
            total = need
        log(f"generating {total:,} keys and loading them with COPY")
        factory = keygen.KeyFactory()
        kept, secs = keygen.load_keys(self.psql, total, factory, keep=need,
                                      special_limits={0: keygen.TINY_LIMIT})
        # Now, so that autovacuum has nothing left to do on api_keys during the runs.
        subprocess.run(self.psql + ["-qc", "VACUUM (ANALYZE) api_keys", "-c", "CHECKPOINT"],
                       check=True, stdout=subprocess.DEVNULL)
        count = subprocess.run(self.psql + ["-Atc", "SELECT count(*) FROM api_keys"], check=True,
                               stdout=subprocess.PIPE).stdout.decode().strip()
        log(f"api_keys holds {int(count):,} rows ({secs:.1f} s to generate and COPY)")
        self.key_count = int(count)
        self.load_seconds = secs
        kd = os.path.join(self.workdir, "keys")
        os.makedirs(kd, exist_ok=True)
        sets = {
            "limited": kept[0:1],
            "hot": kept[1:1 + hot],
            "spread": kept[1 + hot:1 + hot + spread],
            "invalid": factory.bad_checksum_keys(1000),
            "unknown": factory.keys(1000),  # valid format, never inserted
        }
        for name, lines in sets.items():
            path = os.path.join(kd, f"{name}.keys")
            keygen.write_lines(path, lines)
            self.key_files[name] = path
        # The seed tables (hot-<preset>): 1,000 keys each, in a database of their own.
        self.preset_databases = {}
        for preset in presets.PRESETS:
            if f"hot-{preset}" not in self.args.scenarios:
                continue
            database, keys = presets.load(self.psql, preset, hot)
            self.preset_databases[preset] = database
            sets[preset] = keys
            path = os.path.join(kd, f"{preset}.keys")
            keygen.write_lines(path, keys)
            self.key_files[preset] = path
            log(f"preset {preset}: {len(keys):,} keys in database {database}")
        self.sample_keys = {name: lines[0] for name, lines in sets.items()}

    def start_servers(self):
        cpu = self.args.server_cpu
        up_port, proxy_port = free_port(), free_port()
        log("starting upstream nginx, nginx reverse proxy, keygate processes "
            f"(all pinned to CPU {cpu}; wrk on CPU {self.args.client_cpu})")
        self.upstream = Nginx(self.workdir, "upstream", UPSTREAM_BODY.format(port=up_port),
                              up_port, cpu, self.procs).start()
        self.nginx = Nginx(self.workdir, "nginx", PROXY_BODY.format(port=proxy_port,
                                                                     upstream=up_port),
                           proxy_port, cpu, self.procs).start()
        self.targets["upstream"] = self.upstream
        self.targets["nginx"] = self.nginx
        usage_supported = self.usage_option_exists()
        common = dict(cpu=cpu, procs=self.procs, upstream=up_port, dsn=self.dsn,
                      redis_url=self.redis.url())
        wanted = {SCENARIOS[s][0] for s in self.args.scenarios}
        self.targets["keygate"] = Keygate(self.args.keygate, self.workdir, "keygate", mode="proxy",
                                          usage=False if usage_supported else None,
                                          **common).start()
        if "keygate-authz" in wanted:
            self.targets["keygate-authz"] = Keygate(
                self.args.keygate, self.workdir, "keygate-authz", mode="authz",
                usage=False if usage_supported else None, **common).start()
        if "keygate-usage" in wanted:
            if usage_supported:
                self.targets["keygate-usage"] = Keygate(
                    self.args.keygate, self.workdir, "keygate-usage", mode="proxy", usage=True,
                    **common).start()
            else:
                self.notes.append("config.yaml has no usage.enabled: hot-usage skipped")
                self.args.scenarios = [s for s in self.args.scenarios if s != "hot-usage"]

        for preset, database in self.preset_databases.items():
            # Every key of these tables may make 1e9 requests a minute (rate_limit.default),
            # as the native keys do with their own rate_limit column.
            dsn = self.pg.dsn(database)
            self.targets[f"keygate-{preset}"] = Keygate(
                self.args.keygate, self.workdir, f"keygate-{preset}", mode="proxy",
                usage=False if usage_supported else None,
                default_limit=f"{keygen.HUGE_LIMIT[0]}/{keygen.HUGE_LIMIT[1]}s",
                extra=presets.store_yaml(preset), **{**common, "dsn": dsn}).start()

    @staticmethod
    def usage_option_exists():
        try:
            with open(os.path.join(ROOT, "config.yaml")) as f:
                text = f.read()
        except OSError:
            return False
        return re.search(r"^usage:\s*\n(?:[ \t].*\n)*?[ \t]+enabled:", text, re.M) is not None

    def sanity_check(self):
        """One request per scenario must get the status the scenario expects."""
        for s in self.args.scenarios:
            target, keyset, expect, _ = SCENARIOS[s]
            key = self.sample_keys[keyset]
            if s == "limited":  # its first request is allowed (1/3600s); use it up here
                http_get(self.targets[target].port, "/bench",
                         {"Authorization": f"Bearer {key}"})
            status, body = http_get(self.targets[target].port, "/bench",
                                    {"Authorization": f"Bearer {key}"})
            if status != expect:
                raise RuntimeError(f"sanity check {s}: expected {expect}, got {status} "
                                   f"{body[:200]!r}")
        log("sanity check passed: every scenario answers its expected status")

    # measurement
    def pids_for(self, target):
        return self.targets[target].pids()

    def run_one(self, scenario, rnd, duration, warm=False):
        target, keyset, expect, _ = SCENARIOS[scenario]
        t = self.targets[target]
        watched = {"server": t.pids(), "upstream": self.upstream.pids(),
                   "redis": [self.redis.pid()],
                   "postgres": [self.pg.pid()] + children(self.pg.pid())}
        m0 = t.metrics() if target in KEYGATE_TARGETS else {}
        c0 = {k: cpu_ticks(v) for k, v in watched.items()}
        core0 = core_times(self.args.server_cpu)
        w0 = time.monotonic()
        res, cmd = run_wrk(self.args, t.port, self.key_files[keyset], duration, warm)
        wall = time.monotonic() - w0
        c1 = {k: cpu_ticks(v) for k, v in watched.items()}
        core1 = core_times(self.args.server_cpu)
        if warm:
            return None
        self.wrk_cmd = re.sub(r"http://127\.0\.0\.1:\d+/", "http://127.0.0.1:PORT/", cmd)
        m1 = t.metrics() if target in KEYGATE_TARGETS else {}
        secs = res["duration_us"] / 1e6
        e = res["errors"]
        row = {
            "scenario": scenario, "round": rnd, "target": target, "expect": expect,
            "rps": res["requests"] / secs, "requests": res["requests"],
            "p50_ms": res["latency_us"]["p50"] / 1000, "p90_ms": res["latency_us"]["p90"] / 1000,
            "p99_ms": res["latency_us"]["p99"] / 1000, "p999_ms": res["latency_us"]["p999"] / 1000,
            "max_ms": res["latency_us"]["max"] / 1000,
            "non_2xx_3xx": e["status"],
            "socket_errors": e["connect"] + e["read"] + e["write"] + e["timeout"],
            "cpu_pct": {k: 100.0 * (c1[k] - c0[k]) / CLK_TCK / wall for k in c0},
            # how busy the server core was, all processes of the machine included
            "server_core_busy_pct": 100.0 * (core1[0] - core0[0]) / max(1, core1[1] - core0[1]),
            "server_core_irq_pct": 100.0 * (core1[2] - core0[2]) / max(1, core1[1] - core0[1]),
        }
        ours = sum(row["cpu_pct"].values())
        if target == "upstream":  # counted twice: as "server" and as "upstream"
            ours -= row["cpu_pct"]["upstream"]
        # CPU time on the server core per request, every process of the scenario included
        # (proxy, upstream, Redis, PostgreSQL): robust to other work competing for the core.
        row["cpu_us_per_req"] = ours / 100.0 * wall * 1e6 / max(1, res["requests"])
        row["others_on_server_core_pct"] = max(
            0.0, row["server_core_busy_pct"] - row["server_core_irq_pct"] - ours)
        # An unexpected answer: a 2xx/3xx where a rejection is expected, or the other way round.
        row["unexpected"] = (e["status"] if expect < 400 else res["requests"] - e["status"])
        if target in KEYGATE_TARGETS:
            mem = rss_kb(t.main_pid())
            row["rss_mb"] = mem.get("VmRSS", 0) / 1024
            row["hwm_mb"] = mem.get("VmHWM", 0) / 1024
            row["metrics"] = metric_deltas(m0, m1)
            row["lookups"] = lookup_summary(row["metrics"])
        else:
            mem = rss_kb(t.main_pid())
            row["rss_mb"] = mem.get("VmRSS", 0) / 1024
        self.results.append(row)
        log(f"round {rnd} {scenario:9s} {row['rps']:9.0f} req/s  p50 {row['p50_ms']:.3f}  "
            f"p99 {row['p99_ms']:.3f}  p99.9 {row['p999_ms']:.3f} ms  "
            f"non-2xx/3xx {e['status']}  sock-err {row['socket_errors']}  "
            f"server CPU {row['cpu_pct']['server']:.0f}% (core busy "
            f"{row['server_core_busy_pct']:.0f}%, others {row['others_on_server_core_pct']:.0f}%)  "
            f"rss {row['rss_mb']:.1f} MB"
            + (f"  [{row['lookups']}]" if row.get("lookups") else ""))
        return row

    def run(self):
        a = self.args
        if a.warmup > 0:
            log(f"warm-up: {a.warmup} s per scenario (not recorded)")
            for s in a.scenarios:
                if s != "spread":  # spread stays cold in L1 on purpose
                    self.run_one(s, 0, a.warmup, warm=True)
        for rnd in range(1, a.rounds + 1):
            k = (rnd - 1) % len(a.scenarios)
            order = a.scenarios[k:] + a.scenarios[:k]  # rotate so no scenario is always first
            log(f"round {rnd}/{a.rounds}: {' '.join(order)}")
            for s in order:
                if s.startswith("hot-") and SCENARIOS[s][1] in presets.PRESETS:
                    # A custom table's records live in L1 only (no Redis tier), and L1 may have
                    # expired them since the warm-up: warm again, so that this run measures
                    # the cached path, as `hot` does (its misses are Redis hits).
                    self.warm_until_cached(s, rnd)
                self.run_one(s, rnd, a.duration)
        mem = rss_kb(self.targets["keygate"].main_pid())
        self.final_mem = {"rss_mb": mem.get("VmRSS", 0) / 1024,
                          "hwm_mb": mem.get("VmHWM", 0) / 1024}
        if "spread" in a.scenarios and a.memory_seconds > 0:
            self.memory_phase()

    def warm_until_cached(self, scenario, rnd, most=10):
        """1 s warm runs until one of them misses L1 no more (at most `most`): a bcrypt table
        verifies each of the 1,000 keys once on one thread, which takes longer than a second."""
        t = self.targets[SCENARIOS[scenario][0]]
        misses = lambda: sum(v for k, v in t.metrics().items()
                             if k.startswith('keygate_key_lookups_total{tier="l1",outcome="miss"'))
        for _ in range(most):
            before = misses()
            self.run_one(scenario, rnd, 1, warm=True)
            if misses() == before:
                return

    def memory_phase(self):
        """keygate's memory with the `spread` keys in its L1 cache: a fresh keygate (same
        config, but a cache TTL that outlasts the fill) gets every spread key once."""
        a = self.args
        kg = Keygate(a.keygate, self.workdir, "keygate-mem", cpu=a.server_cpu, procs=self.procs,
                     mode="proxy", upstream=self.upstream.port, dsn=self.dsn,
                     redis_url=self.redis.url(), usage=False if self.usage_option_exists() else None,
                     cache_ttl="600s").start()
        idle = rss_kb(kg.main_pid())
        n = a.spread_keys
        log(f"memory: requesting each of the {n:,} spread keys once through a fresh keygate "
            f"(at most {a.memory_seconds} s)")
        res, _ = run_wrk(a, kg.port, self.key_files["spread"], a.memory_seconds, stop_after=n)
        m = kg.metrics()
        cached = sum(v for k, v in m.items()
                     if k.startswith('keygate_key_lookups_total{tier="l1",outcome="miss"'))
        mem = rss_kb(kg.main_pid())
        self.mem_phase = {
            "keys_requested": res["requests"], "l1_misses": int(cached),
            "seconds": res["duration_us"] / 1e6,
            "idle_rss_mb": idle.get("VmRSS", 0) / 1024,
            "rss_mb": mem.get("VmRSS", 0) / 1024, "hwm_mb": mem.get("VmHWM", 0) / 1024,
        }
        self.mem_phase["bytes_per_key"] = ((self.mem_phase["rss_mb"] - self.mem_phase["idle_rss_mb"])
                                           * 1024 * 1024 / max(1, cached))
        # malloc's own view: live bytes vs what it holds (the rest of RSS is code, stacks, ...)
        self.mem_phase["heap_in_use_mb"] = m.get('keygate_heap_bytes{state="in_use"}', 0) / 2**20
        self.mem_phase["heap_held_mb"] = m.get('keygate_heap_bytes{state="held"}', 0) / 2**20
        log(f"memory: {int(cached):,} keys cached (L1 misses filled), RSS "
            f"{self.mem_phase['idle_rss_mb']:.1f} MB idle -> {self.mem_phase['rss_mb']:.1f} MB "
            f"(~{self.mem_phase['bytes_per_key']:.0f} bytes per cached key; heap in use "
            f"{self.mem_phase['heap_in_use_mb']:.1f} MB of {self.mem_phase['heap_held_mb']:.1f} MB "
            f"held), "
            f"{res['requests'] / self.mem_phase['seconds']:.0f} req/s while filling")
        kg.stop()

    def stop(self):
        self.procs.stop_all()


# ---- report -------------------------------------------------------------------------------------

def med(xs):
    return statistics.median(xs) if xs else float("nan")


def fmt_range(xs, f="{:.2f}"):
    if not xs:
        return "–"
    return f"{f.format(med(xs))} ({f.format(min(xs))}–{f.format(max(xs))})"


def summarize(results, scenarios):
    by = {s: [r for r in results if r["scenario"] == s] for s in scenarios}
    rounds = sorted({r["round"] for r in results})
    per_round = {(r["scenario"], r["round"]): r for r in results}
    summary = {}
    for s, rows in by.items():
        if not rows:
            continue
        d = {k: [r[k] for r in rows] for k in ("rps", "p50_ms", "p99_ms", "p999_ms",
                                                "non_2xx_3xx", "socket_errors", "unexpected",
                                                "rss_mb")}
        d["cpu_server"] = [r["cpu_pct"]["server"] for r in rows]
        d["cpu_redis"] = [r["cpu_pct"]["redis"] for r in rows]
        d["cpu_postgres"] = [r["cpu_pct"]["postgres"] for r in rows]
        d["cpu_upstream"] = [r["cpu_pct"]["upstream"] for r in rows]
        d["hwm_mb"] = [r.get("hwm_mb", 0) for r in rows]
        d["cpu_us_per_req"] = [r["cpu_us_per_req"] for r in rows]
        d["lookups"] = [r.get("lookups", "") for r in rows]
        ratios = {"nginx": [], "direct": [], "p99_minus_nginx_ms": [], "cpu_eff_nginx": [], "hot": []}
        for rnd in rounds:
            me = per_round.get((s, rnd))
            ng = per_round.get(("nginx", rnd))
            dr = per_round.get(("direct", rnd))
            if me and ng:
                ratios["nginx"].append(me["rps"] / ng["rps"])
                ratios["p99_minus_nginx_ms"].append(me["p99_ms"] - ng["p99_ms"])
                ratios["cpu_eff_nginx"].append(ng["cpu_us_per_req"] / max(1e-9, me["cpu_us_per_req"]))
            if me and dr:
                ratios["direct"].append(me["rps"] / dr["rps"])
            native = per_round.get(("hot", rnd))
            if me and native:
                ratios["hot"].append(me["rps"] / native["rps"])
        d["ratios"] = ratios
        summary[s] = d
    return summary


def targets_table(summary, final_mem, mem_phase):
    rows = []

    def ratio(s, key="nginx"):
        return med(summary[s]["ratios"][key]) if s in summary and summary[s]["ratios"][key] else None

    def add(name, value, ok, shown):
        rows.append((name, shown if value is not None else "not measured",
                     ("yes" if ok else "**no**") if value is not None else "–"))

    v = ratio("hot")
    add("`hot` throughput >= 1.0x `nginx`", v, v is not None and v >= 1.0, f"{v:.2f}x" if v else "")
    v = med(summary["hot"]["ratios"]["p99_minus_nginx_ms"]) if "hot" in summary and summary["hot"]["ratios"]["p99_minus_nginx_ms"] else None
    add("`hot` p99 <= `nginx` p99 + 1 ms", v, v is not None and v <= 1.0,
        f"{v:+.3f} ms" if v is not None else "")
    for s, want in (("invalid", 2.0), ("limited", 2.0), ("spread", 0.7)):
        v = ratio(s)
        add(f"`{s}` throughput >= {want}x `nginx`", v, v is not None and v >= want,
            f"{v:.2f}x" if v else "")
    # A seed table, once its keys are cached, is served as fast as keygate's own (within the
    # noise of one machine: 5 %).
    for preset in presets.PRESETS:
        v = ratio(f"hot-{preset}", "hot")
        add(f"`hot-{preset}` throughput >= 0.95x `hot`", v, v is not None and v >= 0.95,
            f"{v:.2f}x" if v else "")
    v = mem_phase.get("rss_mb") if mem_phase else None
    add("keygate RSS <= 64 MB with 100,000 keys cached", v, v is not None and v <= 64,
        f"{v:.1f} MB with {mem_phase.get('l1_misses', 0):,} keys cached (peak "
        f"{mem_phase.get('hwm_mb', 0):.1f} MB; idle {mem_phase.get('idle_rss_mb', 0):.1f} MB; "
        f"~{mem_phase.get('bytes_per_key', 0):.0f} B/key)" if v else "")
    v = final_mem.get("rss_mb") if final_mem else None
    if v:
        rows.append(("(main keygate after every round, 30 s TTL)",
                     f"{v:.1f} MB (peak {final_mem.get('hwm_mb', 0):.1f} MB)", "–"))
    return rows


def write_report(suite, out_dir, command, started, quiet):
    a = suite.args
    summary = summarize(suite.results, a.scenarios)
    final_mem = getattr(suite, "final_mem", {})
    os.makedirs(out_dir, exist_ok=True)
    md = []
    md.append("# keygate benchmark — latest run\n")
    md.append(f"- date: {started.strftime('%Y-%m-%d %H:%M:%S %Z').strip()} "
              f"(took {(datetime.datetime.now().astimezone() - started).total_seconds():.0f} s)")
    md.append(f"- command: `{command}`")
    md.append(f"- load generator: `{suite.wrk_cmd}` (rotate.lua pre-formats one request per key; "
              f"the same script, header and connections for every scenario)")
    md.append(f"- rounds: {a.rounds} x {a.duration} s per scenario, interleaved (order rotated "
              f"each round), {a.warmup} s warm-up per scenario except `spread`")
    md.append(f"- pinning: wrk on CPU {a.client_cpu}; upstream nginx, nginx proxy "
              f"(`worker_processes 1`), keygate (`threads: 1`), Redis and PostgreSQL all on "
              f"CPU {a.server_cpu}; loopback only")
    md.append(f"- keys: {suite.key_count:,} rows in `api_keys` (generated and COPYed in "
              f"{suite.load_seconds:.0f} s); hot 1,000; spread {a.spread_keys:,}; "
              f"invalid/unknown 1,000 each; limited 1 key at 1/3600s; every other key "
              f"{keygen.HUGE_LIMIT[0]:.0e}/{keygen.HUGE_LIMIT[1]}s")
    md.append(f"- machine: {machine_info()}")
    md.append(f"- quiet check before the run: {quiet * 100:.0f}% idle over 2 s"
              + ("" if quiet >= 0.9 else " — **WARNING: the machine was busy; numbers are noisy**"))
    md.append(f"- keygate: {git_info()}")
    for n in suite.notes:
        md.append(f"- note: {n}")
    md.append("")
    md.append("## Per scenario (median over rounds, min–max in brackets)\n")
    md.append("| scenario | what | expect | req/s | p50 ms | p99 ms | p99.9 ms | non-2xx/3xx | "
              "unexpected | socket errors | server CPU % | redis CPU % | CPU µs/req | RSS MB |")
    md.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for s in a.scenarios:
        if s not in summary:
            continue
        d = summary[s]
        md.append(f"| `{s}` | {SCENARIOS[s][3]} | {SCENARIOS[s][2]} | "
                  f"{fmt_range(d['rps'], '{:.0f}')} | {fmt_range(d['p50_ms'], '{:.3f}')} | "
                  f"{fmt_range(d['p99_ms'], '{:.3f}')} | {fmt_range(d['p999_ms'], '{:.3f}')} | "
                  f"{int(sum(d['non_2xx_3xx']))} | {int(sum(d['unexpected']))} | "
                  f"{int(sum(d['socket_errors']))} | {med(d['cpu_server']):.0f} | "
                  f"{med(d['cpu_redis']):.0f} | {med(d['cpu_us_per_req']):.1f} | "
                  f"{max(d['rss_mb']):.1f} |")
    md.append("")
    md.append("`server CPU` is the process under test (the upstream nginx for `direct`, the nginx "
              "proxy's worker, or keygate) from /proc/PID/stat utime+stime over the run; 100% = "
              "the whole server core. `unexpected`: answers other than the scenario's expected "
              "class (counted by wrk as non-2xx/3xx or not). `CPU µs/req`: CPU time of every "
              "process of the scenario on the server core (proxy, upstream, Redis, PostgreSQL) "
              "per request — unlike req/s, it does not depend on how much of the core other "
              "work on the machine left us. RSS after the run (keygate: VmRSS).")
    md.append("")
    md.append("## Ratios, computed per round (median, min–max)\n")
    md.append("| scenario | req/s vs `nginx` | req/s vs `direct` | p99 minus `nginx` p99 (ms) | "
              "CPU per request, `nginx` / this |")
    md.append("|---|---|---|---|---|")
    for s in a.scenarios:
        if s in summary:
            r = summary[s]["ratios"]
            md.append(f"| `{s}` | {fmt_range(r['nginx'])}x | {fmt_range(r['direct'])}x | "
                      f"{fmt_range(r['p99_minus_nginx_ms'], '{:+.3f}')} | "
                      f"{fmt_range(r['cpu_eff_nginx'])}x |")
    md.append("")
    md.append("The last column is the CPU-normalised throughput ratio: above 1 means the "
              "scenario costs the server core less CPU per request than the nginx proxy path.\n")
    md.append("## Targets (medians of the per-round ratios)\n")
    md.append("| target | measured | met |")
    md.append("|---|---|---|")
    for name, shown, ok in targets_table(summary, final_mem, getattr(suite, "mem_phase", {})):
        md.append(f"| {name} | {shown} | {ok} |")
    md.append("")
    md.append("## keygate key lookups per run (tier:outcome=count, from /metrics)\n")
    for s in a.scenarios:
        if s in summary and any(summary[s]["lookups"]):
            for rnd, l in enumerate(summary[s]["lookups"], 1):
                md.append(f"- `{s}` round {rnd}: {l or '(none)'}")
    md.append("")
    usage_rows = [r for r in suite.results if r["scenario"] == "hot-usage"]
    if usage_rows:
        ev = {}
        for r in usage_rows:
            for k, v in r.get("metrics", {}).items():
                m = re.match(r'keygate_usage_events_total\{outcome="([^"]+)"\}', k)
                if m:
                    ev[m.group(1)] = ev.get(m.group(1), 0) + v
        reqs = sum(r["requests"] for r in usage_rows)
        shown = ", ".join(f"{k} {int(v):,}" for k, v in sorted(ev.items())) or "none"
        md.append(f"Usage log (`hot-usage`, {reqs:,} requests over its runs): usage events {shown} "
                  f"(keygate /metrics; the writer's COPY into PostgreSQL runs on the server core "
                  f"too, see the postgres CPU column below)."
                  + ("" if ev else " **No event was recorded: `hot-usage` measured nothing "
                                   "different from `hot`.**"))
        md.append("")
    md.append("## Every run\n")
    md.append("`core busy` is the whole server core from /proc/stat; `irq` its interrupt and "
              "softirq time (loopback networking); `others` what remains after irq and the "
              "processes started by the benchmark: other work on the machine competing for the "
              "core.\n")
    md.append("| round | scenario | req/s | p50 ms | p99 ms | p99.9 ms | max ms | non-2xx/3xx | "
              "socket errors | server / upstream / redis / postgres CPU % | core busy / irq / others % |")
    md.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in suite.results:
        c = r["cpu_pct"]
        md.append(f"| {r['round']} | `{r['scenario']}` | {r['rps']:.0f} | {r['p50_ms']:.3f} | "
                  f"{r['p99_ms']:.3f} | {r['p999_ms']:.3f} | {r['max_ms']:.1f} | "
                  f"{r['non_2xx_3xx']} | {r['socket_errors']} | {c['server']:.0f} / "
                  f"{c['upstream']:.0f} / {c['redis']:.0f} / {c['postgres']:.0f} | "
                  f"{r['server_core_busy_pct']:.0f} / {r['server_core_irq_pct']:.0f} / "
                  f"{r['others_on_server_core_pct']:.0f} |")
    md.append("")
    md.append("![throughput and latency](latest.png)")
    md.append("")
    with open(os.path.join(out_dir, "latest.md"), "w") as f:
        f.write("\n".join(md))
    with open(os.path.join(out_dir, "latest.json"), "w") as f:
        json.dump({"command": command, "date": started.isoformat(), "args": vars(a),
                   "results": [{k: v for k, v in r.items()} for r in suite.results],
                   "final_keygate_memory": final_mem,
                   "memory_phase": getattr(suite, "mem_phase", {})}, f, indent=1, default=str)
    plot(summary, a.scenarios, out_dir, suite)


def scenario_color(s):
    return {"direct": 0x999999, "nginx": 0x009E73}.get(s, 0x0072B2)


def plot(summary, scenarios, out_dir, suite):
    names = [s for s in scenarios if s in summary]
    data = os.path.join(out_dir, "latest.dat")
    with open(data, "w") as f:
        f.write("# idx scenario rps_median rps_min rps_max color p50_ms p99_ms p999_ms cpu_us\n")
        for i, s in enumerate(names):
            d = summary[s]
            f.write(f"{i} {s} {med(d['rps']):.1f} {min(d['rps']):.1f} {max(d['rps']):.1f} "
                    f"{scenario_color(s)} {med(d['p50_ms']):.4f} {med(d['p99_ms']):.4f} "
                    f"{med(d['p999_ms']):.4f} {med(d['cpu_us_per_req']):.2f}\n")
    a = suite.args
    title = (f"keygate (blue) vs nginx proxy (green) vs direct upstream (grey) — wrk -t{a.wrk_threads} -c{a.connections}, "
             f"{a.rounds} x {a.duration} s, 1 server core")
    script = f"""
set datafile commentschars "#"
set multiplot layout 3,1 title "{title}"
set style fill solid 0.85 border -1
set boxwidth 0.6
set grid ytics
set xrange [-0.6:{len(names) - 0.4}]
set ylabel "requests/s (median, min-max)"
set yrange [0:*]
set key off
plot "{data}" using 1:3:6:xtic(2) with boxes lc rgb variable, \\
     "" using 1:3:4:5 with yerrorbars lc rgb "black" pt 0, \\
     "" using 1:5:(sprintf("%.0f", $3)) with labels offset 0,0.8 font ",9"
set ylabel "latency, ms (median over rounds, log scale)"
set logscale y
set yrange [0.05:*]
set style data histograms
set style histogram clustered gap 1
set boxwidth 0.9
set key top left
plot "{data}" using 7:xtic(2) title "p50" lc rgb "#56B4E9", \\
     "" using 8 title "p99" lc rgb "#E69F00", \\
     "" using 9 title "p99.9" lc rgb "#D55E00"
unset logscale y
unset style data
set style histogram clustered
set boxwidth 0.6
set yrange [0:*]
set key off
set ylabel "server-core CPU µs per request (all processes)"
plot "{data}" using 1:10:6:xtic(2) with boxes lc rgb variable, \\
     "" using 1:10:(sprintf("%.1f", $10)) with labels offset 0,0.8 font ",9"
unset multiplot
"""
    for term, ext in (("pngcairo size 1200,1200 font ',10'", "png"),
                      ("svg size 1200,1200 dynamic font 'sans,10'", "svg")):
        gp = os.path.join(suite.workdir, f"plot-{ext}.gp")
        with open(gp, "w") as f:
            f.write(f"set terminal {term}\nset output '{os.path.join(out_dir, 'latest.' + ext)}'\n")
            f.write(script)
        r = subprocess.run(["gnuplot", gp], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if r.returncode != 0:
            log(f"gnuplot ({ext}) failed: {r.stdout.decode()[-500:]}")


def replot(out_dir, workdir):
    """Redraws latest.png/svg from latest.json (after a change to the plot only)."""
    with open(os.path.join(out_dir, "latest.json")) as f:
        saved = json.load(f)
    args = argparse.Namespace(**saved["args"])
    summary = summarize(saved["results"], args.scenarios)
    plot(summary, args.scenarios, out_dir, argparse.Namespace(args=args, workdir=workdir))


def machine_info():
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) // 1024
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])

    def ver(cmd):
        try:
            r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=5)
            return r.stdout.decode().strip().splitlines()[0]
        except Exception:
            return "?"
    return (f"{os.cpu_count()} CPUs ({model}), {mem} MB RAM, Linux {platform.release()}, "
            f"load average {load}; {ver(['nginx', '-v'])}; {ver(['wrk', '-v'])}; "
            f"{ver(['redis-server', '--version'])}; {ver([stores.PG_BIN_CANDIDATES[0] + '/postgres', '--version'])}")


def git_info():
    try:
        rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             timeout=5).stdout.decode().strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               timeout=10).stdout.decode().strip()
        return f"commit {rev}" + (" with uncommitted changes in the work tree" if dirty else "")
    except Exception:
        return "?"


# ---- main ---------------------------------------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--keygate", required=True, help="the keygate binary")
    p.add_argument("--workdir", required=True)
    p.add_argument("--out", default=os.path.join(BENCH, "results"))
    p.add_argument("--command", default="bench/run")
    p.add_argument("--quick", action="store_true", help="about 60 s: 1 round of 4 s, fewer keys")
    p.add_argument("--rounds", type=int)
    p.add_argument("--duration", type=int, help="seconds per run")
    p.add_argument("--warmup", type=int)
    p.add_argument("--keys", type=int, help="rows in api_keys (default 1,000,000)")
    p.add_argument("--spread-keys", type=int)
    p.add_argument("--connections", type=int, default=50)
    p.add_argument("--wrk-threads", type=int, default=1)
    p.add_argument("--scenarios", default=",".join(SCENARIOS),
                   help="comma-separated subset of: " + ", ".join(SCENARIOS))
    p.add_argument("--client-cpu", type=int, default=0)
    p.add_argument("--server-cpu", type=int, default=1)
    p.add_argument("--memory-seconds", type=int,
                   help="bound of the memory phase (every spread key once through a fresh "
                        "keygate; 0: skip)")
    p.add_argument("--hold", type=int, default=0,
                   help="after setup, keep everything running this many seconds (for profiling) "
                        "and print the ports, instead of running the rounds")
    a = p.parse_args(argv)
    quick = a.quick
    a.rounds = a.rounds or (1 if quick else 3)
    a.duration = a.duration or (4 if quick else 10)
    a.warmup = a.warmup if a.warmup is not None else (1 if quick else 2)
    a.keys = a.keys or (150_000 if quick else 1_000_000)
    a.spread_keys = a.spread_keys or (100_000)
    a.memory_seconds = (a.memory_seconds if a.memory_seconds is not None
                        else (20 if quick else 60))
    a.scenarios = [s.strip() for s in a.scenarios.split(",") if s.strip()]
    for s in a.scenarios:
        if s not in SCENARIOS:
            p.error(f"unknown scenario {s!r}")
    for must in ("nginx", "direct"):
        if must not in a.scenarios:
            a.scenarios.insert(0, must)  # the references every ratio needs
    if a.duration > 60 or a.rounds > 10:
        p.error("--duration is at most 60 s and --rounds at most 10 (bounded runs)")
    return a


def main(argv):
    if argv[:1] == ["--replot"]:
        import tempfile
        with tempfile.TemporaryDirectory() as d:
            replot(argv[1] if len(argv) > 1 else os.path.join(BENCH, "results"), d)
        return 0
    a = parse_args(argv)
    started = datetime.datetime.now().astimezone()
    ncpu = os.cpu_count() or 1
    if ncpu < 2:
        log("WARNING: one CPU only: wrk and the servers share it")
        a.client_cpu = a.server_cpu = 0
    os.sched_setaffinity(0, {a.client_cpu})
    idle = machine_idle(2.0)
    if idle < 0.9:
        log(f"WARNING: the machine is not quiet ({idle * 100:.0f}% idle over 2 s): other work "
            f"competes for the cores and the numbers will be noisy")
    else:
        log(f"machine quiet: {idle * 100:.0f}% idle over 2 s")
    suite = Suite(a)
    stop_requested = []

    def on_signal(signum, frame):
        stop_requested.append(signum)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        suite.start_stores()
        suite.migrate_and_load()
        suite.start_servers()
        suite.sanity_check()
        if a.hold:
            info = {name: {"port": t.port, "pids": t.pids()} for name, t in suite.targets.items()}
            info["key_files"] = suite.key_files
            with open(os.path.join(a.workdir, "hold.json"), "w") as f:
                json.dump(info, f, indent=1)
            log(f"holding for {a.hold} s: {os.path.join(a.workdir, 'hold.json')}")
            time.sleep(a.hold)
            return 0
        suite.run()
        write_report(suite, a.out, a.command, started, idle)
        log(f"wrote {a.out}/latest.md, latest.json, latest.png, latest.svg")
        print(open(os.path.join(a.out, "latest.md")).read().split("## keygate key lookups")[0])
        return 0
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        log("stopping everything started")
        suite.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
