"""Graceful operations (issue #7): SIGHUP reloads the routes under load without failing a
request, rejects an invalid file (the running configuration is kept) and names the options that
need a restart; SIGTERM under load finishes every accepted request and exits 0."""
import json
import signal
import threading
import time
import unittest

import harness

THINGS_NEED_A = [{"path": "/things/*", "scopes": ["a"]}] + harness.DEFAULT_ROUTES
THINGS_NEED_Z = [{"path": "/things/*", "scopes": ["z"]}] + harness.DEFAULT_ROUTES


def rewrite_config(kg, **changes):
    kg.config = harness.deep_merge(kg.config, changes)
    with open(kg.config_path, "w") as f:
        f.write(harness.to_yaml(kg.config) + "\n")


def log_lines(kg):
    """keygate's JSON log lines (its stderr), parsed."""
    with open(kg.log_path, "rb") as f:
        text = f.read().decode(errors="replace")
    lines = []
    for line in text.splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


class LoadThread(threading.Thread):
    """One keep-alive connection sending `path` until stopped, or until keygate says
    Connection: close (stop_on_close). Records (start, end, status) and any failure."""

    def __init__(self, port, path, key, stop, stop_on_close=False, limit_s=15.0):
        super().__init__(daemon=True)
        self.port, self.path, self.key, self.stop = port, path, key, stop
        self.stop_on_close = stop_on_close
        self.limit_s = limit_s
        self.results = []
        self.failures = []
        self.closed_by_keygate = False

    def run(self):
        client = harness.Client(self.port, timeout=10.0)
        deadline = time.monotonic() + self.limit_s
        try:
            while not self.stop.is_set() and time.monotonic() < deadline:
                started = time.monotonic()
                try:
                    r = client.request("GET", self.path, headers=harness.bearer(self.key))
                except Exception as e:  # a failed request: reset, cut response, timeout...
                    self.failures.append(f"{type(e).__name__}: {e}")
                    return
                self.results.append((started, time.monotonic(), r.status))
                if (r.header("Connection") or "").lower() == "close":
                    self.closed_by_keygate = True
                    if self.stop_on_close:
                        return
                    client.close()
                    client = harness.Client(self.port, timeout=10.0)
        finally:
            client.close()


class ReloadTest(harness.KeygateTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.key = cls.create_key(scopes=["a"])

    def reloads(self, kg, outcome):
        return harness.metric_value(kg.metrics(), "keygate_config_reloads_total", outcome=outcome)

    def rejected_reload(self, kg):
        """SIGHUP, which must be rejected: returns its one error log line."""
        kg.proc.send_signal(signal.SIGHUP)
        rejected, _ = harness.poll_until(lambda: self.reloads(kg, "rejected") == 1, 5.0)
        self.assertTrue(rejected, kg.log_tail())
        self.assertEqual(self.reloads(kg, "applied"), 0)
        errors = [line for line in log_lines(kg) if line.get("msg", "").startswith("reload rejected")]
        self.assertEqual(len(errors), 1, kg.log_tail())
        self.assertEqual(errors[0]["level"], "error")
        return errors[0]

    def test_sighup_during_load_applies_new_routes_with_no_failed_request(self):
        kg = self.start_keygate_for_test(routes=THINGS_NEED_A)
        self.assertStatus(kg.get("/things/1", key=self.key["key"]), 200, kg)
        stop = threading.Event()
        threads = [LoadThread(kg.port, f"/things/{i}", self.key["key"], stop) for i in range(6)]
        for t in threads:
            t.start()
        try:
            time.sleep(0.5)
            rewrite_config(kg, routes=THINGS_NEED_Z)
            kg.proc.send_signal(signal.SIGHUP)
            applied, _ = harness.poll_until(
                lambda: kg.get("/things/probe", key=self.key["key"]).status == 403, 5.0)
            self.assertTrue(applied, f"the new route rules did not apply\n{kg.log_tail()}")
            time.sleep(0.5)  # load goes on under the new rules
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=15)
        failures = [f for t in threads for f in t.failures]
        self.assertEqual(failures, [], kg.log_tail())
        for t in threads:
            statuses = [s for _, _, s in t.results]
            self.assertTrue(statuses, "a load thread sent nothing")
            self.assertLessEqual(set(statuses), {200, 403}, kg.log_tail())
            self.assertIn(200, statuses)  # before the reload
            self.assertEqual(statuses[-1], 403)  # after it
            first_403 = statuses.index(403)
            self.assertNotIn(200, statuses[first_403:], "old rules came back on a connection")
            self.assertFalse(t.closed_by_keygate, "a reload must not close connections")
        self.assertEqual(self.reloads(kg, "applied"), 1)
        reloaded = [line for line in log_lines(kg) if line.get("msg") == "configuration reloaded"]
        self.assertEqual(len(reloaded), 1, kg.log_tail())
        r = kg.get("/things/x", key=self.key["key"])
        self.assertError(r, 403, "insufficient_scope", kg)

    def test_an_invalid_file_is_rejected_logged_and_the_running_config_kept(self):
        kg = self.start_keygate_for_test(routes=THINGS_NEED_A)
        good = dict(kg.config)
        with open(kg.config_path, "w") as f:
            f.write(harness.to_yaml(harness.deep_merge(
                good, {"routes": [{"path": "/things/*", "scopez": ["z"]}]})) + "\n")
        error = self.rejected_reload(kg)["error"]
        self.assertIn("scopez: unknown option", error)
        self.assertIn(kg.config_path + ":", error)  # file:line: option: problem
        self.assertStatus(kg.get("/things/1", key=self.key["key"]), 200, kg)  # old rules
        self.assertTrue(kg.alive())

    def test_a_changed_pepper_is_refused_and_the_old_keys_keep_working(self):
        kg = self.start_keygate_for_test(routes=THINGS_NEED_A)
        new_pepper = "e2e-" + "new-pepper-" + "0123456789"
        # The new routes in the same file must not be applied either: all or nothing.
        rewrite_config(kg, keys={"pepper": new_pepper}, routes=THINGS_NEED_Z)
        error = self.rejected_reload(kg)["error"]
        self.assertIn(kg.config_path + ": keys.pepper: ", error)
        self.assertIn("restart keygate", error)
        with open(kg.log_path, "rb") as f:
            self.assertNotIn(new_pepper.encode(), f.read(), "the pepper must never be logged")
        # The key made with the running (empty) pepper passes, under the old routes.
        self.assertStatus(kg.get("/things/1", key=self.key["key"]), 200, kg)
        self.assertTrue(kg.alive())

    def test_options_that_need_a_restart_are_named_and_kept(self):
        kg = self.start_keygate_for_test(routes=THINGS_NEED_A)
        old_port = kg.port
        rewrite_config(kg, listen=f"127.0.0.1:{harness.free_port()}", threads=1,
                       routes=THINGS_NEED_Z)
        kg.proc.send_signal(signal.SIGHUP)
        applied, _ = harness.poll_until(lambda: self.reloads(kg, "applied") == 1, 5.0)
        self.assertTrue(applied, kg.log_tail())
        warnings = [line for line in log_lines(kg) if line.get("level") == "warn"]
        self.assertEqual(len(warnings), 1, kg.log_tail())
        self.assertIn("restart", warnings[0]["msg"])
        self.assertEqual(warnings[0]["options"], "listen, threads")
        # Still on the old address; the routes did change.
        r = harness.request(old_port, "GET", "/things/1", headers=harness.bearer(self.key["key"]))
        self.assertError(r, 403, "insufficient_scope", kg)


class DrainTest(harness.KeygateTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.key = cls.create_key(scopes=["a"])

    def test_sigterm_during_load_finishes_every_accepted_request_and_exits_0(self):
        kg = self.start_keygate_for_test(shutdown_timeout="10s")
        stop = threading.Event()
        # Half the connections have a slow request (200 ms) in flight most of the time.
        paths = ["/slow?ms=200" if i % 2 else f"/things/{i}" for i in range(8)]
        threads = [LoadThread(kg.port, p, self.key["key"], stop, stop_on_close=True)
                   for p in paths]
        for t in threads:
            t.start()
        try:
            warm, _ = harness.poll_until(lambda: all(len(t.results) >= 2 for t in threads), 10.0)
            self.assertTrue(warm, kg.log_tail())
            signalled = time.monotonic()
            kg.proc.send_signal(signal.SIGTERM)
            try:
                code = kg.proc.wait(timeout=15)
            except Exception:
                self.fail(f"keygate did not exit within 15 s of SIGTERM\n{kg.log_tail()}")
            exited = time.monotonic()
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=15)
        self.assertEqual(code, 0, kg.log_tail())
        self.assertLess(exited - signalled, 10.0)
        failures = [f for t in threads for f in t.failures]
        self.assertEqual(failures, [], kg.log_tail())
        for t in threads:
            self.assertTrue(t.closed_by_keygate,
                            "every connection ends with Connection: close, not a cut")
            self.assertEqual({s for _, _, s in t.results}, {200})
        in_flight = [1 for t in threads for start, end, _ in t.results
                     if start < signalled < end]
        self.assertTrue(in_flight, "no request was in flight at SIGTERM")
        self.assertEqual(log_lines(kg)[-1].get("msg"), "keygate stopped", kg.log_tail())


if __name__ == "__main__":
    unittest.main()
