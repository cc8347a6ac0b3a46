//! Resume after a crash, with real processes in a private namespace (`unshare -rn`): a sender
//! runs a carousel (`--repeat`) of a 32 MiB file; the receiver is killed with SIGKILL about
//! half way (once its resume journal records half the blocks), then started again with the
//! same output. It keeps the blocks it had made durable, completes, and receives less than
//! 60 % of the object again (its `--json` report: symbols received, and `resumed_bytes`).

mod common;

use std::fs;

const SIZE: usize = 32 << 20;
/// Blocks of the default layout (1400-byte symbols, 1 MiB blocks: 748 symbols, 1_047_200 B).
const BLOCK_BYTES: usize = 748 * 1400;
const SYMBOL: u64 = 1400;

/// The sidecar's header for the temp file `.src.bin.mcast-tmp-<16 hex>`: magic, pid, manifest
/// hash, block count, name length, name, CRC; then 40 bytes a block.
const HEADER: usize = 8 + 4 + 32 + 4 + 2 + ".src.bin.mcast-tmp-".len() + 16 + 4;
const RECORD: usize = 40;

const SCRIPT: &str = r#"
set -u
ip link set lo up; ip link set lo multicast on; ip route add 239.0.0.0/8 dev lo
G=239.255.44.1:7200
R="--group $G --interface 127.0.0.1 --output out --once --json --timeout 60s"
"$RECV" $R --ready-file ready > recv1.json 2> recv1.log & rpid=$!
for _ in $(seq 100); do [ -e ready ] && break; sleep 0.1; done
# 32 MiB at 40 Mbit/s: about 7 s a pass, again and again until stopped.
"$SEND" src.bin --group $G --interface 127.0.0.1 --rate 40M --repeat --timeout 100s \
    > send.json 2> send.log & spid=$!
for _ in $(seq 600); do
    n=$(stat -c %s out/.src.bin.mcast-resume 2>/dev/null || echo 0)
    [ "$n" -ge "$HALF" ] && break
    sleep 0.02
done
kill -KILL $rpid; wait $rpid; echo $? > recv1.rc
ls -a out > killed.txt
stat -c %s out/.src.bin.mcast-resume > killed.size
"$RECV" $R > recv2.json 2> recv2.log; echo $? > recv2.rc
kill -TERM $spid; wait $spid; echo $? > send.rc
ls -a out > after.txt
"#;

#[test]
fn a_receiver_killed_half_way_resumes_and_fetches_only_the_rest() {
    if common::skip_without_netns() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::create_dir(d.join("out")).unwrap();
    let data: Vec<u8> =
        (0..SIZE as u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
    fs::write(d.join("src.bin"), &data).unwrap();
    let blocks = SIZE.div_ceil(BLOCK_BYTES);
    let half = HEADER + blocks / 2 * RECORD;
    let status = common::ns_bash(d, 150, SCRIPT).env("HALF", half.to_string()).status().unwrap();
    let read = |f: &str| common::read_text(&d.join(f));
    println!("recv2.log:\n{}\nsend.log:\n{}", read("recv2.log"), read("send.log"));
    assert!(status.success(), "namespace script failed: {status}");
    assert_eq!(read("recv1.rc").trim(), "137", "the first receiver was killed");
    let killed = read("killed.txt");
    assert!(killed.contains(".src.bin.mcast-tmp-"), "killed mid-transfer: {killed}");
    let recorded = (read("killed.size").trim().parse::<usize>().unwrap() - HEADER) / RECORD;
    assert!(recorded >= blocks / 2 && recorded < blocks, "killed half way: {recorded} blocks");

    let report: serde_json::Value = serde_json::from_str(&read("recv2.json"))
        .unwrap_or_else(|e| panic!("recv2.json: {e}: {}", read("recv2.json")));
    assert_eq!(read("recv2.rc").trim(), "0", "{report}");
    assert_eq!(report["status"], "complete", "{report}");
    let resumed = report["resumed_bytes"].as_u64().unwrap();
    let symbols = report["stats"]["symbols_new"].as_u64().unwrap();
    let received = symbols * SYMBOL;
    println!(
        "killed after {recorded} of {blocks} blocks were recorded; restarted: resumed {resumed} \
         bytes, received {received} bytes again ({:.1} % of the object)",
        received as f64 * 100.0 / SIZE as f64
    );
    assert!(resumed >= (recorded * BLOCK_BYTES) as u64, "every recorded block was kept");
    assert!((received as f64) < 0.6 * SIZE as f64, "received {received} of {SIZE} again");
    assert!(fs::read(d.join("out/src.bin")).unwrap() == data, "the copy differs");
    let after = read("after.txt");
    assert_eq!(after.lines().collect::<Vec<_>>(), [".", "..", "src.bin"], "nothing left over");
}
