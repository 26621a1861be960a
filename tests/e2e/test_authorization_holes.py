"""What an authorization gate must refuse, over a real socket against the real keygate binary:
each hole closed by issue "The request path, correct and plain" has a test here that failed
before the fix (the unit tests in tests/unit/key_authorizer_test.cpp cover the same rows
without sockets).

1. A method no route lists for a matched path is 405 with Allow (methods are case-sensitive);
   a path no route matches follows routes_default (deny by default: 403 no_route).
2. Every configured credential location is stripped before forwarding; two different keys in
   one request are 400 conflicting_keys.
4. In authz mode, X-Original-* / X-Forwarded-* are believed only from trusted_proxies.
5. Every field named in Connection is removed, not only the first eight.
6. A rejection decided before any limit (revoked, scope) carries no RateLimit-* headers.
(3, "a default decision must not mean allow", and on_store_error are unit-tested, and
test_rate_limits covers on_store_error with Redis really down.)"""
import socket
import unittest

import harness
from harness import bearer, request


def headers_named(echo, name):
    return [v for n, v in echo["raw_headers"] if n.lower() == name]


def raw_exchange(port, head):
    """Sends `head` (a request keygate must answer and then close) as bytes; returns all it got
    back. For shapes http.client will not send (a lower-case method, a header twice)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(head.encode())
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    return answer


class RoutesAndMethodsTest(harness.KeygateTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        config = cls.keygate_config()
        del config["routes_default"]  # the default: deny
        cls.kg = cls.start_keygate(config=config)
        cls.reader = cls.create_key(scopes=["inventory:read", "inventory:write"])

    def test_unlisted_method_is_405_with_allow(self):
        for method in ("PATCH", "OPTIONS", "HEAD"):
            with self.subTest(method=method):
                r = request(self.kg.port, method, "/inventory/x", headers=bearer(self.reader["key"]))
                self.assertStatus(r, 405, self.kg)
                self.assertEqual(r.header("Allow"), "GET, POST, PUT, DELETE")
                if method != "HEAD":
                    self.assertEqual(r.json.get("error"), "method_not_allowed")

    def test_method_tokens_are_case_sensitive(self):
        answer = raw_exchange(self.kg.port, f"get /inventory/x HTTP/1.1\r\nHost: t\r\n"
                                            f"Authorization: Bearer {self.reader['key']}\r\n"
                                            "Connection: close\r\n\r\n")
        # Refused at the request line (400, as nginx does) before any route is matched; the
        # route table compares exactly as well (tests/unit/routes_test.cpp).
        self.assertRegex(answer[:13].decode(), r"^HTTP/1\.1 40[05] $",
                         harness.redact(answer[:200].decode()))

    def test_listed_methods_still_pass(self):
        self.assertStatus(request(self.kg.port, "GET", "/inventory/x",
                                  headers=bearer(self.reader["key"])), 200, self.kg)
        self.assertStatus(request(self.kg.port, "DELETE", "/inventory/x",
                                  headers=bearer(self.reader["key"])), 200, self.kg)

    def test_path_no_route_matches_is_403_no_route_by_default(self):
        r = request(self.kg.port, "GET", "/elsewhere", headers=bearer(self.reader["key"]))
        self.assertError(r, 403, "no_route", self.kg)
        self.assertIsNone(r.header("RateLimit-Remaining"))


class RoutesDefaultKeyTest(harness.KeygateTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.kg = cls.start_keygate(routes_default="key")
        cls.key = cls.create_key(scopes=[])

    def test_unmatched_path_needs_any_valid_key(self):
        self.assertStatus(request(self.kg.port, "PATCH", "/elsewhere", headers=bearer(self.key["key"])),
                          200, self.kg)
        self.assertError(request(self.kg.port, "GET", "/elsewhere"), 401, "missing_key", self.kg)


class CredentialsTest(harness.KeygateTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.kg = cls.start_keygate(keys={"headers": ["authorization", "x-api-key", "x-token"],
                                         "query_parameter": "api_key"})
        cls.a = cls.create_key()
        cls.b = cls.create_key()

    def forwarded(self, path, headers):
        r = request(self.kg.port, "GET", path, headers=headers)
        self.assertStatus(r, 200, self.kg)
        return r.json

    def test_every_credential_location_is_stripped(self):
        key = self.a["key"]
        echo = self.forwarded(f"/x?api_key={key}&keep=1",
                              {**bearer(key), "X-API-Key": key, "X-Token": key})
        for name in ("authorization", "x-api-key", "x-token"):
            self.assertEqual(headers_named(echo, name), [], f"{name} reached the upstream")
        self.assertEqual(echo["query"], "keep=1")
        self.assertEqual(echo["headers"].get("x-api-key-id"), self.a["id"])

    def test_a_non_bearer_authorization_is_stripped_too(self):
        echo = self.forwarded("/x", {"X-API-Key": self.a["key"], "Authorization": "Basic dTpw"})
        self.assertEqual(headers_named(echo, "authorization"), [])

    def test_two_different_keys_are_400(self):
        shapes = {
            "two headers": {**bearer(self.a["key"]), "X-API-Key": self.b["key"]},
            "header and query": {"X-Token": self.a["key"]},
        }
        for name, headers in shapes.items():
            with self.subTest(shape=name):
                path = f"/x?api_key={self.b['key']}" if name == "header and query" else "/x"
                r = request(self.kg.port, "GET", path, headers=headers)
                self.assertError(r, 400, "conflicting_keys", self.kg)
        r = request(self.kg.port, "GET", f"/x?api_key={self.a['key']}&api_key={self.b['key']}")
        self.assertError(r, 400, "conflicting_keys", self.kg)

    def test_a_second_key_in_the_same_header_twice_is_400(self):
        answer = raw_exchange(self.kg.port, f"GET /x HTTP/1.1\r\nHost: t\r\n"
                                            f"X-API-Key: {self.a['key']}\r\n"
                                            f"X-API-Key: {self.b['key']}\r\nConnection: close\r\n\r\n")
        self.assertTrue(answer.startswith(b"HTTP/1.1 400 "), harness.redact(answer[:200].decode()))
        self.assertIn(b"conflicting_keys", answer)

    def test_the_same_key_twice_is_one_key(self):
        echo = self.forwarded("/x", {**bearer(self.a["key"]), "X-API-Key": self.a["key"]})
        self.assertEqual(echo["headers"].get("x-api-key-id"), self.a["id"])

    def test_every_field_named_in_connection_is_removed(self):
        names = [f"x-hop-{i}" for i in range(12)]
        headers = {**bearer(self.a["key"]), "Connection": ", ".join(names + ["keep-alive"])}
        headers.update({name: "secret" for name in names})
        headers["X-End-To-End"] = "kept"
        echo = self.forwarded("/x", headers)
        for name in names:
            self.assertEqual(headers_named(echo, name), [], f"{name} reached the upstream")
        self.assertEqual(echo["headers"].get("x-end-to-end"), "kept")


class NoRateLimitHeadersBeforeTheLimitTest(harness.KeygateTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.kg = cls.start_keygate()

    def test_revoked_key_answer_carries_no_ratelimit_headers(self):
        key = self.create_key(scopes=["inventory:read"])
        self.assertStatus(self.kg.get("/x", key=key["key"]), 200, self.kg)  # counted once
        harness.revoke_key(self.dsn, key["id"], self.redis_url)
        r, _ = harness.poll_until(lambda: (lambda r: r if r.status == 401 else None)(
            self.kg.get("/x", key=key["key"])), 5.0)
        self.assertIsNotNone(r, "the revocation did not take effect")
        self.assertError(r, 401, "revoked_key", self.kg)
        for name in ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"):
            self.assertIsNone(r.header(name), f"{name} on a revoked key's 401")


class AuthzModeTrustTest(harness.KeygateTestCase):
    """X-Original-* from a peer outside trusted_proxies are ignored: the request is judged by
    its own method and target."""
    start_upstream = False

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.untrusted = cls.start_keygate(mode="authz", trusted_proxies=["10.0.0.0/8"],
                                          name="untrusted")
        cls.trusted = cls.start_keygate(mode="authz", trusted_proxies=["127.0.0.1/32"],
                                        name="trusted")
        cls.reader = cls.create_key(scopes=["inventory:read"])

    def test_untrusted_peer_cannot_borrow_a_public_route(self):
        forged = {"X-Original-Method": "GET", "X-Original-URI": "/public/anything"}
        r = request(self.untrusted.port, "GET", "/inventory/1", headers=forged)
        self.assertError(r, 401, "missing_key", self.untrusted)
        r = request(self.trusted.port, "GET", "/inventory/1", headers=forged)
        self.assertStatus(r, 200, self.trusted)

    def test_untrusted_peer_cannot_change_the_method(self):
        forged = {**bearer(self.reader["key"]), "X-Forwarded-Method": "GET",
                  "X-Forwarded-Uri": "/inventory/1"}
        r = request(self.untrusted.port, "DELETE", "/inventory/1", headers=forged)
        self.assertError(r, 403, "insufficient_scope", self.untrusted)
        r = request(self.trusted.port, "DELETE", "/inventory/1", headers=forged)
        self.assertStatus(r, 200, self.trusted)


if __name__ == "__main__":
    unittest.main()
