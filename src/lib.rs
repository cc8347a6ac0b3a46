//! mcast: reliable IP multicast file distribution.
//!
//! Layers, from the wire up:
//! - [`proto`]: the sans-IO protocol core (wire format, FEC, layout, sender and receiver state
//!   machines). No sockets, files, threads or clocks: time and bytes come in as arguments.
//! - [`sim`]: a deterministic, seeded multicast network simulator driving the core.
//! - [`net`]: sockets and the driver loops that connect the core to the network.
//! - [`storage`]: sources (files read by block) and sinks (temp file, verify, fsync, rename).
//!
//! Driving contract (quinn-proto style): feed inputs with `handle_datagram`/`handle_timeout`,
//! then drain `poll_transmit` and `poll_event`, then sleep until `poll_timeout`.

pub mod cli;
pub mod net;
pub mod proto;
pub mod sim;
pub mod storage;
