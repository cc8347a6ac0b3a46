//! The command lines a new user gets wrong, run as real processes: each exits 2 before any
//! socket opens (so these run in the main namespace: nothing is sent or joined), with one line
//! on stderr that says what is wrong, and no backtrace even with `RUST_BACKTRACE=1`. Also: the
//! exit codes in both `--help` texts are the ones the README gives.

use std::path::Path;
use std::process::Command;

const SEND: &str = env!("CARGO_BIN_EXE_mcast-send");
const RECV: &str = env!("CARGO_BIN_EXE_mcast-recv");
const RELAY: &str = env!("CARGO_BIN_EXE_mcast-relay");
const GROUP: &str = "239.255.42.1:7200";

/// Exit code and stderr lines of `bin args` run in `dir`, with backtraces asked for.
fn run(bin: &str, args: &[&str], dir: &Path) -> (i32, Vec<String>) {
    let out = Command::new(bin)
        .args(args)
        .current_dir(dir)
        .env("RUST_BACKTRACE", "1")
        .env_remove("RUST_LOG")
        .output()
        .expect("run binary");
    assert!(out.stdout.is_empty(), "nothing on stdout: {:?}", String::from_utf8_lossy(&out.stdout));
    let err = String::from_utf8_lossy(&out.stderr).lines().map(str::to_owned).collect();
    (out.status.code().expect("exited"), err)
}

/// A user mistake: exit 2 and exactly one line, which starts with `first`.
fn assert_one_line(bin: &str, args: &[&str], dir: &Path, first: &str) -> String {
    let (code, err) = run(bin, args, dir);
    assert_eq!(code, 2, "{args:?}: {err:#?}");
    assert_eq!(err.len(), 1, "{args:?}: one line, no backtrace or cause list: {err:#?}");
    assert!(err[0].starts_with(first), "{args:?}: {:?} should start with {first:?}", err[0]);
    err[0].clone()
}

#[test]
fn send_mistakes_are_one_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("f.bin"), b"payload").unwrap();
    std::fs::create_dir(d.join("tree")).unwrap();
    let send = |extra: &[&str], first: &str| {
        let mut args = extra.to_vec();
        args.extend(["--group", GROUP]);
        assert_one_line(SEND, &args, d, first)
    };
    send(&["nosuch.bin", "--interface", "lo"], "mcast-send: error: nosuch.bin: no such file");
    send(
        &["tree", "nosuch", "--interface", "lo"],
        "mcast-send: error: nosuch: no such path in tree",
    );
    send(&["tree", "../f.bin", "--interface", "lo"], "mcast-send: error: ../f.bin: paths after");
    send(&["f.bin", "g", "--interface", "lo"], "mcast-send: error: f.bin is a file, so g cannot");
    send(&["/dev/null", "--interface", "lo"], "mcast-send: error: /dev/null is not a regular file");
    send(
        &["f.bin", "--interface", "192.0.2.254"],
        "mcast-send: error: no network interface has the address 192.0.2.254",
    );
    send(
        &["f.bin", "--interface", "nosuch0"],
        "mcast-send: error: no network interface is called \"nosuch0\"",
    );
    send(
        &["f.bin", "--interface", "lo", "--symbol-size", "10"],
        "mcast-send: error: --symbol-size must be between",
    );
}

#[test]
fn control_groups_and_bad_values_are_refused_by_both() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("f.bin"), b"payload").unwrap();
    for bin in [SEND, RECV] {
        let mut args = if bin == SEND { vec!["f.bin"] } else { vec!["--output", "."] };
        args.extend(["--interface", "lo", "--group", "224.0.0.1:7000"]);
        let (code, err) = run(bin, &args, d);
        assert_eq!(code, 2, "{err:#?}");
        assert!(err[0].contains("224.0.0.1:7000 is a link-local control group"), "{err:#?}");
        let (code, err) = run(bin, &["--group", "10.0.0.1:7000"], d);
        assert_eq!(code, 2, "{err:#?}");
        assert!(err[0].contains("is not a multicast address"), "{err:#?}");
    }
}

#[test]
fn recv_mistakes_are_one_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("f.bin"), b"x").unwrap();
    let recv = |output: &str, iface: &str, first: &str| {
        let args = ["--group", GROUP, "--interface", iface, "--output", output, "--once"];
        assert_one_line(RECV, &args, d, first)
    };
    recv("a/b", "lo", "mcast-recv: error: --output a/b: no such directory, and its parent a");
    recv("f.bin", "lo", "mcast-recv: error: --output f.bin is not a directory");
    recv(".", "198.18.254.254", "mcast-recv: error: no network interface has the address");
    let (code, err) = run(RECV, &["--group", GROUP, "--output", "."], d);
    assert_eq!(code, 2, "a missing argument is a bad argument: {err:#?}");
    assert!(err[0].contains("required arguments were not provided"), "{err:#?}");
}

#[test]
fn a_relay_signs_only_behind_a_trusted_origin_and_with_a_readable_key() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let gen = Command::new(SEND).args(["--gen-sign-key", "relay.key"]).current_dir(d).output();
    let public = String::from_utf8(gen.expect("gen-sign-key").stdout).unwrap();
    let relay = |extra: &[&str]| {
        let mut args = vec!["--upstream", GROUP, "--upstream-interface", "lo"];
        args.extend(["--downstream", "239.255.42.2:7200", "--downstream-interface", "lo"]);
        args.extend(["--spool", "."]);
        args.extend(extra);
        run(RELAY, &args, d)
    };
    // Signing what no trusted key vouched for would launder an open push: refused.
    let (code, err) = relay(&["--sign-key", "relay.key"]);
    assert_eq!(code, 2, "{err:#?}");
    assert!(err[0].contains("required arguments were not provided"), "{err:#?}");
    assert!(err.iter().any(|l| l.contains("--trust")), "names what is missing: {err:#?}");
    let (code, err) = relay(&["--trust", public.trim(), "--sign-key", "nosuch.key"]);
    assert_eq!(code, 2, "{err:#?}");
    assert_eq!(err.len(), 1, "{err:#?}");
    assert!(err[0].starts_with("mcast-relay: error: --sign-key nosuch.key: "), "{err:#?}");
}

/// The "Exit status:" paragraph of a text: from that phrase to the first line that ends with a
/// full stop, whitespace collapsed.
fn exit_status_paragraph(text: &str, after: &str) -> String {
    let start = text.find(after).unwrap_or_else(|| panic!("{after:?} not found"));
    let rest = &text[start..];
    let at = rest.find("Exit status:").expect("an Exit status paragraph");
    let para = &rest[at..];
    let end = para.find(".\n").map_or(para.len(), |i| i + 1);
    para[..end].split_whitespace().collect::<Vec<_>>().join(" ").replace("**", "")
}

#[test]
fn exit_codes_agree_between_help_and_readme() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    for (bin, section) in [(SEND, "### mcast-send"), (RECV, "### mcast-recv")] {
        let out = Command::new(bin).arg("--help").output().expect("--help");
        assert_eq!(out.status.code(), Some(0));
        let help = String::from_utf8(out.stdout).unwrap();
        let from_help = exit_status_paragraph(&help, "Examples:");
        let from_readme = exit_status_paragraph(&readme, section);
        assert_eq!(from_help, from_readme, "{bin} --help and README {section}");
        for code in ["0 ", "1 ", "2 bad arguments", "3 ", "130 interrupted"] {
            assert!(from_help.contains(code), "{bin}: exit code {code:?} in {from_help:?}");
        }
    }
}
