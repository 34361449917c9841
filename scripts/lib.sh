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

install_packages() {
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "missing: $* (install them; this script only knows apt-get)" >&2
    return 1
  fi
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  echo "installing: $*" >&2
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# PostgreSQL's server binaries live outside the PATH on Debian; the tests find
# them under /usr/lib/postgresql/<version>/bin.
ensure_postgres_server() {
  if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
    install_packages postgresql
  fi
}

ensure_rust() {
  if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
  if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo not found: install a Rust toolchain (1.94 or newer, e.g. with rustup)" >&2
    return 1
  fi
}
