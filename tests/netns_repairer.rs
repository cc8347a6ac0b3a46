//! `mcast-recv --repairer` with the real binaries, in a private user + network namespace
//! (`unshare -rn`, loopback multicast; nothing leaves it).
//!
//! One sender (NAK-only repair, `--fec-overhead 0`), four receivers that each discard 5 % of
//! what they hear (`--drop-rate`, seeded), and a fifth receiver on a clean link, pushed the
//! same file twice: once with the fifth as a plain receiver, once with it as `--repairer`. Both
//! times all five complete with a byte-identical copy; with the repairer, it reports repair
//! symbols sent from a slot the sender assigned, the sender reports hearing them, and the
//! sender's own repair datagrams drop (by at least a tenth; the figures are printed). Those two
//! runs are keyed (`--key-file`), where a repairer serves what it decoded before the hash
//! list arrives; a third, in open mode, shows the repairer holding back the blocks the hash
//! list has not verified yet.

mod common;

use serde_json::Value;
use std::fs;
use std::path::Path;

fn read(dir: &Path, f: &str) -> String {
    common::read_text(&dir.join(f))
}

fn json(dir: &Path, f: &str) -> Value {
    let text = read(dir, f);
    let last = text.lines().last().unwrap_or_default();
    serde_json::from_str(last.trim()).unwrap_or_else(|e| panic!("{f}: {e}: {text}"))
}

/// One push: `$1` the run's name, `$2` the group, `$3` extra flags of receiver r0, `$4` flags
/// of every process (the key). Receivers r1..r4 drop 5 % of what they hear; r0 drops nothing.
const PUSH: &str = r#"
run=$1; G=$2; R0FLAGS=$3; ALL=$4
for i in 0 1 2 3 4; do
    rm -rf out-$run-$i; mkdir out-$run-$i; rm -f ready-$run-$i
    drop=0.05; [ $i = 0 ] && drop=0
    "$RECV" --group $G --interface 127.0.0.1 --output out-$run-$i --once --json --timeout 60s \
        --node-id $((100 + i)) --host-name r$i --drop-rate $drop --drop-seed $((7 + i)) \
        --ready-file ready-$run-$i $R0FLAGS $ALL > $run-$i.json 2> $run-$i.log &
    echo $! > pid-$run-$i
    R0FLAGS=""
done
for _ in $(seq 100); do
    n=0; for i in 0 1 2 3 4; do [ -e ready-$run-$i ] && n=$((n + 1)); done
    [ $n = 5 ] && break; sleep 0.1
done
"$SEND" src.bin --group $G --interface 127.0.0.1 --rate 100M --fec-overhead 0 \
    --block-size 256K --receivers 5 --timeout 60s --json $ALL > $run-send.json 2> $run-send.log
echo $? > $run-send.rc
for i in 0 1 2 3 4; do wait $(cat pid-$run-$i); echo $? > $run-$i.rc; done
"#;

struct Run {
    sender_repairs: u64,
    send: Value,
    r0: Value,
}

fn check_run(d: &Path, run: &str, data: &[u8]) -> Run {
    println!("{run}-send.log:\n{}", read(d, &format!("{run}-send.log")));
    assert_eq!(read(d, &format!("{run}-send.rc")).trim(), "0", "{run}: the sender");
    for i in 0..5 {
        let rc = read(d, &format!("{run}-{i}.rc"));
        assert_eq!(rc.trim(), "0", "{run}: receiver {i}:\n{}", read(d, &format!("{run}-{i}.log")));
        let copy = fs::read(d.join(format!("out-{run}-{i}/src.bin"))).unwrap();
        assert!(copy == data, "{run}: receiver {i} holds a different copy");
    }
    let send = json(d, &format!("{run}-send.json"));
    assert_eq!(send["complete"], 5, "{run}: {send}");
    Run {
        sender_repairs: send["repair_packets"].as_u64().unwrap(),
        r0: json(d, &format!("{run}-0.json")),
        send,
    }
}

#[test]
fn a_repairer_takes_repairs_off_the_sender() {
    if common::skip_without_netns() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = common::TestRng(0x007e_9a17).bytes(6 << 20);
    fs::write(d.join("src.bin"), &data).unwrap();
    fs::write(d.join("push.sh"), PUSH).unwrap();
    common::in_namespace(
        d,
        150,
        "\"$SEND\" --gen-key key 2> /dev/null\n\
         bash push.sh plain 239.255.47.1:7500 '' '--key-file key'\n\
         bash push.sh helped 239.255.47.2:7510 '--repairer --repair-window 8' '--key-file key'\n\
         bash push.sh open 239.255.47.3:7520 '--repairer' ''\n",
    );
    let plain = check_run(d, "plain", &data);
    let helped = check_run(d, "helped", &data);
    let open = check_run(d, "open", &data);

    // Without --repairer the report has no repairer fields.
    assert!(plain.r0.get("repair_datagrams").is_none(), "{}", plain.r0);
    let rep = &helped.r0;
    println!("repairer r0: {rep}");
    assert!(rep["slot"].as_u64().is_some_and(|s| (1..=8).contains(&s)), "{rep}");
    let symbols = rep["repair_datagrams"].as_u64().unwrap();
    assert!(symbols > 0, "the repairer sent no symbol: {rep}");
    assert!(rep["adverts"].as_u64().unwrap() > 0, "{rep}");
    let heard = &helped.send["repairers"];
    assert!(heard["symbols_heard"].as_u64().unwrap() > 0, "{heard}");
    assert!(heard["adverts_heard"].as_u64().unwrap() > 0, "{heard}");
    println!(
        "sender repair datagrams: {} without the repairer, {} with it ({} repairer symbols, \
         {} read back from disk)",
        plain.sender_repairs, helped.sender_repairs, symbols, rep["blocks_read_back"]
    );
    assert!(plain.sender_repairs > 0);
    // Measured on a loaded 2-core machine: 333 -> 138 (-59 %) and 331 -> 226 (-32 %); the
    // timing of NAKs against the repairer's backoff varies with the load, so the bound is loose.
    assert!(
        helped.sender_repairs * 10 <= plain.sender_repairs * 9,
        "sender repairs {} with the repairer against {} without: less than a tenth fewer",
        helped.sender_repairs,
        plain.sender_repairs
    );

    // Open mode: nothing is served before the hash list verified it (it comes at the end of
    // the first pass), so the NAKs heard during the pass find the blocks unverified.
    let stats = &open.r0["repairer_stats"];
    println!("open-mode repairer: {stats}; sender repairs {}", open.sender_repairs);
    assert!(stats["needs_unverified"].as_u64().unwrap() > 0, "{stats}");
    assert_eq!(stats["blocks_refuted"], 0, "{stats}");
}
