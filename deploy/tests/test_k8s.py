"""The Kubernetes manifests of deploy/k8s, rendered with kustomize.

Both the base and the dev overlay are rendered and validated against the
Kubernetes API schemas. Then what the manifests ask of our binaries
(environment variables, flags, ports, paths) is compared with what the
binaries accept and serve, and the references between objects (selectors,
ports, ConfigMaps, Secrets) are resolved.
"""

import copy
import re
import subprocess

import kubernetes_validate
import pytest
import yaml

import binaries
from conftest import BIN_DIR, DEPLOY, REPO
from images import assert_pinned

K8S = DEPLOY / "k8s"
TARGETS = {"base": K8S / "base", "dev": K8S / "overlays" / "dev"}
NAMESPACE = "redis-cache"
# The oldest Kubernetes release we support, and the newest the validator knows.
KUBERNETES_VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]
# The Secrets each overlay provides; only the base may lack them.
OVERLAY_SECRETS = {"redis-cache-db", "redis-cache-admin", "redis-cache-redis"}
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet"}
CLUSTER_SCOPED = {
    "Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
    "IngressClass", "PersistentVolume", "PriorityClass", "StorageClass",
    "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration",
}
DASHBOARD = DEPLOY / "grafana" / "redis-cache-dashboard.json"
RULES = DEPLOY / "prometheus" / "rules.yml"


# Rendering


def render(kustomize: str, path) -> list:
    """`kustomize build` of one kustomization, with the default load
    restrictions (as `kubectl apply -k` renders it)."""
    out = subprocess.run(
        [kustomize, "build", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if out.returncode != 0:
        pytest.fail(f"kustomize build {path.relative_to(REPO)} failed:\n{out.stderr}")
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc is not None]


@pytest.fixture(scope="session")
def rendered(kustomize) -> dict:
    return {name: render(kustomize, path) for name, path in TARGETS.items()}


@pytest.fixture(params=sorted(TARGETS))
def target(request, rendered):
    """(name, objects) of the base, then of the dev overlay."""
    return request.param, rendered[request.param]


@pytest.fixture
def dev(rendered) -> list:
    return rendered["dev"]


# Looking things up in rendered output


def label(obj: dict) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def of_kind(objects: list, kind: str) -> list:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list, kind: str, name: str) -> dict:
    found = [o for o in of_kind(objects, kind) if o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def workloads(objects: list) -> list:
    return [o for o in objects if o["kind"] in WORKLOAD_KINDS]


def pod_spec(workload: dict) -> dict:
    return workload["spec"]["template"]["spec"]


def pod_labels(workload: dict) -> dict:
    return workload["spec"]["template"]["metadata"].get("labels", {})


def containers(workload: dict) -> list:
    spec = pod_spec(workload)
    return spec.get("initContainers", []) + spec["containers"]


def only_container(workload: dict) -> dict:
    found = pod_spec(workload)["containers"]
    assert len(found) == 1, f"{label(workload)}: expected one container, found {len(found)}"
    return found[0]


def selects(selector: dict, labels: dict) -> bool:
    """Whether a label selector (matchLabels/matchExpressions, or a Service's
    plain map) selects these labels."""
    if not selector:
        return False
    if "matchLabels" not in selector and "matchExpressions" not in selector:
        selector = {"matchLabels": selector}
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": labels.get(key) not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


def selected_workloads(objects: list, selector: dict) -> list:
    return [w for w in workloads(objects) if selects(selector, pod_labels(w))]


def container_port(container: dict, port) -> int:
    """The number behind a probe's or Service's port: a number, or the name
    of one of the container's ports."""
    if isinstance(port, int):
        return port
    if isinstance(port, str) and port.isdigit():
        return int(port)
    numbers = [p["containerPort"] for p in container.get("ports", []) if p.get("name") == port]
    assert numbers, f"container {container['name']} has no port named {port!r}"
    return numbers[0]


def env_value(container: dict, name: str):
    for var in container.get("env", []):
        if var["name"] == name:
            return var.get("value")
    return None


def flag_value(args: list, flag: str):
    """The value of `--flag=value` or `--flag value` in args."""
    for i, arg in enumerate(args):
        if arg == flag and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def flags_in(args: list) -> list:
    return [a.split("=", 1)[0] for a in args if a.startswith("--")]


def seconds(duration: str) -> float:
    """`5s`, `500ms`, `1m`, `1m30s`: what our binaries accept (humantime)."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration.replace(" ", ""), (
        f"cannot read duration {duration!r}"
    )
    return sum(float(n) * units[u] for n, u in parts)


# What our binaries accept


class Cli:
    """Long flags, environment variables and defaults of one command line."""

    def __init__(self, flags: set, env: set, default):
        self.flags, self.env, self.default = flags, env, default

    @classmethod
    def from_help(cls, text: str) -> "Cli":
        return cls(binaries.flags(text), binaries.env_names(text), lambda flag: binaries.default_of(text, flag))

    @classmethod
    def from_clap_source(cls, source: str) -> "Cli":
        """The `#[arg(long, ...)]` fields of a clap derive struct."""
        flags, env, defaults = set(), set(), {}
        for attrs, field in re.findall(r"#\[arg\((.*?)\)\]\s*(?:pub\s+)?(\w+):", source, re.S):
            if not re.search(r"\blong\b", attrs):
                continue
            long = re.search(r'\blong\s*=\s*"([^"]+)"', attrs)
            flag = "--" + (long.group(1) if long else field.replace("_", "-"))
            flags.add(flag)
            env.update(re.findall(r'\benv\s*=\s*"([^"]+)"', attrs))
            default = re.search(r'\bdefault_value\s*=\s*"([^"]*)"', attrs)
            if default:
                defaults[flag] = default.group(1)

        def default(flag: str) -> str:
            assert flag in defaults, f"{flag} has no default_value in the clap definition"
            return defaults[flag]

        return cls(flags, env, default)


@pytest.fixture(scope="session")
def service_cli(binary_help) -> Cli:
    return Cli.from_help(binary_help("redis-cache"))


PROBE_SOURCE = REPO / "crates" / "cache-probe" / "src" / "main.rs"


@pytest.fixture(scope="session")
def probe_cli(binary_help) -> Cli:
    """From `cache-probe --help` when it is built (it needs clang), else
    from its clap definition, so that the check never has to be skipped."""
    if (BIN_DIR / "cache-probe").is_file():
        return Cli.from_help(binary_help("cache-probe"))
    return Cli.from_clap_source(PROBE_SOURCE.read_text())


def test_command_lines_are_read_correctly(service_cli, probe_cli):
    """Guards the readers above: one that found nothing would let every
    later check pass. The probe's clap source must read as its --help does."""
    assert {"--server-port", "--redis-url", "--shutdown-delay"} <= service_cli.flags
    assert {"SERVER_PORT", "DATABASE_URL", "REDIS_URL", "INSTANCE_ID"} <= service_cli.env
    assert service_cli.default("--server-port") == "8080"
    from_source = Cli.from_clap_source(PROBE_SOURCE.read_text())
    for cli in (probe_cli, from_source):
        assert {"--comm", "--metrics-addr", "--redis-port", "--pid"} <= cli.flags
        assert {"PROBE_METRICS_ADDR", "PROBE_COMM"} <= cli.env
        assert cli.default("--metrics-addr") == "0.0.0.0:9464"
    if probe_cli is not from_source:
        assert from_source.flags == probe_cli.flags - {"--help", "--version"}
        assert from_source.env == probe_cli.env


def assert_env_accepted(container: dict, cli: Cli):
    """Every variable is read by the binary or its libraries, or only feeds a
    later variable through `$(NAME)`; every `$(NAME)` names a variable
    defined before it, or Kubernetes leaves it as it is."""
    names = [var["name"] for var in container.get("env", [])]
    for i, var in enumerate(container.get("env", [])):
        for ref in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", var.get("value", "")):
            assert ref in names[:i], (
                f"{container['name']}: {var['name']} refers to $({ref}), which is not defined before it"
            )
    used_in_values = {
        ref
        for var in container.get("env", [])
        for ref in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", var.get("value", ""))
    }
    for name in names:
        assert name in cli.env or binaries.STANDARD_ENV.match(name) or name in used_in_values, (
            f"{container['name']}: environment variable {name} is neither read by the binary "
            f"nor used by another variable"
        )
    for source in container.get("envFrom", []):
        pytest.fail(f"{container['name']}: envFrom {source} hides which variables are set")


def assert_args_accepted(container: dict, cli: Cli):
    for flag in flags_in(container.get("command", [])[1:] + container.get("args", [])):
        assert flag in cli.flags, f"{container['name']}: {flag} is not a flag of the binary"


# 1. Rendering and schemas


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_object_is_valid_for_kubernetes(target, version):
    name, objects = target
    assert objects, f"{name} renders nothing"
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as err:
            pytest.fail(f"{name}: {label(obj)} is not valid for Kubernetes {version}: {err.message} "
                        f"at {'/'.join(map(str, err.path))}")


def test_the_schema_check_rejects_a_misspelt_field(rendered):
    """Guards the check above: strict validation must refuse what the API
    server would drop or refuse."""
    deployment = copy.deepcopy(one(rendered["dev"], "Deployment", "redis-cache"))
    container = only_container(deployment)
    container["readinesProbe"] = container.pop("readinessProbe")
    for version in KUBERNETES_VERSIONS:
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(deployment, version, strict=True)


# 2. Namespace


def test_the_namespace_comes_first_and_holds_everything(target):
    name, objects = target
    first = objects[0]
    assert (first["kind"], first["metadata"]["name"]) == ("Namespace", NAMESPACE), (
        f"{name}: the first object is {label(first)}, not Namespace/{NAMESPACE}"
    )
    assert len(of_kind(objects, "Namespace")) == 1, f"{name}: more than one Namespace"
    for obj in objects:
        if obj["kind"] not in CLUSTER_SCOPED:
            assert obj["metadata"].get("namespace") == NAMESPACE, (
                f"{name}: {label(obj)} is in namespace {obj['metadata'].get('namespace')!r}"
            )


# 3. Images


def test_every_image_is_ours_at_its_version_or_pinned(target):
    name, objects = target
    for workload in workloads(objects):
        for container in containers(workload):
            image = container.get("image", "")
            try:
                assert_pinned(image)
            except AssertionError as err:
                pytest.fail(f"{name}: {label(workload)} container {container['name']}: {err}")


# 4. The service against its binary


def test_service_environment_and_flags_are_accepted_by_the_binary(target, service_cli):
    _, objects = target
    container = only_container(one(objects, "Deployment", "redis-cache"))
    assert_env_accepted(container, service_cli)
    assert_args_accepted(container, service_cli)


def service_port(container: dict, cli: Cli) -> int:
    """The port redis-cache listens on: SERVER_PORT, --server-port, or the
    default its --help shows."""
    port = flag_value(container.get("args", []), "--server-port") or env_value(container, "SERVER_PORT")
    return int(port or cli.default("--server-port"))


def test_service_probes_and_scrape_annotations_reach_its_port(target, service_cli):
    _, objects = target
    deployment = one(objects, "Deployment", "redis-cache")
    container = only_container(deployment)
    port = service_port(container, service_cli)
    assert port in [p["containerPort"] for p in container.get("ports", [])], (
        f"the container does not declare its listening port {port}"
    )
    expected = {"readinessProbe": "/readyz", "livenessProbe": "/livez"}
    for probe, path in expected.items():
        check = container.get(probe, {}).get("httpGet")
        assert check, f"redis-cache has no HTTP {probe}"
        assert check["path"] == path, f"{probe} asks {check['path']}, not {path}"
        assert container_port(container, check["port"]) == port, f"{probe} does not ask port {port}"
    if "startupProbe" in container:
        check = container["startupProbe"]["httpGet"]
        assert check["path"] in {"/livez", "/readyz"}, f"startupProbe asks {check['path']}"
        assert container_port(container, check["port"]) == port, "startupProbe asks another port"
    annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
    assert annotations.get("prometheus.io/scrape") == "true", "the pods are not marked for scraping"
    assert annotations.get("prometheus.io/port") == str(port), (
        f"prometheus.io/port is {annotations.get('prometheus.io/port')}, the service listens on {port}"
    )
    assert annotations.get("prometheus.io/path") == "/metrics"


def test_service_drains_before_the_kubelet_kills_it(target, service_cli):
    _, objects = target
    deployment = one(objects, "Deployment", "redis-cache")
    container = only_container(deployment)
    delay = env_value(container, "SHUTDOWN_DELAY") or service_cli.default("--shutdown-delay")
    grace = env_value(container, "SHUTDOWN_GRACE") or service_cli.default("--shutdown-grace")
    assert seconds(delay) > 0, "without SHUTDOWN_DELAY the listener closes while endpoints still route here"
    period = pod_spec(deployment).get("terminationGracePeriodSeconds", 30)
    assert period > seconds(delay) + seconds(grace), (
        f"terminationGracePeriodSeconds {period} <= SHUTDOWN_DELAY {delay} + SHUTDOWN_GRACE {grace}"
    )


def service_in_front_of(objects: list, workload: dict) -> dict:
    found = [s for s in of_kind(objects, "Service") if selects(s["spec"].get("selector"), pod_labels(workload))]
    assert len(found) == 1, f"expected one Service selecting {label(workload)}, found {len(found)}"
    return found[0]


def test_service_and_ingress_route_to_the_listening_port(target, service_cli):
    _, objects = target
    deployment = one(objects, "Deployment", "redis-cache")
    container = only_container(deployment)
    port = service_port(container, service_cli)
    service = service_in_front_of(objects, deployment)
    for service_port_spec in service["spec"]["ports"]:
        target_port = service_port_spec.get("targetPort", service_port_spec["port"])
        assert container_port(container, target_port) == port, (
            f"Service/{service['metadata']['name']} port {service_port_spec['port']} targets "
            f"{target_port}, not the service's port {port}"
        )
    ingresses = of_kind(objects, "Ingress")
    assert ingresses, "no Ingress"
    for ingress in ingresses:
        rewrites = [k for k in ingress["metadata"].get("annotations", {}) if k.endswith("rewrite-target")]
        assert not rewrites, f"{label(ingress)} rewrites paths ({rewrites}): every route would become /"
        paths = [p for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]]
        assert [(p["path"], p["pathType"]) for p in paths] == [("/", "Prefix")], (
            f"{label(ingress)} routes {[(p['path'], p['pathType']) for p in paths]}, not / as a prefix"
        )
        for path in paths:
            backend = path["backend"]["service"]
            assert backend["name"] == service["metadata"]["name"], f"{label(ingress)} routes to {backend['name']}"
            wanted = backend["port"]
            matching = [
                p for p in service["spec"]["ports"]
                if p.get("name") == wanted.get("name", object()) or p["port"] == wanted.get("number")
            ]
            assert matching, f"{label(ingress)} asks port {wanted} of a Service without it"


# 5. Security and availability


def effective(container: dict, pod: dict, key: str):
    """A security setting as the kubelet applies it: the container's, else
    the pod's."""
    container_ctx = container.get("securityContext", {})
    return container_ctx[key] if key in container_ctx else pod.get("securityContext", {}).get(key)


def test_service_runs_unprivileged_on_a_read_only_root(target):
    _, objects = target
    deployment = one(objects, "Deployment", "redis-cache")
    pod = pod_spec(deployment)
    for container in containers(deployment):
        name = container["name"]
        ctx = container.get("securityContext", {})
        assert effective(container, pod, "runAsNonRoot") is True, f"{name}: runAsNonRoot is not set"
        assert effective(container, pod, "runAsUser") not in (0, None), f"{name}: no non-root runAsUser"
        assert ctx.get("readOnlyRootFilesystem") is True, f"{name}: root filesystem is writable"
        assert ctx.get("allowPrivilegeEscalation") is False, f"{name}: privilege escalation allowed"
        assert "ALL" in ctx.get("capabilities", {}).get("drop", []), f"{name}: capabilities not dropped"
        assert not ctx.get("capabilities", {}).get("add"), f"{name}: adds capabilities"
        seccomp = effective(container, pod, "seccompProfile") or {}
        assert seccomp.get("type") == "RuntimeDefault", f"{name}: no RuntimeDefault seccomp profile"


def test_service_pods_are_spread_and_protected_from_eviction(target):
    _, objects = target
    deployment = one(objects, "Deployment", "redis-cache")
    labels = pod_labels(deployment)
    assert deployment["spec"].get("replicas", 1) >= 2, "a single instance cannot survive a drain"
    budgets = [p for p in of_kind(objects, "PodDisruptionBudget") if selects(p["spec"]["selector"], labels)]
    assert budgets, "no PodDisruptionBudget selects the redis-cache pods"
    anti = pod_spec(deployment).get("affinity", {}).get("podAntiAffinity", {})
    terms = [t["podAffinityTerm"] for t in anti.get("preferredDuringSchedulingIgnoredDuringExecution", [])]
    terms += anti.get("requiredDuringSchedulingIgnoredDuringExecution", [])
    assert any(
        t["topologyKey"] == "kubernetes.io/hostname" and selects(t["labelSelector"], labels) for t in terms
    ), "no pod anti-affinity keeps redis-cache instances on different nodes"


def test_every_container_has_requests_and_limits(target):
    name, objects = target
    for workload in workloads(objects):
        for container in containers(workload):
            resources = container.get("resources", {})
            for kind in ("requests", "limits"):
                missing = {"cpu", "memory"} - set(resources.get(kind, {}))
                assert not missing, (
                    f"{name}: {label(workload)} container {container['name']} has no {kind} for {sorted(missing)}"
                )


# 6. The probe


def test_probe_runs_privileged_in_the_host_pid_namespace(target):
    _, objects = target
    daemonset = one(objects, "DaemonSet", "cache-probe")
    assert pod_spec(daemonset).get("hostPID") is True, "without hostPID the probe cannot see other pods' processes"
    container = only_container(daemonset)
    assert container.get("securityContext", {}).get("privileged") is True, "the probe cannot load BPF unprivileged"


def test_probe_flags_and_environment_are_accepted(target, probe_cli):
    _, objects = target
    container = only_container(one(objects, "DaemonSet", "cache-probe"))
    assert_args_accepted(container, probe_cli)
    assert_env_accepted(container, probe_cli)


def service_process_name() -> str:
    """What /proc/<pid>/comm says of the service in its image: the name of
    the entrypoint's binary, cut to the kernel's 15 characters."""
    dockerfile = (DEPLOY / "docker" / "redis-cache.Dockerfile").read_text()
    entrypoint = re.search(r'^ENTRYPOINT \["([^"]+)"', dockerfile, re.M)
    assert entrypoint, "redis-cache.Dockerfile has no exec-form ENTRYPOINT"
    return entrypoint.group(1).rsplit("/", 1)[-1][:15]


def test_probe_follows_the_service_processes(target):
    _, objects = target
    container = only_container(one(objects, "DaemonSet", "cache-probe"))
    comm = flag_value(container.get("args", []), "--comm") or env_value(container, "PROBE_COMM")
    assert comm == service_process_name(), (
        f"the probe follows processes named {comm!r}; the service runs as {service_process_name()!r}"
    )


def test_probe_health_and_scrape_annotations_reach_its_metrics_port(target, probe_cli):
    _, objects = target
    daemonset = one(objects, "DaemonSet", "cache-probe")
    container = only_container(daemonset)
    address = (
        flag_value(container.get("args", []), "--metrics-addr")
        or env_value(container, "PROBE_METRICS_ADDR")
        or probe_cli.default("--metrics-addr")
    )
    port = int(address.rsplit(":", 1)[1])
    for probe in ("readinessProbe", "livenessProbe"):
        check = container.get(probe, {}).get("httpGet")
        assert check, f"cache-probe has no HTTP {probe}"
        assert check["path"] == "/healthz", f"{probe} asks {check['path']}, the probe serves /healthz"
        assert container_port(container, check["port"]) == port, f"{probe} does not ask port {port}"
    annotations = daemonset["spec"]["template"]["metadata"].get("annotations", {})
    assert annotations.get("prometheus.io/scrape") == "true", "the probe is not marked for scraping"
    assert annotations.get("prometheus.io/port") == str(port), (
        f"prometheus.io/port is {annotations.get('prometheus.io/port')}, the probe serves on {port}"
    )
    assert annotations.get("prometheus.io/path") == "/metrics"


def test_probe_mounts_tracefs_and_no_other_host_path(target):
    _, objects = target
    daemonset = one(objects, "DaemonSet", "cache-probe")
    host_paths = {
        v["name"]: v["hostPath"]["path"] for v in pod_spec(daemonset).get("volumes", []) if "hostPath" in v
    }
    assert set(host_paths.values()) <= {"/sys/kernel/tracing"}, (
        f"the probe needs tracefs only, it mounts {sorted(host_paths.values())}"
    )
    mounts = {m["mountPath"]: m["name"] for m in only_container(daemonset).get("volumeMounts", [])}
    assert host_paths.get(mounts.get("/sys/kernel/tracing")) == "/sys/kernel/tracing", (
        "the host's /sys/kernel/tracing is not mounted at /sys/kernel/tracing"
    )


# 7. Dashboard and rules


def test_dashboard_config_map_is_the_dashboard_file_for_the_grafana_sidecar(dev):
    config_map = one(dev, "ConfigMap", "redis-cache-dashboard")
    assert config_map["metadata"].get("labels", {}).get("grafana_dashboard") == "1", (
        "without the grafana_dashboard label the Grafana sidecar ignores it"
    )
    assert [v.encode() for v in config_map["data"].values()] == [DASHBOARD.read_bytes()], (
        f"the dashboard ConfigMap differs from {DASHBOARD.relative_to(REPO)}"
    )
    assert list(config_map["data"])[0].endswith(".json"), "the sidecar loads *.json keys only"


def test_rules_config_map_is_the_rules_file(dev):
    config_map = one(dev, "ConfigMap", "redis-cache-prometheus-rules")
    assert [v.encode() for v in config_map["data"].values()] == [RULES.read_bytes()], (
        f"the rules ConfigMap differs from {RULES.relative_to(REPO)}"
    )


# 8. References between objects


def test_every_selector_selects_pods(target):
    name, objects = target
    for service in of_kind(objects, "Service"):
        assert selected_workloads(objects, service["spec"].get("selector")), (
            f"{name}: {label(service)} selects no pods"
        )
    for budget in of_kind(objects, "PodDisruptionBudget"):
        assert selected_workloads(objects, budget["spec"]["selector"]), f"{name}: {label(budget)} selects no pods"
    for policy in of_kind(objects, "NetworkPolicy"):
        assert selected_workloads(objects, policy["spec"]["podSelector"]), f"{name}: {label(policy)} selects no pods"
        for rule in policy["spec"].get("ingress", []):
            for peer in rule.get("from", []):
                if "podSelector" in peer and "namespaceSelector" not in peer:
                    assert selected_workloads(objects, peer["podSelector"]), (
                        f"{name}: {label(policy)} admits traffic from pods that do not exist"
                    )
    for workload in workloads(objects):
        assert selects(workload["spec"]["selector"], pod_labels(workload)), (
            f"{name}: {label(workload)} does not select its own pods"
        )


def references(workload: dict):
    """(kind, name, key or None) of every ConfigMap and Secret the pods use."""
    spec = pod_spec(workload)
    for volume in spec.get("volumes", []):
        if "configMap" in volume:
            yield "ConfigMap", volume["configMap"]["name"], None
        if "secret" in volume:
            yield "Secret", volume["secret"]["secretName"], None
        for source in volume.get("projected", {}).get("sources", []):
            if "configMap" in source:
                yield "ConfigMap", source["configMap"]["name"], None
            if "secret" in source:
                yield "Secret", source["secret"]["name"], None
    for pull in spec.get("imagePullSecrets", []):
        yield "Secret", pull["name"], None
    for container in containers(workload):
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                yield "ConfigMap", source["configMapRef"]["name"], None
            if "secretRef" in source:
                yield "Secret", source["secretRef"]["name"], None
        for var in container.get("env", []):
            ref = var.get("valueFrom", {})
            if "configMapKeyRef" in ref:
                yield "ConfigMap", ref["configMapKeyRef"]["name"], ref["configMapKeyRef"]["key"]
            if "secretKeyRef" in ref:
                yield "Secret", ref["secretKeyRef"]["name"], ref["secretKeyRef"]["key"]


def test_every_config_map_and_secret_used_exists(target):
    name, objects = target
    for workload in workloads(objects):
        for kind, ref_name, key in references(workload):
            found = [o for o in of_kind(objects, kind) if o["metadata"]["name"] == ref_name]
            if not found and name == "base" and kind == "Secret" and ref_name in OVERLAY_SECRETS:
                continue
            assert found, f"{name}: {label(workload)} uses {kind}/{ref_name}, which is not rendered"
            keys = set(found[0].get("data", {})) | set(found[0].get("stringData", {}))
            assert key is None or key in keys, (
                f"{name}: {label(workload)} uses key {key!r} of {kind}/{ref_name}, which has {sorted(keys)}"
            )
