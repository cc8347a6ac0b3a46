//! Helpers shared by the tests that run real processes in a private user + network namespace
//! (`unshare -rn`): whether such a namespace can be made here, and reading what the processes
//! left behind.

// Each test crate that includes this module uses only some of it.
#![allow(dead_code)]

pub mod image;

use std::path::Path;
use std::process::{Command, Stdio};

/// Why the namespace test cannot run here, if it cannot.
pub fn netns_unavailable() -> Option<String> {
    match Command::new("ip").arg("-V").stdout(Stdio::null()).stderr(Stdio::null()).status() {
        Ok(s) if s.success() => {}
        Ok(s) => return Some(format!("`ip -V` failed: {s}")),
        Err(e) => return Some(format!("`ip` (iproute2) not found: {e}")),
    }
    match Command::new("unshare")
        .args(["-rn", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
    {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!(
            "`unshare -rn true` failed ({}): {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Some(format!("`unshare` not found: {e}")),
    }
}

/// True (after printing "SKIPPED") when the namespace tests cannot run here. Where they must
/// (`MCAST_REQUIRE_NETNS=1`, set by `.ci/run` when `unshare -rn true` works), it panics instead:
/// a skip would hide a real failure.
pub fn skip_without_netns() -> bool {
    let Some(why) = netns_unavailable() else { return false };
    if std::env::var("MCAST_REQUIRE_NETNS").as_deref() == Ok("1") {
        panic!("MCAST_REQUIRE_NETNS=1 but the namespace test cannot run: {why}");
    }
    eprintln!("SKIPPED: user namespaces unavailable ({why})");
    true
}

/// A file's text, or a note saying why it cannot be read (for assertion messages).
pub fn read_text(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| format!("<cannot read {}: {e}>", path.display()))
}

/// Like [`skip_without_netns`], for tests that also need a private mount namespace
/// (`unshare -rmn`, to mount a small tmpfs).
pub fn skip_without_mount_netns() -> bool {
    if skip_without_netns() {
        return true;
    }
    let ok = Command::new("unshare")
        .args(["-rmn", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return false;
    }
    if std::env::var("MCAST_REQUIRE_NETNS").as_deref() == Ok("1") {
        panic!("MCAST_REQUIRE_NETNS=1 but `unshare -rmn true` fails");
    }
    eprintln!("SKIPPED: mount namespaces unavailable (`unshare -rmn true` fails)");
    true
}

/// A command that runs `script` with bash in a private user + network namespace
/// (`unshare -rn`) in `dir`, killed after `secs`, with `$SEND` and `$RECV` the binaries under
/// test. The script sets up its own loopback (or see [`in_namespace`]).
pub fn ns_bash(dir: &Path, secs: u32, script: &str) -> Command {
    let mut c = Command::new("timeout");
    c.args(["-k", "5", &secs.to_string(), "unshare", "-rn", "bash", "-c", script])
        .current_dir(dir)
        .env("RECV", env!("CARGO_BIN_EXE_mcast-recv"))
        .env("SEND", env!("CARGO_BIN_EXE_mcast-send"));
    c
}

/// Run `script` with [`ns_bash`] (logging at its default) after bringing loopback up with
/// multicast and a route for 239.0.0.0/8, and assert that it succeeded.
pub fn in_namespace(dir: &Path, secs: u32, script: &str) {
    let script = format!(
        "set -u\nip link set lo up; ip link set lo multicast on\n\
         ip route add 239.0.0.0/8 dev lo\n{script}"
    );
    let status = ns_bash(dir, secs, &script)
        .env_remove("RUST_LOG")
        .status()
        .expect("run the namespace script");
    assert!(status.success(), "namespace script failed: {status}");
}

/// xorshift64*: deterministic bytes and choices for generated test trees.
pub struct TestRng(pub u64);

impl TestRng {
    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number below `n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// `len` random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(len + 8);
        while v.len() < len {
            v.extend_from_slice(&self.next().to_le_bytes());
        }
        v.truncate(len);
        v
    }
}

/// Every entry below `root` (symlinks not followed), by path: kind, permission bits, link
/// target or length and BLAKE3 of the contents, and with `mtimes` the modification time.
pub fn tree_digest(root: &Path, mtimes: bool) -> std::collections::BTreeMap<String, String> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![std::path::PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for ent in std::fs::read_dir(root.join(&rel)).unwrap() {
            let rel = rel.join(ent.unwrap().file_name());
            let abs = root.join(&rel);
            let meta = std::fs::symlink_metadata(&abs).unwrap();
            let mode = meta.permissions().mode() & 0o7777;
            let mut what = if meta.is_symlink() {
                format!("link -> {}", std::fs::read_link(&abs).unwrap().display())
            } else if meta.is_dir() {
                stack.push(rel.clone());
                format!("dir {mode:o}")
            } else if meta.is_file() {
                let data = std::fs::read(&abs).unwrap();
                format!("file {mode:o} {} {}", data.len(), blake3::hash(&data).to_hex())
            } else {
                format!("other {:?}", meta.file_type())
            };
            if mtimes {
                what = format!("{what} mtime {}.{:09}", meta.mtime(), meta.mtime_nsec());
            }
            out.insert(rel.to_str().unwrap().to_owned(), what);
        }
    }
    out
}

/// What a generated tree holds (the root not included).
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct TreeCounts {
    /// Regular files.
    pub files: u64,
    /// Directories.
    pub dirs: u64,
    /// Symlinks.
    pub symlinks: u64,
    /// Bytes of the files.
    pub bytes: u64,
}

/// File sizes of issue 12's release tree: from 0 bytes (every 50th) to 20 MiB (one file), a
/// few of 1 to 4 MiB, some of 16 to 256 KiB, most below 8 KiB.
pub fn release_sizes(i: usize, rng: &mut TestRng) -> u64 {
    match i {
        7 => 20 << 20,
        _ if i % 500 == 257 => (1 << 20) + rng.below(3 << 20),
        _ if i % 40 == 3 => (16 << 10) + rng.below(240 << 10),
        _ if i % 50 == 1 => 0,
        _ => rng.below(8 << 10),
    }
}

/// Writes issue 12's release tree of `files` files under `root` (see [`make_tree_with`] and
/// [`release_sizes`]); returns the total of the files' sizes.
pub fn make_tree(root: &Path, seed: u64, files: usize) -> u64 {
    make_tree_with(root, seed, files, release_sizes).bytes
}

/// Writes a tree of `files` files under `root` (created): nested directories up to 5 deep, a
/// few empty ones (one, and a chain of three), file `i` of `size(i, rng)` bytes, varied modes,
/// and symlinks (to files and directories, relative, one dangling). Returns its counts.
pub fn make_tree_with(
    root: &Path,
    seed: u64,
    files: usize,
    size: fn(usize, &mut TestRng) -> u64,
) -> TreeCounts {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    let mut rng = TestRng(seed | 1);
    let mut c = TreeCounts::default();
    fs::create_dir(root).unwrap();
    let mut dirs: Vec<String> = vec![String::new()];
    for i in 0..files / 16 {
        let parent = dirs[rng.below(dirs.len() as u64) as usize].clone();
        let d = if parent.is_empty() || parent.matches('/').count() >= 4 {
            format!("d{i}")
        } else {
            format!("{parent}/d{i}")
        };
        fs::create_dir(root.join(&d)).unwrap();
        dirs.push(d);
        c.dirs += 1;
    }
    // Empty directories (no file or link goes there): one, and a chain of three.
    for leaf in ["empty", "x", "x/empty", "x/empty/deeper"] {
        fs::create_dir(root.join(&dirs[1]).join(leaf)).unwrap();
        c.dirs += 1;
    }
    let mut paths = Vec::new();
    for i in 0..files {
        let dir = &dirs[rng.below(dirs.len() as u64) as usize];
        let name = format!("f{i}.{}", ["txt", "bin", "so", "conf"][i % 4]);
        let path = if dir.is_empty() { name } else { format!("{dir}/{name}") };
        let len = size(i, &mut rng) as usize;
        fs::write(root.join(&path), rng.bytes(len)).unwrap();
        let mode = [0o644, 0o600, 0o755, 0o640, 0o700][rng.below(5) as usize];
        fs::set_permissions(root.join(&path), fs::Permissions::from_mode(mode)).unwrap();
        c.files += 1;
        c.bytes += len as u64;
        paths.push(path);
    }
    for i in 0..files / 64 {
        let dir = &dirs[rng.below(dirs.len() as u64) as usize];
        let up = "../".repeat(if dir.is_empty() { 0 } else { dir.matches('/').count() + 1 });
        let target = match i % 4 {
            0 | 1 => format!("{up}{}", paths[rng.below(paths.len() as u64) as usize]),
            2 => format!("{up}{}", dirs[1 + rng.below(dirs.len() as u64 - 1) as usize]),
            _ => format!("{up}no/such/target"),
        };
        let name = format!("link{i}");
        let path = if dir.is_empty() { name } else { format!("{dir}/{name}") };
        std::os::unix::fs::symlink(&target, root.join(&path)).unwrap();
        c.symlinks += 1;
    }
    // Directory modes last (all writable by the owner, so the tree can be removed).
    for d in dirs.iter().skip(1) {
        let mode = [0o755, 0o750, 0o700, 0o775][rng.below(4) as usize];
        fs::set_permissions(root.join(d), fs::Permissions::from_mode(mode)).unwrap();
    }
    c
}

/// Set in the re-executed child: the name of the test to run for real.
const CHILD: &str = "MCAST_TEST_NAMESPACE_CHILD";

/// In the parent: run `test` again under `unshare -rn` and check it passed there; false. In the
/// child: true (go on with the test).
pub fn in_private_namespace(test: &str) -> bool {
    if std::env::var(CHILD).as_deref() == Ok(test) {
        return true;
    }
    if !Command::new("unshare").args(["-rn", "true"]).status().is_ok_and(|s| s.success()) {
        assert!(
            std::env::var("MCAST_REQUIRE_NETNS").as_deref() != Ok("1"),
            "MCAST_REQUIRE_NETNS=1 but `unshare -rn` does not work here"
        );
        eprintln!("SKIPPED: user namespaces unavailable");
        return false;
    }
    let exe = std::env::current_exe().expect("test binary path");
    let out = Command::new("timeout")
        .args(["-k", "5", "120", "unshare", "-rn"])
        .arg(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, test)
        .stdin(Stdio::null())
        .output()
        .expect("run unshare");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("child: {}\n{stdout}{}", out.status, String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{test} failed in the namespace: {}", out.status);
    assert!(stdout.contains("1 passed"), "the child ran no test:\n{stdout}");
    false
}

/// Runs `ip ARGS` and asserts it succeeded (inside the private namespace).
pub fn ip(args: &str) {
    let ok = Command::new("ip").args(args.split_whitespace()).status().expect("run ip");
    assert!(ok.success(), "ip {args}: {ok}");
}
