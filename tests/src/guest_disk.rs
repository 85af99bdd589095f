//! The test guest of [`crate::guest`] as a bootable disk, for tests that go through the API: a
//! server made by `skiff server create --image` boots from its disk (a qcow2 child of a master), so
//! the master must hold a boot loader, not just a kernel.
//!
//! The disk is a FAT file system without a partition table (a "superfloppy": the BIOS runs the
//! file system's boot sector, which SYSLINUX writes) holding the guest's kernel, initrd and a
//! `syslinux.cfg` that boots them with [`TestGuest::cmdline`]. Built with Debian's `dosfstools`
//! (`mkfs.fat`), `mtools` (`mcopy`) and `syslinux` (whose installer writes to an image file through
//! mtools, no mount), then converted to qcow2; cached next to the guest's kernel.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _, Result};

use crate::guest::TestGuest;

/// Size of the boot file system (kernel and initrd take ~10 MiB).
const DISK_BYTES: u64 = 64 << 20;

/// File name of the bootable master, in the guest's cache directory.
const FILE: &str = "boot-disk.qcow2";

/// The guest as a bootable qcow2 image (world-readable, like the rest of the guest's cache), built
/// on first use. Copy or import it into a pool and make it a master there.
pub fn boot_disk(guest: &TestGuest) -> Result<PathBuf> {
    let dir = guest
        .kernel
        .parent()
        .context("the guest's kernel has no directory")?;
    let disk = dir.join(FILE);
    if disk.is_file() {
        return Ok(disk);
    }
    let work = tempfile::Builder::new()
        .prefix(".disk-")
        .tempdir_in(dir)
        .context("creating a build directory")?;
    let raw = work.path().join("disk.raw");
    fs::File::create(&raw)?.set_len(DISK_BYTES)?;
    let cfg = work.path().join("syslinux.cfg");
    fs::write(
        &cfg,
        format!(
            "DEFAULT skiff\nPROMPT 0\nTIMEOUT 0\nLABEL skiff\n  LINUX /vmlinuz\n  INITRD /initrd.img\n  APPEND {}\n",
            guest.cmdline()
        ),
    )?;
    tool(
        Command::new("mkfs.fat")
            .args(["-F", "32", "-n", "SKIFF"])
            .arg(&raw),
    )?;
    tool(
        Command::new("mcopy")
            .arg("-i")
            .arg(&raw)
            .arg(&guest.kernel)
            .arg(&guest.initrd)
            .arg(&cfg)
            .arg("::/"),
    )?;
    tool(Command::new("syslinux").arg("--install").arg(&raw))?;
    let qcow2 = work.path().join(FILE);
    tool(
        Command::new("qemu-img")
            .args(["convert", "-f", "raw", "-O", "qcow2"])
            .arg(&raw)
            .arg(&qcow2),
    )?;
    set_readable(&qcow2)?;
    match fs::rename(&qcow2, &disk) {
        Ok(()) => Ok(disk),
        // Another process finished first: use its disk.
        Err(_) if disk.is_file() => Ok(disk),
        Err(e) => Err(e).with_context(|| format!("moving the disk to {}", disk.display())),
    }
}

/// Runs one of the build tools, naming the Debian package to install when it is missing.
fn tool(cmd: &mut Command) -> Result<()> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd.output().with_context(|| {
        format!("running {program} (install Debian's dosfstools, mtools and syslinux)")
    })?;
    if !out.status.success() {
        bail!(
            "{program} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn set_readable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    fs::set_permissions(path, fs::Permissions::from_mode(0o644))
        .with_context(|| format!("chmod 644 {}", path.display()))
}
