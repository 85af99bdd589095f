//! A tiny bootable test guest: Debian's kernel and an initramfs holding only a static busybox,
//! whose `/init` mounts proc/sys/dev, prints [`READY_LINE`] on the serial console (ttyS0), then
//! runs a shell on that console, again whenever it exits (so a two-way console can type
//! `echo ...` and read the answer). Boot it with direct kernel boot (kernel + initrd +
//! [`TestGuest::cmdline`]).
//!
//! The first call builds it with `apt-get download` (the kernel package `linux-image-amd64`
//! depends on, and `busybox-static`), `dpkg -x` and busybox's own `cpio -o -H newc` (Debian has
//! no `cpio` binary by default), and caches it under `target/skiff-guest/`. Concurrent test
//! processes are safe: each builds in its own temporary directory and renames it into place; the
//! loser of the race uses the winner's build.
//!
//! The cache is world-readable (directories 0755, files 0644): libvirt runs QEMU as an
//! unprivileged user (`libvirt-qemu` on Debian) that must reach the kernel and initrd.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context as _, Result};

/// What the guest's `/init` prints on the serial console once it is up.
pub const READY_LINE: &str = "SKIFF-GUEST-READY";

/// Bump when the guest's contents change, so stale caches are not reused.
const FORMAT: &str = "v2";

/// The guest's `/init` (busybox sh). The console shell is a session leader opening ttyS0, so the
/// console is its controlling terminal (ctrl-C works); it sleeps a second between shells so a
/// shell that cannot start does not spin.
fn init_script() -> String {
    format!(
        "#!/bin/sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
echo {READY_LINE} > /dev/ttyS0
while true; do
  /bin/busybox setsid /bin/sh -c 'exec /bin/sh -i </dev/ttyS0 >/dev/ttyS0 2>&1'
  /bin/busybox sleep 1
done
"
    )
}

/// A built test guest.
#[derive(Clone, Debug)]
pub struct TestGuest {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
}

impl TestGuest {
    /// Kernel command line: console on the first serial port, reboot at once on a panic, quiet
    /// boot (the emulated serial port is slow under TCG).
    pub fn cmdline(&self) -> String {
        "console=ttyS0 panic=-1 quiet".to_string()
    }
}

/// The guest, built on first use and cached under `target/skiff-guest/` (see the module docs).
pub fn test_guest() -> Result<TestGuest> {
    let cache = target_dir()?.join("skiff-guest");
    let done = cache.join(FORMAT);
    let guest = TestGuest {
        kernel: done.join("vmlinuz"),
        initrd: done.join("initrd.img"),
    };
    if guest.kernel.is_file() && guest.initrd.is_file() {
        return Ok(guest);
    }
    fs::create_dir_all(&cache).with_context(|| format!("creating {}", cache.display()))?;
    set_mode(&cache, 0o755)?;
    let work = tempfile::Builder::new()
        .prefix(".build-")
        .tempdir_in(&cache)
        .context("creating a build directory")?;
    let out = work.path().join("out");
    fs::create_dir(&out)?;
    build(work.path(), &out)?;
    set_mode(&out, 0o755)?;
    match fs::rename(&out, &done) {
        Ok(()) => {}
        // Another process finished first (the target is a non-empty directory): use its build.
        Err(_) if guest.kernel.is_file() && guest.initrd.is_file() => {}
        Err(e) => return Err(e).with_context(|| format!("moving the guest to {}", done.display())),
    }
    Ok(guest)
}

/// Downloads and unpacks the packages in `work`, writes `vmlinuz` and `initrd.img` into `out`.
fn build(work: &Path, out: &Path) -> Result<()> {
    let kernel_pkg = kernel_package()?;
    let debs = work.join("debs");
    fs::create_dir(&debs)?;
    run(
        Command::new("apt-get")
            .args(["download", "-q", &kernel_pkg, "busybox-static"])
            .current_dir(&debs),
        "apt-get download (run `apt-get update` first if the package is unknown)",
    )?;
    let root = work.join("extract");
    for deb in fs::read_dir(&debs)? {
        let deb = deb?.path();
        run(
            Command::new("dpkg").arg("-x").arg(&deb).arg(&root),
            "dpkg -x",
        )?;
    }
    let kernel = fs::read_dir(root.join("boot"))
        .context("the kernel package has no /boot")?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("vmlinuz-"))
        })
        .context("no vmlinuz-* in the kernel package")?;
    fs::copy(&kernel, out.join("vmlinuz"))?;
    set_mode(&out.join("vmlinuz"), 0o644)?;

    // The initramfs tree: busybox, /bin/sh, mount points and /init.
    let busybox = root.join("bin/busybox");
    let initramfs = work.join("initramfs");
    for dir in ["bin", "dev", "proc", "sys", "tmp"] {
        fs::create_dir_all(initramfs.join(dir))?;
    }
    fs::copy(&busybox, initramfs.join("bin/busybox"))?;
    set_mode(&initramfs.join("bin/busybox"), 0o755)?;
    std::os::unix::fs::symlink("busybox", initramfs.join("bin/sh"))?;
    fs::write(initramfs.join("init"), init_script())?;
    set_mode(&initramfs.join("init"), 0o755)?;

    // busybox cpio reads the file list on stdin, like cpio(1).
    let list = "bin\nbin/busybox\nbin/sh\ndev\nproc\nsys\ntmp\ninit\n";
    let initrd = fs::File::create(out.join("initrd.img"))?;
    let mut child = Command::new(&busybox)
        .args(["cpio", "-o", "-H", "newc"])
        .current_dir(&initramfs)
        .stdin(Stdio::piped())
        .stdout(initrd)
        .stderr(Stdio::piped())
        .spawn()
        .context("running busybox cpio")?;
    child
        .stdin
        .take()
        .context("busybox cpio has no stdin")?
        .write_all(list.as_bytes())?;
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!(
            "busybox cpio failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    set_mode(&out.join("initrd.img"), 0o644)?;
    Ok(())
}

/// The versioned kernel package `linux-image-amd64` depends on (`linux-image-6.1.0-NN-amd64`).
fn kernel_package() -> Result<String> {
    let out = Command::new("apt-cache")
        .args(["depends", "linux-image-amd64"])
        .output()
        .context("running apt-cache")?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("Depends:"))
        .map(str::trim)
        .find(|p| p.starts_with("linux-image-"))
        .map(str::to_string)
        .with_context(|| {
            format!(
                "no kernel package in `apt-cache depends linux-image-amd64` (run `apt-get \
                 update`): {text}"
            )
        })
}

fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let out = cmd.output().with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {mode:o} {}", path.display()))
}

/// The cargo target directory of the running test binary (`target/debug/deps/X` -> `target`).
fn target_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the test binary")?;
    exe.ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .context("the test binary is not under target/PROFILE/deps")
}

/// What a libvirt test does when libvirt at `uri` is not reachable (`why`): returns `true` (skip,
/// saying so on stderr) when `SKIFF_SKIP_LIBVIRT=1`, and fails the test with how to fix it
/// otherwise. A missing libvirt never passes silently.
pub fn skip_without_libvirt(test: &str, uri: &str, why: &str) -> bool {
    if std::env::var("SKIFF_SKIP_LIBVIRT").as_deref() == Ok("1") {
        // Straight to stderr, past the test harness's capture: a skip must be seen.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: {test}: libvirt is not reachable at {uri} ({why}); SKIFF_SKIP_LIBVIRT=1"
        );
        return true;
    }
    panic!(
        "{test}: libvirt is not reachable at {uri}: {why}\nstart the daemons (`virtlogd -d; \
         libvirtd -d`, as .ci/run does) or set SKIFF_SKIP_LIBVIRT=1 to skip this test"
    );
}

/// The libvirt the tests use.
pub const LIBVIRT_URI: &str = "qemu:///system";

/// `virsh -c qemu:///system ARGS`: its trimmed stdout, or `None` when it failed.
pub fn virsh(args: &[&str]) -> Option<String> {
    let out = Command::new("virsh")
        .arg("-c")
        .arg(LIBVIRT_URI)
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Whether libvirt answers; fails the test with how to fix it unless `SKIFF_SKIP_LIBVIRT=1`
/// (then prints `SKIPPED` and answers false).
pub fn libvirt_reachable(test: &str) -> bool {
    virsh(&["version"]).is_some()
        || !skip_without_libvirt(test, LIBVIRT_URI, "`virsh version` failed")
}

/// Destroys and undefines the domain when dropped: when the test ends, passed or failed.
pub struct DomainGuard(pub String);

impl Drop for DomainGuard {
    fn drop(&mut self) {
        let _ = virsh(&["destroy", &self.0]);
        let _ = virsh(&["undefine", &self.0]);
    }
}

/// `qemu-io -f qcow2 -c CMD FILE` succeeded (and, for `read -P`, the pattern matched).
pub fn qemu_io(file: &Path, cmd: &str) -> bool {
    Command::new("qemu-io")
        .args(["-f", "qcow2", "-c", cmd])
        .arg(file)
        .output()
        .map(|o| {
            o.status.success()
                && !String::from_utf8_lossy(&o.stdout).contains("Pattern verification failed")
        })
        .unwrap_or(false)
}
