//! The controllers and the meter on hand-made reports and ticks.

use super::*;
use crate::proto::wire::{RATE_CONGESTED, RATE_LOSS_EVENT};

const MS: u64 = 1000;

fn at(ms: u64) -> Instant {
    Instant::from_micros(ms * MS)
}

fn report(tick: &RateTick, congested: bool, recv_mbps: u32) -> RateReport {
    RateReport {
        tick_time_us: tick.send_time_us,
        hold_us: 0,
        queue_delay_us: if congested { 9000 } else { 0 },
        loss_ppm: 0,
        recv_rate_kbps: recv_mbps * 1000,
        ce_ppm: 0,
        flags: if congested { RATE_CONGESTED } else { 0 },
        overflow_ppm: None,
    }
}

fn cfg() -> AutoConfig {
    AutoConfig { min_bps: 2_000_000, start_bps: 10_000_000, ..AutoConfig::default() }
}

/// Run the controller tick by tick from `start` for `ticks` intervals of 10 ms (GRTT 5 ms);
/// `answer` gives each tick's reports.
fn drive(
    c: &mut AutoRate,
    start: u64,
    ticks: u64,
    group: u32,
    mut answer: impl FnMut(&RateTick) -> Vec<(u32, RateReport)>,
) {
    for i in 0..ticks {
        let now = at(start + i * 10);
        assert_eq!(c.poll_timeout(), Some(now));
        assert!(c.on_timeout(now, Duration::from_millis(5), group));
        let tick = c.tick(now);
        for (node, r) in answer(&tick) {
            c.on_report(now + Duration::from_millis(2), node, &r);
        }
    }
}

#[test]
fn fixed_rate_never_moves_and_never_ticks() {
    let mut f = FixedRate::new(123_000_000);
    assert_eq!(f.poll_timeout(), None);
    assert!(!f.on_timeout(at(5), Duration::from_millis(1), 10));
    let tick = f.tick(at(5));
    assert!(!f.on_report(at(6), 2, &report(&tick, true, 1)));
    assert_eq!(f.rate_bps(), 123_000_000);
    let s = f.summary(at(10));
    assert_eq!((s.mode, s.min_bps, s.max_bps, s.decreases), ("fixed", 123_000_000, 123_000_000, 0));
}

#[test]
fn slow_start_grows_while_the_group_is_quiet_and_stops_at_the_ceiling() {
    let mut c = AutoRate::new(AutoConfig { max_bps: 50_000_000, ..cfg() }, at(0));
    // Heard, not congested: x1.25 per interval.
    drive(&mut c, 0, 1, 3, |t| vec![(2, report(t, false, 10))]);
    assert_eq!(c.rate_bps(), 10_000_000); // the first decision had heard nobody yet
    drive(&mut c, 10, 1, 3, |t| vec![(2, report(t, false, 10))]);
    assert_eq!(c.rate_bps(), 12_500_000);
    // The receivers see what is sent: it grows on to the ceiling.
    let seen = |t: &RateTick| (t.rate_bps / 1_000_000) as u32;
    drive(&mut c, 20, 20, 3, |t| vec![(2, report(t, false, seen(t)))]);
    assert_eq!(c.rate_bps(), 50_000_000);
    assert!(c.in_slow_start());
}

#[test]
fn the_rate_stops_growing_once_the_receivers_do_not_see_it() {
    // Every receiver gets 10 Mbit/s whatever is paced (a sender short of CPU): slow start goes
    // on while the rate is at most 2x that (19.5 -> 24.4 Mbit/s), and no further.
    let mut c = AutoRate::new(cfg(), at(0));
    drive(&mut c, 0, 30, 3, |t| vec![(2, report(t, false, 10))]);
    assert_eq!(c.rate_bps(), 24_414_062);
    // After slow start the headroom is 1.25x, in steps of 200 kbit/s from 0.9 x 10: on reports
    // of 10 Mbit/s, 12.4 grows to 12.6 and 12.6 stays; on reports of 11, on to 13.8 and no more.
    let mut c = AutoRate::new(AutoConfig { start_bps: 18_000_000, ..cfg() }, at(0));
    drive(&mut c, 0, 2, 3, |t| vec![(2, report(t, true, 10))]);
    assert_eq!((c.rate_bps(), c.in_slow_start()), (9_000_000, false));
    drive(&mut c, 20, 100, 3, |t| vec![(2, report(t, false, 10))]);
    assert_eq!(c.rate_bps(), 12_600_000);
    drive(&mut c, 1020, 100, 3, |t| vec![(2, report(t, false, 11))]);
    assert_eq!(c.rate_bps(), 13_800_000);
}

#[test]
fn congestion_drains_to_the_receive_rate_once_per_hold() {
    let mut c = AutoRate::new(AutoConfig { start_bps: 100_000_000, ..cfg() }, at(0));
    // Node 3 congested receiving 60 Mbit/s, node 2 fine: down to 0.9 x 60.
    drive(&mut c, 0, 1, 3, |t| vec![(2, report(t, false, 100)), (3, report(t, true, 60))]);
    assert_eq!(c.rate_bps(), 100_000_000); // reports count from the next decision
    drive(&mut c, 10, 1, 3, |t| vec![(3, report(t, true, 60))]);
    assert_eq!(c.rate_bps(), 54_000_000);
    assert_eq!((c.clr(), c.in_slow_start()), (Some(3), false));
    // Still congested: held for two intervals and an RTT (until 32 ms), then 0.85.
    drive(&mut c, 20, 2, 3, |t| vec![(3, report(t, true, 54))]);
    assert_eq!(c.rate_bps(), 54_000_000);
    drive(&mut c, 40, 1, 3, |t| vec![(3, report(t, true, 54))]);
    assert_eq!(c.rate_bps(), 45_900_000);
    // Clear: additive growth, 1 % per interval (after the hold).
    drive(&mut c, 50, 2, 3, |t| vec![(3, report(t, false, 45))]);
    assert_eq!(c.rate_bps(), 45_900_000);
    drive(&mut c, 70, 2, 3, |t| vec![(3, report(t, false, 45))]);
    assert!((46_822_000..=46_823_000).contains(&c.rate_bps()), "{}", c.rate_bps());
    // A receiver much worse than the CLR takes over; one receiving nearly as much does not.
    drive(&mut c, 90, 1, 3, |t| vec![(3, report(t, true, 45)), (2, report(t, true, 42))]);
    drive(&mut c, 100, 1, 3, |_| vec![]);
    assert_eq!(c.clr(), Some(3));
    drive(&mut c, 110, 1, 3, |t| vec![(3, report(t, true, 45)), (2, report(t, true, 30))]);
    drive(&mut c, 120, 1, 3, |_| vec![]);
    assert_eq!(c.clr(), Some(2));
    let s = c.summary(at(130));
    // The decrease at 100 ms went to 0.85 x the rate: node 2's previous report said 100
    // Mbit/s, and the drain takes the higher of a receiver's last two (0.9 x 42 would be
    // 37.8; 0.85 x 47.3 is 40.2); the one due at 120 ms was still held.
    assert_eq!(s.limited_by, Some(3));
    assert!((40_197_000..=40_198_000).contains(&s.min_bps), "{}", s.min_bps);
    assert_eq!(s.decreases, 3);
}

#[test]
fn a_report_for_a_tick_never_sent_is_not_believed() {
    let mut c = AutoRate::new(cfg(), at(0));
    drive(&mut c, 0, 1, 3, |_| vec![]);
    let forged = RateTick { send_time_us: 4, rate_bps: 0, clr_node: 0, report_share: 0 };
    assert!(!c.on_report(at(1), 9, &report(&forged, true, 1)));
    drive(&mut c, 10, 1, 3, |_| vec![]);
    assert_eq!((c.rate_bps(), c.summary(at(20)).reports_ignored), (10_000_000, 1));
}

#[test]
fn a_straggler_at_the_floor_is_excluded_after_its_time_but_not_a_majority() {
    let floor = AutoConfig { start_bps: 2_000_000, exclude_after: Duration::from_secs(1), ..cfg() };
    // Group of 3: node 4 congested at the floor, its first report at 2 ms: excluded by its
    // report at 1002 ms, not by the one at 992 ms.
    let mut c = AutoRate::new(floor.clone(), at(0));
    drive(&mut c, 0, 100, 3, |t| vec![(4, report(t, true, 1))]);
    assert!(c.summary(at(1000)).excluded.is_empty());
    drive(&mut c, 1000, 1, 3, |t| vec![(4, report(t, true, 1))]);
    assert_eq!(c.summary(at(1010)).excluded, vec![4]);
    // Then the rest of the group sets the rate: it grows again.
    drive(&mut c, 1010, 5, 3, |t| vec![(4, report(t, true, 1)), (2, report(t, false, 50))]);
    assert!(c.rate_bps() > 2_000_000);
    // Group of 2: the same receiver is half the group and is never excluded.
    let mut c = AutoRate::new(floor, at(0));
    drive(&mut c, 0, 300, 2, |t| vec![(4, report(t, true, 1))]);
    assert!(c.summary(at(3000)).excluded.is_empty());
    assert_eq!(c.rate_bps(), 2_000_000);
}

/// Node 4 of a group of 3 congested at the floor, one tick every 10 ms from 0; at 500 ms the
/// rate is set to `probe_bps` (an additive probe) just before its report. Whether it is
/// excluded by 1010 ms.
fn excluded_by_1010_after_a_probe_to(probe_bps: u64) -> bool {
    let floor = AutoConfig { start_bps: 2_000_000, exclude_after: Duration::from_secs(1), ..cfg() };
    let mut c = AutoRate::new(floor, at(0));
    for i in 0..=101 {
        let now = at(i * 10);
        assert!(c.on_timeout(now, Duration::from_millis(5), 3));
        let tick = c.tick(now);
        if i == 50 {
            RateController::set_rate(&mut c, now, probe_bps);
        }
        c.on_report(now + Duration::from_millis(2), 4, &report(&tick, true, 1));
    }
    c.summary(at(1020)).excluded == vec![4]
}

#[test]
fn a_probe_within_the_floor_band_is_no_break_for_the_straggler_rule() {
    // The band is 10 % of the 2 Mbit/s floor.
    assert!(excluded_by_1010_after_a_probe_to(2_200_000));
    assert!(!excluded_by_1010_after_a_probe_to(2_200_001));
}

#[test]
fn a_receiver_the_sender_drops_stops_being_the_limit_at_once() {
    let mut c = AutoRate::new(cfg(), at(0));
    // Node 4 congested: it becomes the limiting receiver, and ticks name it.
    drive(&mut c, 0, 5, 3, |t| vec![(4, report(t, true, 5))]);
    assert_eq!(c.tick(at(50)).clr_node, 4);
    c.on_receiver_gone(at(55), 4);
    assert_eq!(c.tick(at(60)).clr_node, 0, "everyone may answer again");
    // Its reports are no longer believed; the others' are.
    let t = c.tick(at(70));
    assert!(!c.on_report(at(72), 4, &report(&t, true, 5)));
    assert!(c.on_report(at(72), 2, &report(&t, false, 5)));
}

#[test]
fn a_silent_limiting_receiver_is_let_go_even_when_nobody_else_speaks() {
    let mut c = AutoRate::new(cfg(), at(0));
    drive(&mut c, 0, 5, 3, |t| vec![(4, report(t, true, 5))]);
    assert_eq!(c.tick(at(50)).clr_node, 4);
    // Nobody answers (the others do not while a limiting receiver is named) for 2 s...
    drive(&mut c, 50, 200, 3, |_| vec![]);
    assert_eq!(c.tick(at(2050)).clr_node, 4);
    // ...and then it is no longer the limit.
    drive(&mut c, 2050, 2, 3, |_| vec![]);
    assert_eq!(c.tick(at(2070)).clr_node, 0);
}

fn tick_at(ms: u64, clr: u32, share: u16) -> RateTick {
    // The sender's clock is 1 s ahead of the receiver's: only growth matters.
    RateTick { send_time_us: (ms + 1000) * MS, rate_bps: 1, clr_node: clr, report_share: share }
}

#[test]
fn meter_reads_queue_growth_not_the_clock_offset() {
    let mut m = RateMeter::default();
    // Arrivals 5 ms after sending (a constant offset), 100 datagrams of 1000 B per 10 ms.
    for i in 0..10 {
        for _ in 0..100 {
            m.on_data(1000, 1);
        }
        m.on_tick(at(i * 10 + 5), &tick_at(i * 10, 0, u16::MAX), 2, 0, false);
        let r = m.take_report(at(i * 10 + 5));
        if i > 0 {
            let r = r.expect("no CLR yet: everyone drawn answers");
            assert_eq!((r.flags, r.queue_delay_us, r.recv_rate_kbps), (0, 0, 80_000));
        }
    }
    // The delay then grows by 2 ms per tick: congested once the smoothed queue passes 4 ms.
    let mut flagged = Vec::new();
    for i in 10..16u64 {
        let arrive = i * 10 + 5 + (i - 9) * 2;
        m.on_tick(at(arrive), &tick_at(i * 10, 2, 0), 2, 0, false);
        flagged.push(m.take_report(at(arrive)).expect("the CLR always answers").congested());
    }
    // Queue samples 2, 4, 6, 8 ...; smoothed 1, 2.5, 4.25: third tick on.
    assert_eq!(flagged, [false, false, true, true, true, true]);
}

#[test]
fn with_a_delay_filter_a_receiver_that_reads_two_ticks_late_is_not_a_queue() {
    let mut m = RateMeter::new(MeterConfig { delay_filter: 3, ..MeterConfig::default() });
    for i in 0..10 {
        m.on_tick(at(i * 10), &tick_at(i * 10, 2, 0), 2, 0, true);
        m.take_report(at(i * 10));
    }
    // Two ticks read 15 ms late (the receiver was not scheduled), then on time: no queue.
    for (i, late) in [(10, 15), (11, 15), (12, 0), (13, 0)] {
        m.on_tick(at(i * 10 + late), &tick_at(i * 10, 2, 0), 2, 0, true);
        assert!(!m.take_report(at(i * 10 + late)).unwrap().congested());
    }
    // Three in a row are a queue.
    let mut flagged = Vec::new();
    for i in 14..18 {
        m.on_tick(at(i * 10 + 15), &tick_at(i * 10, 2, 0), 2, 0, true);
        flagged.push(m.take_report(at(i * 10 + 15)).unwrap().congested());
    }
    assert_eq!(flagged, [false, false, true, true]);
}

/// Windows of 1000 datagrams, `lost_per_100` lost of every 100 (of which the socket dropped
/// `dropped_per_100`, added to the socket's running count `drops`), the tick read `queue_ms`
/// after it was sent; (flags, loss, overflow).
fn loss_window(
    (m, drops): (&mut RateMeter, &mut u64),
    t: &mut u64,
    lost_per_100: u32,
    dropped_per_100: u64,
    queue_ms: u64,
) -> Option<(u8, u32, Option<u32>)> {
    for _ in 0..10 {
        for k in 0..100 {
            m.on_data(1000, if k < lost_per_100 { 2 } else { 1 });
        }
    }
    *t += 10;
    *drops += dropped_per_100 * 10;
    m.on_socket_drops(at(*t), *drops);
    m.on_tick(at(*t + queue_ms), &tick_at(*t, 2, 0), 2, 0, true);
    m.take_report(at(*t + queue_ms)).map(|r| (r.flags, r.loss_ppm, r.overflow_ppm))
}

#[test]
fn meter_takes_random_loss_as_baseline_and_flags_loss_above_it() {
    let mut m = RateMeter::default();
    let mut t = 0;
    let window = |m: &mut RateMeter, t: &mut u64, lost: u32, queue_ms: u64| {
        loss_window((m, &mut 0), t, lost, 0, queue_ms).map(|(f, l, _)| (f, l))
    };
    // 1 % loss, windows of 1000 datagrams: baseline, no event.
    window(&mut m, &mut t, 1, 0);
    for _ in 0..5 {
        let (flags, loss) = window(&mut m, &mut t, 1, 0).expect("answers as CLR");
        assert_eq!(flags, 0);
        assert!((9_000..=10_000).contains(&loss), "{loss}");
    }
    assert!((m.baseline_loss().unwrap() - 1.0 / 101.0).abs() < 1e-3);
    // A little queue (2 ms, under the 4 ms target, over the 1 ms a loss event needs).
    // 3 % is within the margin (2 points above the baseline); 4 % is not, but one such window
    // alone is a burst; the second in a row is a loss event.
    let within = window(&mut m, &mut t, 3, 2).unwrap();
    assert_eq!(within.0, 0);
    let burst = window(&mut m, &mut t, 4, 2).unwrap();
    assert_eq!(burst.0, 0);
    let _ = window(&mut m, &mut t, 1, 2).unwrap();
    assert_eq!(window(&mut m, &mut t, 4, 2).unwrap().0, 0);
    let above = window(&mut m, &mut t, 4, 2).unwrap();
    assert_eq!(above.0, RATE_CONGESTED | RATE_LOSS_EVENT);
}

#[test]
fn loss_without_any_queue_is_the_hosts_unless_heavy() {
    let (mut m, mut d) = (RateMeter::default(), 0);
    let m = &mut m;
    let mut t = 0;
    for _ in 0..6 {
        loss_window((m, &mut d), &mut t, 1, 0, 0);
    }
    // 6 % with no delay, many windows in a row: a softirq backlog, not the path.
    for _ in 0..4 {
        assert_eq!(loss_window((m, &mut d), &mut t, 6, 0, 0).unwrap().0, 0);
    }
    for _ in 0..3 {
        loss_window((m, &mut d), &mut t, 1, 0, 0);
    }
    // 10 points above the baseline (11 of 100 lost: 9.9 % of 111 expected, just under): not
    // heavy; 13 of 100 (11.5 %): heavy, a loss event without any delay (a policer).
    loss_window((m, &mut d), &mut t, 11, 0, 0);
    assert_eq!(loss_window((m, &mut d), &mut t, 11, 0, 0).unwrap().0, 0);
    loss_window((m, &mut d), &mut t, 13, 0, 0);
    let heavy = loss_window((m, &mut d), &mut t, 13, 0, 0).unwrap().0;
    assert_eq!(heavy, RATE_CONGESTED | RATE_LOSS_EVENT);
}

#[test]
fn socket_overflow_is_reported_apart_and_never_congests() {
    let (mut m, mut d) = (RateMeter::default(), 1000); // the first reading is the base
    let m = &mut m;
    let mut t = 0;
    for _ in 0..6 {
        loss_window((m, &mut d), &mut t, 1, 0, 0);
    }
    // 8 % lost, 7 of it at the socket, with a 2 ms queue: path loss 1 %, no event, and the
    // report carries the overflow (7 of 108 expected).
    for _ in 0..4 {
        let (flags, loss, overflow) = loss_window((m, &mut d), &mut t, 8, 7, 2).unwrap();
        assert_eq!(flags, 0);
        assert_eq!(loss, 74_074);
        assert_eq!(overflow, Some(64_815));
    }
    assert_eq!(m.overflow_drops(), 4 * 70);
    // The same loss without the socket's count is the path's: a loss event.
    loss_window((m, &mut d), &mut t, 8, 0, 2);
    assert_eq!(
        loss_window((m, &mut d), &mut t, 8, 0, 2).unwrap().0,
        RATE_CONGESTED | RATE_LOSS_EVENT
    );
    // Drops counted before their gaps show wait in the pool; stale ones are forgotten.
    let mut m = RateMeter::default();
    let m = &mut m;
    m.on_socket_drops(at(0), 0);
    m.on_socket_drops(at(1), 50);
    for _ in 0..10 {
        for _ in 0..100 {
            m.on_data(1000, 1);
        }
    }
    m.on_tick(at(5), &tick_at(5, 2, 0), 2, 0, true);
    m.on_tick(at(10), &tick_at(10, 2, 0), 2, 0, true);
    assert_eq!(m.take_report(at(10)).unwrap().overflow_ppm, Some(0));
    for _ in 0..10 {
        for k in 0..100 {
            m.on_data(1000, if k < 3 { 2 } else { 1 });
        }
    }
    m.on_tick(at(20), &tick_at(20, 2, 0), 2, 0, true);
    assert_eq!(m.take_report(at(20)).unwrap().overflow_ppm, Some(29_126)); // 30 of 1030
    assert_eq!(m.overflow_drops(), 30);
    for _ in 0..10 {
        for k in 0..100 {
            m.on_data(1000, if k < 3 { 2 } else { 1 });
        }
    }
    // 20 left in the pool from 1 ms, now 1.1 s old: forgotten.
    m.on_tick(at(1101), &tick_at(1101, 2, 0), 2, 0, true);
    assert_eq!(m.take_report(at(1101)).unwrap().overflow_ppm, Some(0));
}

#[test]
fn a_tick_without_the_extension_flag_gets_a_base_report() {
    let mut m = RateMeter::default();
    m.on_tick(at(0), &tick_at(0, 2, 0), 2, 0, false);
    m.on_data(1000, 1);
    m.on_tick(at(10), &tick_at(10, 2, 0), 2, 0, false);
    assert_eq!(m.take_report(at(10)).unwrap().overflow_ppm, None);
    m.on_tick(at(20), &tick_at(20, 2, 0), 2, 0, true);
    assert_eq!(m.take_report(at(20)).unwrap().overflow_ppm, Some(0));
}

#[test]
fn ce_marks_congest_their_interval_only_and_report_their_share() {
    let mut m = RateMeter::default();
    // Marks before the first tick belong to no interval: the first tick starts the count.
    m.on_ce_marks(3);
    m.on_tick(at(0), &tick_at(0, 2, 0), 2, 0, false);
    let interval = |m: &mut RateMeter, t: u64, marks: u64| {
        for _ in 0..200 {
            m.on_data(1000, 1);
        }
        m.on_ce_marks(marks);
        m.on_tick(at(t), &tick_at(t, 2, 0), 2, 0, false);
        let r = m.take_report(at(t)).expect("the CLR always answers");
        (r.congested(), r.ce_ppm, r.flags & RATE_LOSS_EVENT)
    };
    // No queue, no loss: a single mark of 200 datagrams congests the interval (5000 ppm)...
    assert_eq!(interval(&mut m, 10, 0), (false, 0, 0));
    assert_eq!(interval(&mut m, 20, 1), (true, 5000, 0));
    // ...and only that one: the next interval has none.
    assert_eq!(interval(&mut m, 30, 0), (false, 0, 0));
    assert_eq!(interval(&mut m, 40, 200), (true, 1_000_000, 0));
    // More marks than data datagrams (a marked datagram that was not data) stay a whole share.
    assert_eq!(interval(&mut m, 50, 500), (true, 1_000_000, 0));
    assert_eq!(m.ce_marks(), 704);
}

#[test]
fn only_the_clr_and_drawn_congested_receivers_answer() {
    let mut m = RateMeter::default();
    m.on_tick(at(0), &tick_at(0, 0, 0), 5, 0, false);
    m.on_data(1000, 1);
    // Not the CLR, not congested, a CLR exists: silent whatever the draw.
    assert!(!m.on_tick(at(10), &tick_at(10, 7, u16::MAX), 5, 0, false));
    // The CLR answers even with share 0.
    assert!(m.on_tick(at(20), &tick_at(20, 5, 0), 5, u16::MAX, false));
    m.take_report(at(20));
    // No CLR yet: answers if drawn (draw below the share), not otherwise.
    assert!(m.on_tick(at(30), &tick_at(30, 0, 100), 5, 99, false));
    m.take_report(at(30));
    assert!(!m.on_tick(at(40), &tick_at(40, 0, 100), 5, 100, false));
}

/// Sender-limited: a backlogged sender that sends half of what its rate allows brings the rate
/// down (ending slow start, never below 1.1 × the most it sent lately, by at most half in slow
/// start and 10 % after it); one that sends what it may, or is not backlogged, does not.
#[test]
fn a_backlogged_sender_below_its_rate_brings_the_rate_down() {
    let start = AutoConfig { start_bps: 400_000_000, ..cfg() };
    // Sends exactly the rate: nothing changes (slow start goes on; no report, no growth).
    let mut c = AutoRate::new(start.clone(), at(0));
    let mut sent = 0u64;
    for i in 0..=20u64 {
        c.on_sent(at(i * 10), sent, true);
        sent += 400_000_000 / 8 / 100; // 10 ms at 400 Mbit/s
    }
    assert_eq!(c.summary(at(200)).sender_limited, 0);
    assert_eq!(c.rate_bps(), 400_000_000);
    // Sends half of it while backlogged: down to 1.1 × 200 Mbit/s at once in slow start
    // (the floor of half is 200 Mbit/s)...
    let mut c = AutoRate::new(start.clone(), at(0));
    let mut sent = 0u64;
    let mut t = 0u64;
    for _ in 0..=6 {
        c.on_sent(at(t), sent, true);
        sent += 200_000_000 / 8 / 100;
        t += 10;
    }
    assert_eq!(c.summary(at(t)).sender_limited, 1);
    assert!(!c.in_slow_start());
    assert_eq!(c.rate_bps(), 220_000_000);
    // ...and no further while it sends what 220 Mbit/s allows within 15 %.
    for _ in 0..20 {
        c.on_sent(at(t), sent, true);
        sent += 200_000_000 / 8 / 100;
        t += 10;
    }
    assert_eq!(c.rate_bps(), 220_000_000);
    // Not backlogged (nothing to send): a low send rate says nothing.
    let mut c = AutoRate::new(start, at(0));
    let mut sent = 0u64;
    for i in 0..=20u64 {
        c.on_sent(at(i * 10), sent, i % 3 != 0);
        sent += 100_000_000 / 8 / 100;
    }
    assert_eq!(c.summary(at(200)).sender_limited, 0);
    assert_eq!(c.rate_bps(), 400_000_000);
}
