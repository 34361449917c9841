//! Compiles the kernel programs (`src/bpf/probe.bpf.c`) with clang and
//! generates their libbpf skeleton into `OUT_DIR`. Needs clang and the
//! kernel's UAPI headers (Debian: clang, linux-libc-dev); not the kernel's
//! BTF: kernel types are resolved at load time (see `src/bpf/kernel.h`).

use std::env;
use std::path::PathBuf;

use libbpf_cargo::SkeletonBuilder;

const SOURCE: &str = "src/bpf/probe.bpf.c";

fn main() {
    // libbpf's own messages, shown by cargo when the build fails.
    libbpf_rs::set_print(Some((libbpf_rs::PrintLevel::Warn, |_, msg: String| {
        eprint!("{msg}")
    })));
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let arch = env::var("CARGO_CFG_TARGET_ARCH").expect("cargo sets the target arch");
    let (target_arch, multiarch) = match arch.as_str() {
        "x86_64" => ("x86", "x86_64-linux-gnu"),
        "aarch64" => ("arm64", "aarch64-linux-gnu"),
        other => panic!("cache-probe: unsupported architecture {other}"),
    };
    SkeletonBuilder::new()
        .source(SOURCE)
        .clang_args([
            "-Isrc/bpf".to_owned(),
            format!("-I/usr/include/{multiarch}"),
            format!("-D__TARGET_ARCH_{target_arch}"),
            "-Wall".to_owned(),
        ])
        .build_and_generate(out.join("probe.skel.rs"))
        .expect("cannot build the BPF programs (are clang and linux-libc-dev installed?)");
    println!("cargo:rerun-if-changed=src/bpf");
}
