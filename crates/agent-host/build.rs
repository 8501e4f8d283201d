//! Builds the in-box agent (`crates/agent`) as a static binary and embeds it: every
//! sandbox runs it as its init, whatever its root filesystem holds. Packagers can hand in
//! a prebuilt one with `SANDKIT_AGENT_BINARY=/path/to/sandkit-agent`.

use std::env;
use std::hash::{DefaultHasher, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let embedded = out_dir.join("sandkit-agent");
    println!("cargo:rerun-if-env-changed=SANDKIT_AGENT_BINARY");
    let built = match env::var_os("SANDKIT_AGENT_BINARY") {
        Some(prebuilt) => PathBuf::from(prebuilt),
        None => build_agent(&out_dir),
    };
    std::fs::copy(&built, &embedded)
        .unwrap_or_else(|e| panic!("copying the agent from {}: {e}", built.display()));
    let bytes = std::fs::read(&embedded).expect("reading the agent back");
    let mut hasher = DefaultHasher::new();
    hasher.write(&bytes);
    std::fs::write(
        out_dir.join("sandkit-agent.id"),
        format!("{:016x}", hasher.finish()),
    )
    .expect("writing the agent's id");
}

fn build_agent(out_dir: &Path) -> PathBuf {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let agent = manifest_dir.join("../agent");
    for watched in ["src", "Cargo.toml"] {
        println!("cargo:rerun-if-changed={}", agent.join(watched).display());
    }
    let target = env::var("TARGET").expect("cargo sets TARGET");
    // One build shared by every profile of the outer build (check, test, doc, release):
    // `<target-dir>/<profile>/build/<pkg>/out` has the target dir four levels up.
    let target_dir = out_dir
        .ancestors()
        .nth(4)
        .unwrap_or(out_dir)
        .join("sandkit-agent");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .args([
            "build",
            "--release",
            "--locked",
            "--quiet",
            "--bin",
            "sandkit-agent",
        ])
        .arg("--manifest-path")
        .arg(agent.join("Cargo.toml"))
        .args(["--target", &target])
        .arg("--target-dir")
        .arg(&target_dir)
        .env("CARGO_ENCODED_RUSTFLAGS", "-Ctarget-feature=+crt-static")
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env("CARGO_PROFILE_RELEASE_STRIP", "symbols")
        .env("CARGO_PROFILE_RELEASE_OPT_LEVEL", "s")
        .env("CARGO_PROFILE_RELEASE_PANIC", "abort");
    // What the outer build set for itself (clippy's driver, coverage flags, its own
    // target dir) must not leak into the agent's build.
    for variable in [
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_WRAPPER",
        "RUSTFLAGS",
        "RUSTDOCFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET_DIR",
        "CARGO_BUILD_RUSTFLAGS",
        "CLIPPY_ARGS",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        command.env_remove(variable);
    }
    let status = command
        .status()
        .expect("running cargo to build sandkit-agent");
    assert!(status.success(), "building sandkit-agent failed: {status}");
    target_dir
        .join(&target)
        .join("release")
        .join("sandkit-agent")
}
