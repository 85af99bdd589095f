//! Paths of the workspace's binaries (`skiffd`, its helper `skiff-hv`, `skiff`), built by `cargo build --workspace`.

use std::path::PathBuf;

/// The target directory the running test binary lives in (`target/debug`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    // target/debug/deps/test-binary -> target/debug
    exe.parent()
        .and_then(|p| p.parent())
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// Path of a workspace binary; panics with the command to build it when it is missing.
pub fn path(name: &str) -> PathBuf {
    let p = target_dir().join(name);
    assert!(
        p.exists(),
        "{} is missing: build the binaries first (`cargo build --workspace`; ./scripts/test does)",
        p.display()
    );
    p
}

/// Runs the `skiff` binary with credential `cred`; returns its stdout, failing the test (with
/// everything it printed) on a non-zero exit.
pub async fn skiff(cred: &std::path::Path, args: &[&str]) -> String {
    let out = tokio::process::Command::new(path("skiff"))
        .arg("--cred")
        .arg(cred)
        .args(args)
        .output()
        .await
        .expect("run skiff");
    assert!(
        out.status.success(),
        "skiff {args:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
