#!/bin/sh
# For the dependency layer of the images. Without arguments: an empty source
# file for every target of every workspace member, so that `cargo build`
# compiles the dependencies before our code is copied in. With --remove:
# takes them away again, so that only our real sources remain.
set -eu
if [ "${1:-}" = --remove ]; then
  rm -rf crates/*/src crates/*/benches crates/cache-probe/build.rs
  exit 0
fi
for crate in crates/*/; do
  mkdir -p "$crate/src"
  echo 'fn main() {}' >"$crate/src/main.rs"
  : >"$crate/src/lib.rs"
  # Benchmarks declared with [[bench]] (criterion's, harness = false) must
  # exist for the manifest to parse.
  for bench in $(sed -n '/^\[\[bench\]\]/,/^name/s/^name *= *"\(.*\)"/\1/p' "$crate/Cargo.toml"); do
    mkdir -p "$crate/benches"
    echo 'fn main() {}' >"$crate/benches/$bench.rs"
  done
done
# cache-probe's build script compiles the BPF programs; its placeholder does
# nothing.
if [ -f crates/cache-probe/Cargo.toml ]; then
  echo 'fn main() {}' >crates/cache-probe/build.rs
fi
