//! I/O side: sockets and the driver loops.
//!
//! [`socket`] opens and configures multicast UDP sockets (interface resolution, group
//! membership, TTL, loopback, buffer sizes) and parses the group and rate strings given on the
//! command line. Everything protocol-related lives in the sans-IO `crate::proto` core.

pub mod socket;

pub use socket::{
    open_multicast, parse_group, parse_rate, resolve_interface, Interface, NetError, SocketInfo,
    SocketOptions,
};
