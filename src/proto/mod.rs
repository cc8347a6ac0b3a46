//! The sans-IO protocol core: no sockets, files, threads or clocks. Time, randomness seeds and
//! bytes come in as arguments; datagrams, requests for block contents and verified blocks come
//! out through `poll_*` calls.
//!
//! [`wire`] owns the datagram formats and the object index ([`wire::ObjectId`],
//! [`wire::Objects`]); [`layout`] the object → block → symbol arithmetic; [`fec`] RaptorQ per
//! block; [`manifest`] what is sent; [`time`] the virtual clock and [`timer`] the timer table
//! every role keeps its deadlines in; [`sender`] and [`receiver`] the two state machines;
//! [`stats`] their counters; [`auth`] keyed mode (sealing, opening, replay windows); [`sign`]
//! signed mode's messages, keys and verification. [`Dest`] and [`Transmit`] say where a
//! polled datagram goes.

pub mod auth;
pub mod compress;
pub mod fec;
pub mod layout;
pub mod manifest;
pub mod rate;
pub mod receiver;
pub mod repairer;
pub mod sender;
pub mod sign;
pub mod stats;
pub mod time;
pub mod timer;
pub mod wire;

/// Who a datagram is for. The driver maps this onto addresses: receivers listen on the group's
/// data port, the sender on the feedback port (data port + 1), so that the sender never has to
/// read its own data stream back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    /// Every receiver (the sender's data and control).
    Receivers,
    /// The sender only (echoes, reports).
    Sender,
    /// Everyone: the sender and every receiver (NAKs, which peers hear for suppression).
    All,
}

/// A datagram to send; its bytes are in the caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    /// Datagram length.
    pub size: usize,
    /// Who it is for.
    pub dest: Dest,
}
