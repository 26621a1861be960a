"""100 MB bodies pass through keygate in both directions without being held: keygate's peak
resident memory (VmHWM in /proc/PID/status) grows by less than 20 MB. The client generates the
request body on the fly; the upstream counts and hashes what arrives; response bodies are
counted and hashed by the client. Each test runs its own keygate so peaks do not mix."""
import hashlib
import http.client
import unittest

import harness
import upstream
from harness import bearer

SIZE = 100 * 1024 * 1024
MEMORY_BUDGET = 20 * 1024 * 1024
CHUNK = hashlib.sha256(b"keygate").digest() * (1024 * 1024 // 32)  # 1 MiB, not all one byte
TIMEOUT = 120.0


def request_chunks():
    for _ in range(SIZE // len(CHUNK)):
        yield CHUNK


def expected_response_sha():
    h = hashlib.sha256()
    left = SIZE
    while left:
        piece = upstream.BIG_CHUNK[:min(len(upstream.BIG_CHUNK), left)]
        h.update(piece)
        left -= len(piece)
    return h.hexdigest()


class StreamingTest(harness.KeygateTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.key = cls.create_key()
        cls.request_sha = harness.sha256_of_stream(request_chunks())[1]

    def setUp(self):
        self.kg = self.start_keygate_for_test()
        # One small request first, so that buffers and connections that every request needs
        # are part of the baseline.
        self.assertStatus(self.kg.get("/warm", key=self.key["key"]), 200, self.kg)
        self.baseline = self.kg.memory()

    def assertMemoryBounded(self):
        after = self.kg.memory()
        growth = after["VmHWM"] - self.baseline["VmHWM"]
        self.assertLess(growth, MEMORY_BUDGET,
                        f"keygate's peak RSS grew by {growth / 2**20:.1f} MiB "
                        f"(from {self.baseline['VmHWM'] / 2**20:.1f} to {after['VmHWM'] / 2**20:.1f} MiB)")

    def upload(self, chunked):
        conn = http.client.HTTPConnection("127.0.0.1", self.kg.port, timeout=TIMEOUT)
        try:
            headers = {**bearer(self.key["key"]), "Content-Type": "application/octet-stream"}
            if chunked:
                headers["Transfer-Encoding"] = "chunked"
            else:
                headers["Content-Length"] = str(SIZE)
            conn.request("POST", "/upload", body=request_chunks(), headers=headers, encode_chunked=chunked)
            resp = conn.getresponse()
            return harness.Response(resp.status, resp.msg, resp.read())
        finally:
            conn.close()

    def download(self, path):
        conn = http.client.HTTPConnection("127.0.0.1", self.kg.port, timeout=TIMEOUT)
        try:
            conn.request("GET", path, headers=bearer(self.key["key"]))
            resp = conn.getresponse()
            self.assertEqual(resp.status, 200)
            h = hashlib.sha256()
            n = 0
            while True:
                piece = resp.read(256 * 1024)
                if not piece:
                    break
                h.update(piece)
                n += len(piece)
            return n, h.hexdigest()
        finally:
            conn.close()

    def test_100mb_request_body_with_content_length_is_streamed(self):
        r = self.upload(chunked=False)
        self.assertStatus(r, 200, self.kg)
        self.assertEqual(r.json["body_bytes"], SIZE)
        self.assertEqual(r.json["body_sha256"], self.request_sha)
        self.assertMemoryBounded()

    def test_100mb_chunked_request_body_is_streamed(self):
        r = self.upload(chunked=True)
        self.assertStatus(r, 200, self.kg)
        self.assertEqual(r.json["body_bytes"], SIZE)
        self.assertEqual(r.json["body_sha256"], self.request_sha)
        self.assertMemoryBounded()

    def test_100mb_response_body_is_streamed(self):
        n, sha = self.download(f"/big?bytes={SIZE}")
        self.assertEqual(n, SIZE)
        self.assertEqual(sha, expected_response_sha())
        self.assertMemoryBounded()

    def test_100mb_chunked_response_body_is_streamed(self):
        n, sha = self.download(f"/big?bytes={SIZE}&chunked=1")
        self.assertEqual(n, SIZE)
        self.assertEqual(sha, expected_response_sha())
        self.assertMemoryBounded()


if __name__ == "__main__":
    unittest.main()
