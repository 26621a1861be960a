"""Every row of the design's decision table, over a real socket, against the real keygate
binary with real PostgreSQL, Redis and upstream: status, JSON error body and headers.
(rate_limited / quota_exceeded are issue #4's; store_unavailable is in test_store_failures.)"""
import time
import unittest

import harness
from harness import bearer, request

UPSTREAM_TIMEOUT = "500ms"


class DecisionTableTest(harness.KeygateTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.kg = cls.start_keygate(limits={"upstream_response_timeout": UPSTREAM_TIMEOUT})
        cls.valid = cls.create_key(scopes=["a", "b"])
        cls.reader = cls.create_key(scopes=["inventory:read"])
        cls.writer = cls.create_key(scopes=["inventory:write"])

    def get(self, path, headers=None, method="GET"):
        return request(self.kg.port, method, path, headers=headers)

    def assertForwarded(self, response, method="GET", path=None):
        self.assertStatus(response, 200, self.kg)
        echo = response.json
        self.assertIsInstance(echo, dict, f"not the upstream's answer: {response!r}")
        self.assertEqual(echo.get("method"), method)
        if path is not None:
            self.assertEqual(echo.get("path"), path)
        return echo

    # ---- allowed ----

    def test_valid_key_in_authorization_bearer_is_forwarded(self):
        r = self.get("/things/1?x=2", bearer(self.valid["key"]))
        echo = self.assertForwarded(r, path="/things/1")
        self.assertEqual(echo["query"], "x=2")

    def test_valid_key_in_x_api_key_is_forwarded(self):
        r = self.get("/things/2", {"X-API-Key": self.valid["key"]})
        self.assertForwarded(r, path="/things/2")

    def test_keyed_answer_carries_ratelimit_headers(self):
        r = self.get("/things/3", bearer(self.valid["key"]))
        self.assertForwarded(r)
        limit = int(harness.HIGH_RATE_LIMIT.split("/")[0])
        values = self.assertRateLimitHeaders(r, limit=limit)
        # The window is 60 s; a sliding window frees the last request's share within two.
        self.assertLessEqual(values["RateLimit-Reset"], 120)

    def test_policy_rejection_carries_no_ratelimit_headers(self):
        # Refused before any limit was consulted: RateLimit-* would describe nothing.
        r = self.get("/inventory/1", bearer(self.valid["key"]))
        self.assertError(r, 403, "insufficient_scope", self.kg)
        for name in ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"):
            self.assertIsNone(r.header(name), f"{name} on a policy rejection: {r!r}")

    def test_public_route_passes_without_key(self):
        r = self.get("/public/hello")
        self.assertForwarded(r, path="/public/hello")

    def test_upstream_status_is_passed_through(self):
        r = self.get("/status/404", bearer(self.valid["key"]))
        self.assertStatus(r, 404, self.kg)
        self.assertEqual(r.json.get("path"), "/status/404", "the upstream's own answer")

    # ---- 401 ----

    def test_missing_key_is_401_missing_key_with_www_authenticate(self):
        r = self.get("/things/1")
        self.assertError(r, 401, "missing_key", self.kg)
        challenges = r.headers.get_all("WWW-Authenticate") or []
        self.assertEqual(len(challenges), 1, f"{r!r}")
        self.assertTrue(challenges[0].startswith("Bearer"), f"WWW-Authenticate: {challenges[0]!r}")
        self.assertIsNone(r.header("RateLimit-Limit"), "no key, no RateLimit-* headers")

    def test_malformed_key_is_401_invalid_key(self):
        for bad in ("hello", "kg_live_", "kg_live_short", self.valid["key"] + "x",
                    self.valid["key"][:-1], "kg_live_" + "!" * 38):
            with self.subTest(length=len(bad)):
                self.assertError(self.get("/things/1", bearer(bad)), 401, "invalid_key", self.kg)
                self.assertError(self.get("/things/1", {"X-API-Key": bad}), 401, "invalid_key", self.kg)

    def test_bad_checksum_is_401_invalid_key(self):
        for bad in (harness.with_bad_checksum(self.valid["key"]), harness.with_typo(self.valid["key"])):
            self.assertNotEqual(bad, self.valid["key"])
            self.assertError(self.get("/things/1", bearer(bad)), 401, "invalid_key", self.kg)

    def test_unknown_key_is_401_invalid_key(self):
        gone = self.create_key()
        self.sql(f"DELETE FROM api_keys WHERE id = '{gone['id']}'")
        for _ in range(2):  # the second answer may come from the negative cache
            self.assertError(self.get("/things/1", bearer(gone["key"])), 401, "invalid_key", self.kg)

    def test_expired_key_is_401_expired_key(self):
        k = self.create_key()
        harness.expire_key(self.dsn, k["id"])
        r = self.get("/things/1", bearer(k["key"]))
        self.assertError(r, 401, "expired_key", self.kg)

    def test_cached_key_is_refused_once_it_expires(self):
        k = self.create_key(expires_in="2s")
        created = time.monotonic()
        self.assertForwarded(self.get("/things/1", bearer(k["key"])))  # now in the L1 cache

        def refused():
            r = self.get("/things/1", bearer(k["key"]))
            return r if r.status == 401 else None

        # expires_at is 2 s after creation; allow 3 s more for clocks and cache TTLs.
        r, _ = harness.poll_until(refused, timeout=max(0.5, 5.0 - (time.monotonic() - created)),
                                  interval=0.1)
        self.assertIsNotNone(r, "a key past its expires_at still passes")
        self.assertError(r, 401, "expired_key", self.kg)

    def test_revoked_key_is_401_revoked_key(self):
        k = self.create_key()
        harness.revoke_key(self.dsn, k["id"], self.redis_url)
        self.assertError(self.get("/things/1", bearer(k["key"])), 401, "revoked_key", self.kg)

    def test_inactive_key_is_401_revoked_key(self):
        k = self.create_key()
        self.sql(f"UPDATE api_keys SET is_active = false WHERE id = '{k['id']}'")
        self.assertError(self.get("/things/1", bearer(k["key"])), 401, "revoked_key", self.kg)

    # ---- 403 ----

    def test_client_ip_outside_allowlist_is_403_ip_not_allowed(self):
        k = self.create_key(allowed_ips=["10.0.0.0/8", "192.168.7.0/24"])
        r = self.get("/things/1", bearer(k["key"]))
        self.assertError(r, 403, "ip_not_allowed", self.kg)
        # X-Forwarded-For from a peer that is not a trusted proxy is not believed.
        r = self.get("/things/1", {**bearer(k["key"]), "X-Forwarded-For": "10.1.2.3"})
        self.assertError(r, 403, "ip_not_allowed", self.kg)

    def test_client_ip_inside_allowlist_passes(self):
        k = self.create_key(allowed_ips=["127.0.0.0/8", "::1/128"])
        self.assertForwarded(self.get("/things/1", bearer(k["key"])))

    def test_missing_scope_is_403_insufficient_scope(self):
        self.assertError(self.get("/inventory/1", bearer(self.valid["key"])), 403,
                         "insufficient_scope", self.kg)
        # The route's scope depends on the method: a reader may not POST.
        self.assertError(self.get("/inventory/1", bearer(self.reader["key"]), method="POST"), 403,
                         "insufficient_scope", self.kg)
        self.assertError(self.get("/inventory/1", bearer(self.writer["key"])), 403,
                         "insufficient_scope", self.kg)

    def test_route_scope_present_passes(self):
        self.assertForwarded(self.get("/inventory/1", bearer(self.reader["key"])), path="/inventory/1")
        self.assertForwarded(self.get("/inventory/1", bearer(self.writer["key"]), method="POST"),
                             method="POST", path="/inventory/1")

    # ---- upstream failures ----

    def test_upstream_timeout_is_504_upstream_timeout(self):
        start = time.monotonic()
        r = request(self.kg.port, "GET", "/slow?ms=3000", headers=bearer(self.valid["key"]), timeout=10)
        elapsed = time.monotonic() - start
        self.assertError(r, 504, "upstream_timeout", self.kg)
        self.assertLess(elapsed, 2.5, f"the {UPSTREAM_TIMEOUT} upstream timeout took {elapsed:.2f}s")
        # keygate stays usable afterwards.
        self.assertForwarded(self.get("/things/1", bearer(self.valid["key"])))


class UpstreamRefusedTest(harness.KeygateTestCase):
    """keygate whose upstream port has no listener: connect refused."""
    start_upstream = False

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.kg = cls.start_keygate()  # upstream: a free port nobody listens on
        cls.valid = cls.create_key()

    def test_upstream_refusing_is_502_upstream_unavailable(self):
        r = request(self.kg.port, "GET", "/things/1", headers=bearer(self.valid["key"]))
        self.assertError(r, 502, "upstream_unavailable", self.kg)

    def test_keyed_502_carries_ratelimit_headers(self):
        r = request(self.kg.port, "GET", "/things/1", headers=bearer(self.valid["key"]))
        self.assertStatus(r, 502, self.kg)
        self.assertRateLimitHeaders(r)

    def test_authorization_comes_before_forwarding(self):
        r = request(self.kg.port, "GET", "/things/1")
        self.assertError(r, 401, "missing_key", self.kg)


if __name__ == "__main__":
    unittest.main()
