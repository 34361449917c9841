"""deploy/compose: valid Compose, and wired to what our binaries really do.

Validated against the Compose specification's JSON schema; every flag and
variable given to our binaries is one they accept (read from --help); the
service is started with the compose environment to prove the values are
accepted too; the load balancer, Prometheus, Grafana and the OTLP endpoint
point at the ports and paths the binaries serve.
"""

import copy
import os
import pathlib
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from urllib.parse import urlparse

import pytest
import yaml

from binaries import assert_accepts, default_of
from conftest import DEPLOY, binary
from images import OURS, assert_pinned

COMPOSE_DIR = DEPLOY / "compose"
COMPOSE_FILE = COMPOSE_DIR / "compose.yaml"
CHECK_JSONSCHEMA = pathlib.Path(sys.executable).parent / "check-jsonschema"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def services_running(compose: dict, name: str) -> dict:
    return {k: s for k, s in compose["services"].items() if s.get("image", "").startswith(f"{OURS}{name}:")}


def command_of(service: dict) -> list[str]:
    command = service.get("command", [])
    return command.split() if isinstance(command, str) else [str(c) for c in command]


def option(args: list[str], flag: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == flag:
            return args[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def service_port(help_text: str, service: dict) -> int:
    """The port redis-cache listens on in this container."""
    return int(service.get("environment", {}).get("SERVER_PORT") or default_of(help_text, "--server-port"))


def probe_port(help_text: str, service: dict) -> int:
    address = option(command_of(service), "--metrics-addr") or default_of(help_text, "--metrics-addr")
    return int(address.rsplit(":", 1)[1])


def validate_schema(path: pathlib.Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True, text=True, timeout=120,
    )


def test_valid_against_the_compose_specification(tmp_path, compose):
    result = validate_schema(COMPOSE_FILE)
    assert result.returncode == 0, result.stdout + result.stderr
    # And the schema does reject a mistake (a misspelt key).
    broken = copy.deepcopy(compose)
    broken["services"]["redis"]["helthcheck"] = broken["services"]["redis"].pop("healthcheck")
    (tmp_path / "compose.yaml").write_text(yaml.safe_dump(broken))
    assert validate_schema(tmp_path / "compose.yaml").returncode != 0


def test_images_are_ours_or_pinned_and_ours_are_built_here(compose):
    for name, service in compose["services"].items():
        assert "image" in service, f"{name}: no image"
        assert_pinned(service["image"])
        if service["image"].startswith(OURS):
            built = service["image"].removeprefix(OURS).split(":")[0]
            build = service.get("build")
            assert build, f"{name}: {service['image']} has no build section"
            assert (COMPOSE_DIR / build["context"]).resolve() == DEPLOY.parent, f"{name}: context is the repository"
            assert build["dockerfile"] == f"deploy/docker/{built}.Dockerfile"


def test_our_binaries_get_only_flags_and_variables_they_accept(compose, binary_help):
    seen = set()
    for name, service in compose["services"].items():
        image = service["image"]
        if not image.startswith(OURS):
            continue
        program = image.removeprefix(OURS).split(":")[0]
        seen.add(program)
        assert_accepts(binary_help(program), program, service.get("environment"), command_of(service))
    assert seen == {"redis-cache", "cache-probe", "cache-loadgen"}


def test_bind_mounts_exist(compose):
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (COMPOSE_DIR / source).exists(), f"{name}: {source} does not exist"


def test_redis_is_a_bounded_cache_that_keeps_nothing(compose):
    args = command_of(compose["services"]["redis"])
    assert option(args, "--maxmemory-policy") == "allkeys-lru"
    assert option(args, "--maxmemory")
    assert option(args, "--save") == "" and option(args, "--appendonly") == "no"


def test_start_up_order_waits_for_health(compose):
    for name, service in compose["services"].items():
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in compose["services"], f"{name} depends on unknown {dependency}"
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in compose["services"][dependency], f"{dependency} has no health check"
    for name in services_running(compose, "redis-cache"):
        depends = compose["services"][name]["depends_on"]
        assert depends["redis"]["condition"] == depends["postgres"]["condition"] == "service_healthy"


def test_the_service_health_check_is_its_own_subcommand(compose):
    for name, service in services_running(compose, "redis-cache").items():
        assert service["healthcheck"]["test"] == ["CMD", "/usr/local/bin/redis-cache", "healthcheck"], name


def test_load_balancer_sends_traffic_to_ready_instances(compose, binary_help):
    haproxy = (COMPOSE_DIR / "haproxy.cfg").read_text()
    servers = dict(re.findall(r"^\s*server\s+\S+\s+([\w.-]+):(\d+)", haproxy, re.M))
    instances = services_running(compose, "redis-cache")
    assert len(instances) == 2, "two instances behind the balancer"
    for name, service in instances.items():
        assert servers.get(name) == str(service_port(binary_help("redis-cache"), service)), (name, servers)
    assert set(servers) == set(instances)
    assert re.search(r"option httpchk GET /readyz\b", haproxy)
    lb = compose["services"]["lb"]
    assert "127.0.0.1:8080:8080" in lb["ports"]
    assert re.search(r"^\s*bind :8080$", haproxy, re.M)
    assert any(v.endswith(":/usr/local/etc/haproxy/haproxy.cfg:ro") for v in lb["volumes"])


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is installed by scripts/test")
def test_haproxy_accepts_the_configuration():
    result = subprocess.run(["haproxy", "-c", "-f", str(COMPOSE_DIR / "haproxy.cfg")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_scrapes_what_the_binaries_serve(compose, binary_help, tmp_path):
    config = yaml.safe_load((COMPOSE_DIR / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    targets = lambda job: {t for c in jobs[job]["static_configs"] for t in c["targets"]}  # noqa: E731
    # The rules' "down" alerts name the job redis-cache.
    assert targets("redis-cache") == {
        f"{name}:{service_port(binary_help('redis-cache'), s)}"
        for name, s in services_running(compose, "redis-cache").items()
    }
    assert jobs["redis-cache"].get("metrics_path", "/metrics") == "/metrics"
    assert targets("cache-probe") == {
        f"{name}:{probe_port(binary_help('cache-probe'), s)}"
        for name, s in services_running(compose, "cache-probe").items()
    }
    assert jobs["cache-probe"].get("metrics_path", "/metrics") == "/metrics"
    # The rules file is mounted where rule_files says.
    prometheus = compose["services"]["prometheus"]
    mounts = dict(v.rsplit(":", 1)[0].split(":", 1)[::-1] for v in prometheus["volumes"])
    for rule_file in config["rule_files"]:
        assert (COMPOSE_DIR / mounts[rule_file]).resolve() == DEPLOY / "prometheus" / "rules.yml"
    assert "--config.file=/etc/prometheus/prometheus.yml" in command_of(prometheus)
    # promtool agrees, with the rules where the container would see them.
    local = dict(config, rule_files=[str(DEPLOY / "prometheus" / "rules.yml")])
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(local))
    checked = subprocess.run(["promtool", "check", "config", str(tmp_path / "prometheus.yml")],
                             capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_grafana_is_provisioned_with_prometheus_and_the_dashboard(compose):
    grafana = compose["services"]["grafana"]
    mounts = {target: source for source, target, *_ in (v.split(":") for v in grafana["volumes"])}
    provisioning = COMPOSE_DIR / mounts["/etc/grafana/provisioning"]
    sources = yaml.safe_load((provisioning / "datasources" / "datasources.yaml").read_text())["datasources"]
    prometheus = next(s for s in sources if s["type"] == "prometheus")
    assert prometheus["url"] == "http://prometheus:9090" and prometheus.get("isDefault")
    jaeger = next(s for s in sources if s["type"] == "jaeger")
    assert urlparse(jaeger["url"]).hostname in compose["services"] and urlparse(jaeger["url"]).port == 16686
    providers = yaml.safe_load((provisioning / "dashboards" / "dashboards.yaml").read_text())["providers"]
    dashboard_dir = providers[0]["options"]["path"]
    dashboards = {t: s for t, s in mounts.items() if t.startswith(dashboard_dir + "/")}
    assert [(COMPOSE_DIR / s).resolve() for s in dashboards.values()] == [
        DEPLOY / "grafana" / "redis-cache-dashboard.json"
    ]
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home in dashboards


def test_spans_go_to_the_trace_backend_over_otlp_http(compose):
    jaeger = compose["services"]["jaeger"]
    assert jaeger["environment"]["COLLECTOR_OTLP_ENABLED"] == "true"
    assert "127.0.0.1:16686:16686" in jaeger["ports"]
    for name, service in compose["services"].items():
        endpoint = service.get("environment", {}).get("OTEL_EXPORTER_OTLP_ENDPOINT")
        if endpoint is None:
            continue
        url = urlparse(endpoint)
        # Our binaries export OTLP over HTTP only: Jaeger's OTLP/HTTP port.
        assert (url.scheme, url.hostname, url.port) == ("http", "jaeger", 4318), (name, endpoint)


def test_the_probe_can_see_the_service(compose, binary_help):
    (name, probe), = services_running(compose, "cache-probe").items()
    assert probe["privileged"] is True and probe["pid"] == "host"
    assert "/sys/kernel/tracing:/sys/kernel/tracing" in probe["volumes"]
    # It follows the processes named like the service's binary.
    assert option(command_of(probe), "--comm") == "redis-cache"
    assert binary("redis-cache").name == "redis-cache"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_the_service_starts_with_the_compose_environment(compose, tmp_path):
    """The values are accepted, not only the names: the service runs with
    the compose environment (its hosts replaced by local ones) and serves
    /readyz, /livez and /metrics, and its health check passes."""
    redis_port = free_port()
    redis = subprocess.Popen(
        ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )
    (name, service), *_ = services_running(compose, "redis-cache").items()
    port = free_port()
    env = {k: str(v) for k, v in service["environment"].items() if not k.startswith("OTEL_EXPORTER")}
    env.update(
        PATH=os.environ["PATH"],
        REDIS_URL=f"redis://127.0.0.1:{redis_port}",
        DATABASE_URL=f"sqlite:{tmp_path / 'items.db'}",
        SERVER_PORT=str(port),
    )
    server = subprocess.Popen([str(binary("redis-cache"))], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        status = None
        while time.monotonic() < deadline and server.poll() is None:
            try:
                status, _ = get(f"http://127.0.0.1:{port}/readyz")
            except OSError:
                status = None
            if status == 200:
                break
            time.sleep(0.1)
        assert server.poll() is None, f"exited: {server.stderr.read()}"
        assert status == 200
        assert get(f"http://127.0.0.1:{port}/livez")[0] == 200
        code, metrics = get(f"http://127.0.0.1:{port}/metrics")
        assert code == 200 and "redis_cache_" in metrics
        check = subprocess.run([str(binary("redis-cache")), "healthcheck"], env=env, capture_output=True,
                               timeout=30)
        assert check.returncode == 0, check.stderr
    finally:
        server.terminate()
        server.wait(timeout=30)
        redis.terminate()
        redis.wait(timeout=30)
