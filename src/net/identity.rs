//! A receiver's identity on the wire: its node id and its host name.
//!
//! The node id is stable across runs: BLAKE3 in key-derivation mode with the context
//! [`NODE_ID_CONTEXT`] over the host's identity (the contents of `/etc/machine-id`, or the host
//! name where there is none) and the absolute path of `--output`. The output path is mixed in so
//! that two receivers on one host (each has its own destination) get distinct ids; the same
//! receiver, started again with the same `--output`, gets the same id. The first four bytes,
//! big-endian, are the id; an id in [`RESERVED_NODE_IDS`] (0 means "no node", 1 is the
//! sender's default id in the library and the simulator) gets its top bit set instead.
//! `mcast-recv --node-id N` overrides it.
//!
//! The host name comes from `gethostname(2)` (`--host-name` overrides it, for tests and
//! containers) and must be a wire [`HostName`] (1..=64 bytes of `A-Z a-z 0-9 . - _`).

use crate::proto::wire::HostName;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// BLAKE3 key-derivation context of node ids.
pub const NODE_ID_CONTEXT: &str = "mcast 2026-12 receiver node id";
/// Ids a derived node id never takes: 0 (no node) and 1 (the default sender id).
pub const RESERVED_NODE_IDS: [u32; 2] = [0, 1];
/// Where the host's identity is read from, if present.
pub const MACHINE_ID_PATH: &str = "/etc/machine-id";

/// Why the receiver's identity could not be settled.
#[derive(Debug, Error)]
pub enum IdentityError {
    /// `gethostname` failed.
    #[error("reading the host name: {0}")]
    HostName(#[source] std::io::Error),
    /// The system's host name cannot be carried in a Hello.
    #[error("the host name {0:?} cannot be sent (1 to 64 of A-Z a-z 0-9 . - _): give --host-name")]
    BadHostName(String),
}

/// A receiver's node id and host name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeIdentity {
    /// Node id (the header of everything it sends).
    pub node: u32,
    /// Host name (its Hello).
    pub host: HostName,
}

/// The node id of a receiver on the host identified by `machine` that places objects at
/// `output` (an absolute path).
pub fn derive_node_id(machine: &str, output: &Path) -> u32 {
    let mut h = blake3::Hasher::new_derive_key(NODE_ID_CONTEXT);
    h.update(&(machine.len() as u64).to_be_bytes());
    h.update(machine.as_bytes());
    h.update(output.as_os_str().as_encoded_bytes());
    let bytes = h.finalize();
    unreserved(u32::from_be_bytes(bytes.as_bytes()[..4].try_into().expect("4 bytes")))
}

/// `id`, or with its top bit set if it is one of [`RESERVED_NODE_IDS`].
fn unreserved(id: u32) -> u32 {
    if RESERVED_NODE_IDS.contains(&id) {
        id | 0x8000_0000
    } else {
        id
    }
}

/// The host's identity for [`derive_node_id`]: `/etc/machine-id` if it holds something, else
/// `host_name`.
pub fn machine_identity(host_name: &str) -> String {
    std::fs::read_to_string(MACHINE_ID_PATH)
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| host_name.to_owned())
}

/// `output` as an absolute path with symlinks resolved where it exists (a tree's root may not
/// exist yet: then its parent is resolved and the last component kept).
pub fn output_key(output: &Path) -> PathBuf {
    if let Ok(p) = std::fs::canonicalize(output) {
        return p;
    }
    let parent = output.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    match (std::fs::canonicalize(parent), output.file_name()) {
        (Ok(p), Some(name)) => p.join(name),
        _ => std::path::absolute(output).unwrap_or_else(|_| output.to_path_buf()),
    }
}

/// The system's host name (`gethostname(2)`).
pub fn system_host_name() -> Result<String, IdentityError> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that many bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return Err(IdentityError::HostName(std::io::Error::last_os_error()));
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    Ok(String::from_utf8_lossy(&buf[..end]).into_owned())
}

/// This receiver's identity: `node` and `host` if given, else derived from the host and
/// `output`.
pub fn resolve(
    node: Option<u32>,
    host: Option<HostName>,
    output: &Path,
) -> Result<NodeIdentity, IdentityError> {
    let host = match host {
        Some(h) => h,
        None => {
            let name = system_host_name()?;
            HostName::new(&name).map_err(|_| IdentityError::BadHostName(name))?
        }
    };
    let node = node.unwrap_or_else(|| {
        let system = system_host_name().unwrap_or_else(|_| host.to_string());
        derive_node_id(&machine_identity(&system), &output_key(output))
    });
    Ok(NodeIdentity { node, host })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_differ_by_host_and_output() {
        let a = derive_node_id("0123abcd", Path::new("/srv/a"));
        assert_eq!(a, derive_node_id("0123abcd", Path::new("/srv/a")), "stable");
        assert_ne!(a, derive_node_id("0123abcd", Path::new("/srv/b")), "two receivers, one host");
        assert_ne!(a, derive_node_id("0123abce", Path::new("/srv/a")), "two hosts");
        // The machine id's length is hashed, so shifting bytes between the parts changes it.
        assert_ne!(derive_node_id("ab", Path::new("c")), derive_node_id("a", Path::new("bc")));
    }

    #[test]
    fn derived_ids_avoid_the_reserved_ones() {
        assert_eq!(unreserved(0), 0x8000_0000);
        assert_eq!(unreserved(1), 0x8000_0001);
        for id in [2, 0x7fff_ffff, 0x8000_0000, u32::MAX] {
            assert_eq!(unreserved(id), id, "{id:#x} passes unchanged");
        }
    }

    #[test]
    fn output_keys_are_absolute_even_before_the_tree_exists() {
        let dir = tempfile::tempdir().unwrap();
        let absent = dir.path().join("v42");
        let key = output_key(&absent);
        assert!(key.is_absolute());
        assert_eq!(key.file_name().unwrap(), "v42");
        std::fs::create_dir(&absent).unwrap();
        assert_eq!(output_key(&absent), key, "the same id before and after the tree exists");
    }

    #[test]
    fn overrides_win_and_the_system_name_is_checked() {
        let host = HostName::new("rack1-07").unwrap();
        let id = resolve(Some(77), Some(host.clone()), Path::new(".")).unwrap();
        assert_eq!(id, NodeIdentity { node: 77, host: host.clone() });
        let derived = resolve(None, Some(host), Path::new(".")).unwrap();
        assert!(!RESERVED_NODE_IDS.contains(&derived.node));
        let name = system_host_name().unwrap();
        assert!(!name.is_empty());
    }
}
