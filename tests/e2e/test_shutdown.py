"""SIGTERM while requests wait on a slow PostgreSQL: keygate exits 0 within shutdown_timeout
(plus a margin), every client gets an answer or a closed connection (never a hang), the
requests cut at the deadline are counted in the log, and (under ./scripts/test --sanitize) no
sanitizer report: the suspended requests are destroyed before the stores they wait on.

PostgreSQL is made slow for real: a psql session holds LOCK TABLE api_keys IN ACCESS EXCLUSIVE
MODE in an open transaction, so keygate's SELECT by hash waits inside PostgreSQL (seen in
pg_stat_activity). The keys are fresh (well-formed, never stored), so neither L1 nor Redis
knows them and every lookup goes to PostgreSQL."""
import http.client
import json
import secrets
import signal
import socket
import subprocess
import threading
import time
import unittest

import harness

THREADS = 2
POOL_SIZE = 4          # the process' PostgreSQL connections: this many SELECTs wait on the lock
REQUESTS = 30          # the rest wait in keygate for a pool connection
SHUTDOWN_TIMEOUT_S = 2
# Exit after the deadline: the stores' last flush (at most 1 s) and the process teardown
# (slower under ASan, which also checks for leaks at exit).
EXIT_MARGIN_S = 6
CLIENT_TIMEOUT_S = 30  # far past the deadline: a client still waiting then was left hanging


unknown_key = harness.unknown_key


class TableLock:
    """A psql session (its own process) holding an ACCESS EXCLUSIVE lock on api_keys in an open
    transaction, until release()."""

    def __init__(self, dsn):
        self.proc = subprocess.Popen(["psql", "-d", dsn, "-qAtX", "-v", "ON_ERROR_STOP=1"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, env=harness.clean_env())
        self.proc.stdin.write("BEGIN;\nLOCK TABLE api_keys IN ACCESS EXCLUSIVE MODE;\n"
                              "SELECT 'locked';\n")
        self.proc.stdin.flush()
        answer = [None]
        reader = threading.Thread(target=lambda: answer.__setitem__(0, self.proc.stdout.readline()),
                                  daemon=True)
        reader.start()
        reader.join(15)
        if (answer[0] or "").strip() != "locked":
            self.release()
            raise RuntimeError(f"psql did not take the lock: {answer[0]!r}")

    def release(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("ROLLBACK;\n\\q\n")
                self.proc.stdin.flush()
            except OSError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass


class Client(threading.Thread):
    """One request on its own connection; `outcome` is ("answer", status, connection header),
    ("closed", exception name) or ("hang", ...) when nothing came within CLIENT_TIMEOUT_S;
    `ended` is when it came (time.monotonic())."""

    def __init__(self, port, key):
        super().__init__(daemon=True)
        self.port, self.key = port, key
        self.outcome = None
        self.ended = None

    def run(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=CLIENT_TIMEOUT_S)
        try:
            conn.request("GET", "/things/1", headers=harness.bearer(self.key))
            r = conn.getresponse()
            r.read()
            self.outcome = ("answer", r.status, (r.getheader("Connection") or "").lower())
        except TimeoutError as e:
            self.outcome = ("hang", f"{type(e).__name__}: {e}")
        except (http.client.RemoteDisconnected, http.client.IncompleteRead, ConnectionError) as e:
            self.outcome = ("closed", type(e).__name__)
        except Exception as e:  # anything else is asserted on (as unexpected) by the test
            self.outcome = ("error", f"{type(e).__name__}: {e}")
        finally:
            self.ended = time.monotonic()
            conn.close()


def log_lines(kg):
    return [json.loads(line) for line in kg.log_text().splitlines() if line.startswith("{")]


class ShutdownWithSlowPostgresTest(harness.KeygateTestCase):

    def start(self, shutdown_timeout_s):
        return self.start_keygate_for_test(
            threads=THREADS, shutdown_timeout=f"{shutdown_timeout_s}s",
            postgres={"pool_size": POOL_SIZE, "query_timeout": "60s"})

    def lock_api_keys(self):
        lock = TableLock(self.dsn)
        self.addCleanup(lock.release)
        return lock

    def waiting_in_postgres(self):
        return int(self.sql(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND wait_event_type = 'Lock' "
            "AND query LIKE '%FROM api_keys WHERE key_hash%'"))

    def send_requests_that_wait(self, kg):
        """REQUESTS clients, each with its own unknown key, all inside keygate's lookup: past
        Redis (a miss each) and either in a SELECT waiting on the lock or queued for one of
        the pool's connections."""
        clients = [Client(kg.port, unknown_key()) for _ in range(REQUESTS)]
        for c in clients:
            c.start()

        def all_waiting():
            misses = harness.metric_value(kg.metrics(), "keygate_key_lookups_total",
                                          tier="redis", outcome="miss")
            return misses == REQUESTS and self.waiting_in_postgres() == POOL_SIZE

        waiting, _ = harness.poll_until(all_waiting, timeout=30)
        self.assertTrue(waiting, f"the requests did not all wait on PostgreSQL: "
                                 f"{self.waiting_in_postgres()} SELECTs waiting\n{kg.log_tail()}")
        return clients

    def sigterm(self, kg):
        started = time.monotonic()
        kg.proc.send_signal(signal.SIGTERM)
        return started

    def wait_exit(self, kg, started, limit_s):
        try:
            code = kg.proc.wait(timeout=limit_s)
        except subprocess.TimeoutExpired:
            self.fail(f"keygate still running {limit_s}s after SIGTERM\n{kg.log_tail()}")
        return code, time.monotonic() - started, time.monotonic()

    def test_sigterm_cuts_requests_waiting_on_a_locked_table_and_exits_0(self):
        kg = self.start(SHUTDOWN_TIMEOUT_S)
        self.lock_api_keys()
        clients = self.send_requests_that_wait(kg)

        started = self.sigterm(kg)
        code, elapsed, exited = self.wait_exit(kg, started, SHUTDOWN_TIMEOUT_S + EXIT_MARGIN_S)
        kg.check_sanitizers()
        log = kg.log_tail(80)
        self.assertEqual(code, 0, log)
        # It waited for the requests (the whole shutdown_timeout), then cut them.
        self.assertGreaterEqual(elapsed, SHUTDOWN_TIMEOUT_S - 0.2, log)

        for c in clients:
            c.join(5)
        outcomes = [c.outcome for c in clients]
        # Nothing could be answered: every lookup was still waiting on PostgreSQL. Each client
        # found its connection closed (no response) by the time keygate had exited.
        self.assertEqual([o[0] for o in outcomes], ["closed"] * REQUESTS, outcomes)
        late = [c.ended - exited for c in clients if c.ended > exited + 1.0]
        self.assertEqual(late, [], "clients still waiting after keygate exited")

        cut = [line for line in log_lines(kg) if line.get("msg", "").startswith("shutdown_timeout")]
        self.assertEqual(len(cut), 1, log)
        self.assertEqual(cut[0].get("requests"), REQUESTS, log)
        self.assertEqual(log_lines(kg)[-1].get("msg"), "keygate stopped", log)

    def test_sigterm_answers_requests_whose_lookup_ends_before_the_deadline(self):
        timeout_s = 20  # far more than the lookups need once the lock is gone
        kg = self.start(timeout_s)
        lock = self.lock_api_keys()
        clients = self.send_requests_that_wait(kg)

        started = self.sigterm(kg)

        def listener_closed():
            try:
                with socket.create_connection(("127.0.0.1", kg.port), timeout=0.5):
                    return False
            except OSError:
                return True

        closed, _ = harness.poll_until(listener_closed, timeout=10)
        self.assertTrue(closed, "the listener did not close on SIGTERM")
        lock.release()  # PostgreSQL answers again, within the drain

        code, elapsed, _ = self.wait_exit(kg, started, timeout_s)
        kg.check_sanitizers()
        log = kg.log_tail(80)
        self.assertEqual(code, 0, log)
        self.assertLess(elapsed, timeout_s, log)
        for c in clients:
            c.join(5)
        # Unknown keys: each request got its answer (401), told the connection closes.
        self.assertEqual([c.outcome for c in clients], [("answer", 401, "close")] * REQUESTS)
        self.assertFalse([line for line in log_lines(kg)
                          if line.get("msg", "").startswith("shutdown_timeout")], log)


if __name__ == "__main__":
    unittest.main()
