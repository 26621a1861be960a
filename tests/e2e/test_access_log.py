"""The access log (issue #7): one JSON line per request, written in the background to the
configured file; never the key, the credential header or the query string; sampled mode logs a
share of requests and every 5xx; SIGHUP reopens the file (log rotation). Startup lines are JSON
in the same format."""
import json
import os
import signal
import socket
import time
import unittest

import harness

FIELDS = {"ts", "level", "msg", "method", "path", "status", "decision", "key_id", "owner",
          "client_ip", "duration_us", "upstream_status", "upstream_latency_us"}


def read_lines(path):
    """The file's text and its complete lines, parsed (every one must be valid JSON)."""
    try:
        with open(path, "rb") as f:
            text = f.read().decode()
    except FileNotFoundError:
        return "", []
    complete = text[:text.rfind("\n") + 1]
    return text, [json.loads(line) for line in complete.splitlines()]


def wait_for_lines(path, count, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        text, lines = read_lines(path)
        if len(lines) >= count or time.monotonic() >= deadline:
            return text, lines
        time.sleep(0.02)


class AccessLogTest(harness.KeygateTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.log_path = os.path.join(cls.workdir, "access.log")
        cls.kg = cls.start_keygate(access_log={"mode": "all", "path": cls.log_path},
                                   keys={"query_parameter": "api_key"})
        cls.key = cls.create_key(scopes=["inventory:read"], owner="team:payments")

    def test_one_valid_json_line_per_request_without_the_key(self):
        key = self.key["key"]
        before = len(read_lines(self.log_path)[1])
        sent = [
            ("GET", "/inventory/1?color=red", harness.bearer(key), 200, "allowed"),
            ("GET", "/inventory/2", {"X-API-Key": key}, 200, "allowed"),
            ("GET", f"/inventory/3?api_key={key}&x=1", {}, 200, "allowed"),
            ("POST", "/inventory/4", harness.bearer(key), 403, "insufficient_scope"),
            ("GET", "/inventory/5", harness.bearer(harness.with_typo(key)), 401, "invalid_key"),
            ("GET", "/inventory/6", {}, 401, "missing_key"),
            ("GET", "/public/7", {}, 200, "allowed"),
        ]
        for method, path, headers, status, _ in sent:
            r = harness.request(self.kg.port, method, path, headers=headers)
            self.assertStatus(r, status, self.kg)
        # A request keygate cannot parse is logged too (no decision).
        with socket.create_connection(("127.0.0.1", self.kg.port), timeout=5) as s:
            s.sendall(b"GET /inventory/8 HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n"
                      b"Transfer-Encoding: chunked\r\nAuthorization: Bearer " + key.encode() +
                      b"\r\n\r\n")
            self.assertIn(b" 400 ", s.recv(4096))

        text, lines = wait_for_lines(self.log_path, before + len(sent) + 1)
        lines = lines[before:]
        self.assertEqual(len(lines), len(sent) + 1, text[-2000:])
        self.assertNotIn(key, text)
        self.assertNotIn(key[:20], text)
        self.assertNotIn("Bearer", text)
        self.assertNotIn("api_key", text)
        self.assertNotIn("color=red", text)
        # Workers buffer their own lines: the file is in order per worker, not overall.
        by_path = {line["path"]: line for line in lines}
        self.assertEqual(len(by_path), len(lines), text[-2000:])
        for method, path, _, status, decision in sent:
            line = by_path[path.split("?")[0]]
            self.assertEqual(set(line), FIELDS, line)
            self.assertEqual(line["level"], "info")
            self.assertEqual(line["msg"], "request")
            self.assertEqual(line["method"], method)
            self.assertEqual(line["path"], path.split("?")[0])
            self.assertEqual(line["status"], status)
            self.assertEqual(line["decision"], decision)
            self.assertEqual(line["client_ip"], "127.0.0.1")
            self.assertIsInstance(line["duration_us"], int)
            self.assertGreaterEqual(line["duration_us"], 0)
            self.assertRegex(line["ts"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
        forwarded = by_path["/inventory/1"]
        self.assertEqual(forwarded["key_id"], self.key["id"])
        self.assertEqual(forwarded["owner"], "team:payments")
        self.assertEqual(forwarded["upstream_status"], 200)
        self.assertIsInstance(forwarded["upstream_latency_us"], int)
        self.assertLessEqual(forwarded["upstream_latency_us"], forwarded["duration_us"])
        self.assertEqual(by_path["/inventory/4"]["key_id"], self.key["id"])  # known, denied
        self.assertIsNone(by_path["/inventory/4"]["upstream_status"])        # never forwarded
        self.assertIsNone(by_path["/inventory/5"]["key_id"])                 # unknown key
        self.assertIsNone(by_path["/inventory/6"]["owner"])
        bad = by_path[None]  # refused before its target was read
        self.assertEqual(bad["status"], 400)
        self.assertIsNone(bad["decision"])
        self.assertIsNone(bad["key_id"])

    def test_startup_lines_are_json_in_the_same_format(self):
        with open(self.kg.log_path, "rb") as f:
            text = f.read().decode(errors="replace")
        serving = [json.loads(line) for line in text.splitlines()
                   if line.startswith("{") and '"keygate serving"' in line]
        self.assertEqual(len(serving), 1, self.kg.log_tail())
        line = serving[0]
        self.assertEqual(line["level"], "info")
        self.assertRegex(line["ts"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
        self.assertEqual(line["listen"], f"127.0.0.1:{self.kg.port}")
        self.assertNotIn(self.key["key"], text)

    def test_sighup_reopens_the_file_for_log_rotation(self):
        path = os.path.join(self.workdir, "rotated.log")
        kg = self.start_keygate_for_test(access_log={"mode": "all", "path": path})
        self.assertStatus(kg.get("/a", key=self.key["key"]), 200, kg)
        wait_for_lines(path, 1)
        os.rename(path, path + ".1")
        kg.proc.send_signal(signal.SIGHUP)
        reopened, _ = harness.poll_until(lambda: os.path.exists(path), 5.0)
        self.assertTrue(reopened, kg.log_tail())
        self.assertStatus(kg.get("/b", key=self.key["key"]), 200, kg)
        _, lines = wait_for_lines(path, 1)
        self.assertEqual([line["path"] for line in lines], ["/b"])
        _, old = read_lines(path + ".1")
        self.assertEqual([line["path"] for line in old], ["/a"])

    def test_sampled_mode_logs_every_5xx_and_a_share_of_the_rest(self):
        path = os.path.join(self.workdir, "sampled.log")
        # Nothing listens on the upstream port: keyed requests get 502.
        kg = self.start_keygate_for_test(upstream=f"http://127.0.0.1:{harness.free_port()}",
                                         access_log={"mode": "sampled", "sample_rate": 0,
                                                     "path": path})
        for _ in range(20):
            self.assertStatus(kg.get("/public/x"), 502, kg)
            self.assertStatus(kg.get("/inventory/x"), 401, kg)
        time.sleep(0.5)  # the writer flushes every 200 ms
        _, lines = wait_for_lines(path, 20)
        self.assertEqual(len(lines), 20)
        self.assertEqual({line["status"] for line in lines}, {502})
        written = harness.metric_value(kg.metrics(), "keygate_access_log_lines_total",
                                       outcome="written")
        self.assertEqual(written, 20)


if __name__ == "__main__":
    unittest.main()
