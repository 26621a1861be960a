"""The key-management API, continued (issue 14): leaked-key reports in GitHub's secret-scanning
format (POST /v1/leaks) signed with an ECDSA key the test generates with the openssl CLI, in
both actions (revoke, flag); TLS on api_listen (the proxy's certificate); and the configured
scope vocabulary. Every answer is checked against the served OpenAPI document."""
import base64
import hashlib
import http.client
import json
import os
import ssl
import subprocess
import time

import harness
import test_tls
from api_case import ApiCase

KEY_ID = hashlib.sha256(b"keygate e2e signing key").hexdigest()  # GitHub's identifiers: 64 hex digits


def openssl(*args, data=None):
    return subprocess.run(["openssl", *args], input=data, check=True, timeout=30,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE).stdout


def make_signing_key(folder, name):
    """An ECDSA P-256 key pair as GitHub uses: (private key path, public key PEM)."""
    private = os.path.join(folder, f"{name}.key")
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", private)
    return private, openssl("ec", "-in", private, "-pubout").decode()


def sign(private_key, body):
    """GitHub's signature of the raw body: ECDSA over SHA-256, DER, base64."""
    return base64.b64encode(openssl("dgst", "-sha256", "-sign", private_key, data=body)).decode()


def write_public_keys(folder, public_pem):
    path = os.path.join(folder, "secret-scanning-keys.json")
    with open(path, "w") as f:
        json.dump({"public_keys": [{"key_identifier": KEY_ID, "key": public_pem, "is_current": True}]}, f)
    return path


class LeakReportTest(ApiCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.signing_key, public_pem = make_signing_key(cls.workdir, "github")
        cls.other_key, _ = make_signing_key(cls.workdir, "stranger")
        cls.keys_file = write_public_keys(cls.workdir, public_pem)
        cls.api_port = harness.free_port()
        cls.kg = cls.start_keygate(api_listen=f"127.0.0.1:{cls.api_port}",
                                   cache={"ttl": "60s", "negative_ttl": "5s"},
                                   api={"leaks": {"public_keys_file": cls.keys_file, "action": "revoke"}})
        cls.operator = cls.create_key(owner="ops:1", name="operator", scopes=["admin:*"])
        cls.load_openapi()

    def report(self, entries, private_key=None, key_id=KEY_ID, body=None):
        raw = body if body is not None else json.dumps(entries).encode()
        headers = {"Content-Type": "application/json", "Github-Public-Key-Identifier": key_id,
                   "Github-Public-Key-Signature": sign(private_key or self.signing_key, raw)}
        return self.call("POST", "/v1/leaks", raw=raw, headers=headers)

    def proxied(self, key):
        return harness.request(self.kg.port, "GET", "/things/1", headers=harness.bearer(key)).status

    def audit_rows(self, key_id):
        return self.call("GET", f"/v1/audit?key_id={key_id}", self.operator["key"]).json["entries"]

    def test_a_signed_report_revokes_each_active_key_it_names_and_labels_every_token(self):
        leaked = self.create_key(owner="user:1", name="leaked")
        already = self.create_key(owner="user:2", name="revoked before")
        harness.revoke_key(self.dsn, already["id"])
        self.assertEqual(self.proxied(leaked["key"]), 200)  # cached: the revocation must reach the cache
        bad_checksum = leaked["key"][:-1] + ("A" if leaked["key"][-1] != "A" else "B")
        unknown = harness.unknown_key()
        url = "https://github.com/example/repo/blob/abc123/config.env"
        entries = [{"token": leaked["key"], "type": "keygate_api_key", "url": url, "source": "content"},
                   {"token": already["key"], "type": "keygate_api_key", "url": url, "source": "commit"},
                   {"token": bad_checksum, "type": "keygate_api_key", "url": url, "source": "content"},
                   {"token": unknown, "type": "keygate_api_key", "url": "", "source": "content"},
                   {"token": "not a key at all", "type": "keygate_api_key", "url": None, "source": None}]
        started = time.monotonic()
        r = self.report(entries)
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual([v["label"] for v in r.json],
                         ["true_positive", "true_positive", "false_positive", "false_positive", "false_positive"])
        self.assertEqual([v["token_hash"] for v in r.json],
                         [hashlib.sha256(e["token"].encode()).hexdigest() for e in entries])
        for e in entries:
            self.assertNotIn(e["token"], r.body.decode(), "the answer never carries a token")
        refused_at, status = harness.poll_until(lambda: self.proxied(leaked["key"]) == 401, 1.0)
        self.assertTrue(refused_at, "the leaked key still passes a second after the report")
        print(f"leak report -> key refused by the proxy after {(time.monotonic() - started) * 1000:.0f} ms", flush=True)
        shown = self.call("GET", f"/v1/keys/{leaked['id']}", self.operator["key"]).json
        self.assertEqual(shown["status"], "revoked")
        rows = self.audit_rows(leaked["id"])
        self.assertEqual([(row["action"], row["source_url"], row["actor_key_id"]) for row in rows],
                         [("leak_revoke", url, None)])
        self.assertEqual(rows[0]["after"]["source"], "content")
        self.assertEqual(rows[0]["request_id"], r.headers.get("x-request-id"))
        self.assertEqual(self.audit_rows(already["id"]), [], "a key already revoked is not changed again")
        log = self.kg.log_text()
        for e in entries[:3]:
            self.assertNotIn(e["token"], log)
        # The same report again: the labels stand, nothing changes twice.
        again = self.report(entries)
        self.assertEqual([v["label"] for v in again.json], [v["label"] for v in r.json])
        self.assertEqual(len(self.audit_rows(leaked["id"])), 1)

    def test_a_report_that_is_not_signed_by_a_configured_key_changes_nothing(self):
        key = self.create_key(owner="user:3", name="safe")
        entries = [{"token": key["key"], "type": "keygate_api_key", "url": "https://x.example/", "source": "content"}]
        raw = json.dumps(entries).encode()
        forged = [
            ("another key's signature", {"Github-Public-Key-Identifier": KEY_ID,
                                         "Github-Public-Key-Signature": sign(self.other_key, raw)}, raw),
            ("a signature of another body", {"Github-Public-Key-Identifier": KEY_ID,
                                             "Github-Public-Key-Signature": sign(self.signing_key, raw + b" ")}, raw),
            ("an unknown key identifier", {"Github-Public-Key-Identifier": "ab" * 32,
                                           "Github-Public-Key-Signature": sign(self.signing_key, raw)}, raw),
            ("no signature", {"Github-Public-Key-Identifier": KEY_ID}, raw),
            ("no headers", {}, raw),
            ("a signature that is not base64", {"Github-Public-Key-Identifier": KEY_ID,
                                                "Github-Public-Key-Signature": "%%%"}, raw),
        ]
        for what, headers, body in forged:
            with self.subTest(what):
                headers["Content-Type"] = "application/json"
                r = self.call("POST", "/v1/leaks", raw=body, headers=headers)
                self.assertApiError(r, 401, "invalid_signature")
                self.assertNotIn(key["key"], r.body.decode())
        self.assertEqual(self.proxied(key["key"]), 200)
        self.assertEqual(self.audit_rows(key["id"]), [])

    def test_a_malformed_report_is_a_400_naming_the_entry(self):
        self.assertApiError(self.report(None, body=b'[{"token": 7}]'), 400, "invalid_request", "[0].token")
        self.assertApiError(self.report(None, body=b'{"token": "x"}'), 400, "invalid_request")
        self.assertApiError(self.report(None, body=b'not json'), 400, "invalid_request")
        ok = self.report([])
        self.assertEqual((ok.status, ok.json), (200, []))
        self.assertApiError(self.call("GET", "/v1/leaks"), 405, "method_not_allowed")

    def test_with_action_flag_the_key_keeps_working_and_is_marked(self):
        port = harness.free_port()
        flagging = self.start_keygate_for_test(
            name="flagging", api_listen=f"127.0.0.1:{port}",
            api={"leaks": {"public_keys_file": self.keys_file, "action": "flag"}})
        key = self.create_key(owner="user:4", name="flagged")
        url = "https://gist.github.com/someone/1"
        raw = json.dumps([{"token": key["key"], "type": "keygate_api_key", "url": url, "source": "gist"}]).encode()
        headers = {"Content-Type": "application/json", "Github-Public-Key-Identifier": KEY_ID,
                   "Github-Public-Key-Signature": sign(self.signing_key, raw)}
        r = harness.request(port, "POST", "/v1/leaks", headers=headers, body=raw)
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(self.checker.check("POST", "/v1/leaks", r.status, r.json), [])
        self.assertEqual(r.json[0]["label"], "true_positive")
        self.assertEqual(harness.request(flagging.port, "GET", "/things/1", headers=harness.bearer(key["key"])).status, 200)
        shown = self.call("GET", f"/v1/keys/{key['id']}", self.operator["key"]).json
        self.assertEqual(shown["status"], "active")
        self.assertRegex(shown["leaked_at"] or "", r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        self.assertEqual([(row["action"], row["source_url"]) for row in self.audit_rows(key["id"])], [("leak_flag", url)])
        harness.request(port, "POST", "/v1/leaks", headers=headers, body=raw)
        self.assertEqual(len(self.audit_rows(key["id"])), 1, "flagged once")

    def test_without_a_public_keys_file_leak_reports_are_off(self):
        port = harness.free_port()
        self.start_keygate_for_test(name="no-leaks", api_listen=f"127.0.0.1:{port}")
        r = harness.request(port, "POST", "/v1/leaks", headers={"Content-Type": "application/json"}, body=b"[]")
        self.assertEqual(r.status, 404, r.body)
        self.assertEqual(self.checker.check("POST", "/v1/leaks", r.status, r.json), [])


class ApiTlsAndScopesTest(ApiCase):
    """api_listen with the proxy's TLS certificate, and api.scopes."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        ca = test_tls.make_ca(cls.workdir, "ca")
        cert, key = test_tls.make_server_cert(cls.workdir, "server", ca)
        cls.ca_cert = ca[0]
        cls.api_tls_context = test_tls.client_context(cls.ca_cert)
        cls.api_port = harness.free_port()
        cls.kg = cls.start_keygate(api_listen=f"127.0.0.1:{cls.api_port}",
                                   tls={"cert_file": cert, "key_file": key},
                                   api={"scopes": ["orders:read", "orders:write"]})
        cls.operator = cls.create_key(owner="ops:1", name="operator", scopes=["admin:*"])
        cls.load_openapi()

    def test_the_api_speaks_tls_with_the_proxys_certificate_and_refuses_plain_http(self):
        r = self.call("GET", "/v1/keys?limit=1", self.operator["key"])
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(test_tls.peer_certificate(self.api_port, self.ca_cert),
                         test_tls.peer_certificate(self.kg.port, self.ca_cert))
        try:
            plain = harness.request(self.api_port, "GET", "/v1/keys", headers=harness.bearer(self.operator["key"]),
                                    timeout=3)
        except (OSError, http.client.HTTPException):
            plain = None
        self.assertIsNone(plain, "plain HTTP was answered on the TLS listener")
        wrong = ssl.create_default_context()  # the system's trust store: not our CA
        with self.assertRaises(ssl.SSLError):
            conn = http.client.HTTPSConnection("127.0.0.1", self.api_port, timeout=5, context=wrong)
            try:
                conn.request("GET", "/v1/openapi.json")
            finally:
                conn.close()

    def test_scopes_outside_the_configured_vocabulary_are_refused_naming_the_field(self):
        r = self.call("POST", "/v1/keys", self.operator["key"],
                      {"owner": "user:1", "name": "k", "scopes": ["orders:read", "admin:self"]})
        self.assertEqual(r.status, 201, r.body)
        self.assertApiError(self.call("POST", "/v1/keys", self.operator["key"],
                                      {"owner": "user:1", "name": "k", "scopes": ["orders:read", "orders:delete"]}),
                            400, "invalid_request", "scopes[1]")
        self.assertApiError(self.call("PATCH", f"/v1/keys/{r.json['id']}", self.operator["key"],
                                      {"scopes": ["billing:read"]}), 400, "invalid_request", "scopes[0]")


if __name__ == "__main__":
    import unittest
    unittest.main()
