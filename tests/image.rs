//! Disk images with real binaries in a private user + network namespace: `mcast-send --image`
//! of a sparse file (holes, written zero runs and data, part of it in the first MiB) to two
//! receivers, one writing a sparse file (`--output`), one a stand-in device (`--to-device` on a
//! regular file full of old bytes, `--force --zero-fill`). Both read back equal to the source,
//! and what went out is the data, not the image's size. A loop device target runs where
//! `losetup` works (root), and says SKIPPED otherwise.

mod common;

use std::fs;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use common::image::{image_bytes, DATA, MIB, SIZE};

/// Writes the test image at `path` (holes, 4 MiB of written zeros at 8 MiB, the data runs)
/// and returns its bytes.
fn make_image(path: &Path) -> Vec<u8> {
    let f = fs::File::create(path).unwrap();
    f.set_len(SIZE).unwrap();
    let content = image_bytes();
    for &(off, len) in &DATA {
        f.write_all_at(&content[off as usize..(off + len) as usize], off).unwrap();
    }
    f.write_all_at(&vec![0u8; 4 * MIB as usize], 8 * MIB).unwrap();
    content
}

fn json(path: &Path) -> Value {
    let text = common::read_text(path);
    serde_json::from_str(text.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("{} is not JSON ({e}):\n{text}", path.display()))
}

fn assert_equal(expected: &[u8], path: &Path) {
    let got = fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    assert_eq!(got.len(), expected.len(), "{} has the wrong length", path.display());
    if let Some(at) = got.iter().zip(expected).position(|(a, b)| a != b) {
        panic!("{} differs from the source at byte {at}", path.display());
    }
}

const PUSH: &str = r#"
G=239.255.47.1:7500
"$RECV" --group $G --interface 127.0.0.1 --output out --once --json --timeout 60s \
    --ready-file ready-a > a.json 2> a.log &
A=$!
"$RECV" --group $G --interface 127.0.0.1 --to-device $DEV --force --zero-fill --once --json \
    --timeout 60s --ready-file ready-b > b.json 2> b.log &
B=$!
for _ in $(seq 100); do [ -e ready-a ] && [ -e ready-b ] && break; sleep 0.1; done
"$SEND" --image src.img --group $G --interface 127.0.0.1 --rate 200M --receivers 2 \
    --timeout 60s --json > send.json 2> send.log; echo $? > send.rc
wait $A; echo $? > a.rc
wait $B; echo $? > b.rc
"#;

fn push(d: &Path, dev: &str) -> Vec<u8> {
    fs::create_dir(d.join("out")).unwrap();
    let content = make_image(&d.join("src.img"));
    fs::write(d.join("push.sh"), PUSH).unwrap();
    let script = format!("export DEV={dev}\nbash push.sh");
    common::in_namespace(d, 120, &script);
    for f in ["send.log", "a.log", "b.log"] {
        println!("{f}:\n{}", common::read_text(&d.join(f)));
    }
    for rc in ["send.rc", "a.rc", "b.rc"] {
        assert_eq!(common::read_text(&d.join(rc)).trim(), "0", "{rc}");
    }
    content
}

#[test]
fn a_sparse_image_to_a_file_and_a_device() {
    if common::skip_without_netns() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The stand-in device: larger than the image, full of old bytes.
    fs::write(d.join("dev.raw"), vec![0xa5u8; (SIZE + MIB) as usize]).unwrap();
    let content = push(d, "dev.raw");

    let sparse = d.join("out/src.img");
    assert_equal(&content, &sparse);
    let allocated = fs::metadata(&sparse).unwrap().blocks() * 512;
    let data: u64 = DATA.iter().map(|e| e.1).sum();
    assert!(allocated < data + 2 * MIB, "the copy is sparse: {allocated} bytes allocated");
    let dev = fs::read(d.join("dev.raw")).unwrap();
    assert_equal(&content, &{
        fs::write(d.join("dev.head"), &dev[..SIZE as usize]).unwrap();
        d.join("dev.head")
    });
    assert!(dev[SIZE as usize..].iter().all(|&b| b == 0xa5), "past the image: untouched");

    // Only the data went out: the payload is the data extents (the written zeros and holes
    // are left out), and the symbols sent are about that, not the 48 MiB image.
    let send = json(&d.join("send.json"));
    assert_eq!(send["status"], "complete", "{send}");
    assert_eq!(send["bytes"].as_u64(), Some(data), "{send}");
    let symbols = send["data_packets"].as_u64().unwrap() + send["repair_packets"].as_u64().unwrap();
    let on_wire = symbols * 1400;
    assert!(on_wire < data * 13 / 10, "{on_wire} bytes of symbols for {data} of data");
    for r in ["a.json", "b.json"] {
        assert_eq!(json(&d.join(r))["status"], "complete", "{r}");
    }
}

/// A loop device as the target, where this machine lets us make one (root, /dev/loop-control).
#[test]
fn a_loop_device_target() {
    if common::skip_without_netns() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let backing = d.join("loop.raw");
    fs::write(&backing, vec![0x5au8; SIZE as usize]).unwrap();
    let out = Command::new("losetup").args(["-f", "--show"]).arg(&backing).output();
    let loopdev = match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        Ok(o) => {
            eprintln!("SKIPPED: losetup failed: {}", String::from_utf8_lossy(&o.stderr).trim());
            return;
        }
        Err(e) => {
            eprintln!("SKIPPED: no losetup: {e}");
            return;
        }
    };
    struct Detach(String);
    impl Drop for Detach {
        fn drop(&mut self) {
            let _ = Command::new("losetup").args(["-d", &self.0]).status();
        }
    }
    let _detach = Detach(loopdev.clone());
    let content = push(d, &loopdev);
    let _ = Command::new("sync").status();
    assert_equal(&content, &d.join("out/src.img"));
    let mut back = vec![0u8; SIZE as usize];
    fs::File::open(&loopdev).unwrap().read_exact_at(&mut back, 0).unwrap();
    if let Some(at) = back.iter().zip(&content).position(|(a, b)| a != b) {
        panic!("{loopdev} differs from the source at byte {at}");
    }
}

/// `mcast-recv --max-size` bounds the image's size (holes included: what a receiver creates or
/// needs of a device), not only its payload: an image of exactly the limit is taken, one byte
/// more is refused, with the same 100,000-byte payload well under the limit in both.
#[test]
fn max_size_bounds_the_image_size_not_only_the_payload() {
    use mcast::proto::manifest::{Entry, EntryKind, Extent, Image, Manifest, RelPath};
    use mcast::proto::receiver::{Receiver, ReceiverConfig};
    use mcast::proto::time::Instant;
    use mcast::proto::wire::{self, Announce, Data, Header, ObjectId, Packet};
    const T: u16 = 1024;
    let from = std::net::SocketAddr::from(([198, 18, 0, 1], 7000));
    let header = Header { flags: 0, session: 9, node: 1 };
    let payload = 100_000;
    for (size, max, taken) in [(64 * MIB, 64 * MIB, true), (64 * MIB + 1, 64 * MIB, false)] {
        let extents = vec![Extent { offset: MIB, len: payload }];
        let entry = Entry::new(
            RelPath::new("disk.img").unwrap(),
            EntryKind::Image(Image { size, extents, streamed: false }),
        );
        let bytes = Manifest::new(vec![entry], payload, T, 16).unwrap().encode();
        let a = Announce {
            object_size: payload,
            symbol_size: T,
            block_symbols: 16,
            manifest_len: bytes.len() as u32,
            manifest_hash: *blake3::hash(&bytes).as_bytes(),
            hashes_len: 0,
            hashes_hash: [0; 32],
            rate_bps: 1_000_000,
            grtt_us: 1000,
        };
        let cfg = ReceiverConfig { node: 5, max_size: Some(max), ..ReceiverConfig::default() };
        let mut r = Receiver::new(cfg);
        let mut send = |p: &Packet<'_>| {
            let mut b = Vec::new();
            wire::emit(&header, p, &mut b);
            r.handle_datagram(Instant::ZERO, from, &b);
        };
        send(&Packet::Announce(a));
        let layout = a.manifest_layout();
        let mut padded = bytes.clone();
        padded.resize(usize::from(layout.source_symbols(0).unwrap()) * usize::from(T), 0);
        for (esi, symbol) in padded.chunks(usize::from(T)).enumerate() {
            let d = Data { object: ObjectId::Manifest, block: 0, esi: esi as u32, seq: 0, symbol };
            send(&Packet::Data(d));
        }
        assert_eq!(r.session_id().is_some(), taken, "image of {size} B, --max-size {max}");
        assert_eq!(r.stats().candidates_refused, u64::from(!taken), "{size}: {:?}", r.stats());
    }
}

/// A `--to-device` receive killed with SIGKILL once its device journal records 12 blocks, then
/// started again on the same stand-in device: it keeps what it recorded, fetches only the rest
/// from the sender's carousel, and the device reads back as the image.
const RESUME: &str = r#"
set -u
ip link set lo up; ip link set lo multicast on; ip route add 239.0.0.0/8 dev lo
G=239.255.47.2:7520
R="--group $G --interface 127.0.0.1 --to-device dev.raw --force --once --json --timeout 60s"
"$RECV" $R --ready-file ready > r1.json 2> r1.log & rpid=$!
for _ in $(seq 100); do [ -e ready ] && break; sleep 0.1; done
"$SEND" --image big.img --group $G --interface 127.0.0.1 --rate 40M --repeat --timeout 100s \
    > send.json 2> send.log & spid=$!
# Marked, and record 12 (0-based 11) of the journal written: 40 bytes at 4096 + 11 * 40,
# zeroed when the push started (before the marker), non-zero once written. The marker is read
# first: only once it is there does a non-zero record mean a written one, not the old bytes.
for _ in $(seq 1000); do
    if [ "$(head -c 22 dev.raw)" = MCAST-IMAGE-INCOMPLETE ]; then
        n=$(tail -c +$((4096 + 11 * 40 + 1)) dev.raw | head -c 40 | tr -d '\0' | wc -c)
        [ "$n" -gt 0 ] && break
    fi
    sleep 0.02
done
kill -KILL $rpid; wait $rpid; echo $? > r1.rc
head -c 22 dev.raw > killed.head
"$RECV" $R > r2.json 2> r2.log; echo $? > r2.rc
kill -TERM $spid; wait $spid; echo $? > send.rc
"#;

#[test]
fn a_device_receive_killed_mid_push_resumes_without_rewriting_what_verified() {
    if common::skip_without_netns() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // 64 MiB with 24 MiB of data from 512 KiB (inside and past the first MiB): 25 blocks.
    let size = 64 * MIB;
    let data = 24 * MIB;
    let f = fs::File::create(d.join("big.img")).unwrap();
    f.set_len(size).unwrap();
    let bytes: Vec<u8> =
        (0..data as u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    f.write_all_at(&bytes, MIB / 2).unwrap();
    fs::write(d.join("dev.raw"), vec![0xa5u8; size as usize]).unwrap();
    let status = common::ns_bash(d, 150, RESUME).status().unwrap();
    let read = |f: &str| common::read_text(&d.join(f));
    println!("r2.log:\n{}\nsend.log:\n{}", read("r2.log"), read("send.log"));
    assert!(status.success(), "namespace script failed: {status}");
    assert_eq!(read("r1.rc").trim(), "137", "the first receiver was killed");
    assert_eq!(read("killed.head"), "MCAST-IMAGE-INCOMPLETE", "killed mid-push");
    assert_eq!(read("r2.rc").trim(), "0");
    let report = json(&d.join("r2.json"));
    assert_eq!(report["status"], "complete", "{report}");
    let resumed = report["resumed_bytes"].as_u64().unwrap();
    let received = report["stats"]["symbols_new"].as_u64().unwrap() * 1400;
    println!("restarted: resumed {resumed} B, received {received} B of {data} again");
    assert!(resumed >= 12 * 748 * 1400, "the 12 recorded blocks were kept: {resumed}");
    assert!(received + resumed < data + 2 * MIB, "only the rest was fetched: {received}");
    let mut want = vec![0u8; size as usize];
    want[(MIB / 2) as usize..(MIB / 2 + data) as usize].copy_from_slice(&bytes);
    let dev = fs::read(d.join("dev.raw")).unwrap();
    // Holes keep the old bytes (no --zero-fill), except in the first MiB, written whole.
    for (i, (&got, &w)) in dev.iter().zip(&want).enumerate() {
        let hole = (i as u64) >= MIB && !((MIB / 2..MIB / 2 + data).contains(&(i as u64)));
        let w = if hole { 0xa5 } else { w };
        assert_eq!(got, w, "dev.raw differs from the image at byte {i}");
    }
}
