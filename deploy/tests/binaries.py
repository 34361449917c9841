"""What our binaries accept and serve, read from the binaries themselves."""

import re

# Standard variables the binaries read besides their own options
# (OpenTelemetry's SDK variables, the log filter, the container's hostname).
STANDARD_ENV = re.compile(r"^(OTEL_[A-Z0-9_]+|RUST_LOG|HOSTNAME)$")


def env_names(help_text: str) -> set[str]:
    """Environment variables named as `[env: NAME=…]` in clap's --help."""
    return set(re.findall(r"\[env:\s+([A-Z0-9_]+)", help_text))


def flags(help_text: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])(--[a-z0-9][a-z0-9-]*)", help_text))


def default_of(help_text: str, flag: str) -> str:
    """The `[default: …]` of one option."""
    section = help_text.split(flag, 1)[1].split("\n  -", 1)[0]
    found = re.search(r"\[default:\s+([^\]]+)\]", section)
    assert found, f"{flag} has no default in --help"
    return found.group(1).strip()


def assert_accepts(help_text: str, binary: str, env: dict | None = None, args: list | None = None):
    """Every variable and flag given to `binary` is one it knows."""
    for name in env or {}:
        assert name in env_names(help_text) or STANDARD_ENV.match(name), f"{binary} does not read {name}"
    for arg in args or []:
        if str(arg).startswith("--"):
            flag = str(arg).split("=", 1)[0]
            assert flag in flags(help_text), f"{binary} has no option {flag}"
