//! What makes a block device unsafe to overwrite: mounted (its device number, or a
//! partition's, in `/proc/self/mountinfo`), held by another driver (`/sys/class/block/*/holders`:
//! LVM, dm-crypt, md), opened exclusively by someone else (`O_EXCL` fails with `EBUSY`), or
//! smaller than the image. [`DeviceInfo::gather`] reads the system; [`check_target`] decides,
//! so the decision is tested on made-up inputs.

use std::fs::File;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

/// What is known about a target device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceInfo {
    /// A block device (else a regular file standing in for one).
    pub block: bool,
    /// Its size in bytes.
    pub size: u64,
    /// Mount points of it or of its partitions.
    pub mounts: Vec<String>,
    /// Devices holding it or its partitions (device mapper, md ...).
    pub holders: Vec<String>,
}

/// Why writing an image of `image_size` bytes to `dev` is refused, if it is (`force` skips
/// every reason: the caller asked to write anyway).
pub fn check_target(
    dev: &Path,
    info: &DeviceInfo,
    image_size: u64,
    force: bool,
) -> Result<(), String> {
    if force {
        return Ok(());
    }
    let d = dev.display();
    if !info.block {
        return Err(format!(
            "{d} is not a block device (--force writes to a regular file as if it were one)"
        ));
    }
    if !info.mounts.is_empty() {
        return Err(format!(
            "{d} is mounted ({}): unmount it first, or --force",
            info.mounts.join(", ")
        ));
    }
    if !info.holders.is_empty() {
        return Err(format!(
            "{d} is in use by {} (LVM, dm-crypt, md?): --force to write anyway",
            info.holders.join(", ")
        ));
    }
    if info.size < image_size {
        return Err(format!(
            "{d} has {} bytes, smaller than the image's {image_size}: --force to write anyway",
            info.size
        ));
    }
    Ok(())
}

/// The `major:minor` device numbers and mount points listed in mountinfo `text`.
pub fn mounted_devices(text: &str) -> Vec<((u32, u32), String)> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(' ');
            let dev = f.nth(2)?;
            let point = f.nth(1)?.to_string();
            let (a, b) = dev.split_once(':')?;
            Some(((a.parse().ok()?, b.parse().ok()?), point))
        })
        .collect()
}

impl DeviceInfo {
    /// Reads what the system says about open target `file` at `path` (size from
    /// `BLKGETSIZE64` for a block device).
    pub fn gather(path: &Path, file: &File) -> std::io::Result<Self> {
        let meta = file.metadata()?;
        if !meta.file_type().is_block_device() {
            return Ok(DeviceInfo { block: false, size: meta.len(), ..Default::default() });
        }
        let size = crate::storage::image_source::device_size(file)?;
        let rdev = meta.rdev();
        let own = (libc::major(rdev), libc::minor(rdev));
        // The device and its partitions, by their sysfs directories.
        let sys = std::path::PathBuf::from(format!("/sys/dev/block/{}:{}", own.0, own.1));
        let mut devs = vec![(own, sys.clone())];
        if let Ok(rd) = std::fs::read_dir(&sys) {
            for e in rd.flatten() {
                let p = e.path();
                if p.join("partition").exists() {
                    if let Some(n) =
                        std::fs::read_to_string(p.join("dev")).ok().and_then(|s| parse_dev(&s))
                    {
                        devs.push((n, p));
                    }
                }
            }
        }
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mounts = mounted_devices(&mountinfo)
            .into_iter()
            .filter(|(d, _)| devs.iter().any(|(n, _)| n == d))
            .map(|(_, p)| p)
            .collect();
        let mut holders = Vec::new();
        for (_, dir) in &devs {
            if let Ok(rd) = std::fs::read_dir(dir.join("holders")) {
                holders.extend(rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()));
            }
        }
        tracing::debug!("{}: {size} bytes, partitions {}", path.display(), devs.len() - 1);
        Ok(DeviceInfo { block: true, size, mounts, holders })
    }
}

fn parse_dev(s: &str) -> Option<(u32, u32)> {
    let (a, b) = s.trim().split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
25 22 0:21 / /proc rw - proc proc rw
30 22 7:3 / /mnt/img rw - ext4 /dev/loop3 rw
bad line
";

    #[test]
    fn mountinfo_lists_device_numbers() {
        let m = mounted_devices(MOUNTINFO);
        assert_eq!(m[0], ((8, 1), "/".to_string()));
        assert_eq!(m[2], ((7, 3), "/mnt/img".to_string()));
        assert_eq!(m.len(), 3);
    }

    #[test]
    fn each_reason_refuses_and_force_overrides() {
        let dev = Path::new("/dev/sdy");
        let ok = DeviceInfo { block: true, size: 100, ..Default::default() };
        // Boundary pair on the size.
        assert_eq!(check_target(dev, &ok, 100, false), Ok(()));
        let e = check_target(dev, &ok, 101, false).unwrap_err();
        assert!(e.contains("smaller than the image"), "{e}");
        let mounted = DeviceInfo { mounts: vec!["/mnt".into()], ..ok.clone() };
        assert!(check_target(dev, &mounted, 1, false).unwrap_err().contains("is mounted (/mnt)"));
        let held = DeviceInfo { holders: vec!["dm-0".into()], ..ok.clone() };
        assert!(check_target(dev, &held, 1, false).unwrap_err().contains("in use by dm-0"));
        let file = DeviceInfo { block: false, ..ok.clone() };
        assert!(check_target(dev, &file, 1, false).unwrap_err().contains("not a block device"));
        for info in [mounted, held, file, ok] {
            assert_eq!(check_target(dev, &info, 1000, true), Ok(()));
        }
    }
}
