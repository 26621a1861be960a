"""What the key-management API's e2e tests share: a call that checks every answer (JSON, and
matching the served OpenAPI document) and the error assertion."""
import json

import harness
from openapi_check import OpenApiChecker


class ApiCase(harness.KeygateTestCase):
    api_port = None
    checker = None
    api_tls_context = None  # an ssl.SSLContext when the API listener speaks TLS

    @classmethod
    def load_openapi(cls):
        r = cls.api_request("GET", "/v1/openapi.json")
        assert r.status == 200, r.body
        cls.checker = OpenApiChecker(r.json)

    @classmethod
    def tearDownClass(cls):
        if cls.checker is not None:
            print(f"openapi check: {cls.checker.checked} answers matched the document", flush=True)
        super().tearDownClass()

    @classmethod
    def api_request(cls, method, target, headers=None, body=None):
        if cls.api_tls_context is None:
            return harness.request(cls.api_port, method, target, headers=headers, body=body)
        import http.client
        conn = http.client.HTTPSConnection("127.0.0.1", cls.api_port, timeout=10, context=cls.api_tls_context)
        try:
            conn.request(method, target, body=body, headers=headers or {})
            r = conn.getresponse()
            return harness.Response(r.status, r.msg, r.read())
        finally:
            conn.close()

    def call(self, method, target, token=None, body=None, raw=None, headers=None):
        h = dict(headers or {})
        if token is not None:
            h.update(harness.bearer(token))
        data = raw if raw is not None else (json.dumps(body) if body is not None else None)
        if data is not None:
            h.setdefault("Content-Type", "application/json")
        r = self.api_request(method, target, headers=h, body=data)
        self.assertEqual(r.headers.get("content-type"), "application/json", r.body)
        self.assertIsNotNone(r.json, f"not JSON: {r.body[:200]!r}")
        problems = self.checker.check(method, target.split("?")[0], r.status, r.json)
        self.assertEqual(problems, [], f"{method} {target} {r.status}: {r.body[:300]!r}")
        return r

    def assertApiError(self, r, status, error, field=None):
        self.assertEqual(r.status, status, r.body)
        self.assertEqual(r.json["error"], error, r.body)
        if field is not None:
            self.assertEqual(r.json.get("field"), field, r.body)
