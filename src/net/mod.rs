//! I/O side: addresses, interfaces, sockets, batches, and the one driver loop every role runs
//! on.
//!
//! [`addr`] parses the group (IPv4 or IPv6) and rate given on the command line; [`iface`]
//! resolves an interface by name or address; [`socket`] opens and configures multicast UDP
//! sockets of either family (group membership, TTL/hops, loopback, buffer sizes). [`batch`] sends and receives datagrams in batches (GSO, GRO,
//! `recvmmsg`) through quinn-udp and reads the kernel's drop counters. [`driver`] is the loop
//! (on tokio) that runs any sans-IO endpoint of `crate::proto` over a batch socket; [`send`] and
//! [`recv`] are the sender's and the receiver's role handlers on it, with their reports in
//! [`send_report`] and [`recv_report`]; [`daemon`] is the receiver service (`mcast-recv --daemon`) on top of [`recv`]; [`identity`] is a receiver's node id and host name; [`source`] opens what a push sends and where it lands; [`signing`] signed mode's keys, block hashing and version state. [`io`] holds the clock, the precise wait and the worker
//! pool. [`keyfile`] writes and reads keyed mode's key files.

pub mod addr;
pub mod arrival;
pub mod batch;
pub mod daemon;
pub mod driver;
pub mod identity;
pub mod iface;
pub mod io;
pub mod keyfile;
pub mod recv;
pub mod recv_report;
pub mod relay;
pub mod send;
pub mod send_report;
pub mod signing;
pub mod socket;
pub mod source;

use crate::proto::layout::LayoutError;
use crate::proto::sender::SenderError;
use crate::storage::StorageError;
use thiserror::Error;

/// Why a send or receive loop could not run.
#[derive(Debug, Error)]
pub enum DriverError {
    /// Socket or interface trouble.
    #[error(transparent)]
    Net(#[from] NetError),
    /// Reading the source or preparing the destination failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The protocol core refused the input.
    #[error(transparent)]
    Sender(#[from] SenderError),
    /// The layout is impossible.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// A datagram could not be sealed (keyed mode).
    #[error("sealing a datagram: {0}")]
    Auth(#[from] crate::proto::auth::AuthError),
    /// Signed mode: a key or the version state file.
    #[error(transparent)]
    Signing(#[from] signing::KeyError),
    /// Signed mode: the signed sender could not be built.
    #[error(transparent)]
    SignedSender(#[from] crate::proto::sender::SigningError),
    /// A job on a worker thread panicked (a bug); its result will never come.
    #[error("a worker thread panicked (a bug in mcast; see the log above)")]
    WorkerPanicked,
    /// A socket or thread call failed.
    #[error("{op}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl DriverError {
    /// A closure mapping an I/O error of `op`.
    pub fn io(op: &'static str) -> impl FnOnce(std::io::Error) -> DriverError {
        move |source| DriverError::Io { op, source }
    }
}

pub use addr::{feedback_addr, group_scope_warning, parse_group, parse_rate};
pub use iface::{resolve_interface, Interface};
pub use socket::{
    open_multicast, resize_recv_buffer, warn_recv_buffer_once, NetError, SocketInfo, SocketOptions,
};
