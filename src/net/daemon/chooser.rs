//! The receiver service's side of a receive: [`OutputChooser`] is how the receiver role asks
//! where a push goes once its manifest is known; [`VersionChooser`] answers with a fresh
//! version directory of the push's name and remembers it, and the object hash once placed,
//! for the service loop.

use super::name::push_name;
use super::versions::{Slot, Store};
use crate::net::source::is_single_file;
use crate::proto::manifest::Manifest;
use std::path::PathBuf;
use std::sync::Mutex;

/// Chooses each push's destination from its manifest (set in
/// [`RecvConfig::chooser`](crate::net::recv::RecvConfig::chooser)).
pub trait OutputChooser: Send + Sync + std::fmt::Debug {
    /// The `--output` for the push `manifest` describes, or why it is refused (the receive
    /// then fails with that reason, reported to the sender, and nothing is written).
    fn choose(&self, manifest: &Manifest) -> Result<PathBuf, String>;
    /// The push was verified and placed at the chosen output; `object_hash` is its hash.
    fn placed(&self, object_hash: [u8; 32]);
    /// Where the version this push replaces lives, laid out as the chosen output (blocks that
    /// match the new push are taken from it, see `recv/previous.rs`); `None`: there is none,
    /// or look at the chosen output itself.
    fn previous(&self) -> Option<PathBuf> {
        None
    }
}

/// What one receive chose and produced.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Chosen {
    /// The version directory chosen (`None`: no manifest, or refused).
    pub slot: Option<Slot>,
    /// The object hash, once placed.
    pub object_hash: Option<[u8; 32]>,
    /// The push's name, even when it was refused later (or the refusal).
    pub name: Option<Result<String, String>>,
}

/// An [`OutputChooser`] over a version [`Store`], for one receive.
#[derive(Debug)]
pub struct VersionChooser {
    store: Store,
    chosen: Mutex<Chosen>,
}

impl VersionChooser {
    /// A chooser placing into `store`.
    pub fn new(store: Store) -> Self {
        VersionChooser { store, chosen: Mutex::new(Chosen::default()) }
    }

    /// What was chosen and placed.
    pub fn take(&self) -> Chosen {
        std::mem::take(&mut *self.chosen.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl OutputChooser for VersionChooser {
    fn choose(&self, manifest: &Manifest) -> Result<PathBuf, String> {
        let mut chosen = self.chosen.lock().unwrap_or_else(|e| e.into_inner());
        let result = push_name(manifest).map_err(|e| e.to_string()).and_then(|name| {
            chosen.name = Some(Ok(name.clone()));
            self.store.prepare(&name, is_single_file(manifest)).map_err(|e| e.to_string())
        });
        match result {
            Ok(slot) => {
                tracing::info!(
                    "push {} goes to version {} ({})",
                    slot.name,
                    slot.version,
                    slot.dest.display()
                );
                let dest = slot.dest.clone();
                chosen.slot = Some(slot);
                Ok(dest)
            }
            Err(why) => {
                tracing::warn!("refusing the push: {why}");
                chosen.name.get_or_insert(Err(why.clone()));
                Err(why)
            }
        }
    }

    fn placed(&self, object_hash: [u8; 32]) {
        self.chosen.lock().unwrap_or_else(|e| e.into_inner()).object_hash = Some(object_hash);
    }

    fn previous(&self) -> Option<PathBuf> {
        let chosen = self.chosen.lock().unwrap_or_else(|e| e.into_inner());
        let name = &chosen.slot.as_ref()?.name;
        let current = self.store.current(name).ok()??;
        Some(self.store.version_path(name, current))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::manifest::{Entry, EntryKind, RelPath};

    #[test]
    fn a_named_push_gets_a_version_and_an_unnamed_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let c = VersionChooser::new(Store::new(dir.path()));
        let file = Manifest::single_file(RelPath::new("rel.bin").unwrap(), 10, 64, 16).unwrap();
        let out = c.choose(&file).unwrap();
        assert_eq!(out, dir.path().join(".mcast-versions/rel.bin/1"));
        assert!(out.is_dir());
        c.placed([7; 32]);
        let got = c.take();
        assert_eq!(got.slot.unwrap().version, 1);
        assert_eq!(got.object_hash, Some([7; 32]));
        assert_eq!(got.name, Some(Ok("rel.bin".to_string())));
        assert_eq!(c.take(), Chosen::default(), "taken once");

        let dirs = ["bin", "etc"]
            .map(|d| Entry::new(RelPath::new(d).unwrap(), EntryKind::Dir { mode: None }));
        let two_tops = Manifest::new(dirs.to_vec(), 0, 64, 16).unwrap();
        let why = c.choose(&two_tops).unwrap_err();
        assert!(why.contains("one top-level name"), "{why}");
        let got = c.take();
        assert_eq!((got.slot, got.name), (None, Some(Err(why))));
        assert!(!dir.path().join(".mcast-versions/bin").exists(), "nothing made");
    }
}
