//! The sans-IO protocol core: no sockets, files, threads or clocks. Time, randomness seeds and
//! bytes come in as arguments; datagrams, requests for block contents and verified blocks come
//! out through `poll_*` calls.

pub mod fec;
pub mod layout;
pub mod manifest;
pub mod receiver;
pub mod sender;
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
