//! The fake Skiff node for tests of the `skiff` binary lives in `skiff_cluster::api::fake_node`
//! (feature `testsuite`).
// Each test binary uses a different part of this module.
#![allow(unused_imports, dead_code)]

pub use skiff_cluster::api::fake_node::*;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The real `skiff` binary against one fake leader: a credential for it in a temporary home.
pub struct Cli {
    pub node: FakeNode,
    home: tempfile::TempDir,
    cred: PathBuf,
}

impl Cli {
    /// Starts a fake leader answering with `handler` and writes a credential for it.
    pub fn start(handler: Handler) -> Cli {
        let pki = Pki::new();
        let node = FakeNode::start(&pki, handler);
        let home = tempfile::tempdir().unwrap();
        let cred = home.path().join("credential");
        std::fs::write(&cred, pki.credential_toml(&[node.addr()])).unwrap();
        Cli { node, home, cred }
    }

    /// The temporary home (for files the test hands to `skiff`).
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// Runs `skiff ARGS` and checks its exit status and its whole standard output.
    pub fn expect(&self, args: &[&str], code: i32, stdout: &str) {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert_eq!(text(&out.stdout), stdout, "{args:?}");
    }

    /// Runs `skiff --cred CRED ARGS` with the temporary home and no `SKIFF_CRED`.
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(skiff_binary())
            .env_remove("SKIFF_CRED")
            .env("HOME", self.home.path())
            .arg("--cred")
            .arg(&self.cred)
            .args(args)
            .output()
            .unwrap()
    }
}

/// Bytes as text (lossy), for assertions on output.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The `skiff` binary: cargo names it to integration tests; an example (which includes this
/// module too) finds it next to itself in the target directory.
fn skiff_binary() -> PathBuf {
    match option_env!("CARGO_BIN_EXE_skiff") {
        Some(p) => PathBuf::from(p),
        None => std::env::current_exe()
            .ok()
            .and_then(|e| Some(e.parent()?.parent()?.join("skiff")))
            .unwrap_or_else(|| PathBuf::from("skiff")),
    }
}
