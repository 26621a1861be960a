"""A bad configuration stops the real keygate binary before it does anything: one line on
stderr, `keygate: <file>:<line>: <option>: <problem>`, nothing on stdout, exit code 2.

Needs only $KEYGATE_BIN (no stores: every case fails while the config is read, before any
connection is attempted).
"""
import os
import socket
import subprocess
import tempfile
import unittest


def keygate_bin():
    path = os.environ.get("KEYGATE_BIN")
    if not path or not os.access(path, os.X_OK):
        raise RuntimeError("KEYGATE_BIN must name the built keygate binary (run through ctest)")
    return path


def clean_env(extra=None):
    """The environment without KEYGATE_* settings, so the caller's shell cannot change the
    outcome, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYGATE_")}
    env.update(extra or {})
    return env


def closed_port():
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# A command that reads the config and then would use the stores, and the server itself.
COMMANDS = (["keys", "list"], ["serve"])


class ConfigErrorTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory(prefix="keygate-config-")
        self.addCleanup(self.dir.cleanup)

    def write(self, text, name="config.yaml"):
        path = os.path.join(self.dir.name, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def run_keygate(self, args, env=None):
        return subprocess.run([keygate_bin(), *args], cwd=self.dir.name, env=clean_env(env),
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=30)

    def assertRejected(self, config_path, expected_line, env=None):
        """Every command exits 2 with exactly `keygate: <expected_line>` on stderr."""
        for command in COMMANDS:
            with self.subTest(command=" ".join(command)):
                result = self.run_keygate(["--config", config_path, *command], env)
                self.assertEqual(result.stderr, f"keygate: {expected_line}\n")
                self.assertEqual(result.stdout, "")
                self.assertEqual(result.returncode, 2)

    def test_unknown_option_names_line_and_suggests(self):
        path = self.write("mode: proxy\ncache:\n  tll: 5s\n")
        self.assertRejected(path, f"{path}:3: cache.tll: unknown option (did you mean cache.ttl?)")

    def test_bad_duration_names_line_option_and_value(self):
        path = self.write("mode: proxy\nlisten: 127.0.0.1:8080\ncache:\n  ttl: soon\n")
        self.assertRejected(path, f'{path}:4: cache.ttl: expected a duration like 30s, got "soon"')

    def test_yaml_syntax_error_reports_a_one_based_line(self):
        path = self.write("mode: proxy\nroutes: [a,\nlisten: x\n")
        self.assertRejected(path, f"{path}:4: invalid YAML: end of sequence flow not found")

    def test_a_standard_method_in_the_wrong_case_is_refused_with_the_fix(self):
        path = self.write("routes:\n  - { path: /public/*, public: true }\n"
                          "  - { path: /things/*, methods: [PURGE, get] }\n")
        self.assertRejected(
            path, f'{path}:3: routes[1].methods[1]: "get" is not a method: methods are '
                  "case-sensitive; write GET")

    def test_routes_default_and_on_store_error_take_only_their_words(self):
        path = self.write("routes_default: allow\n")
        self.assertRejected(path, f'{path}:1: routes_default: expected deny or key, got "allow"')
        path = self.write("mode: proxy\non_store_error: fail-open\n")
        self.assertRejected(path, f'{path}:2: on_store_error: expected closed or open, got "fail-open"')

    def test_the_old_on_redis_error_words_name_their_replacement(self):
        path = self.write("rate_limit:\n  on_redis_error: deny\n")
        self.assertRejected(
            path, f'{path}:2: rate_limit.on_redis_error: "deny" was replaced by on_redis_error: '
                  "error together with on_store_error: closed")

    def test_missing_file_is_named_with_the_reason(self):
        path = os.path.join(self.dir.name, "absent.yaml")
        self.assertRejected(path, f"cannot read config file {path}: No such file or directory")

    def test_unset_variable_is_named(self):
        path = self.write("postgres:\n  dsn: postgresql://keygate:${KG_E2E_PASSWORD}@127.0.0.1/kg\n")
        self.assertRejected(
            path,
            f"{path}:2: postgres.dsn: environment variable KG_E2E_PASSWORD is not set "
            "(write ${KG_E2E_PASSWORD:-default} to give a default)")

    def test_bad_environment_override_is_named(self):
        path = self.write("threads: 2\n")
        self.assertRejected(
            path, 'KEYGATE_THREADS: threads: expected auto or a whole number from 1 to 256, got "many"',
            env={"KEYGATE_THREADS": "many"})

    def test_keygate_config_variable_names_the_file(self):
        path = self.write("mode: edge\n", name="from-env.yaml")
        result = self.run_keygate(["keys", "list"], env={"KEYGATE_CONFIG": path})
        self.assertEqual(result.stderr, f'keygate: {path}:1: mode: expected proxy or authz, got "edge"\n')
        self.assertEqual(result.returncode, 2)

    def test_config_yaml_in_the_working_directory_is_read_by_default(self):
        self.write("usage:\n  batch_size: 0\n")
        result = self.run_keygate(["keys", "list"])
        self.assertEqual(
            result.stderr,
            'keygate: config.yaml:2: usage.batch_size: expected a whole number of at least 1, got "0"\n')
        self.assertEqual(result.returncode, 2)

    def test_expanded_config_passes_and_the_store_error_follows(self):
        # The same file as test_unset_variable_is_named, with the variable set: the config is
        # accepted, so what fails now is PostgreSQL (nothing listens there): exit 1, not 2.
        port = closed_port()
        path = self.write(
            f"postgres:\n  dsn: postgresql://keygate:${{KG_E2E_PASSWORD}}@127.0.0.1:{port}/kg\n")
        result = self.run_keygate(["--config", path, "keys", "list"],
                                  env={"KG_E2E_PASSWORD": "e2e-secret"})
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertEqual(len(result.stderr.splitlines()), 1, result.stderr)
        self.assertNotIn(path, result.stderr)
        self.assertNotIn("e2e-secret", result.stderr)


if __name__ == "__main__":
    unittest.main()
