"""The key-management API (api_listen; issue 14) through the real binary, against real
PostgreSQL and Redis: admin tokens (admin:* and admin:self), owner isolation in the handler
(another owner's key is a 404), create / list / show / revoke / rotate / verify, bad input,
and revocation through the API refused by a second running keygate within a second. Every
answer of the run is checked against the served OpenAPI document (openapi_check.py)."""
import json
import unittest

import harness
from api_case import ApiCase


class ApiTest(ApiCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.api_port = harness.free_port()
        cls.kg = cls.start_keygate(api_listen=f"127.0.0.1:{cls.api_port}", rate_limit={"default": "1000000/60s"})
        cls.operator = cls.create_key(owner="ops:1", name="operator", scopes=["admin:*"])
        cls.owner = cls.create_key(owner="team:7", name="team 7 admin", scopes=["admin:self", "orders:read"])
        cls.plain = cls.create_key(owner="team:7", name="no admin", scopes=["orders:read"])
        cls.load_openapi()

    def proxied(self, key, kg=None):
        return harness.request((kg or self.kg).port, "GET", "/things/1", headers=harness.bearer(key)).status

    # ---- who may call ----

    def test_a_call_without_a_valid_admin_token_is_refused(self):
        r = self.call("GET", "/v1/keys")
        self.assertApiError(r, 401, "missing_token")
        self.assertEqual(r.headers.get("www-authenticate"), "Bearer")
        self.assertApiError(self.call("GET", "/v1/keys", token="kg_live_" + "a" * 38), 401, "invalid_token")
        self.assertApiError(self.call("GET", "/v1/keys", token=harness.unknown_key()), 401, "invalid_token")
        self.assertApiError(self.call("GET", "/v1/keys", token=self.plain["key"]), 403, "forbidden")
        revoked = self.create_key(owner="ops:2", scopes=["admin:*"])
        harness.revoke_key(self.dsn, revoked["id"])
        self.assertApiError(self.call("GET", "/v1/keys", token=revoked["key"]), 401, "revoked_token")
        self.assertNotIn(revoked["key"], self.kg.log_text())

    # ---- operator ----

    def test_an_operator_creates_a_key_the_proxy_serves_and_sees_it_listed_and_shown(self):
        r = self.call("POST", "/v1/keys", self.operator["key"],
                      {"owner": "user:42", "name": "from the API", "scopes": ["a"], "rate_limit": "100/60s",
                       "expires_in": "30d", "metadata": {"ticket": 7}, "allowed_ips": ["127.0.0.1"]})
        self.assertEqual(r.status, 201, r.body)
        created = r.json
        self.assertTrue(created["key"].startswith("kg_live_"))
        self.assertEqual((created["owner"], created["rate_limit"], created["metadata"]), ("user:42", "100/60s", {"ticket": 7}))
        self.assertEqual(self.proxied(created["key"]), 200)
        shown = self.call("GET", f"/v1/keys/{created['id']}", self.operator["key"]).json
        self.assertNotIn("key", shown, "the key itself is shown once, at creation")
        self.assertEqual(shown["id"], created["id"])
        listed = self.call("GET", "/v1/keys?owner=user:42", self.operator["key"]).json
        self.assertIn(created["id"], [k["id"] for k in listed["keys"]])
        self.assertNotIn(created["key"], json.dumps(listed))
        samples = self.kg.metrics()
        self.assertGreaterEqual(harness.metric_value(samples, "keygate_api_responses_total", endpoint="keys", **{"class": "2xx"}), 2)
        self.assertGreaterEqual(harness.metric_value(samples, "keygate_api_responses_total", endpoint="key", **{"class": "2xx"}), 1)
        self.assertGreaterEqual(harness.metric_value(samples, "keygate_api_latency_seconds_count"), 3)

    def pages(self, target, token, limit):
        """Every key id of a listing, following next_cursor page by page."""
        seen, cursor = [], None
        while True:
            page = self.call("GET", f"{target}&limit={limit}" + (f"&cursor={cursor}" if cursor else ""), token).json
            self.assertLessEqual(len(page["keys"]), limit)
            seen += [k["id"] for k in page["keys"]]
            cursor = page["next_cursor"]
            if cursor is None:
                return seen
            self.assertEqual(len(page["keys"]), limit, "a page before the last is full")

    def test_listing_pages_with_a_cursor_and_filters_by_status(self):
        owner = "pager:1"
        ids = [self.call("POST", "/v1/keys", self.operator["key"], {"owner": owner, "name": f"k{i}"}).json["id"]
               for i in range(5)]
        for i in (1, 3):
            self.call("POST", f"/v1/keys/{ids[i]}/revoke", self.operator["key"])
        self.assertEqual(self.pages(f"/v1/keys?owner={owner}", self.operator["key"], 2), ids)
        self.assertEqual(self.pages(f"/v1/keys?owner={owner}", self.operator["key"], 5), ids)
        # The status filter is applied before the page is cut (in SQL): full pages of matches.
        self.assertEqual(self.pages(f"/v1/keys?owner={owner}&status=active", self.operator["key"], 1),
                         [ids[0], ids[2], ids[4]])
        self.assertEqual(self.pages(f"/v1/keys?owner={owner}&status=revoked", self.operator["key"], 1), [ids[1], ids[3]])
        # A cursor stays valid when its key is deleted: it is a position, not a key to find.
        first = self.call("GET", f"/v1/keys?owner={owner}&limit=1", self.operator["key"]).json
        self.call("DELETE", f"/v1/keys/{ids[0]}", self.operator["key"])
        rest = self.call("GET", f"/v1/keys?owner={owner}&limit=10&cursor={first['next_cursor']}", self.operator["key"])
        self.assertEqual([k["id"] for k in rest.json["keys"]], ids[1:])
        self.assertApiError(self.call("GET", "/v1/keys?limit=0", self.operator["key"]), 400, "invalid_request", "limit")
        self.assertApiError(self.call("GET", "/v1/keys?status=gone", self.operator["key"]), 400, "invalid_request", "status")
        self.assertApiError(self.call("GET", "/v1/keys?colour=red", self.operator["key"]), 400, "invalid_request", "colour")
        for cursor in ("nope", "12.not-a-uuid", f"-5.{ids[0]}", f".{ids[0]}", "1" * 20 + f".{ids[0]}"):
            self.assertApiError(self.call("GET", f"/v1/keys?cursor={cursor}", self.operator["key"]),
                                400, "invalid_request", "cursor")

    # ---- owner tokens ----

    def test_an_owner_token_manages_only_its_own_owners_keys(self):
        mine = self.call("POST", "/v1/keys", self.owner["key"], {"name": "mine", "scopes": ["orders:read"]})
        self.assertEqual(mine.status, 201, mine.body)
        self.assertEqual(mine.json["owner"], "team:7")
        theirs = self.create_key(owner="team:8", name="theirs")
        self.assertApiError(self.call("POST", "/v1/keys", self.owner["key"], {"owner": "team:8", "name": "x"}),
                            403, "forbidden", "owner")
        self.assertApiError(self.call("POST", "/v1/keys", self.owner["key"], {"name": "x", "scopes": ["orders:write"]}),
                            403, "forbidden", "scopes[0]")
        self.assertApiError(self.call("POST", "/v1/keys", self.owner["key"], {"name": "x", "scopes": ["admin:*"]}),
                            403, "forbidden", "scopes[0]")
        # Another owner's key is not found, whatever the call: no existence leak.
        for method, target in (("GET", f"/v1/keys/{theirs['id']}"), ("POST", f"/v1/keys/{theirs['id']}/revoke"),
                               ("POST", f"/v1/keys/{theirs['id']}/rotate")):
            self.assertApiError(self.call(method, target, self.owner["key"]), 404, "not_found")
        self.assertApiError(self.call("GET", "/v1/keys/00000000-0000-4000-8000-000000000000", self.owner["key"]),
                            404, "not_found")
        self.assertEqual(self.proxied(theirs["key"]), 200, "a refused revoke changed nothing")
        owners = {k["owner"] for k in self.call("GET", "/v1/keys", self.owner["key"]).json["keys"]}
        self.assertEqual(owners, {"team:7"})
        self.assertEqual(self.call("GET", "/v1/keys?owner=team:8", self.owner["key"]).json["keys"], [])

    # ---- revoke, rotate ----

    def test_a_revocation_through_the_api_is_refused_by_another_running_keygate_within_a_second(self):
        other = self.start_keygate_for_test(name="second", cache={"ttl": "60s", "negative_ttl": "5s"})
        key = self.call("POST", "/v1/keys", self.operator["key"], {"owner": "user:9", "name": "doomed"}).json
        self.assertEqual(self.proxied(key["key"], other), 200)
        self.assertEqual(self.proxied(key["key"], other), 200)  # cached there now
        r = self.call("POST", f"/v1/keys/{key['id']}/revoke", self.operator["key"])
        self.assertEqual((r.status, r.json["already_revoked"]), (200, False), r.body)
        refused, elapsed = harness.poll_until(lambda: self.proxied(key["key"], other) == 401, timeout=5.0)
        self.assertTrue(refused, f"the second keygate still serves the key\n{other.log_tail()}")
        self.assertLess(elapsed, 1.0)
        print(f"revoked through the API: the second keygate refused it after {elapsed * 1000:.0f} ms", flush=True)
        again = self.call("POST", f"/v1/keys/{key['id']}/revoke", self.operator["key"])
        self.assertEqual((again.status, again.json["already_revoked"]), (200, True))

    def test_rotate_gives_a_new_key_and_the_old_one_a_grace_period(self):
        old = self.call("POST", "/v1/keys", self.operator["key"], {"owner": "user:10", "name": "rotating"}).json
        r = self.call("POST", f"/v1/keys/{old['id']}/rotate", self.operator["key"], {"grace": "1h"})
        self.assertEqual(r.status, 201, r.body)
        self.assertEqual(r.json["previous_id"], old["id"])
        self.assertEqual(self.proxied(r.json["key"]), 200)
        self.assertEqual(self.proxied(old["key"]), 200)
        self.assertApiError(self.call("POST", f"/v1/keys/{old['id']}/rotate", self.operator["key"], {"grace": "31d"}),
                            400, "invalid_request", "grace")

    # ---- audit, and the database's own isolation under the API ----

    def test_each_change_writes_an_audit_row_in_its_transaction_and_only_operators_read_them(self):
        r = self.call("POST", "/v1/keys", self.owner["key"], {"name": "audited", "scopes": ["orders:read"]})
        created, request_id = r.json, r.headers.get("x-request-id")
        self.assertRegex(request_id or "", r"^[0-9a-f]{32}$")
        self.call("POST", f"/v1/keys/{created['id']}/revoke", self.owner["key"])
        self.call("POST", f"/v1/keys/{created['id']}/revoke", self.owner["key"])  # already revoked: no row
        rows = self.call("GET", f"/v1/audit?key_id={created['id']}", self.operator["key"]).json["entries"]
        self.assertEqual([e["action"] for e in rows], ["revoke", "create"])
        create = rows[1]
        self.assertEqual((create["actor_key_id"], create["actor_owner"], create["key_owner"], create["request_id"]),
                         (self.owner["id"], "team:7", "team:7", request_id))
        self.assertIsNone(create["before"])
        self.assertEqual(create["after"]["name"], "audited")
        self.assertNotIn(created["key"], json.dumps(rows))
        self.assertIsNotNone(rows[0]["after"]["revoked_at"])
        self.assertApiError(self.call("GET", "/v1/audit", self.owner["key"]), 403, "forbidden")
        self.assertApiError(self.call("GET", "/v1/audit?key_id=x", self.operator["key"]), 400, "invalid_request", "key_id")

    def test_the_api_reads_as_keygate_api_and_the_proxy_as_the_tables_owner(self):
        # Take SELECT on api_keys from keygate_api: the API's calls (which run as that role,
        # under the row-level security policies) fail with 503, while the proxy, which reads
        # as the tables' owner, still serves the key.
        key = self.create_key(owner="team:7", name="through the role")
        self.assertEqual(self.call("GET", f"/v1/keys/{key['id']}", self.owner["key"]).status, 200)
        self.sql("REVOKE SELECT ON api_keys FROM keygate_api")
        try:
            self.assertApiError(self.call("GET", f"/v1/keys/{key['id']}", self.operator["key"]), 503, "store_unavailable")
            self.assertEqual(self.proxied(key["key"]), 200)
        finally:
            self.sql("GRANT SELECT ON api_keys TO keygate_api")
        self.assertEqual(self.call("GET", f"/v1/keys/{key['id']}", self.operator["key"]).status, 200)

    # ---- patch, delete ----

    def test_patch_changes_what_it_names_and_the_proxy_applies_it(self):
        other = self.start_keygate_for_test(name="patched", cache={"ttl": "60s", "negative_ttl": "5s"})
        key = self.call("POST", "/v1/keys", self.operator["key"],
                        {"owner": "user:12", "name": "before", "scopes": ["a"], "rate_limit": "100/60s"}).json
        self.assertEqual(self.proxied(key["key"], other), 200)
        r = self.call("PATCH", f"/v1/keys/{key['id']}", self.operator["key"],
                      {"name": "after", "rate_limit": None, "metadata": {"team": "x"}, "allowed_ips": ["10.0.0.0/8"]})
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual((r.json["name"], r.json["rate_limit"], r.json["metadata"], r.json["allowed_ips"]),
                         ("after", None, {"team": "x"}, ["10.0.0.0/8"]))
        # 127.0.0.1 is no longer allowed: the second keygate refuses it within a second.
        refused, elapsed = harness.poll_until(lambda: self.proxied(key["key"], other) == 403, timeout=5.0)
        self.assertTrue(refused, other.log_tail())
        self.assertLess(elapsed, 1.0)
        rows = self.call("GET", f"/v1/audit?key_id={key['id']}", self.operator["key"]).json["entries"]
        self.assertEqual(rows[0]["action"], "update")
        self.assertEqual((rows[0]["before"]["name"], rows[0]["after"]["name"]), ("before", "after"))
        self.assertApiError(self.call("PATCH", f"/v1/keys/{key['id']}", self.operator["key"], {}), 400, "invalid_request")
        self.assertApiError(self.call("PATCH", f"/v1/keys/{key['id']}", self.operator["key"], {"owner": "user:1"}),
                            400, "invalid_request", "owner")
        self.assertApiError(self.call("PATCH", f"/v1/keys/{key['id']}", self.owner["key"], {"name": "x"}), 404, "not_found")
        mine = self.call("POST", "/v1/keys", self.owner["key"], {"name": "mine"}).json
        self.assertApiError(self.call("PATCH", f"/v1/keys/{mine['id']}", self.owner["key"], {"scopes": ["orders:write"]}),
                            403, "forbidden", "scopes[0]")
        self.assertEqual(self.call("PATCH", f"/v1/keys/{mine['id']}", self.owner["key"], {"scopes": ["orders:read"]}).status, 200)

    def test_delete_removes_the_key_and_the_proxy_refuses_it(self):
        key = self.call("POST", "/v1/keys", self.operator["key"], {"owner": "user:13", "name": "doomed"}).json
        self.assertEqual(self.proxied(key["key"]), 200)
        theirs = self.create_key(owner="team:8", name="not yours")
        self.assertApiError(self.call("DELETE", f"/v1/keys/{theirs['id']}", self.owner["key"]), 404, "not_found")
        self.assertEqual(self.sql(f"SELECT count(*) FROM api_keys WHERE id = '{theirs['id']}'"), "1")
        r = self.call("DELETE", f"/v1/keys/{key['id']}", self.operator["key"])
        self.assertEqual((r.status, r.json), (200, {"id": key["id"], "deleted": True}))
        refused, _ = harness.poll_until(lambda: self.proxied(key["key"]) == 401, timeout=5.0)
        self.assertTrue(refused)
        self.assertApiError(self.call("GET", f"/v1/keys/{key['id']}", self.operator["key"]), 404, "not_found")
        self.assertApiError(self.call("DELETE", f"/v1/keys/{key['id']}", self.operator["key"]), 404, "not_found")
        rows = self.call("GET", f"/v1/audit?key_id={key['id']}", self.operator["key"]).json["entries"]
        self.assertEqual([e["action"] for e in rows], ["delete", "create"])
        self.assertIsNone(rows[0]["after"])

    def test_usage_by_status_and_hour_for_the_keys_owner_only(self):
        config = self.keygate_config(api_listen=f"127.0.0.1:{harness.free_port()}")
        config["usage"] = {"enabled": True, "flush_interval": "200ms",
                           "spill_path": f"{self.workdir}/api-usage.spill"}
        kg = self.start_keygate_for_test(config=config, name="usage")
        api = int(config["api_listen"].rsplit(":", 1)[1])
        key = self.create_key(owner="team:7", name="used")
        for path in ("/things/1", "/things/2", "/things/3"):
            harness.request(kg.port, "GET", path, headers=harness.bearer(key["key"]))
        harness.request(kg.port, "GET", "/things/1", headers=harness.bearer(harness.with_typo(key["key"])))

        def usage(token, query=""):
            r = harness.request(api, "GET", f"/v1/keys/{key['id']}/usage{query}", headers=harness.bearer(token))
            self.assertEqual(self.checker.check("GET", f"/v1/keys/{key['id']}/usage", r.status, r.json), [], r.body)
            return r

        counted, _ = harness.poll_until(lambda: usage(self.owner["key"]).json["requests"] == 3, timeout=10.0)
        self.assertTrue(counted, kg.log_tail())
        report = usage(self.owner["key"], "?since=1h").json
        self.assertEqual([(s["status"], s["requests"]) for s in report["by_status"]], [(200, 3)])
        self.assertEqual(sum(h["requests"] for h in report["by_hour"]), 3)
        self.assertRegex(report["by_hour"][-1]["hour"], r"^\d{4}-\d\d-\d\dT\d\d:00:00Z$")
        self.assertIsNotNone(report["p99_ms"])
        self.assertEqual(report["since"], "1h")
        other = self.create_key(owner="team:8", name="other admin", scopes=["admin:self"])
        self.assertEqual(usage(other["key"]).status, 404)
        self.assertEqual(usage(self.owner["key"], "?since=40d").status, 400)

    # ---- verify ----

    def test_verify_answers_the_proxys_decision_for_a_method_path_and_client(self):
        key = self.create_key(owner="user:11", scopes=["a"], allowed_ips=["10.0.0.0/8"])
        ok = self.call("POST", "/v1/verify", body={"key": key["key"], "path": "/things/1", "client_ip": "10.1.2.3"})
        self.assertEqual((ok.status, ok.json["valid"], ok.json["code"], ok.json["owner"]), (200, True, "ok", "user:11"))
        self.assertIn("rate_limit", ok.json)
        elsewhere = self.call("POST", "/v1/verify", body={"key": key["key"], "path": "/things/1", "client_ip": "192.0.2.1"})
        self.assertEqual((elsewhere.json["valid"], elsewhere.json["code"]), (False, "ip_not_allowed"))
        unknown = self.call("POST", "/v1/verify", body={"key": harness.unknown_key()})
        self.assertEqual((unknown.status, unknown.json["valid"], unknown.json["code"]), (200, False, "invalid_key"))
        self.assertApiError(self.call("POST", "/v1/verify", body={"path": "/x"}), 400, "invalid_request", "key")
        bad = self.call("POST", "/v1/verify", body={"key": "not-a-key-" + "x" * 20, "client_ip": "nowhere"})
        self.assertApiError(bad, 400, "invalid_request", "client_ip")
        self.assertNotIn("not-a-key-", bad.body.decode())

    # ---- bad input ----

    def test_bad_input_gets_a_json_answer_naming_the_field(self):
        op = self.operator["key"]
        cases = [
            ({"name": "x", "colour": "red"}, "colour"),
            ({"name": 5}, "name"),
            ({"name": "n" * 201}, "name"),
            ({"name": "x", "allowed_ips": ["10.0.0.0/33"]}, "allowed_ips[0]"),
            ({"name": "x", "scopes": ["a", "b c"]}, "scopes[1]"),
            ({"name": "x", "expires_at": "2020-01-01T00:00:00Z"}, "expires_at"),
            ({"name": "x", "rate_limit": "often"}, "rate_limit"),
            ({"owner": "nobody", "name": "x"}, "owner"),
        ]
        for body, field in cases:
            with self.subTest(field=field):
                self.assertApiError(self.call("POST", "/v1/keys", op, body), 400, "invalid_request", field)
        whole = self.call("POST", "/v1/keys", op, raw="{not json")
        self.assertApiError(whole, 400, "invalid_request")
        self.assertNotIn("field", whole.json, "a body that is not JSON names no field")
        r = self.call("PUT", "/v1/keys", op)
        self.assertApiError(r, 405, "method_not_allowed")
        self.assertEqual(r.headers.get("allow"), "GET, POST")
        self.assertApiError(self.call("GET", "/v1/nothing", op), 404, "not_found")
        big = self.call("POST", "/v1/keys", op, raw=json.dumps({"name": "x", "description": "d" * 70000}))
        self.assertApiError(big, 413, "body_too_large")


if __name__ == "__main__":
    unittest.main()
