//! I/O side: sockets and the driver loops.
//!
//! [`socket`] opens and configures multicast UDP sockets (interface resolution, group
//! membership, TTL, loopback, buffer sizes) and parses the group and rate strings given on the
//! command line. [`io`] holds the clock, waits and worker pool; [`send`] and [`recv`] are the
//! loops that drive the sans-IO `crate::proto` core with real time and real datagrams.

pub mod io;
pub mod recv;
pub mod send;
pub mod socket;

pub use socket::{
    open_multicast, parse_group, parse_rate, resolve_interface, Interface, NetError, SocketInfo,
    SocketOptions,
};
