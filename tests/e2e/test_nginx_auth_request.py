"""keygate's authz mode: answered directly (X-Original-* / X-Forwarded-* / the request itself),
and behind a real nginx using the shipped example deploy/nginx/auth_request.conf, filled in
with free loopback ports — so the example is proven to work."""
import os
import unittest

import harness
from harness import bearer, request

FORGED = {"X-Api-Key-Id": "someone", "X-Api-Key-Owner": "user:999", "X-Api-Key-Scopes": "admin"}


def occurrences(echo, name):
    return [v for n, v in echo["raw_headers"] if n.lower() == name]


class AuthzModeTest(harness.KeygateTestCase):
    """keygate in mode: authz, asked directly by a trusted proxy (this test, on loopback)."""
    start_upstream = False

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.kg = cls.start_keygate(mode="authz", trusted_proxies=["127.0.0.1/32"])
        cls.reader = cls.create_key(owner="team:ops", scopes=["inventory:read", "x"])

    def ask(self, headers, method="GET", path="/"):
        return request(self.kg.port, method, path, headers=headers)

    def assertAllowed(self, r, key=None):
        self.assertStatus(r, 200, self.kg)
        if key is not None:
            self.assertEqual(r.header("X-Api-Key-Id"), key["id"])
            self.assertEqual(r.header("X-Api-Key-Owner"), "team:ops")
            self.assertEqual(r.header("X-Api-Key-Scopes"), "inventory:read,x")

    def test_allowed_answer_carries_ratelimit_headers(self):
        r = self.ask({**bearer(self.reader["key"]), "X-Original-Method": "GET", "X-Original-URI": "/things"})
        self.assertAllowed(r, self.reader)
        self.assertRateLimitHeaders(r, limit=int(harness.HIGH_RATE_LIMIT.split("/")[0]))

    def test_original_method_and_uri_from_x_original_headers(self):
        key = bearer(self.reader["key"])
        r = self.ask({**key, "X-Original-Method": "GET", "X-Original-URI": "/inventory/7?full=1"})
        self.assertAllowed(r, self.reader)
        r = self.ask({**key, "X-Original-Method": "POST", "X-Original-URI": "/inventory/7"})
        self.assertError(r, 403, "insufficient_scope", self.kg)

    def test_original_method_and_uri_from_x_forwarded_headers(self):
        key = bearer(self.reader["key"])
        r = self.ask({**key, "X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/inventory/7"})
        self.assertAllowed(r, self.reader)
        r = self.ask({**key, "X-Forwarded-Method": "DELETE", "X-Forwarded-Uri": "/inventory/7"})
        self.assertError(r, 403, "insufficient_scope", self.kg)

    def test_original_method_and_uri_from_the_request_itself(self):
        key = bearer(self.reader["key"])
        self.assertAllowed(self.ask(key, "GET", "/inventory/7"), self.reader)
        self.assertError(self.ask(key, "PUT", "/inventory/7"), 403, "insufficient_scope", self.kg)

    def test_rejections_in_authz_mode(self):
        r = self.ask({"X-Original-Method": "GET", "X-Original-URI": "/things"})
        self.assertError(r, 401, "missing_key", self.kg)
        self.assertTrue((r.header("WWW-Authenticate") or "").startswith("Bearer"))
        r = self.ask({**bearer(harness.with_typo(self.reader["key"])), "X-Original-URI": "/things"})
        self.assertError(r, 401, "invalid_key", self.kg)

    def test_public_route_in_authz_mode_allows_without_identity(self):
        r = self.ask({**FORGED, "X-Original-Method": "GET", "X-Original-URI": "/public/a"})
        self.assertStatus(r, 200, self.kg)
        self.assertIsNone(r.header("X-Api-Key-Id"), "a public answer must not carry an identity")


class NginxAuthRequestTest(harness.KeygateTestCase):
    """nginx (auth_request) -> keygate (mode: authz); nginx -> upstream.py."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.kg = cls.start_keygate(mode="authz", trusted_proxies=["127.0.0.1/32"])
        cls.reader = cls.create_key(owner="team:ops", scopes=["inventory:read"])
        cls.nginx_port = harness.free_port()
        template = os.path.join(harness.source_dir(), "deploy", "nginx", "auth_request.conf")
        with open(template) as f:
            conf = f.read()
        for placeholder, value in (("@LISTEN@", f"127.0.0.1:{cls.nginx_port}"),
                                   ("@KEYGATE_AUTHZ@", f"127.0.0.1:{cls.kg.port}"),
                                   ("@UPSTREAM@", f"127.0.0.1:{cls.upstream.port}")):
            if placeholder not in conf:
                raise RuntimeError(f"{template} has no {placeholder}")
            conf = conf.replace(placeholder, value)
        cls.nginx = harness.Nginx(cls.workdir, conf, cls.nginx_port)
        cls.addClassCleanup(cls.nginx.stop)
        cls.nginx.start()

    @classmethod
    def nginx_log(cls):
        return cls.nginx.log_tail()

    def via_nginx(self, method, path, headers=None, body=None):
        return request(self.nginx_port, method, path, headers=headers, body=body)

    def assertForwarded(self, r):
        if r.status != 200:
            self.fail(f"expected 200 from the upstream, got {r!r}\n{self.nginx_log()}\n{self.kg.log_tail()}")
        echo = r.json
        self.assertIsInstance(echo, dict)
        self.assertIn("raw_headers", echo, "not the upstream's answer")
        return echo

    def test_valid_key_reaches_upstream_with_identity_and_without_credential(self):
        r = self.via_nginx("GET", "/inventory/5?q=1", {**bearer(self.reader["key"]), **FORGED})
        echo = self.assertForwarded(r)
        self.assertEqual(echo["path"], "/inventory/5")
        self.assertEqual(occurrences(echo, "x-api-key-id"), [self.reader["id"]])
        self.assertEqual(occurrences(echo, "x-api-key-owner"), ["team:ops"])
        self.assertEqual(occurrences(echo, "x-api-key-scopes"), ["inventory:read"])
        self.assertEqual(occurrences(echo, "authorization"), [], "the credential reached the upstream")

    def test_client_sees_keygates_ratelimit_headers(self):
        r = self.via_nginx("GET", "/things", bearer(self.reader["key"]))
        self.assertForwarded(r)
        self.assertRateLimitHeaders(r, limit=int(harness.HIGH_RATE_LIMIT.split("/")[0]))

    def test_x_api_key_header_works_and_is_hidden(self):
        echo = self.assertForwarded(self.via_nginx("GET", "/things", {"X-API-Key": self.reader["key"]}))
        self.assertEqual(occurrences(echo, "x-api-key-id"), [self.reader["id"]])
        self.assertEqual(occurrences(echo, "x-api-key"), [], "the credential reached the upstream")

    def test_request_body_passes_after_authorization(self):
        # A reader may not POST to /inventory, but may POST elsewhere (no route: any valid key).
        body = b"y" * 300_000
        echo = self.assertForwarded(self.via_nginx("POST", "/things/upload", bearer(self.reader["key"]), body))
        self.assertEqual(echo["body_bytes"], len(body))

    def test_missing_key_gets_keygates_401(self):
        r = self.via_nginx("GET", "/things", dict(FORGED))
        self.assertError(r, 401, "missing_key", self.kg)
        challenges = r.headers.get_all("WWW-Authenticate") or []
        self.assertEqual(len(challenges), 1, f"{r!r}")
        self.assertTrue(challenges[0].startswith("Bearer"), f"{r!r}")

    def test_invalid_key_gets_keygates_401(self):
        r = self.via_nginx("GET", "/things", bearer(harness.with_bad_checksum(self.reader["key"])))
        self.assertError(r, 401, "invalid_key", self.kg)

    def test_original_method_decides_the_scope(self):
        self.assertForwarded(self.via_nginx("GET", "/inventory/5", bearer(self.reader["key"])))
        r = self.via_nginx("POST", "/inventory/5", bearer(self.reader["key"]), b"{}")
        self.assertError(r, 403, "insufficient_scope", self.kg)

    def test_public_route_passes_without_key_and_without_forged_identity(self):
        echo = self.assertForwarded(self.via_nginx("GET", "/public/page", dict(FORGED)))
        for name in ("x-api-key-id", "x-api-key-owner", "x-api-key-scopes"):
            self.assertEqual(occurrences(echo, name), [], f"a forged {name} reached the upstream")

    def test_revoked_key_is_refused(self):
        k = self.create_key()
        self.assertForwarded(self.via_nginx("GET", "/things", bearer(k["key"])))
        harness.revoke_key(self.dsn, k["id"], self.redis_url)
        r, _ = harness.poll_until(
            lambda: (lambda x: x if x.status != 200 else None)(self.via_nginx("GET", "/things", bearer(k["key"]))),
            timeout=1.0)
        self.assertIsNotNone(r, "a revoked key still passes through nginx after 1 s")
        self.assertError(r, 401, "revoked_key", self.kg)

    def test_client_address_comes_from_nginx_not_from_the_client(self):
        # nginx replaces X-Forwarded-For with the real peer (127.0.0.1); keygate trusts nginx.
        outside = self.create_key(allowed_ips=["10.0.0.0/8"])
        r = self.via_nginx("GET", "/things", {**bearer(outside["key"]), "X-Forwarded-For": "10.9.9.9"})
        self.assertError(r, 403, "ip_not_allowed", self.kg)
        local = self.create_key(allowed_ips=["127.0.0.0/8"])
        self.assertForwarded(self.via_nginx("GET", "/things", {**bearer(local["key"]), "X-Forwarded-For": "10.9.9.9"}))


if __name__ == "__main__":
    unittest.main()
