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
pub mod wire;
