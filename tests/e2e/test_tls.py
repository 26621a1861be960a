"""TLS end to end (issue #7): keygate terminates TLS with a certificate the test generates with
the openssl CLI (a CA, and a server certificate for 127.0.0.1 and localhost), reloads it on
SIGHUP, and speaks TLS to an https upstream whose certificate it verifies.

A client verifying against the right CA gets through; one verifying against another CA fails
its handshake; keygate verifying its upstream against the wrong CA answers 502."""
import http.client
import http.server
import json
import os
import shutil
import signal
import ssl
import subprocess
import threading
import unittest

import harness


# ---- certificates ---------------------------------------------------------------------------

def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, timeout=30,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def make_ca(folder, name):
    """A self-signed CA: (cert path, key path)."""
    key, cert = os.path.join(folder, f"{name}.key"), os.path.join(folder, f"{name}.pem")
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", key, "-out", cert, "-days", "2", "-subj", f"/CN={name}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=folder)
    return cert, key


def make_server_cert(folder, name, ca):
    """A server certificate for 127.0.0.1 and localhost signed by `ca`: (cert path, key path)."""
    key, csr, cert = (os.path.join(folder, f"{name}.{ext}") for ext in ("key", "csr", "pem"))
    ext = os.path.join(folder, f"{name}.ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
                "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
                "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", key, "-out", csr, "-subj", f"/CN={name}", cwd=folder)
    _openssl("x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-set_serial",
             str(int.from_bytes(os.urandom(8), "big")), "-out", cert, "-days", "2",
             "-extfile", ext, cwd=folder)
    return cert, key


def client_context(ca_cert):
    context = ssl.create_default_context(cafile=ca_cert)
    context.check_hostname = True
    return context


def https_request(port, path, ca_cert, headers=None, timeout=5.0):
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout,
                                       context=client_context(ca_cert))
    try:
        conn.request("GET", path, headers=headers or {})
        r = conn.getresponse()
        return harness.Response(r.status, r.msg, r.read())
    finally:
        conn.close()


def peer_certificate(port, ca_cert, timeout=5.0):
    """The DER certificate keygate presents on a new connection (verified against ca_cert)."""
    import socket
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
        with client_context(ca_cert).wrap_socket(raw, server_hostname="127.0.0.1") as s:
            return s.getpeercert(binary_form=True)


# ---- an https upstream (a thread of this process) -------------------------------------------

class _EchoHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def do_GET(self):
        body = json.dumps({"path": self.path, "tls_upstream": True,
                           "headers": {k.lower(): v for k, v in self.headers.items()}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class TlsUpstream:
    def __init__(self, cert):
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _EchoHandler)
        self.server.daemon_threads = True
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert[0], cert[1])
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.1}, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


# ---- the tests ------------------------------------------------------------------------------

class TlsTest(harness.KeygateTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if shutil.which("openssl") is None:
            raise RuntimeError("the openssl command is needed to generate test certificates")
        cls.certs = os.path.join(cls.workdir, "certs")
        os.makedirs(cls.certs)
        cls.ca = make_ca(cls.certs, "kg-test-ca")
        cls.other_ca = make_ca(cls.certs, "kg-other-ca")
        cls.server = make_server_cert(cls.certs, "server", cls.ca)
        cls.kg = cls.start_keygate(tls={"cert_file": cls.server[0], "key_file": cls.server[1]})
        cls.key = cls.create_key(scopes=["inventory:read"])

    def test_a_client_verifying_with_the_generated_ca_gets_through(self):
        r = https_request(self.kg.port, "/things/1?x=1", self.ca[0],
                          headers=harness.bearer(self.key["key"]))
        self.assertStatus(r, 200, self.kg)
        seen = r.json
        self.assertEqual(seen["path"], "/things/1")
        self.assertEqual(seen["headers"].get("x-forwarded-proto"), "https")
        self.assertEqual(seen["headers"].get("x-api-key-id"), self.key["id"])
        self.assertNotIn("authorization", seen["headers"])

    def test_a_client_verifying_with_another_ca_fails_its_handshake(self):
        with self.assertRaises(ssl.SSLCertVerificationError):
            https_request(self.kg.port, "/things/1", self.other_ca[0],
                          headers=harness.bearer(self.key["key"]))
        # keygate still serves the next client.
        r = https_request(self.kg.port, "/things/2", self.ca[0],
                          headers=harness.bearer(self.key["key"]))
        self.assertStatus(r, 200, self.kg)

    def test_plain_http_on_the_tls_listener_gets_no_http_answer(self):
        with self.assertRaises((http.client.HTTPException, ConnectionError, OSError)):
            harness.request(self.kg.port, "GET", "/things/1", timeout=5.0)
        value = harness.metric_value(self.kg.metrics(), "keygate_tls_handshake_failures_total",
                                     side="client")
        self.assertGreaterEqual(value, 1)

    def test_sighup_reloads_the_certificate_and_keeps_open_connections(self):
        certs = os.path.join(self.workdir, "rotating")
        os.makedirs(certs)
        cert, key = os.path.join(certs, "live.pem"), os.path.join(certs, "live.key")
        first = make_server_cert(certs, "first", self.ca)
        shutil.copy(first[0], cert)
        shutil.copy(first[1], key)
        kg = self.start_keygate_for_test(tls={"cert_file": cert, "key_file": key})
        before = peer_certificate(kg.port, self.ca[0])
        open_conn = http.client.HTTPSConnection("127.0.0.1", kg.port, timeout=5,
                                                context=client_context(self.ca[0]))
        self.addCleanup(open_conn.close)
        open_conn.request("GET", "/things/a", headers=harness.bearer(self.key["key"]))
        r = open_conn.getresponse()
        r.read()
        self.assertEqual(r.status, 200)

        # A broken file is rejected and the running certificate kept.
        with open(cert, "w") as f:
            f.write("not a certificate\n")
        kg.proc.send_signal(signal.SIGHUP)
        rejected, _ = harness.poll_until(lambda: harness.metric_value(
            kg.metrics(), "keygate_config_reloads_total", outcome="rejected"), 5.0)
        self.assertEqual(rejected, 1, kg.log_tail())
        self.assertEqual(peer_certificate(kg.port, self.ca[0]), before)

        # A new certificate from another CA: new connections get it.
        second = make_server_cert(certs, "second", self.other_ca)
        shutil.copy(second[0], cert)
        shutil.copy(second[1], key)
        kg.proc.send_signal(signal.SIGHUP)

        def rotated():
            try:
                return peer_certificate(kg.port, self.other_ca[0]) != before
            except ssl.SSLError:
                return False
        done, _ = harness.poll_until(rotated, 5.0, interval=0.05)
        self.assertTrue(done, f"the new certificate was not served\n{kg.log_tail()}")
        with self.assertRaises(ssl.SSLCertVerificationError):
            peer_certificate(kg.port, self.ca[0])
        # The connection opened before the reload still works.
        open_conn.request("GET", "/things/b", headers=harness.bearer(self.key["key"]))
        r = open_conn.getresponse()
        r.read()
        self.assertEqual(r.status, 200)
        self.assertTrue(kg.alive())

    def test_an_https_upstream_verified_with_its_ca_is_reached(self):
        upstream = TlsUpstream(self.server)
        self.addCleanup(upstream.stop)
        kg = self.start_keygate_for_test(upstream=f"https://127.0.0.1:{upstream.port}",
                                         upstream_tls={"ca_file": self.ca[0]})
        r = kg.get("/things/up", key=self.key["key"])
        self.assertStatus(r, 200, kg)
        self.assertTrue(r.json.get("tls_upstream"))
        self.assertEqual(r.json["path"], "/things/up")
        # A second request reuses the pooled TLS connection.
        self.assertStatus(kg.get("/things/again", key=self.key["key"]), 200, kg)

    def test_an_https_upstream_with_a_certificate_of_another_ca_gets_502(self):
        upstream = TlsUpstream(self.server)
        self.addCleanup(upstream.stop)
        kg = self.start_keygate_for_test(upstream=f"https://127.0.0.1:{upstream.port}",
                                         upstream_tls={"ca_file": self.other_ca[0]})
        r = kg.get("/things/up", key=self.key["key"])
        self.assertError(r, 502, "upstream_unavailable", kg)
        value = harness.metric_value(kg.metrics(), "keygate_tls_handshake_failures_total",
                                     side="upstream")
        self.assertGreaterEqual(value, 1)


if __name__ == "__main__":
    unittest.main()
