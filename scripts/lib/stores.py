#!/usr/bin/env python3
"""Throwaway PostgreSQL, Redis and a Redis Cluster on free loopback ports, for tests, the demo
and the benchmark.

As a program:
    stores.py start DIR   start them under DIR, print shell `export` lines for their addresses
    stores.py stop DIR    stop whatever was started under DIR (by the PIDs it recorded)
As a module (tests/e2e): Postgres(dir).start()/stop()/restart(), Redis(dir).start()/stop(),
RedisCluster(dir).start()/stop()/kill(port).
Every server is stopped by PID; nothing is left running when a test fails.
"""
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time

PG_BIN_CANDIDATES = sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_free(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_cluster_port(taken=()):
    """A free port for a cluster node: its bus port (port + 10000) must be free too, and so at
    most 65535."""
    for _ in range(1000):
        port = free_port()
        if port <= 55535 and port not in taken and port + 10000 not in taken and _port_free(port + 10000):
            return port
    raise RuntimeError("no free port pair (port, port + 10000) for a Redis Cluster node")


def wait_for_port(port, timeout=20.0, host="127.0.0.1"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def stop_pid(pid, sig=signal.SIGTERM, timeout=15.0):
    """Signal pid and wait for it to go; SIGKILL after timeout."""
    if not pid or not _pid_alive(pid):
        return
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done == pid:
                return
        except ChildProcessError:
            pass
        if not _pid_alive(pid):
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class Postgres:
    """initdb into DIR/pg, listen on 127.0.0.1:port only, trust auth, database `keygate`."""

    def __init__(self, base_dir, port=None):
        self.dir = os.path.join(base_dir, "pg")
        self.data = os.path.join(self.dir, "data")
        self.sock = os.path.join(self.dir, "sock")
        self.port = port or free_port()
        self.bin = PG_BIN_CANDIDATES[0] if PG_BIN_CANDIDATES else None
        if not self.bin:
            raise RuntimeError("PostgreSQL server binaries not found under /usr/lib/postgresql")
        self.as_postgres = os.geteuid() == 0  # initdb refuses root

    def dsn(self, database="keygate"):
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, args, **kw):
        if self.as_postgres:
            args = ["runuser", "-u", "postgres", "--"] + args
        return subprocess.run(args, check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)

    def _chown(self, path):
        if self.as_postgres:
            pw = pwd.getpwnam("postgres")
            os.chown(path, pw.pw_uid, pw.pw_gid)

    def start(self):
        first = not os.path.exists(os.path.join(self.data, "PG_VERSION"))
        for d in (self.dir, self.sock):
            os.makedirs(d, exist_ok=True)
            os.chmod(d, 0o755)
            self._chown(d)
        # The folders above DIR must be searchable by the postgres user.
        os.chmod(os.path.dirname(self.dir), os.stat(os.path.dirname(self.dir)).st_mode | 0o755)
        if first:
            self._run([f"{self.bin}/initdb", "-D", self.data, "-A", "trust", "-U", "postgres",
                       "--no-sync", "-E", "UTF8", "--locale=C"])
        opts = (f"-p {self.port} -k {self.sock} -c listen_addresses=127.0.0.1 -c fsync=off "
                f"-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        self._run([f"{self.bin}/pg_ctl", "-D", self.data, "-o", opts, "-l",
                   os.path.join(self.dir, "server.log"), "-w", "-t", "60", "start"])
        if first:
            self._run([f"{self.bin}/psql" if os.path.exists(f"{self.bin}/psql") else "psql",
                       "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", "postgres",
                       "-v", "ON_ERROR_STOP=1", "-qc", "CREATE DATABASE keygate"])
        return self

    def pid(self):
        try:
            with open(os.path.join(self.data, "postmaster.pid")) as f:
                return int(f.readline().strip())
        except (OSError, ValueError):
            return None

    def stop(self):
        stop_pid(self.pid(), signal.SIGINT)  # SIGINT: PostgreSQL's fast shutdown

    def kill(self):
        stop_pid(self.pid(), signal.SIGKILL)

    def restart(self):
        self.stop()
        return self.start()


class Redis:
    def __init__(self, base_dir, port=None):
        self.dir = os.path.join(base_dir, "redis")
        self.port = port or free_port()
        self.proc = None
        self.pid_file = os.path.join(self.dir, "redis.pid")

    def url(self):
        return f"redis://127.0.0.1:{self.port}"

    def start(self):
        os.makedirs(self.dir, exist_ok=True)
        with open(os.path.join(self.dir, "server.log"), "ab") as log:
            self.proc = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", self.dir, "--daemonize", "no"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        with open(self.pid_file, "w") as f:
            f.write(str(self.proc.pid))
        if not wait_for_port(self.port):
            raise RuntimeError(f"redis-server did not start on port {self.port}")
        return self

    def pid(self):
        if self.proc:
            return self.proc.pid
        try:
            with open(self.pid_file) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def stop(self):
        stop_pid(self.pid())
        self.proc = None

    def restart(self):
        self.stop()
        return self.start()


class RedisCluster:
    """A Redis Cluster of `masters` masters with one replica each, on free 127.0.0.1 ports
    under DIR/redis-cluster: redis-server --cluster-enabled per node, `redis-cli --cluster
    create`, then a wait until every node says cluster_state:ok and every replica has synced.
    Each node is stopped by the PID it recorded, also when start() fails half-way."""

    def __init__(self, base_dir, masters=3, node_timeout_ms=2000, name="redis-cluster"):
        self.dir = os.path.join(base_dir, name)
        self.masters = masters
        self.node_timeout_ms = node_timeout_ms
        self.ports = []
        self.procs = {}  # port -> Popen (when started by this object)

    def seeds(self):
        return [f"127.0.0.1:{p}" for p in self.ports]

    def _pid_file(self, port):
        return os.path.join(self.dir, f"redis-{port}.pid")

    def start_node(self, port):
        log = open(os.path.join(self.dir, f"server-{port}.log"), "ab")
        proc = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
             "--cluster-config-file", os.path.join(self.dir, f"nodes-{port}.conf"),
             "--cluster-node-timeout", str(self.node_timeout_ms), "--save", "", "--appendonly", "no",
             "--repl-diskless-sync-delay", "0",  # replicas sync at once (default: 5 s later)
             "--dir", self.dir, "--daemonize", "no"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        self.procs[port] = proc
        with open(self._pid_file(port), "w") as f:
            f.write(str(proc.pid))
        if not wait_for_port(port, timeout=10.0):
            raise RuntimeError(f"redis-server (cluster node) did not start on port {port}")

    def start(self, timeout=30.0):
        os.makedirs(self.dir, exist_ok=True)
        self.ports = []
        for _ in range(self.masters * 2):
            self.ports.append(free_cluster_port(set(self.ports) | {p + 10000 for p in self.ports}))
        try:
            for port in self.ports:
                self.start_node(port)
            subprocess.run(["redis-cli", "--cluster", "create", *self.seeds(), "--cluster-replicas", "1",
                            "--cluster-yes"], check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           stdin=subprocess.DEVNULL, timeout=timeout)
            if not self.wait_healthy(timeout):
                raise RuntimeError(f"Redis Cluster on {self.ports} not healthy within {timeout}s")
        except Exception:
            self.stop()
            raise
        return self

    def cli(self, port, *args, timeout=10.0):
        r = subprocess.run(["redis-cli", "-p", str(port), *map(str, args)], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL, timeout=timeout)
        return r.stdout.strip()

    def nodes(self, port=None):
        """CLUSTER NODES as seen from `port`: [{id, port, flags, master_id, slots}]."""
        out = []
        for line in self.cli(port or self.ports[0], "CLUSTER", "NODES").splitlines():
            parts = line.split()
            if len(parts) < 8:
                continue
            out.append({"id": parts[0], "port": int(parts[1].split("@")[0].rsplit(":", 1)[1]),
                        "flags": parts[2].split(","), "master_id": parts[3], "slots": parts[8:]})
        return out

    def wait_healthy(self, timeout=30.0):
        """Every node running says cluster_state:ok, and every master has a synced replica."""
        def healthy():
            running = [p for p in self.ports if self.running(p)]
            for p in running:
                if "cluster_state:ok" not in self.cli(p, "CLUSTER", "INFO"):
                    return False
            nodes = self.nodes(running[0])
            masters = [n for n in nodes if "master" in n["flags"] and "fail" not in n["flags"] and n["slots"]]
            for m in masters:
                replicas = [n for n in nodes if n["master_id"] == m["id"] and "fail" not in n["flags"]]
                if not any("master_link_status:up" in self.cli(r["port"], "INFO", "replication")
                           for r in replicas):
                    return False
            return len(masters) == self.masters
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if healthy():
                return True
            time.sleep(0.1)
        return False

    def running(self, port):
        proc = self.procs.get(port)
        if proc is not None:
            return proc.poll() is None
        pid = self.pid(port)
        return pid is not None and _pid_alive(pid)

    def pid(self, port):
        if port in self.procs:
            return self.procs[port].pid
        try:
            with open(self._pid_file(port)) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def kill(self, port):
        """SIGKILL one node (a crash, to the others and to clients)."""
        stop_pid(self.pid(port), signal.SIGKILL)
        proc = self.procs.pop(port, None)
        if proc:
            proc.wait(timeout=10)
        try:
            os.remove(self._pid_file(port))
        except OSError:
            pass

    def stop(self):
        ports = set(self.ports) | set(self.procs)
        if os.path.isdir(self.dir):  # also what another process started (stores.py stop)
            for name in os.listdir(self.dir):
                if name.startswith("redis-") and name.endswith(".pid"):
                    ports.add(int(name[len("redis-"):-len(".pid")]))
        for port in ports:
            stop_pid(self.pid(port))
            self.procs.pop(port, None)
            try:
                os.remove(self._pid_file(port))
            except OSError:
                pass


def main(argv):
    if len(argv) != 3 or argv[1] not in ("start", "stop"):
        print("usage: stores.py start|stop DIR", file=sys.stderr)
        return 2
    base = os.path.abspath(argv[2])
    os.makedirs(base, exist_ok=True)
    if argv[1] == "start":
        pg = Postgres(base).start()
        redis = Redis(base).start()
        cluster = RedisCluster(base).start()
        with open(os.path.join(base, "ports"), "w") as f:
            f.write(f"{pg.port} {redis.port}\n")
        print(f"export KEYGATE_TEST_PG_DSN={pg.dsn()}")
        print(f"export KEYGATE_TEST_REDIS_URL={redis.url()}")
        print(f"export KEYGATE_TEST_REDIS_CLUSTER={','.join(cluster.seeds())}")
        print(f"export KEYGATE_TEST_PG_PORT={pg.port}")
        print(f"export KEYGATE_TEST_REDIS_PORT={redis.port}")
        return 0
    Postgres(base, port=1).stop()
    Redis(base, port=1).stop()
    RedisCluster(base).stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
