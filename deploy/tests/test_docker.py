"""The Dockerfiles of deploy/docker, built as far as possible without an engine.

Each builder stage is replayed in a temporary directory: its COPY
instructions copy from the build context (a missing path fails, as it would
in `docker build`), its cargo commands run as written, against the same
Cargo.lock, offline. Then the runtime stage's COPY --from sources must exist
in what the builder produced, and the entrypoint must be the binary copied.
"""

import fnmatch
import json
import os
import pathlib
import re
import shlex
import shutil
import subprocess

import pytest
from dockerfile_parse import DockerfileParser

from conftest import DEPLOY, REPO
from images import assert_pinned

IMAGES = ["redis-cache", "cache-loadgen", "cache-probe"]
# Shared by every replay so dependencies compile once per checkout.
TARGET = REPO / "target" / "dockerfile-check"
# Libraries the runtime bases provide: glibc and libgcc for distroless/cc
# (plus libssl from its base), and Debian's slim image.
GLIBC = {"linux-vdso.so.1", "libc.so.6", "libm.so.6", "libgcc_s.so.1", "ld-linux-x86-64.so.2",
         "libdl.so.2", "libpthread.so.0", "librt.so.1"}
RUNTIME_LIBRARIES = {
    "gcr.io/distroless/cc-debian12": GLIBC | {"libssl.so.3", "libcrypto.so.3", "libstdc++.so.6"},
    # debian-slim plus what the Dockerfile installs: libelf1, zlib1g and
    # libelf1's own dependency, libzstd1.
    "debian": GLIBC | {"libelf.so.1", "libz.so.1", "libzstd.so.1"},
}


def ignored(relative: str) -> bool:
    """Whether .dockerignore keeps `relative` out of the build context."""
    patterns = [
        line.strip().rstrip("/")
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    parts = relative.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        pattern = pattern.removeprefix("**/")
        if any(fnmatch.fnmatch(p, pattern) or fnmatch.fnmatch(p.split("/")[-1], pattern) for p in prefixes):
            return True
    return False


def copy_from_context(source: str, destination: pathlib.Path):
    path = REPO / source
    assert path.exists(), f"COPY {source}: no such path in the build context"
    assert not ignored(source), f"COPY {source}: excluded by .dockerignore"
    if path.is_dir():
        shutil.copytree(path, destination, dirs_exist_ok=True,
                        ignore=lambda d, names: [n for n in names
                                                 if ignored(str((pathlib.Path(d) / n).relative_to(REPO)))])
    else:
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, destination)


class Stage:
    def __init__(self, image: str, name: str | None, root: pathlib.Path):
        self.image, self.name, self.root = image, name, root
        self.workdir = "/"
        self.copies: list[tuple[str, str, str | None]] = []  # (source, destination, --from)
        self.user = None
        self.entrypoint = None
        self.healthcheck = None
        self.runs: list[str] = []
        # COPY and RUN in order, each with the WORKDIR it runs in: the replay.
        self.steps: list[tuple[str, str, str]] = []

    def path(self, container_path: str, workdir: str | None = None) -> pathlib.Path:
        workdir = workdir or self.workdir
        absolute = container_path if container_path.startswith("/") else f"{workdir.rstrip('/')}/{container_path}"
        return self.root / absolute.lstrip("/")


def parse(dockerfile: pathlib.Path, scratch: pathlib.Path) -> list[Stage]:
    stages: list[Stage] = []
    for item in DockerfileParser(path=str(dockerfile)).structure:
        instruction, value = item["instruction"], item["value"]
        if instruction == "FROM":
            words = value.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name, scratch / f"stage{len(stages)}"))
            continue
        if not stages:
            continue
        stage = stages[-1]
        if instruction in ("COPY", "RUN"):
            stage.steps.append((instruction, value, stage.workdir))
        if instruction == "WORKDIR":
            stage.workdir = value if value.startswith("/") else f"{stage.workdir.rstrip('/')}/{value}"
        elif instruction == "COPY":
            words = shlex.split(value)
            flags = dict(w[2:].split("=", 1) for w in words if w.startswith("--"))
            paths = [w for w in words if not w.startswith("--")]
            for source in paths[:-1]:
                stage.copies.append((source, paths[-1], flags.get("from")))
        elif instruction == "RUN":
            stage.runs.append(value)
        elif instruction == "USER":
            stage.user = value
        elif instruction == "ENTRYPOINT":
            stage.entrypoint = json.loads(value)
        elif instruction == "HEALTHCHECK":
            stage.healthcheck = json.loads(value.split("CMD", 1)[1])
    return stages


def replay_builder(stage: Stage, env: dict):
    """COPY and RUN of a builder stage, in order, in its scratch root."""
    stage.root.mkdir(parents=True)
    work = stage.path(".")
    work.mkdir(parents=True, exist_ok=True)
    (work / "target").symlink_to(TARGET)
    for instruction, value, workdir in stage.steps:
        if instruction == "COPY":
            words = [w for w in shlex.split(value) if not w.startswith("--")]
            for source in words[:-1]:
                destination = stage.path(words[-1], workdir)
                if words[-1].endswith("/") or len(words) > 2:
                    destination = destination / pathlib.Path(source).name
                copy_from_context(source, destination)
        else:
            command = value
            if command.startswith("apt-get"):
                check_packages(command)
                continue
            assert not re.search(r"(^|\s)/(?!dev/null)", command), (
                f"RUN {command!r}: absolute paths in a builder step cannot be replayed here; "
                "keep builder steps inside WORKDIR"
            )
            subprocess.run(["sh", "-c", command], cwd=stage.path(".", workdir), env=env, check=True, timeout=1800)


def check_packages(command: str):
    """Every package an apt-get step installs exists in this machine's Debian."""
    packages = [w for w in command.split("install", 1)[1].split("&&")[0].split() if not w.startswith("-")]
    assert packages, command
    for package in packages:
        shown = subprocess.run(["apt-cache", "show", package], capture_output=True, text=True)
        assert shown.returncode == 0 and shown.stdout.strip(), f"apt-get install {package}: no such Debian package"


def load(name: str, scratch: pathlib.Path) -> list[Stage]:
    return parse(DEPLOY / "docker" / f"{name}.Dockerfile", scratch)


@pytest.fixture(scope="module")
def cargo_env():
    env = dict(os.environ)
    env.update(
        CARGO_NET_OFFLINE="true",
        # The same commands, without the optimiser: this checks that they
        # work, not how fast the result is.
        CARGO_PROFILE_RELEASE_OPT_LEVEL="0",
        CARGO_PROFILE_RELEASE_DEBUG="false",
        CARGO_PROFILE_RELEASE_INCREMENTAL="true",
    )
    env.pop("CARGO_TARGET_DIR", None)
    TARGET.mkdir(parents=True, exist_ok=True)
    return env


@pytest.mark.parametrize("name", IMAGES)
def test_dockerfile_builds_the_binary_it_ships(name, tmp_path, cargo_env):
    stages = load(name, tmp_path)
    assert len(stages) == 2, "a builder stage and a runtime stage"
    builder, runtime = stages
    for stage in stages:
        assert_pinned(stage.image)

    # Dependencies are built before our sources are copied in: a change to
    # the code must not invalidate that layer.
    sources = [i for i, (src, _, _) in enumerate(builder.copies) if src == "crates"]
    assert sources, "the builder copies the sources"
    manifests = [src for src, _, _ in builder.copies[: sources[0]]]
    assert "Cargo.lock" in manifests and all(
        f"crates/{crate.name}/Cargo.toml" in manifests for crate in (REPO / "crates").iterdir()
    ), "every workspace manifest is copied before the sources, for the dependency layer"
    first_build = next(run for run in builder.runs if "cargo build" in run)
    assert f"-p {name}" in first_build and "--locked" in first_build

    replay_builder(builder, cargo_env)

    for source, destination, origin in runtime.copies:
        assert origin == builder.name, f"COPY {source}: the runtime stage copies only from the builder"
        assert builder.path(source).exists(), f"COPY --from={origin} {source}: the builder did not make it"
    binary_path = f"/usr/local/bin/{name}"
    assert runtime.entrypoint == [binary_path], runtime.entrypoint
    shipped = next(builder.path(s) for s, d, _ in runtime.copies if d == binary_path)
    help_run = subprocess.run([str(shipped), "--help"], capture_output=True, text=True, timeout=30)
    assert help_run.returncode == 0 and name in help_run.stdout, help_run.stderr

    base = runtime.image.split("@")[0].split(":")[0]
    allowed = RUNTIME_LIBRARIES[base]
    libraries = subprocess.run(["ldd", str(shipped)], capture_output=True, text=True, check=True).stdout
    needed = {line.split()[0].split("/")[-1] for line in libraries.splitlines() if line.strip()}
    assert needed <= allowed, f"{name} needs {sorted(needed - allowed)}, which {runtime.image} lacks"

    if name == "cache-probe":
        assert runtime.user in (None, "root", "0"), "the probe loads BPF programs: it runs as root"
    else:
        assert runtime.user and runtime.user.split(":")[0] not in ("root", "0"), "runs as a non-root user"
    if name == "redis-cache":
        # A health check with no shell: the binary's own subcommand, which
        # fails cleanly when nothing listens.
        assert runtime.healthcheck == [binary_path, "healthcheck"]
        check = subprocess.run([str(shipped), "healthcheck", "--port", "1"], capture_output=True, text=True,
                               timeout=30)
        assert check.returncode == 1 and "redis-cache healthcheck:" in check.stderr, check


def test_a_missing_context_path_fails_the_replay(tmp_path):
    """The replay is not vacuous: a COPY of a path that is not there fails."""
    broken = tmp_path / "broken.Dockerfile"
    broken.write_text("FROM rust:1.95.0-bookworm AS builder\nWORKDIR /src\nCOPY crates/nope/Cargo.toml crates/nope/\n")
    stage = parse(broken, tmp_path / "scratch")[0]
    TARGET.mkdir(parents=True, exist_ok=True)
    with pytest.raises(AssertionError, match="no such path"):
        replay_builder(stage, dict(os.environ))


def test_dockerignore_keeps_build_output_out():
    for path in ["target/debug/redis-cache", ".git/HEAD", "deploy/tests/node_modules/x", "items.db"]:
        assert ignored(path), path
    for path in ["crates/redis-cache/src/main.rs", "Cargo.lock", "deploy/docker/placeholders.sh"]:
        assert not ignored(path), path


@pytest.mark.parametrize(
    "image",
    ["redis:7.4-alpine", "redis:latest", "redis", "postgres:16", "debian:bookworm-slim",
     "ghcr.io/redis-cache/redis-cache:9.9.9", "ghcr.io/redis-cache/nothing:0.1.0"],
)
def test_moving_tags_are_refused(image):
    with pytest.raises(AssertionError):
        assert_pinned(image)


@pytest.mark.parametrize(
    "image",
    ["redis:7.4.6-alpine", "postgres:16.10-alpine", "prom/prometheus:v2.55.1", "debian:bookworm-20251229-slim",
     "gcr.io/distroless/cc-debian12:nonroot@sha256:" + "0" * 64],
)
def test_exact_releases_are_accepted(image):
    assert_pinned(image)
