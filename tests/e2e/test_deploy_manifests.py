"""The Kubernetes manifests (deploy/k8s) and the container image (deploy/Dockerfile), offline.

No cluster and no Docker engine are needed, so the checks are of three kinds:
  * structure: every manifest parses, kustomization.yaml lists exactly the manifest files, and
    (when kubectl is installed) `kubectl kustomize` renders both kustomizations;
  * consistency: the Deployment, Service, PodDisruptionBudget, migration Job, Secret and dev
    stores agree with each other and with the config.yaml the ConfigMap is made from (ports,
    probe paths, mounted paths, environment variables, replica counts, grace periods);
  * the real binary: keygate itself loads the embedded config.yaml with the environment the pod
    gives it (exit 1 "store unreachable", not 2 "config error"), and the Dockerfile's runtime
    stage installs the Debian packages of every shared library `ldd keygate` shows.

Needs PyYAML (Debian's python3-yaml). The binary checks use $KEYGATE_BIN (set by ctest).
"""
import base64
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
import unittest
from pathlib import Path
from urllib.parse import unquote, urlsplit

try:
    import yaml
except ImportError as error:  # pragma: no cover - an environment problem, said plainly
    raise ImportError("test_deploy_manifests needs PyYAML: apt-get install python3-yaml") from error

SOURCE_DIR = Path(os.environ.get("KEYGATE_SOURCE_DIR") or Path(__file__).resolve().parents[2])
K8S_DIR = SOURCE_DIR / "deploy" / "k8s"
DEV_DIR = K8S_DIR / "dev"
EDGE_DIR = K8S_DIR / "edge"
DOCKERFILE = SOURCE_DIR / "deploy" / "Dockerfile"
COMMON_SH = SOURCE_DIR / "scripts" / "lib" / "common.sh"

KEYGATE_CONTAINER = "keygate"
CONFIG_MAP = "keygate-config"
SHUTDOWN_TIMEOUT_DEFAULT = 15.0  # app/config.hpp
SPILL_PATH_DEFAULT = "/tmp/keygate-usage.spill"
# In debian:12-slim already; every C++ program needs them.
BASE_IMAGE_PACKAGES = {"libc6", "libstdc++6", "libgcc-s1"}


# ---- reading the manifests ----------------------------------------------------------------

def load_yaml_documents(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def load_kustomization(directory):
    documents = load_yaml_documents(directory / "kustomization.yaml")
    assert len(documents) == 1, f"{directory}/kustomization.yaml: expected one document"
    return documents[0]


def generator_files(kustomization):
    """{configmap name: {key: path relative to the kustomization}} of configMapGenerator."""
    out = {}
    for generator in kustomization.get("configMapGenerator", []):
        files = {}
        for entry in generator.get("files", []):
            key, _, path = entry.partition("=")
            if not path:
                key, path = Path(entry).name, entry
            files[key] = path
        out[generator["name"]] = files
    return out


def load_resources(directory):
    """[(file name, document)] of the resources kustomization.yaml lists."""
    out = []
    for name in load_kustomization(directory).get("resources", []):
        for document in load_yaml_documents(directory / name):
            out.append((name, document))
    return out


def find(resources, kind, name=None):
    found = [d for _, d in resources
             if d.get("kind") == kind and (name is None or d["metadata"]["name"] == name)]
    if not found:
        raise AssertionError(f"no {kind} {name or ''} in the manifests")
    return found


def the(resources, kind, name=None):
    found = find(resources, kind, name)
    if len(found) != 1:
        raise AssertionError(f"expected one {kind} {name or ''}, found {len(found)}")
    return found[0]


def container(pod_spec, name):
    for c in pod_spec.get("containers", []):
        if c["name"] == name:
            return c
    raise AssertionError(f"no container {name!r}")


def keygate_container(pod_spec):
    """The container running the keygate image (the Job names its container differently)."""
    found = [c for c in pod_spec["containers"] if image_name(c["image"]) == "keygate"]
    if len(found) != 1:
        raise AssertionError(f"expected one keygate container, found {len(found)}")
    return found[0]


def image_name(image):
    """'registry/x/keygate:0.1' -> 'keygate'."""
    return image.split("@")[0].rsplit("/", 1)[-1].split(":")[0]


def named_port(pod_spec, port):
    """A probe's or Service's port (number or name) -> the number."""
    if isinstance(port, int):
        return port
    for c in pod_spec["containers"]:
        for p in c.get("ports", []):
            if p.get("name") == port:
                return p["containerPort"]
    raise AssertionError(f"no container port named {port!r}")


def split_host_port(text):
    """'0.0.0.0:8080' or '[::]:8080' -> ('0.0.0.0', 8080)."""
    match = re.fullmatch(r"\[([^\]]+)\]:(\d+)|([^:\[\]]+):(\d+)", str(text))
    if not match:
        raise AssertionError(f"not host:port: {text!r}")
    host = match.group(1) or match.group(3)
    return host, int(match.group(2) or match.group(4))


def seconds(duration):
    """keygate durations: '15s', '500ms', '2m', '1h'."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)", str(duration).strip())
    if not match:
        raise AssertionError(f"not a duration: {duration!r}")
    return float(match.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[match.group(2)]


def cpu(quantity):
    text = str(quantity)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def memory(quantity):
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "K": 10**3, "M": 10**6, "G": 10**9}
    match = re.fullmatch(r"(\d+)([KMG]i?)?", str(quantity))
    if not match:
        raise AssertionError(f"not a memory quantity: {quantity!r}")
    return int(match.group(1)) * units.get(match.group(2) or "", 1)


def effective_security(pod_spec, c):
    """The container's securityContext over the pod's (fields the pod level can set)."""
    merged = {k: v for k, v in (pod_spec.get("securityContext") or {}).items()
              if k in ("runAsNonRoot", "runAsUser", "runAsGroup", "seccompProfile")}
    merged.update(c.get("securityContext") or {})
    return merged


def secret_values(resources, name):
    secret = the(resources, "Secret", name)
    values = dict(secret.get("stringData") or {})
    if secret.get("data"):
        values.update({k: base64.b64decode(v).decode() for k, v in secret["data"].items()})
    return values


def container_environment(resources, c):
    """The environment variables a container gets, with the Secret's values where known."""
    env = {}
    for source in c.get("envFrom", []):
        if "secretRef" in source:
            env.update(secret_values(resources, source["secretRef"]["name"]))
        elif "configMapRef" in source:
            env.update(the(resources, "ConfigMap", source["configMapRef"]["name"])["data"])
    for var in c.get("env", []):
        if "value" in var:
            env[var["name"]] = str(var["value"])
        else:
            ref = var["valueFrom"].get("secretKeyRef")
            if ref is None:
                raise AssertionError(f"env {var['name']}: only values and secretKeyRefs are used")
            values = secret_values(resources, ref["name"])
            if ref["key"] not in values:
                raise AssertionError(f"env {var['name']}: Secret {ref['name']} has no key {ref['key']}")
            env[var["name"]] = values[ref["key"]]
    return env


def mounted_file(pod_spec, c, path):
    """The (volume, key) that provides file `path` in container c, or (volume, None) for a dir."""
    best = None
    for mount in c.get("volumeMounts", []):
        root = mount["mountPath"].rstrip("/")
        if path == root or path.startswith(root + "/"):
            if best is None or len(root) > len(best[0]):
                best = (root, mount)
    if best is None:
        raise AssertionError(f"{path} is not on any volume of container {c['name']}")
    root, mount = best
    volume = next(v for v in pod_spec.get("volumes", []) if v["name"] == mount["name"])
    return volume, mount, path[len(root):].lstrip("/")


def config_path_from_args(args):
    for i, arg in enumerate(args):
        if arg == "--config":
            return args[i + 1]
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
    raise AssertionError(f"no --config in {args}")


# ---- the base kustomization, loaded once --------------------------------------------------

class Base:
    kustomization = load_kustomization(K8S_DIR)
    resources = load_resources(K8S_DIR)
    config_files = generator_files(kustomization)
    config_file = K8S_DIR / config_files[CONFIG_MAP]["config.yaml"]
    config_text = config_file.read_text(encoding="utf-8")
    config = yaml.safe_load(config_text)
    deployment = the(resources, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    keygate = container(pod, KEYGATE_CONTAINER)
    job = the(resources, "Job")
    job_pod = job["spec"]["template"]["spec"]
    job_keygate = keygate_container(job_pod)


def required_variables(config_text):
    """${NAME} references without a default in the config text (comments left out)."""
    text = "\n".join(re.sub(r"(^|\s)#.*", "", line) for line in config_text.splitlines())
    return set(re.findall(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)\}", text))


# ---- structure ----------------------------------------------------------------------------

class ManifestStructureTest(unittest.TestCase):
    def test_every_manifest_parses_and_names_its_api_version_kind_and_name(self):
        for directory in (K8S_DIR, DEV_DIR, EDGE_DIR):
            files = sorted(directory.glob("*.yaml")) + sorted(directory.glob("*.yml"))
            self.assertTrue(files, f"no manifests in {directory}")
            generated = {p for files_ in generator_files(load_kustomization(directory)).values()
                         for p in files_.values()}
            for path in files:
                if path.name in generated or path.name == "kustomization.yaml":
                    continue  # a ConfigMap's content, or kustomize's own file
                documents = load_yaml_documents(path)
                self.assertTrue(documents, f"{path}: empty")
                for d in documents:
                    with self.subTest(file=str(path.relative_to(SOURCE_DIR)), kind=d.get("kind")):
                        self.assertIsInstance(d, dict)
                        self.assertTrue(d.get("apiVersion"), "apiVersion")
                        self.assertTrue(d.get("kind"), "kind")
                        self.assertTrue((d.get("metadata") or {}).get("name"), "metadata.name")

    def test_kustomization_lists_exactly_the_manifest_files(self):
        for directory in (K8S_DIR, DEV_DIR, EDGE_DIR):
            kustomization = load_kustomization(directory)
            listed = kustomization.get("resources", [])
            self.assertEqual(len(listed), len(set(listed)), f"{directory}: a resource listed twice")
            generated = {p for files in generator_files(kustomization).values() for p in files.values()}
            for name in listed + sorted(generated):
                self.assertTrue((directory / name).is_file(), f"{directory}/{name} does not exist")
            on_disk = {p.name for p in directory.iterdir()
                       if p.suffix in (".yaml", ".yml") and p.name != "kustomization.yaml"}
            self.assertEqual(on_disk - generated, set(listed),
                             f"{directory}: manifest files and kustomization.yaml resources differ")
        # The dev stores and the edge example must never come in with the base.
        for folder in ("dev", "edge"):
            self.assertNotIn(folder, [Path(r).parts[0] for r in Base.kustomization.get("resources", [])])

    def test_the_base_has_every_part_of_the_example(self):
        kinds = sorted(d["kind"] for _, d in Base.resources)
        self.assertEqual(kinds, sorted(["Deployment", "Service", "PodDisruptionBudget", "Job", "Secret"]))
        self.assertIn(CONFIG_MAP, Base.config_files, "configMapGenerator for keygate-config")
        self.assertEqual(list(Base.config_files[CONFIG_MAP]), ["config.yaml"])
        self.assertIn("keygate", [i["name"] for i in Base.kustomization.get("images", [])])

    @unittest.skipUnless(shutil.which("kubectl"), "kubectl is not installed")
    def test_kubectl_kustomize_renders_both_and_wires_the_generated_config_map(self):
        with tempfile.TemporaryDirectory() as home:
            env = dict(os.environ, HOME=home, KUBECONFIG=os.path.join(home, "none"))
            rendered = {}
            for directory in (K8S_DIR, DEV_DIR, EDGE_DIR):
                run = subprocess.run(["kubectl", "kustomize", str(directory)], env=env, cwd=home,
                                     capture_output=True, text=True, timeout=120)
                self.assertEqual(run.returncode, 0, f"kubectl kustomize {directory}:\n{run.stderr}")
                rendered[directory] = [d for d in yaml.safe_load_all(run.stdout) if d]
        base = [("rendered", d) for d in rendered[K8S_DIR]]
        config_map = the(base, "ConfigMap")
        name = config_map["metadata"]["name"]
        self.assertRegex(name, rf"^{CONFIG_MAP}-[a-z0-9]+$", "the name carries the content hash")
        self.assertEqual(config_map["data"]["config.yaml"], Base.config_text)
        for workload in (the(base, "Deployment"), the(base, "Job")):
            volumes = [v["configMap"]["name"] for v in workload["spec"]["template"]["spec"]["volumes"]
                       if "configMap" in v]
            self.assertEqual(volumes, [name], f"{workload['kind']} mounts the generated ConfigMap")
        image = next(i for i in Base.kustomization["images"] if i["name"] == "keygate")
        expected = f"{image.get('newName', 'keygate')}:{image['newTag']}"
        self.assertEqual(keygate_container(the(base, "Deployment")["spec"]["template"]["spec"])["image"], expected)
        self.assertEqual(keygate_container(the(base, "Job")["spec"]["template"]["spec"])["image"], expected)
        dev_kinds = sorted(d["kind"] for d in rendered[DEV_DIR])
        self.assertEqual(dev_kinds, sorted(["Secret", "Deployment", "Service", "Deployment", "Service"]))


# ---- the Deployment and its neighbours ------------------------------------------------------

class DeploymentTest(unittest.TestCase):
    pod = Base.pod
    keygate = Base.keygate
    config = Base.config

    def test_containers_images_and_replicas(self):
        names = [c["name"] for c in self.pod["containers"]]
        self.assertIn(KEYGATE_CONTAINER, names)
        self.assertEqual(len(names), 2, "keygate and the app it guards")
        for c in self.pod["containers"] + Base.job_pod["containers"]:
            with self.subTest(container=c["name"]):
                self.assertRegex(c["image"], r"^[\w./-]+:[\w.-]+$", "an image with an explicit tag")
                self.assertFalse(c["image"].endswith(":latest"), "no :latest tag")
        self.assertEqual(image_name(self.keygate["image"]), "keygate")
        self.assertEqual(self.keygate["args"][:1], ["serve"])
        self.assertGreaterEqual(Base.deployment["spec"]["replicas"], 2)
        self.assertEqual(self.config["rate_limit"]["replicas"], Base.deployment["spec"]["replicas"],
                         "config.yaml rate_limit.replicas follows the Deployment's replicas")
        selector = Base.deployment["spec"]["selector"]["matchLabels"]
        labels = Base.deployment["spec"]["template"]["metadata"]["labels"]
        self.assertTrue(selector.items() <= labels.items(), "the selector matches the pod labels")

    def test_container_port_is_keygates_listen_port_on_all_interfaces(self):
        host, port = split_host_port(self.config["listen"])
        self.assertIn(host, ("0.0.0.0", "::"), "listen must accept the pod IP")
        ports = {p["containerPort"] for p in self.keygate["ports"]}
        self.assertIn(port, ports)
        self.assertEqual(named_port(self.pod, "http"), port)
        self.assertEqual(port, 8080)

    def test_probes_hit_the_admin_listener_of_the_embedded_config(self):
        host, admin_port = split_host_port(self.config["admin_listen"])
        self.assertIn(host, ("0.0.0.0", "::"), "the kubelet probes the pod IP, not loopback")
        self.assertIn(admin_port, {p["containerPort"] for p in self.keygate["ports"]})
        for probe_name, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            with self.subTest(probe=probe_name):
                probe = self.keygate.get(probe_name)
                self.assertIsNotNone(probe, probe_name)
                self.assertEqual(probe["httpGet"]["path"], path)
                self.assertEqual(named_port(self.pod, probe["httpGet"]["port"]), admin_port)
        listen_port = split_host_port(self.config["listen"])[1]
        self.assertNotEqual(admin_port, listen_port)

    def test_resources(self):
        for c in self.pod["containers"] + Base.job_pod["containers"]:
            with self.subTest(container=c["name"]):
                requests, limits = c["resources"]["requests"], c["resources"]["limits"]
                self.assertLessEqual(cpu(requests["cpu"]), cpu(limits["cpu"]))
                self.assertLessEqual(memory(requests["memory"]), memory(limits["memory"]))
        resources = self.keygate["resources"]
        self.assertEqual(cpu(resources["requests"]["cpu"]), 0.05)
        self.assertEqual(memory(resources["requests"]["memory"]), 64 * 2**20)
        self.assertEqual(cpu(resources["limits"]["cpu"]), 1.0)
        self.assertEqual(memory(resources["limits"]["memory"]), 256 * 2**20)
        threads = self.config.get("threads", "auto")
        self.assertNotEqual(threads, "auto", "auto counts the node's cores, not the CPU limit")
        self.assertLessEqual(int(threads), max(1, int(cpu(resources["limits"]["cpu"]) + 0.999)))

    def test_security_context(self):
        uid = None
        for pod, c in [(self.pod, c) for c in self.pod["containers"]] + [(Base.job_pod, Base.job_keygate)]:
            with self.subTest(container=c["name"]):
                security = effective_security(pod, c)
                self.assertIs(security.get("runAsNonRoot"), True)
                self.assertIsInstance(security.get("runAsUser"), int)
                self.assertGreater(security["runAsUser"], 0)
                self.assertIs(security.get("readOnlyRootFilesystem"), True)
                self.assertIs(security.get("allowPrivilegeEscalation"), False)
                self.assertEqual(security.get("capabilities", {}).get("drop"), ["ALL"])
                self.assertFalse(security.get("capabilities", {}).get("add"))
                self.assertEqual(security.get("seccompProfile", {}).get("type"), "RuntimeDefault")
                self.assertFalse(security.get("privileged", False))
                if image_name(c["image"]) == "keygate":
                    uid = uid or security["runAsUser"]
                    self.assertEqual(security["runAsUser"], uid, "one UID for the keygate image")
        self.assertEqual(uid, dockerfile_user_uid(), "the k8s UID is the image's USER")
        self.assertIs(self.pod.get("automountServiceAccountToken"), False)

    def test_termination_grace_outlasts_the_drain(self):
        shutdown = seconds(self.config.get("shutdown_timeout", f"{SHUTDOWN_TIMEOUT_DEFAULT}s"))
        pre_stop = 0.0
        command = (self.keygate.get("lifecycle", {}).get("preStop", {}).get("exec", {})
                   .get("command", []))
        if command[:1] == ["sleep"]:
            pre_stop = float(command[1])
        grace = self.pod.get("terminationGracePeriodSeconds", 30)
        self.assertGreater(grace, shutdown + pre_stop,
                           f"grace {grace}s <= preStop {pre_stop}s + shutdown_timeout {shutdown}s")

    def test_upstream_is_the_app_container_on_loopback(self):
        upstream = urlsplit(self.config["upstream"])
        self.assertEqual(upstream.scheme, "http")
        self.assertEqual(upstream.hostname, "127.0.0.1", "the app shares the pod's network")
        address = f"{upstream.hostname}:{upstream.port}"
        app = [c for c in self.pod["containers"] if c["name"] != KEYGATE_CONTAINER][0]
        words = " ".join(app.get("command", []) + app.get("args", []))
        self.assertIn(address, words, "the app listens on the upstream address, loopback only")
        self.assertNotIn(upstream.port, {p["containerPort"] for p in app.get("ports", [])})

    def test_config_file_and_secrets_are_wired_into_the_pod_and_the_job(self):
        variables = required_variables(Base.config_text)
        self.assertTrue({"KEYGATE_POSTGRES_DSN", "KEYGATE_REDIS_URL", "KEYGATE_PEPPER"} <= variables,
                        "config.yaml takes the DSN, the Redis URL and the pepper from the environment")
        for pod, c in ((self.pod, self.keygate), (Base.job_pod, Base.job_keygate)):
            with self.subTest(container=c["name"]):
                env = container_environment(Base.resources, c)
                self.assertTrue(variables <= env.keys(), f"missing: {sorted(variables - env.keys())}")
                path = config_path_from_args(c["args"])
                volume, mount, rest = mounted_file(pod, c, path)
                self.assertEqual(volume.get("configMap", {}).get("name"), CONFIG_MAP)
                self.assertEqual(rest, "config.yaml", "the file name is the ConfigMap key")
                self.assertTrue(mount.get("readOnly"))
        # With a read-only root filesystem, the usage spill file needs a writable volume.
        spill = (self.config.get("usage") or {}).get("spill_path", SPILL_PATH_DEFAULT)
        volume, mount, _ = mounted_file(self.pod, self.keygate, spill)
        self.assertIn("emptyDir", volume)
        self.assertFalse(mount.get("readOnly", False))

    def test_migration_job_runs_migrate_up_with_the_same_image_and_secret(self):
        args = Base.job_keygate["args"]
        self.assertEqual(args[args.index("migrate"):], ["migrate", "up"])
        self.assertEqual(Base.job_keygate["image"], self.keygate["image"])
        self.assertEqual(Base.job_keygate.get("envFrom"), self.keygate.get("envFrom"))
        self.assertEqual(config_path_from_args(args), config_path_from_args(self.keygate["args"]))
        self.assertIn(Base.job_pod["restartPolicy"], ("Never", "OnFailure"))
        self.assertGreater(Base.job["spec"].get("backoffLimit", 6), 0)

    def test_service_targets_keygates_listen_port_only(self):
        service = the(Base.resources, "Service")
        labels = Base.deployment["spec"]["template"]["metadata"]["labels"]
        self.assertTrue(service["spec"]["selector"].items() <= labels.items())
        listen_port = split_host_port(self.config["listen"])[1]
        ports = service["spec"]["ports"]
        self.assertEqual([(p["port"], named_port(self.pod, p["targetPort"])) for p in ports],
                         [(80, listen_port)], "port 80 -> keygate, and nothing else published")

    def test_pod_disruption_budget(self):
        pdb = the(Base.resources, "PodDisruptionBudget")
        self.assertEqual(pdb["apiVersion"], "policy/v1")
        self.assertEqual(pdb["spec"]["minAvailable"], 1)
        labels = Base.deployment["spec"]["template"]["metadata"]["labels"]
        self.assertTrue(pdb["spec"]["selector"]["matchLabels"].items() <= labels.items())
        self.assertGreater(Base.deployment["spec"]["replicas"], pdb["spec"]["minAvailable"],
                           "otherwise no pod can ever be evicted")


class DevStoresTest(unittest.TestCase):
    dev = load_resources(DEV_DIR)

    def test_marked_not_for_production(self):
        for path in [DEV_DIR / "kustomization.yaml"] + [DEV_DIR / r for r in load_kustomization(DEV_DIR)["resources"]]:
            self.assertIn("NOT FOR PRODUCTION", path.read_text(encoding="utf-8"), str(path))

    def test_placeholder_secret_points_at_the_dev_postgres(self):
        dsn = urlsplit(secret_values(Base.resources, "keygate-secrets")["KEYGATE_POSTGRES_DSN"])
        self.assertIn(dsn.scheme, ("postgresql", "postgres"))
        service = the(self.dev, "Service", dsn.hostname)
        deployment = self.dev_workload(service)
        self.assertEqual(dsn.port or 5432, service["spec"]["ports"][0]["port"])
        c = deployment["spec"]["template"]["spec"]["containers"][0]
        self.assertEqual(image_name(c["image"]), "postgres")
        env = container_environment(self.dev, c)
        self.assertEqual(unquote(dsn.username), env["POSTGRES_USER"])
        self.assertEqual(unquote(dsn.password), env["POSTGRES_PASSWORD"])
        self.assertEqual(dsn.path.lstrip("/"), env["POSTGRES_DB"])
        self.assertEqual(named_port(deployment["spec"]["template"]["spec"],
                                    service["spec"]["ports"][0]["targetPort"]), 5432)

    def test_placeholder_secret_points_at_the_dev_redis(self):
        url = urlsplit(secret_values(Base.resources, "keygate-secrets")["KEYGATE_REDIS_URL"])
        self.assertEqual(url.scheme, "redis")
        service = the(self.dev, "Service", url.hostname)
        deployment = self.dev_workload(service)
        self.assertEqual(url.port or 6379, service["spec"]["ports"][0]["port"])
        c = deployment["spec"]["template"]["spec"]["containers"][0]
        self.assertEqual(image_name(c["image"]), "redis")
        self.assertEqual(named_port(deployment["spec"]["template"]["spec"],
                                    service["spec"]["ports"][0]["targetPort"]), 6379)

    def dev_workload(self, service):
        selector = service["spec"]["selector"]
        matching = [d for d in find(self.dev, "Deployment")
                    if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()]
        self.assertEqual(len(matching), 1, f"Service {service['metadata']['name']} selects one Deployment")
        return matching[0]


# ---- the edge proxy: autoscaled, one Redis Cluster for the fleet ---------------------------

class Edge:
    kustomization = load_kustomization(EDGE_DIR)
    resources = load_resources(EDGE_DIR)
    config_files = generator_files(kustomization)
    config_text = (EDGE_DIR / config_files["keygate-edge-config"]["config.yaml"]).read_text(encoding="utf-8")
    config = yaml.safe_load(config_text)
    deployment = the(resources, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    keygate = container(pod, KEYGATE_CONTAINER)
    hpa = the(resources, "HorizontalPodAutoscaler")
    pdb = the(resources, "PodDisruptionBudget")


class EdgeProxyTest(unittest.TestCase):
    def test_the_edge_example_has_its_parts_and_nothing_of_the_sidecars(self):
        kinds = sorted(d["kind"] for _, d in Edge.resources)
        self.assertEqual(kinds, sorted(["Deployment", "Service", "HorizontalPodAutoscaler",
                                        "PodDisruptionBudget"]))
        self.assertEqual([c["name"] for c in Edge.pod["containers"]], [KEYGATE_CONTAINER],
                         "an edge proxy runs alone in its pod")
        self.assertIn("keygate", [i["name"] for i in Edge.kustomization.get("images", [])])
        base_names = {(d["kind"], d["metadata"]["name"]) for _, d in Base.resources}
        edge_names = {(d["kind"], d["metadata"]["name"]) for _, d in Edge.resources}
        self.assertFalse(base_names & edge_names, "applying both examples must not collide")

    def test_the_autoscaler_owns_the_replica_count(self):
        target = Edge.hpa["spec"]["scaleTargetRef"]
        self.assertEqual(Edge.hpa["apiVersion"], "autoscaling/v2")
        self.assertEqual((target["apiVersion"], target["kind"], target["name"]),
                         ("apps/v1", "Deployment", Edge.deployment["metadata"]["name"]))
        self.assertNotIn("replicas", Edge.deployment["spec"],
                         "a replicas field would reset the autoscaler's count on every apply")
        low, high = Edge.hpa["spec"]["minReplicas"], Edge.hpa["spec"]["maxReplicas"]
        self.assertGreaterEqual(low, 2)
        self.assertGreater(high, low)
        metric = Edge.hpa["spec"]["metrics"][0]["resource"]
        self.assertEqual(metric["name"], "cpu")
        self.assertIn("cpu", Edge.keygate["resources"]["requests"],
                      "CPU utilization is measured against the request")
        self.assertEqual(Edge.config["rate_limit"]["replicas"], high,
                         "the local fallback divides by the most pods that may run")

    def test_the_disruption_budget_matches_the_autoscaled_pods(self):
        spec = Edge.pdb["spec"]
        self.assertEqual(Edge.pdb["apiVersion"], "policy/v1")
        labels = Edge.deployment["spec"]["template"]["metadata"]["labels"]
        self.assertTrue(spec["selector"]["matchLabels"].items() <= labels.items())
        self.assertTrue(Edge.deployment["spec"]["selector"]["matchLabels"].items() <= labels.items())
        if "minAvailable" in spec:
            self.assertLess(spec["minAvailable"], Edge.hpa["spec"]["minReplicas"],
                            "otherwise no pod can be evicted at the autoscaler's minimum")
        else:
            self.assertEqual(spec["maxUnavailable"], 1)
        service = the(Edge.resources, "Service")
        self.assertTrue(service["spec"]["selector"].items() <= labels.items())

    def test_the_fleet_shares_one_redis_cluster(self):
        redis = Edge.config["redis"]
        self.assertNotIn("url", redis, "url and cluster are exclusive")
        self.assertGreaterEqual(len(redis["cluster"]), 2, "more than one seed")
        for seed in redis["cluster"]:
            self.assertRegex(seed, r"^[a-z0-9.-]+:\d+$")
        self.assertNotIn("KEYGATE_REDIS_URL", required_variables(Edge.config_text))

    def test_pod_wiring_as_in_the_sidecar_example(self):
        _, port = split_host_port(Edge.config["listen"])
        self.assertEqual(named_port(Edge.pod, "http"), port)
        _, admin_port = split_host_port(Edge.config["admin_listen"])
        for probe_name, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            probe = Edge.keygate[probe_name]
            self.assertEqual(probe["httpGet"]["path"], path)
            self.assertEqual(named_port(Edge.pod, probe["httpGet"]["port"]), admin_port)
        self.assertLessEqual(int(Edge.config["threads"]),
                             int(cpu(Edge.keygate["resources"]["limits"]["cpu"]) + 0.999))
        path = config_path_from_args(Edge.keygate["args"])
        volume, _, rest = mounted_file(Edge.pod, Edge.keygate, path)
        self.assertEqual(volume["configMap"]["name"], "keygate-edge-config")
        self.assertEqual(rest, "config.yaml")
        spill = Edge.config["usage"]["spill_path"]
        self.assertIn("emptyDir", mounted_file(Edge.pod, Edge.keygate, spill)[0])
        security = effective_security(Edge.pod, Edge.keygate)
        self.assertIs(security.get("readOnlyRootFilesystem"), True)
        self.assertEqual(security.get("runAsUser"), dockerfile_user_uid())
        self.assertEqual(Edge.keygate["envFrom"], Base.keygate["envFrom"],
                         "the Secret the sidecar example (or your pipeline) creates")
        shutdown = seconds(Edge.config["shutdown_timeout"])
        self.assertGreater(Edge.pod["terminationGracePeriodSeconds"], shutdown + 5)


# ---- the embedded config, loaded by keygate itself ------------------------------------------

def keygate_bin(test):
    path = os.environ.get("KEYGATE_BIN")
    if not path:
        test.skipTest("KEYGATE_BIN is not set (ctest sets it)")
    test.assertTrue(os.access(path, os.X_OK), f"KEYGATE_BIN={path} is not an executable")
    return path


class EmbeddedConfigTest(unittest.TestCase):
    """`keygate migrate status` with the pod's environment: it parses and validates the config,
    then fails to reach PostgreSQL (exit 1). A config error would exit 2 before any I/O."""

    def run_keygate(self, config_text, environment):
        with tempfile.TemporaryDirectory() as tmp, socket.socket() as closed:
            # Bound but not listening: a connection to it is refused, and no one else can take it.
            closed.bind(("127.0.0.1", 0))
            port = closed.getsockname()[1]
            path = Path(tmp) / "config.yaml"
            path.write_text(config_text, encoding="utf-8")
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": tmp, **environment}
            if "KEYGATE_POSTGRES_DSN" in env:
                env["KEYGATE_POSTGRES_DSN"] = (
                    f"postgresql://keygate@127.0.0.1:{port}/keygate?connect_timeout=3")
            if "KEYGATE_REDIS_URL" in env:
                env["KEYGATE_REDIS_URL"] = f"redis://127.0.0.1:{port}"
            run = subprocess.run([keygate_bin(self), "--config", str(path), "migrate", "status"],
                                 env=env, cwd=tmp, capture_output=True, text=True, timeout=60)
            return run.returncode, run.stderr

    def pod_environment(self):
        env = container_environment(Base.resources, Base.keygate)
        self.assertIn("KEYGATE_POSTGRES_DSN", env)
        return env

    def test_keygate_accepts_the_embedded_config_with_the_pods_environment(self):
        code, stderr = self.run_keygate(Base.config_text, self.pod_environment())
        self.assertNotEqual(code, 2, f"keygate rejected the embedded config.yaml:\n{stderr}")
        self.assertEqual(code, 1, f"expected 'store unreachable' (1):\n{stderr}")
        self.assertIn("postgres", stderr.lower(), "the error names the store")

    def test_keygate_accepts_the_edge_config_with_its_redis_cluster(self):
        env = {k: v for k, v in self.pod_environment().items() if k != "KEYGATE_REDIS_URL"}
        code, stderr = self.run_keygate(Edge.config_text, env)
        self.assertNotEqual(code, 2, f"keygate rejected deploy/k8s/edge/config.yaml:\n{stderr}")
        self.assertEqual(code, 1, f"expected 'store unreachable' (1):\n{stderr}")

    def test_the_check_tells_a_broken_config_apart(self):
        # The oracle itself: an unknown option and a missing variable are config errors (2).
        code, stderr = self.run_keygate(Base.config_text + "\nno_such_option: 1\n",
                                        self.pod_environment())
        self.assertEqual(code, 2, stderr)
        env = self.pod_environment()
        del env["KEYGATE_PEPPER"]
        code, stderr = self.run_keygate(Base.config_text, env)
        self.assertEqual(code, 2, stderr)
        self.assertIn("KEYGATE_PEPPER", stderr)


# ---- the Dockerfile ---------------------------------------------------------------------------

def dockerfile_instructions(path=DOCKERFILE):
    """[(INSTRUCTION, arguments)] with continuation lines joined and comments dropped."""
    out, pending = [], ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        instruction, _, arguments = line.partition(" ")
        out.append((instruction.upper(), arguments.strip()))
    return out


def dockerfile_stages(path=DOCKERFILE):
    """[{'from': image, 'name': alias, 'instructions': [...]}] in order."""
    stages = []
    for instruction, arguments in dockerfile_instructions(path):
        if instruction == "FROM":
            words = arguments.split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append({"from": words[0], "name": name, "instructions": []})
        elif stages:
            stages[-1]["instructions"].append((instruction, arguments))
    return stages


def apt_installed(stage):
    packages = []
    for instruction, arguments in stage["instructions"]:
        if instruction != "RUN":
            continue
        for command in re.split(r"&&|;|\|\|", arguments):
            words = shlex.split(command)
            while words and "=" in words[0]:
                words.pop(0)  # VAR=value prefixes
            if words[:2] == ["apt-get", "install"]:
                packages += [w for w in words[2:] if not w.startswith("-")]
    return packages


def dockerfile_user_uid():
    runtime = dockerfile_stages()[-1]
    users = [a for i, a in runtime["instructions"] if i == "USER"]
    assert users, "the runtime stage sets no USER"
    user = users[-1].split(":")[0]
    # The kubelet can enforce runAsNonRoot only for a numeric USER.
    assert user.isdigit(), f"USER {users[-1]}: not a numeric UID"
    return int(user)


def exec_form(arguments):
    value = json.loads(arguments)
    assert isinstance(value, list), f"not the exec (JSON) form: {arguments}"
    return value


def packages_of(library_paths):
    """{library path: the Debian package (no :arch) owning it}, with one `dpkg -S` call.
    ldd prints /lib/... while dpkg may know /usr/lib/... (merged /usr), so both twins and the
    resolved file are asked for."""
    candidates = {}
    for library in library_paths:
        names = [library, os.path.realpath(library)]
        for path in list(names):
            names.append(path[len("/usr"):] if path.startswith("/usr/lib/") else "/usr" + path)
        candidates[library] = names
    asked = sorted({p for names in candidates.values() for p in names})
    run = subprocess.run(["dpkg", "-S", *asked], capture_output=True, text=True)
    owner = {}
    for line in run.stdout.splitlines():
        packages, _, path = line.partition(": ")
        owner[path.strip()] = packages.split(",")[0].split(":")[0].strip()
    out = {}
    for library, names in candidates.items():
        found = [owner[p] for p in names if p in owner]
        if not found:
            raise AssertionError(f"no Debian package owns {library}")
        out[library] = found[0]
    return out


def dependency_closure(packages):
    """Installed packages reachable through Depends/Pre-Depends (every alternative counted)."""
    seen, todo = set(), list(packages)
    while todo:
        package = todo.pop()
        if package in seen:
            continue
        seen.add(package)
        run = subprocess.run(["dpkg-query", "-W", "-f=${Depends}, ${Pre-Depends}", package],
                             capture_output=True, text=True)
        if run.returncode != 0:
            continue
        for name in re.findall(r"(?:^|[,|]\s*)([a-z0-9][a-z0-9+.-]+)", run.stdout):
            todo.append(name)
    return seen


class DockerfileTest(unittest.TestCase):
    stages = dockerfile_stages()
    build, runtime = stages[0], stages[-1]

    def test_two_stages_on_debian_12(self):
        self.assertEqual(len(self.stages), 2)
        self.assertEqual(self.build["from"], "debian:12")
        self.assertTrue(self.build["name"])
        self.assertEqual(self.runtime["from"], "debian:12-slim")

    def test_build_stage_installs_the_build_dependencies_of_common_sh_and_builds_keygate(self):
        text = COMMON_SH.read_text(encoding="utf-8")
        block = re.search(r"KEYGATE_PACKAGES=\((.*?)\)", text, re.S)
        self.assertIsNotNone(block, "KEYGATE_PACKAGES in scripts/lib/common.sh")
        wanted = {p for p in block.group(1).split() if p.endswith("-dev")} | {"cmake", "pkg-config"}
        installed = set(apt_installed(self.build))
        self.assertTrue(wanted <= installed, f"missing in the build stage: {sorted(wanted - installed)}")
        self.assertTrue({"build-essential", "g++"} & installed, "a C++ compiler")
        runs = " ".join(a for i, a in self.build["instructions"] if i == "RUN")
        self.assertIn("-DCMAKE_BUILD_TYPE=Release", runs)
        self.assertRegex(runs, r"cmake --build \S+ --target keygate")

    def test_build_stage_copies_every_source_folder_cmake_uses(self):
        cmake = (SOURCE_DIR / "CMakeLists.txt").read_text(encoding="utf-8")
        cmake = re.sub(r"#.*", "", cmake)
        used = {m for m in re.findall(r"(?<![\w./$-])([a-z_]+)/", cmake.replace("${CMAKE_CURRENT_SOURCE_DIR}/", " "))
                if (SOURCE_DIR / m).is_dir()}
        used.discard("tests")  # built only with BUILD_TESTING, which the image turns off
        copied = set()
        for instruction, arguments in self.build["instructions"]:
            if instruction == "COPY" and "--from" not in arguments:
                sources = arguments.split()[:-1]
                copied |= {s.rstrip("/").split("/")[0] for s in sources}
        self.assertTrue({"app", "store"} <= used, f"parsed {used} from CMakeLists.txt")
        self.assertTrue(used <= copied or "." in copied, f"not copied: {sorted(used - copied)}")
        self.assertIn("CMakeLists.txt", copied)
        runs = " ".join(a for i, a in self.build["instructions"] if i == "RUN")
        if "tests" not in copied and "." not in copied:
            self.assertIn("-DBUILD_TESTING=OFF", runs)

    def test_runtime_stage_is_small_non_root_and_runs_keygate(self):
        packages = apt_installed(self.runtime)
        self.assertIn("ca-certificates", packages)
        for package in packages:
            self.assertFalse(package.endswith("-dev"), f"{package} in the runtime image")
            self.assertNotIn(package, ("build-essential", "g++", "gcc", "cmake", "make", "pkg-config"))
        self.assertIn("--no-install-recommends", " ".join(a for _, a in self.runtime["instructions"]))
        uid = dockerfile_user_uid()
        self.assertGreater(uid, 0)
        self.assertEqual(uid, effective_security(Base.pod, Base.keygate)["runAsUser"])
        copies = [a for i, a in self.runtime["instructions"] if i in ("COPY", "ADD")]
        self.assertEqual(len(copies), 1, "only the binary is copied in")
        self.assertRegex(copies[0], rf"^--from={self.build['name']} \S*/keygate \S+$")
        exposed = {int(p.split("/")[0]) for i, a in self.runtime["instructions"] if i == "EXPOSE"
                   for p in a.split()}
        self.assertEqual(exposed, {split_host_port(Base.config["listen"])[1],
                                   split_host_port(Base.config["admin_listen"])[1]})
        last = {i: a for i, a in self.runtime["instructions"]}
        self.assertEqual(exec_form(last["ENTRYPOINT"]), ["keygate"])
        cmd = exec_form(last["CMD"])
        self.assertEqual(cmd[0], "serve")
        self.assertEqual(config_path_from_args(cmd), config_path_from_args(Base.keygate["args"]))

    def test_runtime_packages_are_exactly_the_libraries_keygate_links(self):
        binary = keygate_bin(self)
        for tool in ("ldd", "readelf", "dpkg"):
            self.assertTrue(shutil.which(tool), f"{tool} is needed for this check")
        listed = set(apt_installed(self.runtime))
        readelf = subprocess.run(["readelf", "-d", binary], capture_output=True, text=True, check=True)
        needed = set(re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", readelf.stdout))
        ldd = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True)
        paths = dict(re.findall(r"^\s*(\S+) => (/\S+)", ldd.stdout, re.M))
        self.assertTrue(needed, "readelf found no NEEDED libraries")
        if any(lib.startswith(("libasan", "libubsan")) for lib in needed):
            # ./scripts/test --sanitize: at -O1 this build also calls into libraries the release
            # build inlines; the image is built from the release binary, checked in the normal run.
            self.skipTest("a sanitizer build; the image ships the release build")
        self.assertTrue(needed <= paths.keys(), f"ldd cannot resolve {sorted(needed - paths.keys())}")

        owners = packages_of(paths.values())
        # Each library keygate links directly: its package is named in the install line.
        direct = {owners[paths[lib]] for lib in needed} - BASE_IMAGE_PACKAGES
        self.assertTrue(direct <= listed, f"runtime stage lacks {sorted(direct - listed)}")
        # ...and nothing else is, apart from CA certificates (stale entries are caught here).
        self.assertEqual(listed - direct, {"ca-certificates"},
                         "runtime packages keygate links no library from")
        # Every library ldd loads (transitively) comes with those packages' dependencies.
        closure = dependency_closure(listed | BASE_IMAGE_PACKAGES)
        for lib, path in paths.items():
            with self.subTest(library=lib):
                self.assertIn(owners[path], closure)


if __name__ == "__main__":
    unittest.main()
