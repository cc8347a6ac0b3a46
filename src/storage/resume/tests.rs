//! Resume state tests: the sidecar's round trip, torn and foreign state, and the lock.

use super::*;
use crate::proto::manifest::{HashList, Manifest, RelPath};
use crate::storage::{clean_stale_temps, FileSink, Sink};

/// 4 blocks of 1000 bytes (symbols of 100, 10 a block) and a short fifth.
const SIZE: u64 = 4500;
const BLOCK: usize = 1000;

fn manifest() -> Manifest {
    Manifest::single_file(RelPath::new("f.bin").unwrap(), SIZE, 100, 10).unwrap()
}

fn payload() -> Vec<u8> {
    (0..SIZE as u32).map(|i| (i * 7 % 251) as u8 + 1).collect()
}

fn block(data: &[u8], b: u32) -> &[u8] {
    let start = b as usize * BLOCK;
    &data[start..(start + BLOCK).min(data.len())]
}

fn hash(data: &[u8]) -> [u8; 32] {
    *blake3::hash(data).as_bytes()
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

/// A resumable sink that wrote (and recorded) `blocks`, then was interrupted.
fn interrupted_after(dir: &Path, m_hash: &[u8; 32], blocks: &[u32]) -> PathBuf {
    let data = payload();
    let (mut sink, held) = FileSink::resumable(dir, &manifest(), m_hash).unwrap();
    assert!(held.is_empty(), "a fresh start holds nothing");
    for &b in blocks {
        sink.write_block(b as u64 * BLOCK as u64, block(&data, b)).unwrap();
        sink.record_block(b, hash(block(&data, b)));
    }
    let temp = sink.temp_path().to_path_buf();
    Box::new(sink).suspend();
    temp
}

#[test]
fn an_interrupted_sink_resumes_with_its_blocks_and_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let temp = interrupted_after(dir.path(), &[1; 32], &[0, 2, 4, 2]);
    assert!(temp.exists(), "interrupted: the temp file stays");
    let sidecar = dir.path().join(".f.bin.mcast-resume");
    assert_eq!(names(dir.path()).len(), 2);

    let data = payload();
    let (mut sink, held) = FileSink::resumable(dir.path(), &manifest(), &[1; 32]).unwrap();
    assert_eq!(sink.temp_path(), temp, "the same temp file");
    let want: Vec<(u32, [u8; 32])> =
        [0, 2, 4].iter().map(|&b| (b, hash(block(&data, b)))).collect();
    assert_eq!(held, want);
    for b in [1u32, 3] {
        sink.write_block(b as u64 * BLOCK as u64, block(&data, b)).unwrap();
        sink.record_block(b, hash(block(&data, b)));
    }
    let list = HashList::of_bytes(&data, manifest().layout().unwrap());
    Box::new(sink).finish(&list, true).unwrap();
    assert_eq!(std::fs::read(dir.path().join("f.bin")).unwrap(), data);
    assert!(!sidecar.exists(), "placed: the resume state goes");
    assert_eq!(names(dir.path()), vec!["f.bin"]);
}

#[test]
fn the_journal_records_only_what_it_was_given_and_rewrites_replace() {
    let dir = tempfile::tempdir().unwrap();
    let data = payload();
    let (mut sink, _) = FileSink::resumable(dir.path(), &manifest(), &[1; 32]).unwrap();
    sink.write_block(BLOCK as u64, block(&data, 1)).unwrap();
    sink.record_block(1, [9; 32]);
    sink.rewrite_block(BLOCK as u64, block(&data, 1)).unwrap();
    sink.record_block(1, hash(block(&data, 1)));
    // Written but never recorded: not held.
    sink.write_block(0, block(&data, 0)).unwrap();
    Box::new(sink).suspend();
    let (_sink, held) = FileSink::resumable(dir.path(), &manifest(), &[1; 32]).unwrap();
    assert_eq!(held, vec![(1, hash(block(&data, 1)))]);
}

#[test]
fn another_push_discards_the_state() {
    let dir = tempfile::tempdir().unwrap();
    let old = interrupted_after(dir.path(), &[1; 32], &[0, 1]);
    let (sink, held) = FileSink::resumable(dir.path(), &manifest(), &[2; 32]).unwrap();
    assert!(held.is_empty());
    assert!(!old.exists(), "the other push's temp file is removed");
    assert_ne!(sink.temp_path(), old);
    drop(sink);
    assert!(names(dir.path()).is_empty(), "dropped (a failure): nothing stays");
}

#[test]
fn a_torn_sidecar_keeps_the_whole_records_and_a_torn_header_nothing() {
    let dir = tempfile::tempdir().unwrap();
    interrupted_after(dir.path(), &[1; 32], &[0, 1, 3]);
    let sidecar = dir.path().join(".f.bin.mcast-resume");
    let bytes = std::fs::read(&sidecar).unwrap();
    let header_len = bytes.len() - 3 * RECORD;
    let read = |b: &[u8]| ResumeState::read(&mut &b[..], 5);
    assert_eq!(read(&bytes).unwrap().held.count_ones(), 3);
    // A record cut short, or one with a flipped bit: it and what follows are ignored.
    assert_eq!(
        read(&bytes[..bytes.len() - 1]).unwrap().held.iter_ones().collect::<Vec<_>>(),
        [0, 1]
    );
    let mut flipped = bytes.clone();
    flipped[header_len + RECORD + 7] ^= 1;
    assert_eq!(read(&flipped).unwrap().held.iter_ones().collect::<Vec<_>>(), [0]);
    assert_eq!(read(&bytes[..header_len]).unwrap().held.count_ones(), 0);
    // The header cut short, damaged, or for another block count: nothing.
    assert!(read(&bytes[..header_len - 1]).is_none());
    let mut bad = bytes.clone();
    bad[20] ^= 1;
    assert!(read(&bad).is_none());
    assert!(ResumeState::read(&mut &bytes[..], 6).is_none());
    // The pid is outside the checksum (it changes with each owner).
    let mut other_pid = bytes.clone();
    other_pid[8] ^= 0xff;
    assert!(read(&other_pid).is_some());
    // A sink over the torn sidecar resumes with the whole records.
    std::fs::write(&sidecar, &flipped).unwrap();
    let (_sink, held) = FileSink::resumable(dir.path(), &manifest(), &[1; 32]).unwrap();
    assert_eq!(held.len(), 1);
}

#[test]
fn a_second_receiver_is_refused_and_the_first_is_unaffected() {
    let dir = tempfile::tempdir().unwrap();
    let data = payload();
    let (mut first, _) = FileSink::resumable(dir.path(), &manifest(), &[1; 32]).unwrap();
    let temp = first.temp_path().to_path_buf();
    let e = FileSink::resumable(dir.path(), &manifest(), &[1; 32]).unwrap_err();
    let pid = std::process::id();
    assert!(matches!(e, StorageError::Busy { pid: p, .. } if p == pid), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("another mcast-recv is receiving into") && msg.contains("f.bin"), "{msg}");
    assert!(msg.ends_with(&format!("(pid {pid})")), "{msg}");
    // Another push into the same file is refused the same way, and removes nothing.
    assert!(matches!(
        FileSink::resumable(dir.path(), &manifest(), &[2; 32]),
        Err(StorageError::Busy { .. })
    ));
    // The cleanup of a receiver starting now keeps the locked temp file.
    assert_eq!(clean_stale_temps(dir.path()).unwrap(), 0);
    assert!(temp.exists());
    for b in 0..5 {
        first.write_block(b as u64 * BLOCK as u64, block(&data, b)).unwrap();
    }
    let list = HashList::of_bytes(&data, manifest().layout().unwrap());
    Box::new(first).finish(&list, true).unwrap();
    assert_eq!(std::fs::read(dir.path().join("f.bin")).unwrap(), data);
    // Just past the first receiver's life, the second one gets in.
    let (second, held) = FileSink::resumable(dir.path(), &manifest(), &[1; 32]).unwrap();
    assert!(held.is_empty());
    second.abort();
    assert_eq!(names(dir.path()), vec!["f.bin"], "abort removes the temp file and the state");
}

#[test]
fn the_cleanup_keeps_claimed_and_locked_temps_and_removes_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let claimed = interrupted_after(dir.path(), &[1; 32], &[0]);
    let stale = dir.path().join(".g.bin.mcast-tmp-00000000000000aa");
    std::fs::write(&stale, b"x").unwrap();
    let locked = dir.path().join(".h.bin.mcast-tmp-00000000000000bb");
    std::fs::write(&locked, b"y").unwrap();
    let holder = File::open(&locked).unwrap();
    assert!(try_lock(&holder).unwrap());
    assert_eq!(clean_stale_temps(dir.path()).unwrap(), 1);
    assert!(claimed.exists() && locked.exists() && !stale.exists());
    drop(holder);
    assert_eq!(clean_stale_temps(dir.path()).unwrap(), 1, "unlocked: removed");
    assert!(claimed.exists(), "still claimed by its sidecar");
}

#[test]
fn sidecar_names_are_recognised_and_fit() {
    use crate::storage::names::resume_file_name;
    assert_eq!(resume_file_name("f.bin"), ".f.bin.mcast-resume");
    assert!(is_resume_name(resume_file_name("f.bin").as_ref()));
    let long = resume_file_name(&"é".repeat(127));
    assert!(long.len() <= 255 && is_resume_name(long.as_ref()));
    for no in [".mcast-resume", "f.mcast-resume", ".f.mcast-resume.bak"] {
        assert!(!is_resume_name(no.as_ref()), "{no}");
    }
}
