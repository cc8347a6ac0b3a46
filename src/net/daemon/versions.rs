//! Where a receiver service keeps the versions of each push name under its root:
//!
//! ```text
//! <root>/<name>                         symlink -> .mcast-versions/<name>/<n>/<name>
//! <root>/.mcast-versions/<name>/<n>/<name>   version n (a file or a tree), n = 1, 2, ...
//! <root>/.mcast-versions/<name>/state.json   last placed version, its object hash, sessions
//! ```
//!
//! A push is received into a fresh version directory (never into the live one), and the
//! `<root>/<name>` symlink is flipped to it with one `rename(2)` once it verified: a reader
//! sees the old version or the new one, whether the push is a file or a tree, and the old one
//! stays intact, where the next push can still read it, until [`Store::prune`] removes
//! versions beyond `--keep`. An unfinished version directory (a single-file push that failed or
//! was interrupted: its resume state) is reused by the next push of that name.

use serde::{Deserialize, Serialize};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

/// The directory under the root holding every name's versions.
pub const VERSIONS_DIR: &str = ".mcast-versions";
/// Sessions remembered per name (so that a restarted service skips them too).
pub const SESSIONS_PER_NAME: usize = 16;
/// Names whose remembered sessions are read at start (more are ignored, with a warning).
pub const MAX_NAMES_READ: usize = 1024;

/// Why a version could not be prepared, placed or recorded.
#[derive(Debug, thiserror::Error)]
pub enum VersionError {
    /// `<root>/<name>` is something the service did not make.
    #[error(
        "{0} exists and is not a version link made by the receiver service (a symlink into \
         {VERSIONS_DIR}); move it away to let the service manage this name"
    )]
    NotManaged(PathBuf),
    /// A file system call failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> VersionError + 'a {
    move |source| VersionError::Io { op, path: path.to_path_buf(), source }
}

/// The version directory a push is received into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    /// The push name.
    pub name: String,
    /// Its version number.
    pub version: u64,
    /// `--output` for the receive: the version directory (a single file goes inside it, a
    /// tree's root is it).
    pub dest: PathBuf,
}

impl Slot {
    /// Where the pushed file or tree is once placed: `dest/<name>`.
    pub fn object(&self) -> PathBuf {
        self.dest.join(&self.name)
    }
}

/// What is remembered of a name between pushes and restarts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameState {
    /// The version `<root>/<name>` points to.
    pub version: u64,
    /// Its object hash (hex BLAKE3 of the hash list).
    pub object_hash: String,
    /// The latest sessions received for this name, newest last.
    pub sessions: Vec<u32>,
}

/// The versions under one service root.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// The store under `root` (an existing directory).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Store { root: root.into() }
    }

    /// `<root>/<name>`: the link to the current version.
    pub fn link(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    fn name_dir(&self, name: &str) -> PathBuf {
        self.root.join(VERSIONS_DIR).join(name)
    }

    fn version_dir(&self, name: &str, n: u64) -> PathBuf {
        self.name_dir(name).join(n.to_string())
    }

    /// The directory of version `n` of `name` (what a receive of that version had as its
    /// output).
    pub fn version_path(&self, name: &str, n: u64) -> PathBuf {
        self.version_dir(name, n)
    }

    /// The link target of version `n` of `name`, relative to the root.
    fn target(name: &str, n: u64) -> PathBuf {
        [VERSIONS_DIR, name, &n.to_string(), name].iter().collect()
    }

    /// The version `<root>/<name>` points to (`None`: no link yet); an error if it is not
    /// a link this store made.
    pub fn current(&self, name: &str) -> Result<Option<u64>, VersionError> {
        let link = self.link(name);
        match std::fs::symlink_metadata(&link) {
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io("stat", &link)(e)),
            Ok(m) if !m.file_type().is_symlink() => return Err(VersionError::NotManaged(link)),
            Ok(_) => {}
        }
        let target = std::fs::read_link(&link).map_err(io("read link", &link))?;
        let parts: Vec<_> = target.iter().filter_map(|c| c.to_str()).collect();
        match parts.as_slice() {
            [VERSIONS_DIR, a, n, b] if *a == name && *b == name => {
                n.parse().map(Some).map_err(|_| VersionError::NotManaged(link))
            }
            _ => Err(VersionError::NotManaged(link)),
        }
    }

    /// The version directories of `name`, ascending, each with whether it holds a placed
    /// object.
    pub fn versions(&self, name: &str) -> Result<Vec<(u64, bool)>, VersionError> {
        let dir = self.name_dir(name);
        let rd = match std::fs::read_dir(&dir) {
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            r => r.map_err(io("list", &dir))?,
        };
        let mut out = Vec::new();
        for ent in rd {
            let ent = ent.map_err(io("list", &dir))?;
            let Some(n) = ent.file_name().to_str().and_then(|s| s.parse::<u64>().ok()) else {
                continue;
            };
            let placed = std::fs::symlink_metadata(ent.path().join(name)).is_ok();
            out.push((n, placed));
        }
        out.sort_unstable();
        Ok(out)
    }

    /// The version directory for the next push of `name`: the newest one if it is unfinished
    /// and newer than the current version (what an interrupted single-file push staged there
    /// is resumed), else a new one after the newest. A single file's directory is created (the
    /// file goes inside it); a tree's is left absent (the tree is built beside it and renamed
    /// into place). What a crashed receive left there is removed, but for a resume's staging
    /// (as `mcast-recv --output` does).
    pub fn prepare(&self, name: &str, single_file: bool) -> Result<Slot, VersionError> {
        let current = self.current(name)?.unwrap_or(0);
        let name_dir = self.name_dir(name);
        std::fs::create_dir_all(&name_dir).map_err(io("create", &name_dir))?;
        let newest = self.versions(name)?.last().copied();
        let version = match newest {
            Some((n, false)) if n > current => n,
            Some((n, _)) => n.max(current) + 1,
            None => current + 1,
        };
        let dest = self.version_dir(name, version);
        let exists = dest.exists();
        if single_file && !exists {
            std::fs::create_dir(&dest).map_err(io("create", &dest))?;
        } else if !single_file && exists {
            // An unfinished single-file version: a tree replaces it whole.
            std::fs::remove_dir_all(&dest).map_err(io("remove", &dest))?;
        }
        crate::net::source::clean_output(&dest).map_err(|e| VersionError::Io {
            op: "clean stale staging in and beside",
            path: dest.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
        Ok(Slot { name: name.to_owned(), version, dest })
    }

    /// Point `<root>/<name>` at `slot` (a placed version): a new symlink renamed over the old
    /// one, then the root fsynced. Refuses to replace anything but a link of this store.
    pub fn commit(&self, slot: &Slot) -> Result<(), VersionError> {
        self.current(&slot.name)?;
        let tmp = self.root.join(format!(".{}.mcast-link", slot.name));
        match std::fs::remove_file(&tmp) {
            Err(e) if e.kind() != ErrorKind::NotFound => return Err(io("remove", &tmp)(e)),
            _ => {}
        }
        std::os::unix::fs::symlink(Self::target(&slot.name, slot.version), &tmp)
            .map_err(io("create link", &tmp))?;
        let link = self.link(&slot.name);
        std::fs::rename(&tmp, &link).map_err(io("rename link onto", &link))?;
        std::fs::File::open(&self.root).and_then(|d| d.sync_all()).map_err(io("fsync", &self.root))
    }

    /// Remove the version directories of `name` other than `current` and the `keep` newest
    /// placed ones before it (unfinished ones older than `current` go too). Returns the
    /// versions removed; a failure to remove one is logged and it is left.
    pub fn prune(&self, name: &str, current: u64, keep: usize) -> Vec<u64> {
        let versions = match self.versions(name) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!("not pruning old versions of {name}: {e}");
                return Vec::new();
            }
        };
        let mut kept = 0;
        let mut removed = Vec::new();
        for &(n, placed) in versions.iter().rev().filter(|(n, _)| *n < current) {
            if placed && kept < keep {
                kept += 1;
                continue;
            }
            let dir = self.version_dir(name, n);
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => removed.push(n),
                Err(e) => tracing::warn!("cannot remove old version {}: {e}", dir.display()),
            }
        }
        removed.sort_unstable();
        removed
    }

    /// The path of version `n` of `name` (where [`Slot::object`] put it).
    pub fn object_path(&self, name: &str, n: u64) -> PathBuf {
        self.version_dir(name, n).join(name)
    }

    /// Remove a version directory that will not be used (a push identical to the current
    /// version).
    pub fn discard(&self, slot: &Slot) -> Result<(), VersionError> {
        std::fs::remove_dir_all(&slot.dest).map_err(io("remove", &slot.dest))
    }

    fn state_path(&self, name: &str) -> PathBuf {
        self.name_dir(name).join("state.json")
    }

    /// What is remembered of `name` (`None` if nothing, or if the state cannot be read: a
    /// warning says so, and the next push is simply taken).
    pub fn load_state(&self, name: &str) -> Option<NameState> {
        let path = self.state_path(name);
        let text = match std::fs::read(&path) {
            Err(e) if e.kind() == ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!("cannot read {}: {e}", path.display());
                return None;
            }
            Ok(t) => t,
        };
        serde_json::from_slice(&text)
            .map_err(|e| tracing::warn!("ignoring {}: {e}", path.display()))
            .ok()
    }

    /// Record `state` for `name` (written beside, fsynced, renamed into place).
    pub fn save_state(&self, name: &str, state: &NameState) -> Result<(), VersionError> {
        let path = self.state_path(name);
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_vec(state).map_err(|e| VersionError::Io {
            op: "encode",
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&text)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(io("write", &path))
    }

    /// Every session remembered for any name (at most [`MAX_NAMES_READ`] names are read).
    pub fn remembered_sessions(&self) -> Vec<u32> {
        let dir = self.root.join(VERSIONS_DIR);
        let Ok(rd) = std::fs::read_dir(&dir) else { return Vec::new() };
        let names: Vec<String> =
            rd.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect();
        if names.len() > MAX_NAMES_READ {
            tracing::warn!(
                "{} holds {} names: only the sessions of {MAX_NAMES_READ} are remembered",
                dir.display(),
                names.len()
            );
        }
        let states = names.iter().take(MAX_NAMES_READ).filter_map(|n| self.load_state(n));
        states.flat_map(|s| s.sessions).collect()
    }
}

impl NameState {
    /// This state after `session` was received, keeping the newest [`SESSIONS_PER_NAME`].
    pub fn with_session(mut self, session: u32) -> Self {
        self.sessions.retain(|s| *s != session);
        self.sessions.push(session);
        let extra = self.sessions.len().saturating_sub(SESSIONS_PER_NAME);
        self.sessions.drain(..extra);
        self
    }
}

#[cfg(test)]
#[path = "versions_tests.rs"]
mod tests;
