//! The objects of a session and the one way to index them: [`ObjectId`] names each object (its
//! wire value is its index), and [`Objects`] holds one value per object. Object 0 is the
//! manifest, object 1 the payload byte stream, object 2 the list of the payload's block hashes
//! (sent after the payload, see `docs/design-streamed-hashes.md`); another kind of object is one
//! more variant here
//! (and a match arm wherever the kinds genuinely differ), never a literal index elsewhere.

use super::WireError;
use std::ops::{Index, IndexMut};

/// Which object of a session a symbol or need refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum ObjectId {
    /// Object 0: the manifest (entries and layout; known at once, sent first).
    Manifest = 0,
    /// Object 1: the payload.
    Payload = 1,
    /// Object 2: the BLAKE3 of every payload block, in order (known once the payload pass has
    /// hashed every block; sent after it).
    Hashes = 2,
}

impl ObjectId {
    /// Number of objects in a session.
    pub const COUNT: usize = 3;
    /// Every object, in the order they are sent.
    pub const ALL: [ObjectId; ObjectId::COUNT] =
        [ObjectId::Manifest, ObjectId::Payload, ObjectId::Hashes];
    /// The object a pass starts with.
    pub const FIRST: ObjectId = ObjectId::ALL[0];

    /// The object's index, below [`ObjectId::COUNT`] (also its wire value).
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The object sent after this one in a pass.
    pub fn next(self) -> Option<ObjectId> {
        ObjectId::ALL.get(self.index() + 1).copied()
    }

    pub(super) fn parse(v: u8) -> Result<Self, WireError> {
        ObjectId::ALL.get(usize::from(v)).copied().ok_or(WireError::BadField("object"))
    }
}

/// One `T` per object, indexed by [`ObjectId`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Objects<T>([T; ObjectId::COUNT]);

impl<T> Objects<T> {
    /// The value `f(id)` for every object.
    pub fn from_fn(mut f: impl FnMut(ObjectId) -> T) -> Self {
        Objects(ObjectId::ALL.map(&mut f))
    }

    /// Every object with its value, in [`ObjectId::ALL`]'s order.
    pub fn iter(&self) -> impl Iterator<Item = (ObjectId, &T)> + '_ {
        ObjectId::ALL.into_iter().zip(self.0.iter())
    }

    /// Every object with its value, mutably.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (ObjectId, &mut T)> + '_ {
        ObjectId::ALL.into_iter().zip(self.0.iter_mut())
    }

    /// Every value, in [`ObjectId::ALL`]'s order.
    pub fn values(&self) -> impl Iterator<Item = &T> + '_ {
        self.0.iter()
    }

    /// Every value, mutably.
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut T> + '_ {
        self.0.iter_mut()
    }
}

impl<T> Index<ObjectId> for Objects<T> {
    type Output = T;
    fn index(&self, id: ObjectId) -> &T {
        &self.0[id.index()]
    }
}

impl<T> IndexMut<ObjectId> for Objects<T> {
    fn index_mut(&mut self, id: ObjectId) -> &mut T {
        &mut self.0[id.index()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_index_their_values_and_round_trip_on_the_wire() {
        for (i, id) in ObjectId::ALL.into_iter().enumerate() {
            assert_eq!(id.index(), i);
            assert_eq!(ObjectId::parse(id as u8), Ok(id));
        }
        assert_eq!(ObjectId::parse(ObjectId::COUNT as u8), Err(WireError::BadField("object")));
        assert_eq!(ObjectId::FIRST, ObjectId::Manifest, "the manifest travels first");
        assert_eq!(ObjectId::Manifest.next(), Some(ObjectId::Payload));
        assert_eq!(ObjectId::Payload.next(), Some(ObjectId::Hashes));
        assert_eq!(ObjectId::Hashes.next(), None);
        let mut o = Objects::from_fn(|id| id.index() * 10);
        o[ObjectId::Payload] += 1;
        assert_eq!(
            o.iter().collect::<Vec<_>>(),
            [(ObjectId::Manifest, &0), (ObjectId::Payload, &11), (ObjectId::Hashes, &20)]
        );
        assert_eq!(o.values().sum::<usize>(), 31);
    }
}
