//! The `skiffd` binary against bad input: clear errors, non-zero exit, nothing written.

use std::path::Path;
use std::process::Command;

fn skiffd(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_skiffd"))
        .args(args)
        .env("SKIFF_LOG", "error")
        .output()
        .expect("run skiffd");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout),
    )
}

#[test]
fn every_bad_config_fixture_is_refused_with_the_reason() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bad-config");
    let expect = [
        ("unknown-key.toml", "listen_port"),
        ("lease-too-long.toml", "lease_ms"),
        ("bad-name.toml", "invalid name"),
        ("wrong-type.toml", "admin_eligible"),
        ("not-toml.toml", "not-toml.toml"),
        ("unspecified-listen.toml", "advertise"),
    ];
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap().to_str().unwrap().to_string();
        let needle = expect
            .iter()
            .find(|(f, _)| *f == file)
            .unwrap_or_else(|| panic!("fixture {file} has no expectation"))
            .1;
        let (ok, out) = skiffd(&["check-config", path.to_str().unwrap()]);
        assert!(!ok, "{file} was accepted");
        assert!(out.contains(needle), "{file}: {out}");
        assert!(!out.contains("panicked"), "{file}: {out}");
        seen += 1;
    }
    assert_eq!(seen, expect.len());
}

#[test]
fn run_refuses_a_data_dir_without_a_node() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, out) = skiffd(&["run", "--data-dir", dir.path().to_str().unwrap()]);
    assert!(!ok);
    assert!(out.contains("skiffd init"), "{out}");
}

#[test]
fn run_refuses_a_malformed_config_and_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let (ok, out) = skiffd(&[
        "init",
        "--data-dir",
        d,
        "--name",
        "n1",
        "--listen",
        "127.0.0.1:7999",
    ]);
    assert!(ok, "{out}");
    let cfg = dir.path().join("node.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, format!("{text}\nbogus_key = 1\n")).unwrap();
    let (ok, out) = skiffd(&["run", "--data-dir", d]);
    assert!(!ok);
    assert!(out.contains("bogus_key"), "{out}");
    // Init again on the same dir is refused and changes nothing.
    let before = std::fs::read_to_string(dir.path().join("admin.credential")).unwrap();
    let (ok, out) = skiffd(&[
        "init",
        "--data-dir",
        d,
        "--name",
        "n1",
        "--listen",
        "127.0.0.1:7999",
    ]);
    assert!(!ok);
    assert!(out.contains("already initialised"), "{out}");
    assert_eq!(
        before,
        std::fs::read_to_string(dir.path().join("admin.credential")).unwrap()
    );
}

#[test]
fn join_refuses_a_garbage_token_before_dialling() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("j");
    let (ok, out) = skiffd(&[
        "join",
        "--data-dir",
        d.to_str().unwrap(),
        "--name",
        "j",
        "--listen",
        "127.0.0.1:7998",
        "--seed",
        "127.0.0.1:9",
        "--token",
        "not-a-token",
    ]);
    assert!(!ok);
    assert!(out.contains("malformed join token"), "{out}");
    assert!(!d.exists(), "a refused join wrote its data dir");
}

#[test]
fn init_refuses_bad_names_and_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("x");
    let (ok, out) = skiffd(&[
        "init",
        "--data-dir",
        d.to_str().unwrap(),
        "--name",
        "Bad Name",
        "--listen",
        "127.0.0.1:7997",
    ]);
    assert!(!ok);
    assert!(out.contains("invalid name"), "{out}");
    let (ok, out) = skiffd(&[
        "init",
        "--data-dir",
        d.to_str().unwrap(),
        "--name",
        "x",
        "--listen",
        "not-an-address",
    ]);
    assert!(!ok);
    assert!(out.contains("invalid"), "{out}");
    assert!(!d.exists());
}
