"""What the upstream receives: identity headers it can trust, and no credential unless
keys.hide_credentials is false. The upstream (upstream.py) echoes every header it got.
Assertion messages never show a key: they say what went wrong, not the header's value."""
import http.client
import unittest

import harness
from harness import bearer, request

IDENTITY = ("x-api-key-id", "x-api-key-owner", "x-api-key-scopes")
FORGED = {
    "X-Api-Key-Id": "someone",
    "X-Api-Key-Owner": "user:999",
    "X-Api-Key-Scopes": "admin,everything",
}


def occurrences(echo, name):
    return [v for n, v in echo["raw_headers"] if n.lower() == name]


class IdentityHeadersTest(harness.KeygateTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.kg = cls.start_keygate()
        cls.key = cls.create_key(owner="service:billing-7", name="billing", scopes=["inventory:read", "b"])

    def forward(self, path, headers, method="GET"):
        r = request(self.kg.port, method, path, headers=headers)
        self.assertStatus(r, 200, self.kg)
        echo = r.json
        self.assertIsInstance(echo, dict, "not the upstream's answer")
        self.assertIn("raw_headers", echo, "not the upstream's answer")
        return echo

    def assertIdentity(self, echo):
        self.assertEqual(occurrences(echo, "x-api-key-id"), [self.key["id"]])
        self.assertEqual(occurrences(echo, "x-api-key-owner"), ["service:billing-7"])
        self.assertEqual(occurrences(echo, "x-api-key-scopes"), ["inventory:read,b"])

    def assertNoCredential(self, echo):
        names = {n.lower() for n, _ in echo["raw_headers"]}
        self.assertFalse("authorization" in names, "the Authorization header reached the upstream")
        self.assertFalse("x-api-key" in names, "the X-API-Key header reached the upstream")
        self.assertFalse(self.key["key"] in str(echo), "the key reached the upstream")

    def test_upstream_receives_the_identity_of_the_key(self):
        echo = self.forward("/things/1", {**bearer(self.key["key"]), "X-Custom": "kept"})
        self.assertIdentity(echo)
        self.assertEqual(occurrences(echo, "x-custom"), ["kept"], "other headers pass unchanged")

    def test_client_cannot_forge_identity_headers_with_a_valid_key(self):
        headers = {**bearer(self.key["key"]), **FORGED}
        echo = self.forward("/things/1", headers)
        self.assertIdentity(echo)
        # Repeated and differently spelt forgeries are removed too.
        conn_headers = [("x-api-key-id", "someone"), ("X-API-KEY-ID", "someone-else"),
                        ("X-Api-Key-Owner", "user:1"), ("Authorization", f"Bearer {self.key['key']}")]
        echo = self.forward_raw("/things/2", conn_headers)
        self.assertIdentity(echo)

    def forward_raw(self, path, header_list):
        """Sends headers exactly as listed (repeats included)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.kg.port, timeout=10)
        try:
            conn.putrequest("GET", path)
            for name, value in header_list:
                conn.putheader(name, value)
            conn.endheaders()
            resp = conn.getresponse()
            r = harness.Response(resp.status, resp.msg, resp.read())
        finally:
            conn.close()
        self.assertStatus(r, 200, self.kg)
        return r.json

    def test_client_cannot_forge_identity_headers_on_a_public_route_without_key(self):
        echo = self.forward("/public/info", dict(FORGED))
        for name in IDENTITY:
            self.assertEqual(occurrences(echo, name), [], f"a forged {name} reached the upstream")

    def test_client_cannot_forge_identity_headers_on_a_public_route_with_key(self):
        echo = self.forward("/public/info", {**bearer(self.key["key"]), **FORGED})
        # A public route may or may not identify the key; a forged value must never arrive.
        self.assertIn(occurrences(echo, "x-api-key-id"), ([], [self.key["id"]]))
        self.assertIn(occurrences(echo, "x-api-key-owner"), ([], ["service:billing-7"]))
        self.assertIn(occurrences(echo, "x-api-key-scopes"), ([], ["inventory:read,b"]))
        self.assertNoCredential(echo)

    def test_request_with_forged_identity_and_no_key_is_rejected(self):
        r = request(self.kg.port, "GET", "/things/1", headers=dict(FORGED))
        self.assertError(r, 401, "missing_key", self.kg)

    def test_credential_is_removed_by_default(self):
        self.assertNoCredential(self.forward("/things/1", bearer(self.key["key"])))
        self.assertNoCredential(self.forward("/things/1", {"X-API-Key": self.key["key"]}))
        echo = self.forward("/inventory/1", {"x-api-key": self.key["key"]})
        self.assertNoCredential(echo)
        self.assertIdentity(echo)

    def test_identity_travels_with_the_body(self):
        body = b"x" * 100_000
        r = request(self.kg.port, "POST", "/things/upload", headers={**bearer(self.key["key"]), **FORGED},
                    body=body)
        self.assertStatus(r, 200, self.kg)
        echo = r.json
        self.assertEqual(echo["body_bytes"], len(body))
        self.assertIdentity(echo)
        self.assertNoCredential(echo)

    def test_keygate_log_never_contains_a_key(self):
        self.forward("/things/1", bearer(self.key["key"]))
        bad = harness.with_typo(self.key["key"])
        request(self.kg.port, "GET", "/things/1", headers=bearer(bad))
        with open(self.kg.log_path, "rb") as f:
            log = f.read().decode(errors="replace")
        self.assertFalse(self.key["key"] in log, "keygate logged a valid key")
        self.assertFalse(bad in log, "keygate logged a presented (invalid) key")


class ShowCredentialsTest(harness.KeygateTestCase):
    """keys.hide_credentials: false passes the credential header on unchanged."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.kg = cls.start_keygate(keys={"hide_credentials": False})
        cls.key = cls.create_key(owner="user:42", scopes=["a"])

    def test_credential_header_arrives_when_not_hidden(self):
        r = request(self.kg.port, "GET", "/things/1", headers={**bearer(self.key["key"]), **FORGED})
        self.assertStatus(r, 200, self.kg)
        echo = r.json
        auth = occurrences(echo, "authorization")
        self.assertTrue(auth == [f"Bearer {self.key['key']}"],
                        f"Authorization arrived {len(auth)} time(s), not unchanged")
        self.assertEqual(occurrences(echo, "x-api-key-id"), [self.key["id"]])
        self.assertEqual(occurrences(echo, "x-api-key-owner"), ["user:42"])
        self.assertEqual(occurrences(echo, "x-api-key-scopes"), ["a"])

        r = request(self.kg.port, "GET", "/things/1", headers={"X-API-Key": self.key["key"]})
        self.assertStatus(r, 200, self.kg)
        sent = occurrences(r.json, "x-api-key")
        self.assertTrue(sent == [self.key["key"]], f"X-API-Key arrived {len(sent)} time(s), not unchanged")


if __name__ == "__main__":
    unittest.main()
