"""Which container images the deploy files may reference."""

import re

from conftest import DEPLOY, REPO

OURS = "ghcr.io/redis-cache/"
TWO_PART_RELEASES = {"postgres"}


def crate_version(name: str) -> str:
    manifest = (REPO / "crates" / name / "Cargo.toml").read_text()
    return re.search(r'^version = "([^"]+)"', manifest, re.M).group(1)


def assert_pinned(image: str):
    """Ours at the crate's version (built by deploy/docker/<name>.Dockerfile),
    or a public image pinned to an exact version or a digest."""
    if image.startswith(OURS):
        name, _, tag = image.removeprefix(OURS).partition(":")
        assert (DEPLOY / "docker" / f"{name}.Dockerfile").is_file(), f"{image}: we build no such image"
        assert tag == crate_version(name), f"{image}: tag is not {name}'s version {crate_version(name)}"
        return
    if "@sha256:" in image:
        assert re.fullmatch(r"[^@]+@sha256:[0-9a-f]{64}", image), f"{image}: malformed digest"
        return
    repository, _, tag = image.rpartition(":")
    assert ":" in image and "/" not in tag, f"{image}: no tag (that means :latest)"
    # PostgreSQL's releases are major.minor; everything else we use names a
    # release with three numbers (7.4 would be whatever 7.4.x is newest).
    exact = r"\d+\.\d+" if repository in TWO_PART_RELEASES else r"\d+\.\d+\.\d+"
    assert re.match(rf"v?{exact}(?![.\d])|[a-z]+-\d{{8}}", tag), f"{image}: {tag!r} is not an exact release"
