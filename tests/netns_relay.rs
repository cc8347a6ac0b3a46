//! `mcast-relay` with the real binaries across two networks: the origin and the relay's
//! upstream side on loopback of a private namespace (`unshare -rn`), the relay's downstream
//! side on a veth pair whose far end is in a nested network namespace, where the far receivers
//! run. Nothing forwards multicast between the two networks (no multicast routing daemon, no
//! bridge: a veth end in another namespace hears only what is sent on its peer), so the far
//! side gets the push through the relay only; a probe receiver on the far side, joined to the
//! origin's group, proves it by never hearing a session.

mod common;

use std::path::Path;

const FAR_HOSTS: [&str; 3] = ["far1", "far2", "far3"];

fn json(path: &Path) -> serde_json::Value {
    let text = common::read_text(path);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}: {text}", path.display()))
}

/// Makes the source file (`size` bytes from `seed`), the `--expect` list and the far hosts'
/// output directories in `d`.
fn prepare(d: &Path, seed: u64, size: usize) {
    let mut rng = common::TestRng(seed);
    std::fs::write(d.join("src.bin"), rng.bytes(size)).unwrap();
    std::fs::write(d.join("expect.txt"), FAR_HOSTS.join("\n") + "\n").unwrap();
    for h in FAR_HOSTS {
        std::fs::create_dir(d.join(h)).unwrap();
    }
}

/// Runs `script` in a private namespace in `d`, with `$RELAY` set.
fn run(d: &Path, script: &str) {
    let status = common::ns_bash(d, 90, script)
        .env("RELAY", env!("CARGO_BIN_EXE_mcast-relay"))
        .env_remove("RUST_LOG")
        .status()
        .unwrap();
    assert!(status.success(), "namespace script failed: {status}");
}

/// The contents of the log `files` in `d`, for assertion messages.
fn logs(d: &Path, files: &[&str]) -> String {
    files
        .iter()
        .map(|f| format!("--- {f}\n{}", common::read_text(&d.join(f))))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every far host holds a verified copy of `src.bin` and reported complete; the origin
/// completed and lists each far host once, through `via`.
fn check_far_side(d: &Path, via: &str, logs: &str) {
    let src = std::fs::read(d.join("src.bin")).unwrap();
    for h in FAR_HOSTS {
        let copy = std::fs::read(d.join(h).join("src.bin"));
        assert!(copy.is_ok_and(|c| c == src), "{h} has no verified copy\n{logs}");
        assert_eq!(json(&d.join(format!("{h}.json")))["status"], "complete", "{logs}");
    }
    assert_eq!(common::read_text(&d.join("send.rc")).trim(), "0", "{logs}");
    let send = json(&d.join("send.json"));
    assert_eq!(send["status"], "complete", "{send}");
    let completed = send["completed"].as_array().unwrap();
    for h in FAR_HOSTS {
        let n = completed.iter().filter(|e| e["host"] == h).count();
        assert_eq!(n, 1, "{h} listed {n} times: {send}");
        let e = completed.iter().find(|e| e["host"] == h).unwrap();
        assert_eq!(e["via"], via, "{h} came through {via}: {send}");
    }
    assert!(send["missing"].as_array().unwrap().is_empty(), "{send}");
}

#[test]
fn a_push_reaches_a_second_network_through_the_relay_and_its_reports_reach_the_origin() {
    if common::skip_without_netns() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    prepare(d, 0x9e37_79b9_7f4a_7c15, 6 << 20);
    std::fs::create_dir(d.join("spool")).unwrap();
    std::fs::create_dir(d.join("probe")).unwrap();
    let script = r#"
set -u
ip link set lo up; ip link set lo multicast on; ip route add 239.0.0.0/8 dev lo
# The far network: a nested network namespace, held open by a sleeper.
unshare -n sleep 60 & FAR=$!
for _ in $(seq 200); do
  [ "$(readlink /proc/$FAR/ns/net)" != "$(readlink /proc/self/ns/net)" ] && break; sleep 0.01
done
ip link add ry-near type veth peer name ry-far
ip link set ry-far netns $FAR
ip addr add 198.18.0.1/24 dev ry-near; ip link set ry-near up; ip link set ry-near multicast on
far() { nsenter -t $FAR -n "$@"; }
far sh -c 'ip link set lo up; ip addr add 198.18.0.2/24 dev ry-far; ip link set ry-far up;
           ip link set ry-far multicast on; ip route add 239.0.0.0/8 dev ry-far'
for h in far1 far2 far3; do
  far $RECV --group 239.255.1.1:7000 --interface ry-far --output $h --once --host-name $h \
      --drop-rate 0.03 --drop-seed 7${h#far} --timeout 40s --json --ready-file $h.ready \
      > $h.json 2> $h.err & FARS="${FARS:-} $!"
done
# On the far side, joined to the origin's group: must never hear a session.
far $RECV --group 239.255.0.1:7000 --interface ry-far --output probe --once --idle-timeout 4s \
    --json > probe.json 2> probe.err & PROBE=$!
$RELAY --upstream 239.255.0.1:7000 --upstream-interface lo --downstream 239.255.1.1:7000 \
    --downstream-interface ry-near --spool spool --window 2 --receivers 3 --rate 200M \
    --fec-overhead 0% --host-name relay1 --timeout 40s --json --ready-file relay.ready > relay.json 2> relay.err & RELAY_PID=$!
for _ in $(seq 500); do
  [ -e far1.ready ] && [ -e far2.ready ] && [ -e far3.ready ] && [ -e relay.ready ] && break; sleep 0.01
done
$SEND src.bin --group 239.255.0.1:7000 --interface lo --rate 200M --expect expect.txt \
    --timeout 40s --json > send.json 2> send.err
echo $? > send.rc
wait $RELAY_PID; echo $? > relay.rc
wait $PROBE; echo $? > probe.rc
wait $FARS
kill $FAR 2>/dev/null
exit 0
"#;
    run(d, script);
    let logs = logs(d, &["send.err", "relay.err", "far1.err", "probe.err"]);
    // The far copies; the origin: complete, every far host listed once, through the relay.
    check_far_side(d, "relay1", &logs);
    // The far side never heard the origin itself.
    assert_eq!(common::read_text(&d.join("probe.rc")).trim(), "3", "{logs}");
    assert!(json(&d.join("probe.json"))["first_datagram_seconds"].is_null(), "{logs}");
    assert!(std::fs::read_dir(d.join("probe")).unwrap().next().is_none());

    // The relay: complete on both sides, its repairs downstream, its spool gone.
    assert_eq!(common::read_text(&d.join("relay.rc")).trim(), "0", "{logs}");
    let relay = json(&d.join("relay.json"));
    assert_eq!(relay["status"], "complete", "{relay}");
    assert_eq!(relay["upstream"]["status"], "complete", "{relay}");
    assert_eq!(relay["downstream"]["complete"], 3, "{relay}");
    assert!(
        relay["downstream"]["naks_received"].as_u64().unwrap() > 0,
        "3 % loss, no proactive parity: every loss is NAKed: {relay}"
    );
    assert_eq!(relay["forwarded"], 3, "{relay}");
    assert_eq!(relay["forwarded_acknowledged"], 3, "{relay}");
    assert!(std::fs::read_dir(d.join("spool")).unwrap().next().is_none(), "spool removed");
}

/// Two relays in a chain: the origin on loopback, relay 1 from there onto a middle network
/// (a nested namespace), relay 2 in that namespace from the middle network onto the far one
/// (another nested namespace, reached by a veth pair between the two), the far receivers
/// there. Nothing forwards multicast between the networks. Every far host gets its copy, and
/// the origin lists each once, through the first relay.
#[test]
fn a_push_crosses_two_chained_relays_and_the_far_reports_reach_the_origin() {
    if common::skip_without_netns() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    prepare(d, 0x51_7cc1_b727_220a, 3 << 20);
    std::fs::create_dir(d.join("spool1")).unwrap();
    std::fs::create_dir(d.join("spool2")).unwrap();
    let script = r#"
set -u
ip link set lo up; ip link set lo multicast on; ip route add 239.0.0.0/8 dev lo
# The middle and far networks: nested network namespaces, held open by sleepers.
unshare -n sleep 60 & MID=$!
unshare -n sleep 60 & FAR=$!
for _ in $(seq 200); do
  [ "$(readlink /proc/$MID/ns/net)" != "$(readlink /proc/self/ns/net)" ] &&
  [ "$(readlink /proc/$FAR/ns/net)" != "$(readlink /proc/self/ns/net)" ] && break; sleep 0.01
done
mid() { nsenter -t $MID -n "$@"; }
far() { nsenter -t $FAR -n "$@"; }
ip link add ry-near type veth peer name ry-mid
ip link set ry-mid netns $MID
ip addr add 198.18.0.1/24 dev ry-near; ip link set ry-near up; ip link set ry-near multicast on
ip link add rz-mid type veth peer name rz-far
ip link set rz-mid netns $MID
ip link set rz-far netns $FAR
mid sh -c 'ip link set lo up; ip addr add 198.18.0.2/24 dev ry-mid; ip link set ry-mid up;
           ip link set ry-mid multicast on; ip route add 239.255.1.0/24 dev ry-mid;
           ip addr add 198.18.1.1/24 dev rz-mid; ip link set rz-mid up;
           ip link set rz-mid multicast on; ip route add 239.255.2.0/24 dev rz-mid'
far sh -c 'ip link set lo up; ip addr add 198.18.1.2/24 dev rz-far; ip link set rz-far up;
           ip link set rz-far multicast on; ip route add 239.0.0.0/8 dev rz-far'
for h in far1 far2 far3; do
  far $RECV --group 239.255.2.1:7000 --interface rz-far --output $h --once --host-name $h \
      --drop-rate 0.03 --drop-seed 7${h#far} --timeout 40s --json --ready-file $h.ready \
      > $h.json 2> $h.err & FARS="${FARS:-} $!"
done
mid $RELAY --upstream 239.255.1.1:7000 --upstream-interface ry-mid \
    --downstream 239.255.2.1:7000 --downstream-interface rz-mid --spool spool2 --window 2 \
    --receivers 3 --rate 200M --host-name relay2 --timeout 40s --json \
    --ready-file relay2.ready > relay2.json 2> relay2.err & RELAY2=$!
for _ in $(seq 500); do
  [ -e far1.ready ] && [ -e far2.ready ] && [ -e far3.ready ] && [ -e relay2.ready ] && break; sleep 0.01
done
$RELAY --upstream 239.255.0.1:7000 --upstream-interface lo --downstream 239.255.1.1:7000 \
    --downstream-interface ry-near --spool spool1 --window 2 --receivers 4 --rate 200M \
    --host-name relay1 --timeout 40s --json --ready-file relay1.ready > relay1.json 2> relay1.err & RELAY1=$!
for _ in $(seq 500); do [ -e relay1.ready ] && break; sleep 0.01; done
$SEND src.bin --group 239.255.0.1:7000 --interface lo --rate 200M --expect expect.txt \
    --timeout 40s --json > send.json 2> send.err
echo $? > send.rc
wait $RELAY1; echo $? > relay1.rc
wait $RELAY2; echo $? > relay2.rc
wait $FARS
kill $MID $FAR 2>/dev/null
exit 0
"#;
    run(d, script);
    let logs = logs(d, &["send.err", "relay1.err", "relay2.err", "far1.err"]);
    check_far_side(d, "relay1", &logs);
    for r in ["relay1", "relay2"] {
        assert_eq!(common::read_text(&d.join(format!("{r}.rc"))).trim(), "0", "{logs}");
        let relay = json(&d.join(format!("{r}.json")));
        assert_eq!(relay["status"], "complete", "{r}: {relay}");
    }
}

/// A signed push through a relay that re-signs: the origin signs with key A at version 9, the
/// relay accepts only A upstream and signs downstream with key R; the far hosts trust only R
/// and get verified copies at version 9 (the origin's), and a far host that trusts only A
/// hears nothing it can accept: the relay's session is the relay's, not a replay of the
/// origin's.
#[test]
fn a_signed_push_crosses_a_relay_that_re_signs_it_for_the_far_side() {
    if common::skip_without_netns() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    prepare(d, 0x2545_f491_4f6c_dd1d, 3 << 20);
    std::fs::create_dir(d.join("spool")).unwrap();
    std::fs::create_dir(d.join("other")).unwrap();
    let script = r#"
set -u
ip link set lo up; ip link set lo multicast on; ip route add 239.0.0.0/8 dev lo
$SEND --gen-sign-key origin.key > origin.pub 2> gen.err
$SEND --gen-sign-key relay.key > relay.pub 2>> gen.err
unshare -n sleep 60 & FAR=$!
for _ in $(seq 200); do
  [ "$(readlink /proc/$FAR/ns/net)" != "$(readlink /proc/self/ns/net)" ] && break; sleep 0.01
done
ip link add ry-near type veth peer name ry-far
ip link set ry-far netns $FAR
ip addr add 198.18.0.1/24 dev ry-near; ip link set ry-near up; ip link set ry-near multicast on
far() { nsenter -t $FAR -n "$@"; }
far sh -c 'ip link set lo up; ip addr add 198.18.0.2/24 dev ry-far; ip link set ry-far up;
           ip link set ry-far multicast on; ip route add 239.0.0.0/8 dev ry-far'
for h in far1 far2 far3; do
  far $RECV --group 239.255.1.1:7000 --interface ry-far --output $h --once --host-name $h \
      --trust relay.pub --drop-rate 0.03 --drop-seed 5${h#far} --timeout 40s --json \
      --ready-file $h.ready > $h.json 2> $h.err & FARS="${FARS:-} $!"
done
# Trusts the origin's key only: the relay's session is not the origin's.
far $RECV --group 239.255.1.1:7000 --interface ry-far --output other --once --trust origin.pub \
    --timeout 6s --json --ready-file other.ready > other.json 2> other.err & OTHER=$!
$RELAY --upstream 239.255.0.1:7000 --upstream-interface lo --downstream 239.255.1.1:7000 \
    --downstream-interface ry-near --spool spool --window 2 --receivers 3 --rate 200M \
    --trust origin.pub --sign-key relay.key --host-name relay1 --timeout 40s --json \
    --ready-file relay.ready > relay.json 2> relay.err & RELAY_PID=$!
for _ in $(seq 500); do
  [ -e far1.ready ] && [ -e far2.ready ] && [ -e far3.ready ] && [ -e other.ready ] &&
  [ -e relay.ready ] && break; sleep 0.01
done
$SEND src.bin --group 239.255.0.1:7000 --interface lo --rate 200M --expect expect.txt \
    --sign-key origin.key --sign-version 9 --timeout 40s --json > send.json 2> send.err
echo $? > send.rc
wait $RELAY_PID; echo $? > relay.rc
wait $OTHER; echo $? > other.rc
wait $FARS
kill $FAR 2>/dev/null
exit 0
"#;
    run(d, script);
    let logs = logs(d, &["gen.err", "send.err", "relay.err", "far1.err", "other.err"]);
    check_far_side(d, "relay1", &logs);
    let relay = json(&d.join("relay.json"));
    assert_eq!(common::read_text(&d.join("relay.rc")).trim(), "0", "{logs}");
    let origin_id = json(&d.join("send.json"))["signed"]["key_id"].clone();
    assert_eq!(relay["upstream"]["signed"]["key_id"], origin_id, "{relay}");
    let relay_id = relay["downstream"]["signed"]["key_id"].clone();
    assert!(relay_id.is_string() && relay_id != origin_id, "{relay}");
    for h in FAR_HOSTS {
        let far = json(&d.join(format!("{h}.json")));
        assert_eq!(far["signed"]["key_id"], relay_id, "{h} accepted the relay's key: {far}");
        assert_eq!(far["signed"]["version"], 9, "at the origin's version: {far}");
        assert_eq!(relay["downstream"]["signed"]["version"], 9, "{relay}");
    }
    // Trusting only the origin's key downstream: nothing accepted, nothing placed.
    assert_eq!(common::read_text(&d.join("other.rc")).trim(), "3", "{logs}");
    assert!(common::read_text(&d.join("other.err")).contains("untrusted key"), "{logs}");
    assert!(std::fs::read_dir(d.join("other")).unwrap().next().is_none(), "{logs}");
}
