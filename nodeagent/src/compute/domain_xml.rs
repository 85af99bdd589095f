//! libvirt domain XML, generated from a typed [`DomainSpec`]. User text (names, paths, the kernel
//! command line) only ever reaches the XML through [`XmlWriter`], which escapes every value and
//! refuses characters XML cannot carry, so no spec can inject elements or attributes.
//!
//! Skiff marks the domains it manages with a `<metadata>` element in its own namespace
//! ([`SKIFF_XMLNS`]) that carries the server's generation; domains without it are not Skiff's and
//! are left alone.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use skiff_cluster::config::Accelerator;
use skiff_cluster::state::servers::BootDevice;

use super::DomainSpec;

/// XML namespace of Skiff's domain metadata (libvirt keys metadata elements by namespace URI).
pub const SKIFF_XMLNS: &str = "https://skiff.invalid/xmlns/domain/1";
/// Prefix of [`SKIFF_XMLNS`] in generated XML.
pub const SKIFF_XMLNS_PREFIX: &str = "skiff";
/// Most disks a domain gets: virtio targets `vda`..`vdz`.
pub const MAX_DISKS: usize = 26;
/// Longest accepted domain name.
pub const MAX_NAME_LEN: usize = 64;

/// Why a spec cannot become domain XML. Nothing is defined when this is returned.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DomainXmlError {
    /// Names become file names (console logs) and libvirt keys: a safe character set only.
    #[error(
        "invalid domain name {0:?}: 1-{MAX_NAME_LEN} characters of a-z, A-Z, 0-9, '-', '_', '.', \
         not starting with '-' or '.'"
    )]
    InvalidName(String),
    /// Memory or vCPUs of zero.
    #[error("{0} must be more than zero")]
    Zero(&'static str),
    /// A value holds a character XML 1.0 cannot represent, even escaped (NUL, most controls).
    #[error("{what} contains a character XML cannot carry: {value:?}")]
    Unrepresentable { what: &'static str, value: String },
    /// Paths handed to the hypervisor must be absolute and UTF-8.
    #[error("{what} must be an absolute UTF-8 path: {path:?}")]
    InvalidPath { what: &'static str, path: PathBuf },
    /// Every disk needs its resolved file.
    #[error("{disks} disk(s) but {paths} resolved disk path(s)")]
    DiskPathsMismatch { disks: usize, paths: usize },
    #[error("{0} disks: at most {MAX_DISKS}")]
    TooManyDisks(usize),
}

/// libvirt's `<domain type=...>`: which accelerator runs the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomainType {
    /// Hardware virtualization through `/dev/kvm`.
    Kvm,
    /// QEMU's software emulation (TCG): slow, works everywhere, including nested guests.
    Qemu,
    /// libvirt's in-process test driver (`test:///default`), for unit tests.
    Test,
}

impl DomainType {
    /// The domain type an accelerator setting selects on this machine: `Auto` is KVM when
    /// `/dev/kvm` can be opened, TCG otherwise.
    pub fn from_accelerator(accelerator: Accelerator) -> Self {
        match accelerator {
            Accelerator::Auto if kvm_usable() => DomainType::Kvm,
            Accelerator::Auto | Accelerator::Tcg => DomainType::Qemu,
            Accelerator::Kvm => DomainType::Kvm,
        }
    }

    /// The value of `<domain type=...>`.
    pub fn as_str(self) -> &'static str {
        match self {
            DomainType::Kvm => "kvm",
            DomainType::Qemu => "qemu",
            DomainType::Test => "test",
        }
    }
}

/// Whether this process can open `/dev/kvm` for reading and writing (what QEMU needs).
pub fn kvm_usable() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

/// Checks a domain name: see [`DomainXmlError::InvalidName`].
pub fn validate_name(name: &str) -> Result<(), DomainXmlError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !name.starts_with(['-', '.'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(DomainXmlError::InvalidName(name.to_string()))
    }
}

/// Where the serial console of domain `name` is logged under `log_dir` (validate the name first).
pub fn console_log_path(log_dir: &Path, name: &str) -> PathBuf {
    log_dir.join(format!("{name}.console.log"))
}

/// Everything besides the spec that goes into a domain's XML.
#[derive(Clone, Debug)]
pub struct DomainXmlOptions<'a> {
    pub domain_type: DomainType,
    /// File the serial console's output is written to (overwritten at each start).
    pub console_log: &'a Path,
    /// UUID of the existing definition being replaced (libvirt refuses a new UUID for a name).
    pub uuid: Option<&'a str>,
}

/// The domain XML of `spec`. Fails, without side effects, on any value it cannot carry safely.
pub fn domain_xml(
    spec: &DomainSpec,
    opts: &DomainXmlOptions<'_>,
) -> Result<String, DomainXmlError> {
    validate_name(&spec.name)?;
    if spec.memory_mib == 0 {
        return Err(DomainXmlError::Zero("memory_mib"));
    }
    if spec.vcpus == 0 {
        return Err(DomainXmlError::Zero("vcpus"));
    }
    if spec.disks.len() != spec.disk_paths.len() {
        return Err(DomainXmlError::DiskPathsMismatch {
            disks: spec.disks.len(),
            paths: spec.disk_paths.len(),
        });
    }
    if spec.disk_paths.len() > MAX_DISKS {
        return Err(DomainXmlError::TooManyDisks(spec.disk_paths.len()));
    }

    let mut w = XmlWriter::default();
    w.open("domain", &[("type", opts.domain_type.as_str())])?;
    w.text_element("name", &[], &spec.name)?;
    if let Some(uuid) = opts.uuid {
        w.text_element("uuid", &[], uuid)?;
    }
    w.open("metadata", &[])?;
    let generation = spec.generation.to_string();
    w.empty(
        "skiff:server",
        &[
            ("xmlns:skiff", SKIFF_XMLNS),
            ("generation", &generation),
            ("ha", if spec.ha { "true" } else { "false" }),
        ],
    )?;
    w.close("metadata");
    w.text_element("memory", &[("unit", "MiB")], &spec.memory_mib.to_string())?;
    w.text_element("vcpu", &[], &spec.vcpus.to_string())?;

    w.open("os", &[])?;
    w.text_element("type", &[], "hvm")?;
    match &spec.direct_boot {
        Some(boot) => {
            w.text_element("kernel", &[], path_str("kernel", &boot.kernel)?)?;
            if let Some(initrd) = &boot.initrd {
                w.text_element("initrd", &[], path_str("initrd", initrd)?)?;
            }
            w.text_element("cmdline", &[], &boot.cmdline)?;
        }
        None => {
            let mut seen = Vec::new();
            for dev in &spec.boot_order {
                if !seen.contains(dev) {
                    seen.push(*dev);
                }
            }
            if seen.is_empty() {
                seen.push(BootDevice::Disk);
            }
            for dev in seen {
                let dev = match dev {
                    BootDevice::Disk => "hd",
                    BootDevice::Cdrom => "cdrom",
                    BootDevice::Network => "network",
                };
                w.empty("boot", &[("dev", dev)])?;
            }
        }
    }
    w.close("os");

    w.open("features", &[])?;
    w.empty("acpi", &[])?;
    w.empty("apic", &[])?;
    w.close("features");
    if opts.domain_type == DomainType::Kvm {
        w.empty("cpu", &[("mode", "host-passthrough")])?;
    }
    w.empty("clock", &[("offset", "utc")])?;
    w.text_element("on_poweroff", &[], "destroy")?;
    w.text_element("on_reboot", &[], "restart")?;
    w.text_element("on_crash", &[], "destroy")?;

    w.open("devices", &[])?;
    for (i, path) in spec.disk_paths.iter().enumerate() {
        let target = format!("vd{}", char::from(b'a' + i as u8));
        w.open("disk", &[("type", "file"), ("device", "disk")])?;
        w.empty("driver", &[("name", "qemu"), ("type", "qcow2")])?;
        w.empty("source", &[("file", path_str("disk path", path)?)])?;
        w.empty("target", &[("dev", &target), ("bus", "virtio")])?;
        w.close("disk");
    }
    if spec.iso.is_some() || spec.boot_order.contains(&BootDevice::Cdrom) {
        // An empty drive: the medium is inserted once the image store resolves the ISO.
        w.open("disk", &[("type", "file"), ("device", "cdrom")])?;
        w.empty("target", &[("dev", "sda"), ("bus", "sata")])?;
        w.empty("readonly", &[])?;
        w.close("disk");
    }
    w.open("serial", &[("type", "pty")])?;
    w.empty(
        "log",
        &[
            ("file", path_str("console log", opts.console_log)?),
            ("append", "off"),
        ],
    )?;
    w.empty("target", &[("port", "0")])?;
    w.close("serial");
    w.open("console", &[("type", "pty")])?;
    w.empty("target", &[("type", "serial"), ("port", "0")])?;
    w.close("console");
    w.close("devices");
    w.close("domain");
    Ok(w.finish())
}

/// The generation in a Skiff metadata element as libvirt returns it
/// (`<skiff:server xmlns:skiff="..." generation="7"/>`); `None` when it has none.
pub fn parse_generation(metadata: &str) -> Option<u64> {
    attribute(metadata, "generation")?.parse().ok()
}

/// Whether a Skiff metadata element marks the server highly available (`ha="true"`), so that
/// the node fences it even after its agent restarted.
pub fn parse_ha(metadata: &str) -> bool {
    attribute(metadata, "ha") == Some("true")
}

/// The value of attribute `name` (preceded by whitespace) in a one-element metadata string.
fn attribute<'a>(metadata: &'a str, name: &str) -> Option<&'a str> {
    let key = format!("{name}=");
    let start = metadata
        .match_indices(&key)
        .find(|(i, _)| {
            metadata[..*i]
                .chars()
                .next_back()
                .is_some_and(char::is_whitespace)
        })?
        .0
        + key.len();
    let rest = metadata.get(start..)?;
    let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let rest = rest.get(1..)?;
    let end = rest.find(quote)?;
    rest.get(..end)
}

fn path_str<'a>(what: &'static str, path: &'a Path) -> Result<&'a str, DomainXmlError> {
    match path.to_str() {
        Some(s) if path.is_absolute() => Ok(s),
        _ => Err(DomainXmlError::InvalidPath {
            what,
            path: path.to_path_buf(),
        }),
    }
}

/// A minimal XML writer: element and attribute names are static strings of this module (never
/// user text); every value goes through [`escape`].
#[derive(Default)]
struct XmlWriter {
    out: String,
    depth: usize,
}

impl XmlWriter {
    fn start_tag(
        &mut self,
        tag: &str,
        attrs: &[(&'static str, &str)],
    ) -> Result<(), DomainXmlError> {
        for _ in 0..self.depth {
            self.out.push_str("  ");
        }
        self.out.push('<');
        self.out.push_str(tag);
        for (name, value) in attrs {
            let _ = write!(self.out, " {name}='{}'", escape(name, value)?);
        }
        Ok(())
    }

    fn open(&mut self, tag: &str, attrs: &[(&'static str, &str)]) -> Result<(), DomainXmlError> {
        self.start_tag(tag, attrs)?;
        self.out.push_str(">\n");
        self.depth += 1;
        Ok(())
    }

    fn empty(&mut self, tag: &str, attrs: &[(&'static str, &str)]) -> Result<(), DomainXmlError> {
        self.start_tag(tag, attrs)?;
        self.out.push_str("/>\n");
        Ok(())
    }

    fn text_element(
        &mut self,
        tag: &'static str,
        attrs: &[(&'static str, &str)],
        text: &str,
    ) -> Result<(), DomainXmlError> {
        let text = escape(tag, text)?;
        self.start_tag(tag, attrs)?;
        let _ = writeln!(self.out, ">{text}</{tag}>");
        Ok(())
    }

    fn close(&mut self, tag: &str) {
        self.depth = self.depth.saturating_sub(1);
        for _ in 0..self.depth {
            self.out.push_str("  ");
        }
        let _ = writeln!(self.out, "</{tag}>");
    }

    fn finish(self) -> String {
        self.out
    }
}

/// Escapes `value` for XML text or a single- or double-quoted attribute. Refuses characters that
/// XML 1.0 cannot carry at all (NUL, C0 controls other than tab/newline/return, U+FFFE/U+FFFF).
fn escape(what: &'static str, value: &str) -> Result<String, DomainXmlError> {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => {
                return Err(DomainXmlError::Unrepresentable {
                    what,
                    value: value.to_string(),
                })
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compute::DirectBoot;
    use skiff_cluster::state::servers::DiskSpec;

    fn spec(name: &str) -> DomainSpec {
        DomainSpec {
            name: name.into(),
            memory_mib: 256,
            vcpus: 1,
            disks: vec![DiskSpec {
                image: None,
                size_gib: 1,
                pool: None,
            }],
            nics: Vec::new(),
            boot_order: Vec::new(),
            iso: None,
            generation: 7,
            ha: false,
            disk_paths: vec![PathBuf::from("/var/lib/skiff/disk0.qcow2")],
            direct_boot: None,
        }
    }

    fn xml(spec: &DomainSpec, domain_type: DomainType) -> Result<String, DomainXmlError> {
        domain_xml(
            spec,
            &DomainXmlOptions {
                domain_type,
                console_log: Path::new("/var/log/skiff/x.console.log"),
                uuid: None,
            },
        )
    }

    #[test]
    fn domain_type_per_accelerator() {
        assert_eq!(
            DomainType::from_accelerator(Accelerator::Tcg),
            DomainType::Qemu
        );
        assert_eq!(
            DomainType::from_accelerator(Accelerator::Kvm),
            DomainType::Kvm
        );
        let auto = DomainType::from_accelerator(Accelerator::Auto);
        assert_eq!(auto == DomainType::Kvm, kvm_usable());
        let x = xml(&spec("web"), DomainType::Qemu).unwrap();
        assert!(x.starts_with("<domain type='qemu'>"), "{x}");
        assert!(!x.contains("host-passthrough"));
        let x = xml(&spec("web"), DomainType::Kvm).unwrap();
        assert!(x.starts_with("<domain type='kvm'>"), "{x}");
        assert!(x.contains("<cpu mode='host-passthrough'/>"));
    }

    #[test]
    fn carries_metadata_disks_console_and_boot() {
        let x = xml(&spec("web-1"), DomainType::Qemu).unwrap();
        assert!(x.contains(&format!(
            "<skiff:server xmlns:skiff='{SKIFF_XMLNS}' generation='7' ha='false'/>"
        )));
        assert!(x.contains("<source file='/var/lib/skiff/disk0.qcow2'/>"));
        assert!(x.contains("<target dev='vda' bus='virtio'/>"));
        assert!(x.contains("<log file='/var/log/skiff/x.console.log' append='off'/>"));
        assert!(x.contains("<boot dev='hd'/>"));
        assert!(x.contains("<memory unit='MiB'>256</memory>"));

        let mut s = spec("web-1");
        s.boot_order = vec![BootDevice::Cdrom, BootDevice::Disk, BootDevice::Cdrom];
        let x = xml(&s, DomainType::Qemu).unwrap();
        let cd = x.find("<boot dev='cdrom'/>").unwrap();
        let hd = x.find("<boot dev='hd'/>").unwrap();
        assert!(cd < hd);
        assert_eq!(x.matches("<boot dev=").count(), 2);
        assert!(x.contains("device='cdrom'"));
    }

    #[test]
    fn direct_boot_replaces_boot_devices() {
        let mut s = spec("g");
        s.direct_boot = Some(DirectBoot {
            kernel: "/k/vmlinuz".into(),
            initrd: Some("/k/initrd.img".into()),
            cmdline: "console=ttyS0 panic=-1".into(),
        });
        let x = xml(&s, DomainType::Qemu).unwrap();
        assert!(x.contains("<kernel>/k/vmlinuz</kernel>"));
        assert!(x.contains("<initrd>/k/initrd.img</initrd>"));
        assert!(x.contains("<cmdline>console=ttyS0 panic=-1</cmdline>"));
        assert!(!x.contains("<boot "));
    }

    #[test]
    fn hostile_names_are_refused() {
        for name in [
            "",
            "evil'/><devices>",
            "a b",
            "../etc/passwd",
            "-x",
            ".hidden",
            "x/y",
            "é",
            &"a".repeat(MAX_NAME_LEN + 1),
        ] {
            assert_eq!(
                xml(&spec(name), DomainType::Qemu),
                Err(DomainXmlError::InvalidName(name.to_string())),
                "{name:?}"
            );
        }
        assert!(xml(&spec("Web_1.a-b"), DomainType::Qemu).is_ok());
    }

    #[test]
    fn hostile_values_are_escaped() {
        let mut s = spec("g");
        s.disk_paths = vec!["/d/x'/><disk type='block'>&.qcow2".into()];
        s.direct_boot = Some(DirectBoot {
            kernel: "/k/\"vmlinuz\"".into(),
            initrd: None,
            cmdline: "</cmdline><kernel>/evil</kernel> a&b\n".into(),
        });
        let x = xml(&s, DomainType::Qemu).unwrap();
        assert!(x.contains(
            "<source file='/d/x&apos;/&gt;&lt;disk type=&apos;block&apos;&gt;&amp;.qcow2'/>"
        ));
        assert!(x.contains("<kernel>/k/&quot;vmlinuz&quot;</kernel>"));
        assert!(x.contains(
            "<cmdline>&lt;/cmdline&gt;&lt;kernel&gt;/evil&lt;/kernel&gt; a&amp;b&#10;</cmdline>"
        ));
        assert_eq!(x.matches("<disk ").count(), 1);
        assert_eq!(x.matches("<kernel>").count(), 1);
    }

    #[test]
    fn unrepresentable_and_bad_input_are_refused() {
        let mut s = spec("g");
        s.direct_boot = Some(DirectBoot {
            kernel: "/k".into(),
            initrd: None,
            cmdline: "a\0b".into(),
        });
        assert!(matches!(
            xml(&s, DomainType::Qemu),
            Err(DomainXmlError::Unrepresentable {
                what: "cmdline",
                ..
            })
        ));
        let mut s = spec("g");
        s.disk_paths = vec!["relative.qcow2".into()];
        assert!(matches!(
            xml(&s, DomainType::Qemu),
            Err(DomainXmlError::InvalidPath { .. })
        ));
        let mut s = spec("g");
        s.disk_paths.clear();
        assert_eq!(
            xml(&s, DomainType::Qemu),
            Err(DomainXmlError::DiskPathsMismatch { disks: 1, paths: 0 })
        );
        let mut s = spec("g");
        s.memory_mib = 0;
        assert_eq!(
            xml(&s, DomainType::Qemu),
            Err(DomainXmlError::Zero("memory_mib"))
        );
        let mut s = spec("g");
        s.disks = vec![s.disks[0].clone(); MAX_DISKS + 1];
        s.disk_paths = vec![s.disk_paths[0].clone(); MAX_DISKS + 1];
        assert_eq!(
            xml(&s, DomainType::Qemu),
            Err(DomainXmlError::TooManyDisks(MAX_DISKS + 1))
        );
    }

    #[test]
    fn generation_is_parsed_back() {
        assert_eq!(
            parse_generation(&format!(
                "<skiff:server xmlns:skiff=\"{SKIFF_XMLNS}\" generation=\"42\"/>"
            )),
            Some(42)
        );
        assert_eq!(parse_generation("<server generation='3'/>"), Some(3));
        assert_eq!(parse_generation("<server/>"), None);
        assert_eq!(parse_generation("<server generation=\"x\"/>"), None);
        assert_eq!(parse_generation("<server generation=\"5/>"), None);
        assert!(parse_ha("<server generation='3' ha='true'/>"));
        assert!(!parse_ha("<server generation='3' ha='false'/>"));
        assert!(!parse_ha("<server generation='3' sha='true'/>"));
        assert!(!parse_ha("<server generation='3'/>"));
    }
}
