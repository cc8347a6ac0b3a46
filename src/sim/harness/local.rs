//! One receiver's share of the harness, borrowed on its own ([`Local`]): taking a copy or a
//! timer, then draining what the receiver sends and wants into a list of outputs ([`Out`])
//! instead of the shared event queue. The event loop applies the list at once; windowed stepping
//! (module `window`) runs the receivers of a window side by side, on several threads, and then
//! applies their lists in node order, so the queue sees exactly the pushes, in exactly the order,
//! of a run that took the receivers one by one.

use super::{Peer, Rx};
use crate::proto::auth::Keyring;
use crate::proto::time::Instant;
use crate::proto::wire::{Header, Packet};
use crate::proto::Dest;
use crate::sim::consume::{drive_receiver_events, Decoder};

/// What a receiver's drain leaves for the harness to act on, in the order it happened.
pub(super) enum Out {
    /// A datagram it sent at `at`.
    Send { at: Instant, dest: Dest, data: Vec<u8> },
    /// Its timer, re-armed to this instant.
    Timer(Instant),
}

/// What every receiver reads and none changes.
#[derive(Clone, Copy)]
pub(super) struct Env<'a> {
    pub(super) decoder: &'a Decoder,
    pub(super) unix_base: u64,
}

/// One receiver (node `node`, never the sender) with its link state and keyring.
pub(super) struct Local<'a> {
    pub(super) node: usize,
    pub(super) rx: &'a mut Rx,
    pub(super) peer: &'a mut Peer,
    pub(super) auth: &'a mut Option<Keyring>,
}

impl Local<'_> {
    /// Whether it takes datagrams as they are (open mode).
    pub(super) fn opens_nothing(&self) -> bool {
        self.auth.is_none()
    }

    /// A copy of `data` from node `from` arrives at `now` (opened first if keyed).
    pub(super) fn receive(
        &mut self,
        env: Env<'_>,
        now: Instant,
        from: usize,
        data: &[u8],
        source_block: Option<u32>,
        out: &mut Vec<(usize, Out)>,
    ) {
        let from = super::Node::from_index(from).addr();
        let unix = super::unix_secs(env.unix_base, now);
        let mut opened = Vec::new();
        let data = match self.auth.as_mut() {
            Some(ring) => match ring.open(data, unix, &mut opened) {
                Some(d) => d,
                None => return self.drain(env, now, out),
            },
            None => data,
        };
        self.count(source_block);
        self.rx.ep.handle_datagram(now, from, data);
        self.drain(env, now, out);
    }

    /// A copy (open mode) that parsed to `header` and `packet` arrives at `now`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn receive_parsed(
        &mut self,
        env: Env<'_>,
        now: Instant,
        from: usize,
        header: Header,
        packet: Packet<'_>,
        source_block: Option<u32>,
        out: &mut Vec<(usize, Out)>,
    ) {
        let from = super::Node::from_index(from).addr();
        self.count(source_block);
        self.rx.ep.handle_parsed(now, from, header, packet);
        self.drain(env, now, out);
    }

    /// Its timer fires at `now`.
    pub(super) fn timeout(&mut self, env: Env<'_>, now: Instant, out: &mut Vec<(usize, Out)>) {
        self.peer.timer = None;
        self.rx.ep.handle_timeout(now);
        self.drain(env, now, out);
    }

    /// A payload source symbol of block `source_block` reached it.
    fn count(&mut self, source_block: Option<u32>) {
        if let Some(got) = source_block.and_then(|b| self.rx.got.get_mut(b as usize)) {
            *got = got.saturating_add(1);
        }
    }

    /// Everything it has to send, its events acted on, its timer re-armed: into `out`.
    #[inline]
    pub(super) fn drain(&mut self, env: Env<'_>, now: Instant, out: &mut Vec<(usize, Out)>) {
        // Nearly every copy leaves nothing to send or act on: then only the timer is asked.
        if self.rx.ep.has_output() {
            self.drain_output(env, now, out);
        }
        // The library's own tests check the shortcut against the polls it saves.
        #[cfg(test)]
        assert!(
            self.rx.ep.poll_transmit(now, &mut Vec::new()).is_none()
                && self.rx.ep.poll_event().is_none(),
            "has_output said nothing was waiting"
        );
        if let Some(t) = self.rx.ep.poll_timeout() {
            let t = t.max(now);
            if self.peer.timer != Some(t) {
                self.peer.timer = Some(t);
                out.push((self.node, Out::Timer(t)));
            }
        }
    }

    /// What it sends and the events it has, until neither is left.
    #[inline(never)]
    fn drain_output(&mut self, env: Env<'_>, now: Instant, out: &mut Vec<(usize, Out)>) {
        let mut buf = Vec::new();
        while self.rx.ep.has_output() {
            let mut progressed = false;
            while let Some(t) = self.rx.ep.poll_transmit(now, &mut buf) {
                progressed = true;
                let data = std::mem::take(&mut buf);
                out.push((self.node, Out::Send { at: now, dest: t.dest, data }));
            }
            let rx = &mut *self.rx;
            progressed |= drive_receiver_events(&mut rx.ep, now, env.decoder, &mut rx.sink);
            if !progressed {
                break;
            }
        }
    }
}
