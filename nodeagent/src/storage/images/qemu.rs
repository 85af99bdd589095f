//! Running `qemu-img` and reading its JSON: the raw serde shapes of `info --output=json` and
//! `check --output=json` as qemu-img 10.0 prints them (samples in `testdata/`), and the
//! recognition of "this file is not a readable qcow2" in its error messages.
//!
//! Every path handed to qemu-img here is absolute, so it starts with `/` and qemu never reads
//! part of it as a protocol prefix (`nbd:`, `json:`).

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Output};

use serde::Deserialize;

use super::ImageError;

/// Longest stderr kept in an error: a damaged image makes `qemu-img check` print one line per
/// bad table entry, thousands of them.
const MAX_STDERR: usize = 2000;

/// The qemu-img binary and how to run it.
#[derive(Debug, Clone)]
pub(crate) struct QemuImg {
    program: std::path::PathBuf,
}

impl QemuImg {
    pub(crate) fn new(program: impl Into<std::path::PathBuf>) -> Self {
        Self {
            program: program.into(),
        }
    }

    /// Runs qemu-img with `args` and returns its output whatever its exit status. `LC_ALL=C`
    /// keeps the messages we recognise in English.
    pub(crate) fn output<S: AsRef<OsStr>>(&self, args: &[S]) -> Result<Output, ImageError> {
        Command::new(&self.program)
            .args(args)
            .env("LC_ALL", "C")
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| ImageError::io(format!("cannot run {}", self.describe(args)), e))
    }

    /// Runs qemu-img and returns its stdout, or a [`ImageError::QemuImg`] if it failed.
    pub(crate) fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Result<Vec<u8>, ImageError> {
        let out = self.output(args)?;
        if out.status.success() {
            Ok(out.stdout)
        } else {
            Err(self.failure(args, &out))
        }
    }

    /// The error for a failed run.
    pub(crate) fn failure<S: AsRef<OsStr>>(&self, args: &[S], out: &Output) -> ImageError {
        ImageError::QemuImg {
            command: self.describe(args),
            stderr: trim_stderr(&out.stderr, out.status.code()),
        }
    }

    /// The command line as text, for errors.
    pub(crate) fn describe<S: AsRef<OsStr>>(&self, args: &[S]) -> String {
        let mut s = self.program.display().to_string();
        for a in args {
            s.push(' ');
            s.push_str(&a.as_ref().to_string_lossy());
        }
        s
    }

    /// `qemu-img info --output=json -U` of one file, without its backing chain. `format` is
    /// given for every image we made (no probing); only import sources are probed.
    pub(crate) fn header(&self, path: &Path, format: Option<&str>) -> Result<RawInfo, ImageError> {
        let mut args: Vec<&OsStr> = vec!["info".as_ref(), "--output=json".as_ref(), "-U".as_ref()];
        if let Some(f) = format {
            args.push("-f".as_ref());
            args.push(f.as_ref());
        }
        args.push(path.as_os_str());
        let stdout = self.run(&args)?;
        parse_json(&stdout).map_err(|detail| ImageError::BadOutput {
            command: self.describe(&args),
            detail,
        })
    }
}

/// Parses qemu-img JSON output into `T`, with the serde message as the error.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    serde_json::from_slice(bytes).map_err(|e| e.to_string())
}

/// Stderr as text, cut to [`MAX_STDERR`] bytes, with the exit code when there is no message.
fn trim_stderr(stderr: &[u8], code: Option<i32>) -> String {
    let text = String::from_utf8_lossy(stderr);
    let text = text.trim();
    if text.is_empty() {
        return match code {
            Some(c) => format!("exit status {c}, no message"),
            None => "killed by a signal".to_owned(),
        };
    }
    if text.len() <= MAX_STDERR {
        return text.to_owned();
    }
    let mut end = MAX_STDERR;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{} [... {} more bytes]", &text[..end], text.len() - end)
}

/// Whether a qemu-img error message says the file could not be read as an image of the given
/// format (bad magic, damaged header or tables), as opposed to a missing file, a lock held by a
/// running VM or a permission problem.
pub(crate) fn says_corrupt(stderr: &str) -> bool {
    let s = stderr.to_ascii_lowercase();
    [
        "not in qcow2 format",
        "corrupt",
        "unsupported qcow2 version",
        "invalid",
        "too large",
        "too big",
        "unaligned",
        "not aligned",
        "unknown incompatible feature",
        "cannot read",
        "could not read",
    ]
    .iter()
    .any(|m| s.contains(m))
}

/// One image as `qemu-img info --output=json` prints it (one element of the `--backing-chain`
/// array). Unknown fields are ignored: newer qemu-img versions add some.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub(crate) struct RawInfo {
    pub filename: String,
    pub format: String,
    pub virtual_size: u64,
    #[serde(default)]
    pub actual_size: Option<u64>,
    #[serde(default)]
    pub cluster_size: Option<u64>,
    /// As written in the header (may be relative to the image's directory).
    #[serde(default)]
    pub backing_filename: Option<String>,
    /// Resolved by qemu-img against the image's directory.
    #[serde(default)]
    pub full_backing_filename: Option<String>,
    #[serde(default)]
    pub backing_filename_format: Option<String>,
    #[serde(default)]
    pub snapshots: Vec<RawSnapshot>,
    #[serde(default)]
    pub format_specific: Option<RawFormatSpecific>,
    #[serde(default)]
    pub dirty_flag: Option<bool>,
}

impl RawInfo {
    /// The qcow2 "corrupt" header bit (set by qemu when it found damage while writing).
    pub(crate) fn corrupt_bit(&self) -> bool {
        self.format_specific
            .as_ref()
            .and_then(|f| f.data.get("corrupt"))
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false)
    }

    /// The qcow2 external data file, if any (its guest data lives in another host file).
    pub(crate) fn data_file(&self) -> Option<&str> {
        self.format_specific
            .as_ref()
            .and_then(|f| f.data.get("data-file"))
            .and_then(serde_json::Value::as_str)
    }

    /// The backing file, resolved if qemu-img resolved it.
    pub(crate) fn backing(&self) -> Option<&str> {
        self.full_backing_filename
            .as_deref()
            .or(self.backing_filename.as_deref())
    }
}

/// `format-specific`: its `data` differs per format, so it stays a JSON value.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub(crate) struct RawFormatSpecific {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub data: serde_json::Value,
}

/// One internal snapshot in `qemu-img info` output.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub(crate) struct RawSnapshot {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub vm_state_size: u64,
    #[serde(default)]
    pub date_sec: i64,
    #[serde(default)]
    pub date_nsec: u32,
    #[serde(default)]
    pub vm_clock_sec: i64,
    #[serde(default)]
    pub vm_clock_nsec: u32,
}

/// `qemu-img check --output=json`. Counters qemu-img leaves out are zero.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub(crate) struct RawCheck {
    pub filename: String,
    pub format: String,
    #[serde(default)]
    pub check_errors: u64,
    #[serde(default)]
    pub corruptions: u64,
    #[serde(default)]
    pub leaks: u64,
    #[serde(default)]
    pub corruptions_fixed: u64,
    #[serde(default)]
    pub leaks_fixed: u64,
    #[serde(default)]
    pub image_end_offset: Option<u64>,
    #[serde(default)]
    pub total_clusters: Option<u64>,
    #[serde(default)]
    pub allocated_clusters: Option<u64>,
    #[serde(default)]
    pub fragmented_clusters: Option<u64>,
    #[serde(default)]
    pub compressed_clusters: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO_CHAIN: &str = include_str!("testdata/info-chain.json");
    const INFO_RAW: &str = include_str!("testdata/info-raw.json");
    const CHECK_CLEAN: &str = include_str!("testdata/check-clean.json");
    const CHECK_LEAKS: &str = include_str!("testdata/check-leaks.json");
    const CHECK_CORRUPT: &str = include_str!("testdata/check-corrupt.json");

    #[test]
    fn parses_backing_chain() {
        let chain: Vec<RawInfo> = parse_json(INFO_CHAIN.as_bytes()).expect("parse");
        assert_eq!(chain.len(), 2);
        let child = &chain[0];
        assert_eq!(child.format, "qcow2");
        assert_eq!(child.virtual_size, 1 << 30);
        assert_eq!(child.backing(), Some("/tmp/qi/master.qcow2"));
        assert_eq!(child.backing_filename_format.as_deref(), Some("qcow2"));
        assert_eq!(child.snapshots.len(), 1);
        assert_eq!(child.snapshots[0].name, "before-upgrade");
        assert_eq!(child.snapshots[0].id, "1");
        assert!(!child.corrupt_bit());
        assert_eq!(child.data_file(), None);
        let master = &chain[1];
        assert_eq!(master.filename, "/tmp/qi/master.qcow2");
        assert_eq!(master.backing(), None);
        assert!(master.actual_size.is_some());
    }

    #[test]
    fn parses_raw_info() {
        let raw: RawInfo = parse_json(INFO_RAW.as_bytes()).expect("parse");
        assert_eq!(raw.format, "raw");
        assert_eq!(raw.virtual_size, 10 << 20);
        assert_eq!(raw.backing(), None);
        assert!(raw.snapshots.is_empty());
        assert!(!raw.corrupt_bit());
    }

    #[test]
    fn parses_check_results() {
        let clean: RawCheck = parse_json(CHECK_CLEAN.as_bytes()).expect("clean");
        assert_eq!(
            (clean.corruptions, clean.leaks, clean.check_errors),
            (0, 0, 0)
        );
        let leaks: RawCheck = parse_json(CHECK_LEAKS.as_bytes()).expect("leaks");
        assert_eq!((leaks.corruptions, leaks.leaks), (0, 17));
        let bad: RawCheck = parse_json(CHECK_CORRUPT.as_bytes()).expect("corrupt");
        assert_eq!(bad.corruptions, 1);
        assert_eq!(bad.fragmented_clusters, Some(1));
    }

    #[test]
    fn refuses_malformed_json() {
        assert!(parse_json::<RawInfo>(b"").is_err());
        assert!(parse_json::<RawInfo>(b"{\"format\": \"qcow2\"}").is_err());
        assert!(parse_json::<Vec<RawInfo>>(b"{}").is_err());
        assert!(parse_json::<RawCheck>(b"[1,2]").is_err());
    }

    #[test]
    fn recognises_corruption_messages() {
        assert!(says_corrupt(
            "qemu-img: Could not open '/x/g.qcow2': Image is not in qcow2 format"
        ));
        assert!(says_corrupt(
            "qcow2: Image is corrupt: Refblock offset 0x60b0 unaligned"
        ));
        assert!(!says_corrupt(
            "qemu-img: Could not open '/x/m.qcow2': No such file or directory"
        ));
        assert!(!says_corrupt(
            "qemu-img: Failed to get shared \"write\" lock\nIs another process using the image?"
        ));
    }

    #[test]
    fn long_stderr_is_cut() {
        let long = "ERROR refcount table entry has reserved bits set\n".repeat(500);
        let t = trim_stderr(long.as_bytes(), Some(1));
        assert!(t.len() < MAX_STDERR + 40, "{}", t.len());
        assert!(t.ends_with("more bytes]"));
        assert_eq!(trim_stderr(b"", Some(2)), "exit status 2, no message");
    }
}
