//! Disk images streamed from a pipe (`cat IMG | mcast-send --image - --max-size BOUND`), with
//! real binaries in a private user + network namespace: a 48 MiB image with holes, a written
//! zero run and data inside and past the first MiB goes to a sparse `--output` file and to a
//! stand-in device (`--to-device` on a regular file of old bytes, `--force --zero-fill`); both
//! read back equal to the stream, the device is untouched past the stream's end, and what
//! went out is about the data, not the bound. Boundary pairs: a stream of exactly the bound
//! passes, one byte more fails the push with a clear error and nothing placed; a receiver's
//! `--max-size` equal to the bound takes the push, one less refuses it.

mod common;

use std::fs;
use std::path::Path;

use serde_json::Value;

use common::image::{image_bytes, DATA, MIB, SIZE};

/// Writes `content` as a sparse file (zeros left as holes).
fn write_sparse(path: &Path, content: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = fs::File::create(path).unwrap();
    f.set_len(content.len() as u64).unwrap();
    for (i, chunk) in content.chunks(64 << 10).enumerate() {
        if chunk.iter().any(|&b| b != 0) {
            f.write_all_at(chunk, (i as u64) << 16).unwrap();
        }
    }
}

fn json(path: &Path) -> Value {
    let text = common::read_text(path);
    serde_json::from_str(text.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("{} is not JSON ({e}):\n{text}", path.display()))
}

fn assert_equal(expected: &[u8], got: &[u8], what: &str) {
    assert_eq!(got.len(), expected.len(), "{what} has the wrong length");
    if let Some(at) = got.iter().zip(expected).position(|(a, b)| a != b) {
        panic!("{what} differs from the stream at byte {at}");
    }
}

/// Receivers a (sparse file, `--max-size $AMAX`), b (stand-in device `dev.raw`) and c
/// (`--max-size $CMAX`, expected to refuse), then `cat src.img | mcast-send --image -`.
const PUSH: &str = r#"
G=239.255.47.2:7510
"$RECV" --group $G --interface 127.0.0.1 --output out --max-size $AMAX --once --json \
    --timeout $RT --ready-file ready-a > a.json 2> a.log &
A=$!
"$RECV" --group $G --interface 127.0.0.1 --to-device dev.raw --force --zero-fill --once --json \
    --timeout $RT --ready-file ready-b > b.json 2> b.log &
B=$!
"$RECV" --group $G --interface 127.0.0.1 --output out-c --max-size $CMAX --once --json \
    --timeout 8s --ready-file ready-c > c.json 2> c.log &
C=$!
for _ in $(seq 100); do [ -e ready-a ] && [ -e ready-b ] && [ -e ready-c ] && break; sleep 0.1; done
cat src.img | "$SEND" --image - --max-size $BOUND $SFLAGS --group $G --interface 127.0.0.1 \
    --rate 200M --receivers 2 --timeout 60s --json > send.json 2> send.log; echo $? > send.rc
wait $A; echo $? > a.rc
wait $B; echo $? > b.rc
wait $C; echo $? > c.rc
"#;

struct Run {
    dir: tempfile::TempDir,
}

impl Run {
    fn path(&self, p: &str) -> std::path::PathBuf {
        self.dir.path().join(p)
    }
    fn rc(&self, who: &str) -> String {
        common::read_text(&self.path(&format!("{who}.rc"))).trim().to_string()
    }
}

/// Pushes `stream` through a pipe with `--max-size bound` and `flags`; receiver a has
/// `--max-size amax`, c `--max-size bound - 1`; the device holds `bound + 1 MiB` of 0xa5.
fn push(stream: &[u8], bound: u64, amax: u64, flags: &str, recv_timeout: &str) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::create_dir(d.join("out")).unwrap();
    fs::create_dir(d.join("out-c")).unwrap();
    write_sparse(&d.join("src.img"), stream);
    fs::write(d.join("dev.raw"), vec![0xa5u8; (bound + MIB) as usize]).unwrap();
    fs::write(d.join("push.sh"), PUSH).unwrap();
    let script = format!(
        "export BOUND={bound} AMAX={amax} CMAX={} SFLAGS='{flags}' RT={recv_timeout}\nbash push.sh",
        bound - 1
    );
    common::in_namespace(d, 150, &script);
    for f in ["send.log", "a.log", "b.log", "c.log"] {
        println!("{f}:\n{}", common::read_text(&d.join(f)));
    }
    Run { dir }
}

/// Checks a complete push: both copies equal the stream, the device is untouched past it,
/// receiver c refused and placed nothing; returns the sender's report.
fn check_complete(run: &Run, stream: &[u8]) -> Value {
    for who in ["send", "a", "b"] {
        assert_eq!(run.rc(who), "0", "{who}");
    }
    let copy = fs::read(run.path("out/image")).unwrap();
    assert_equal(stream, &copy, "the file copy");
    let dev = fs::read(run.path("dev.raw")).unwrap();
    let n = stream.len();
    assert_equal(stream, &dev[..n], "the device");
    assert!(dev[n..].iter().all(|&b| b == 0xa5), "past the stream's end: untouched");
    // --max-size one less than the bound: refused, nothing created.
    assert_ne!(run.rc("c"), "0", "a receiver whose --max-size is below the bound refuses");
    assert_eq!(fs::read_dir(run.path("out-c")).unwrap().count(), 0);
    let send = json(&run.path("send.json"));
    assert_eq!(send["status"], "complete", "{send}");
    for r in ["a.json", "b.json"] {
        assert_eq!(json(&run.path(r))["status"], "complete", "{r}");
    }
    send
}

fn symbols(send: &Value) -> u64 {
    send["data_packets"].as_u64().unwrap() + send["repair_packets"].as_u64().unwrap()
}

/// A stream shorter than its bound (48 MiB under 64 MiB), lz4 by default: zero blocks and
/// the blocks past the end cost one symbol each, so what goes out is about the data.
#[test]
fn a_piped_image_to_a_file_and_a_device() {
    if common::skip_without_netns() {
        return;
    }
    let stream = image_bytes();
    let bound = 64 * MIB;
    let run = push(&stream, bound, bound, "", "60s");
    let send = check_complete(&run, &stream);
    assert_eq!(send["bytes"].as_u64(), Some(bound + 8), "the payload: the bound and the trailer");
    let data: u64 = DATA.iter().map(|e| e.1).sum();
    let on_wire = symbols(&send) * 1400;
    assert!(on_wire < data * 13 / 10, "{on_wire} bytes of symbols for {data} of data");
    // The copy is sparse: the zeros were not written.
    use std::os::unix::fs::MetadataExt;
    let allocated = fs::metadata(run.path("out/image")).unwrap().blocks() * 512;
    assert!(allocated < data + 2 * MIB, "the copy is sparse: {allocated} bytes allocated");
}

/// Boundary pair, with --compress zstd: a stream of exactly the bound passes (and a
/// receiver's --max-size equal to it takes it); one byte more fails the push with a clear
/// error and no receiver places anything.
#[test]
fn a_stream_of_exactly_the_bound_passes_and_one_byte_more_fails() {
    if common::skip_without_netns() {
        return;
    }
    let stream = image_bytes();
    let run = push(&stream, SIZE, SIZE, "--compress zstd", "60s");
    let send = check_complete(&run, &stream);
    let data: u64 = DATA.iter().map(|e| e.1).sum();
    assert!(symbols(&send) * 1400 < data, "zstd: less than the data went out");

    let mut longer = stream.clone();
    longer.push(1);
    let run = push(&longer, SIZE, SIZE, "--compress zstd", "20s");
    let log = common::read_text(&run.path("send.log"));
    assert_eq!(run.rc("send"), "1", "the push fails");
    assert!(log.contains("more than --max-size"), "a clear error:\n{log}");
    for who in ["a", "b"] {
        assert_ne!(run.rc(who), "0", "receiver {who} does not complete");
    }
    assert_eq!(fs::read_dir(run.path("out")).unwrap().count(), 0, "nothing placed, no temp file");
    let dev = fs::read(run.path("dev.raw")).unwrap();
    assert!(dev.starts_with(b"MCAST-IMAGE-INCOMPLETE"), "the device stays marked incomplete");
}

/// `--image-from CMD`: a producer that wrote the whole image and then failed (exit 1) fails
/// the push; through a plain pipe the same death would read as the stream's end. Nothing is
/// placed and the device stays marked incomplete.
#[test]
fn a_producer_that_fails_fails_the_push_even_after_writing_everything() {
    if common::skip_without_netns() {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let stream = image_bytes();
    let dir = tempfile::tempdir().unwrap();
    let producer = dir.path().join("producer.sh");
    fs::write(&producer, "#!/bin/sh\ncat src.img\nexit 1\n").unwrap();
    fs::set_permissions(&producer, fs::Permissions::from_mode(0o755)).unwrap();
    // push() runs in its own directory: point at the producer by absolute path.
    let flags = format!("--image-from {}", producer.display());
    let run = push(&stream, 64 * MIB, 64 * MIB, &flags, "20s");
    let log = common::read_text(&run.path("send.log"));
    assert_eq!(run.rc("send"), "1", "the push fails:\n{log}");
    assert!(log.contains("--image-from command") && log.contains("exit status: 1"), "{log}");
    for who in ["a", "b"] {
        assert_ne!(run.rc(who), "0", "receiver {who} does not complete");
    }
    assert_eq!(fs::read_dir(run.path("out")).unwrap().count(), 0, "nothing placed, no temp file");
    let dev = fs::read(run.path("dev.raw")).unwrap();
    assert!(dev.starts_with(b"MCAST-IMAGE-INCOMPLETE"), "the device stays marked incomplete");
}
