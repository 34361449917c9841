"""The Redis of deploy/compose and deploy/k8s runs with the least-privilege
user documented in docs/operations.md (the Rust test suite proves that user
is all the service needs), and a real redis-server accepts their settings:
the service's user can connect, the default user cannot, and each health
check passes.
"""

import base64
import os
import socket
import subprocess
from urllib.parse import urlparse

import pytest
import yaml

from conftest import REPO
from test_compose import COMPOSE_FILE, command_of
from test_k8s import TARGETS, containers, of_kind, render, workloads

USER_LINE = "user cache on >password "


def documented_rules() -> list[str]:
    """The ACL rules of docs/operations.md, after `user cache on >password`."""
    for line in (REPO / "docs" / "operations.md").read_text().splitlines():
        if line.startswith(USER_LINE):
            return line.removeprefix(USER_LINE).split()
    pytest.fail("docs/operations.md documents no ACL user")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """redis-server with `args`, on a free local port, stopped on exit."""

    def __init__(self, args: list[str]):
        self.port = free_port()
        self.process = subprocess.Popen(
            ["redis-server", *args, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", "/tmp"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for line in self.process.stdout:
            if "Ready to accept connections" in line:
                return
        pytest.fail(f"redis-server refused {args}: exit {self.process.wait()}")

    def cli(self, *args: str, env: dict | None = None) -> str:
        out = subprocess.run(
            ["redis-cli", "-h", "127.0.0.1", "-p", str(self.port), *args],
            capture_output=True,
            text=True,
            timeout=10,
            env={**os.environ, **(env or {})},
        )
        return (out.stdout + out.stderr).strip()

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self.process.kill()
        self.process.wait()


def test_compose_redis_has_only_the_documented_user():
    compose = yaml.safe_load(COMPOSE_FILE.read_text())
    args = command_of(compose["services"]["redis"])
    users = [i for i, a in enumerate(args) if a == "--user"]
    assert [args[users[0] + 1 : users[1]]] == [["default", "off"]]
    cache = args[users[1] + 1 :]
    assert cache[:3] == ["cache", "on", ">cache"]
    assert cache[3:] == documented_rules()
    url = urlparse(compose["x-redis-cache"]["environment"]["REDIS_URL"])
    assert (url.username, url.password) == ("cache", "cache")

    with RedisServer(args[1:]) as redis:
        assert redis.cli("--user", "cache", "--pass", "cache", "--no-auth-warning", "ping") == "PONG"
        assert "NOAUTH" in redis.cli("ping") or "WRONGPASS" in redis.cli("ping")
        check = compose["services"]["redis"]["healthcheck"]["test"]
        assert check[:2] == ["CMD", "redis-cli"]
        assert redis.cli(*check[2:]) == "PONG"


def test_k8s_redis_has_only_the_documented_user(kustomize, tmp_path):
    objects = render(kustomize, TARGETS["dev"])
    secret = next(s for s in of_kind(objects, "Secret") if s["metadata"]["name"].startswith("redis-cache-redis"))
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    password = data["password"]
    lines = data["users.acl"].splitlines()
    assert lines[0] == "user default off"
    assert lines[1].split() == ["user", "cache", "on", f">{password}", *documented_rules()]

    config = next(c for c in of_kind(objects, "ConfigMap") if c["metadata"]["name"].startswith("redis-config"))
    conf = config["data"]["redis.conf"]
    assert "aclfile /etc/redis/acl/users.acl" in conf
    redis_pod = next(w for w in workloads(objects) if w["metadata"]["name"] == "redis")
    (container,) = containers(redis_pod)
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert "acl" == mounts["/etc/redis/acl"]

    (tmp_path / "users.acl").write_text(data["users.acl"])
    settings = [
        line
        for line in conf.splitlines()
        if line.strip() and not line.startswith(("#", "aclfile", "dir", "bind", "port"))
    ]
    conf_file = tmp_path / "redis.conf"
    conf_file.write_text("\n".join([*settings, f"aclfile {tmp_path / 'users.acl'}"]) + "\n")
    with RedisServer([str(conf_file)]) as redis:
        probe = container["readinessProbe"]["exec"]["command"]
        assert probe[:2] == ["sh", "-c"]
        script = probe[2].replace("-h 127.0.0.1", f"-h 127.0.0.1 -p {redis.port}")
        done = subprocess.run(["sh", "-c", script], env={**os.environ, "REDISCLI_AUTH": password}, timeout=10)
        assert done.returncode == 0, "the readiness probe passes"
        assert "NOAUTH" in redis.cli("ping") or "WRONGPASS" in redis.cli("ping")
