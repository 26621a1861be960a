#!/usr/bin/env python3
"""Throwaway PostgreSQL and Redis on free loopback ports, for tests, the demo and the benchmark.

As a program:
    stores.py start DIR   start both under DIR, print shell `export` lines for their addresses
    stores.py stop DIR    stop whatever was started under DIR (by the PIDs it recorded)
As a module (tests/e2e): Postgres(dir).start()/stop()/restart(), Redis(dir).start()/stop().
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


def main(argv):
    if len(argv) != 3 or argv[1] not in ("start", "stop"):
        print("usage: stores.py start|stop DIR", file=sys.stderr)
        return 2
    base = os.path.abspath(argv[2])
    os.makedirs(base, exist_ok=True)
    if argv[1] == "start":
        pg = Postgres(base).start()
        redis = Redis(base).start()
        with open(os.path.join(base, "ports"), "w") as f:
            f.write(f"{pg.port} {redis.port}\n")
        print(f"export KEYGATE_TEST_PG_DSN={pg.dsn()}")
        print(f"export KEYGATE_TEST_REDIS_URL={redis.url()}")
        print(f"export KEYGATE_TEST_PG_PORT={pg.port}")
        print(f"export KEYGATE_TEST_REDIS_PORT={redis.port}")
        return 0
    Postgres(base, port=1).stop()
    Redis(base, port=1).stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
