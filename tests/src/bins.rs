//! Paths of the workspace's binaries (`skiffd`, `skiff`), built by `cargo build --workspace`.

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
