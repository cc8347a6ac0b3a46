//! Directory-relative file system calls for placing a tree without ever following a symlink:
//! thin safe wrappers over `openat`, `mkdirat`, `symlinkat`, `fstatat`, `unlinkat` and
//! `renameat2` (and `futimens`/`utimensat` for mtimes), each relative to a directory file descriptor and with `O_NOFOLLOW` (or
//! `AT_SYMLINK_NOFOLLOW`) on the last component, and [`remove_tree_at`], a recursive removal
//! that stays inside the directory it was given.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use crate::proto::manifest::Mtime;

/// `name` as a C string; `InvalidInput` if it holds a NUL byte (checked names never do).
pub(crate) fn cstring(name: &[u8]) -> io::Result<CString> {
    CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn open_raw(
    dir: BorrowedFd<'_>,
    name: &CStr,
    flags: libc::c_int,
    mode: libc::c_uint,
) -> io::Result<OwnedFd> {
    let flags = flags | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: `name` is a valid C string and `dir` a live descriptor for the call.
    let fd = check(unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags, mode) })?;
    // SAFETY: `openat` returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens directory `name` in `dir`; a symlink there fails (`ENOTDIR`), a non-directory too.
pub(crate) fn open_dir_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<OwnedFd> {
    open_raw(dir, name, libc::O_RDONLY | libc::O_DIRECTORY, 0)
}

/// Opens `path` (absolute or relative to the working directory) as a directory without
/// following a symlink in its last component.
pub(crate) fn open_dir_path(path: &std::path::Path) -> io::Result<OwnedFd> {
    use std::os::unix::ffi::OsStrExt;
    let c = cstring(path.as_os_str().as_bytes())?;
    // SAFETY: AT_FDCWD is always a valid directory argument.
    let cwd = unsafe { BorrowedFd::borrow_raw(libc::AT_FDCWD) };
    open_dir_at(cwd, &c)
}

/// Creates directory `name` in `dir` with `mode` (less the umask).
pub(crate) fn mkdir_at(dir: BorrowedFd<'_>, name: &CStr, mode: libc::mode_t) -> io::Result<()> {
    // SAFETY: valid C string and live descriptor.
    check(unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode) }).map(drop)
}

/// Creates the new regular file `name` in `dir` (`O_EXCL`: never an existing file or a
/// symlink), open for writing, with mode 0o666 less the umask.
pub(crate) fn create_file_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<File> {
    let fd = open_raw(dir, name, libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL, 0o666)?;
    Ok(File::from(fd))
}

/// Opens the existing file `name` in `dir` for reading (and writing if `write`), without
/// following a symlink and without blocking on a FIFO. The caller checks what it opened.
pub(crate) fn open_file_at(dir: BorrowedFd<'_>, name: &CStr, write: bool) -> io::Result<File> {
    let access = if write { libc::O_RDWR } else { libc::O_RDONLY };
    let fd = open_raw(dir, name, access | libc::O_NONBLOCK, 0)?;
    Ok(File::from(fd))
}

/// Creates symlink `name` in `dir` pointing to `target` (not resolved).
pub(crate) fn symlink_at(target: &CStr, dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    // SAFETY: valid C strings and live descriptor.
    check(unsafe { libc::symlinkat(target.as_ptr(), dir.as_raw_fd(), name.as_ptr()) }).map(drop)
}

/// `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)`.
pub(crate) fn lstat_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<libc::stat> {
    // SAFETY: `stat` is plain old data; zeroed is a valid value that fstatat overwrites.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string, live descriptor and a writable `stat`.
    check(unsafe {
        libc::fstatat(dir.as_raw_fd(), name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW)
    })?;
    Ok(st)
}

/// `readlinkat(dir, name)`: the target of symlink `name` (at most `PATH_MAX` bytes).
pub(crate) fn read_link_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize + 1];
    // SAFETY: valid C string, live descriptor, and a buffer of the length given.
    let n = unsafe {
        libc::readlinkat(dir.as_raw_fd(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len())
    };
    let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
    if n >= buf.len() {
        return Err(io::Error::other("symlink target too long"));
    }
    buf.truncate(n);
    Ok(buf)
}

/// Whether a `st_mode` is a directory.
pub(crate) fn is_dir_mode(mode: libc::mode_t) -> bool {
    mode & libc::S_IFMT == libc::S_IFDIR
}

/// `fchmod(fd, mode)`.
pub(crate) fn fchmod(fd: BorrowedFd<'_>, mode: u32) -> io::Result<()> {
    // SAFETY: live descriptor.
    check(unsafe { libc::fchmod(fd.as_raw_fd(), mode as libc::mode_t) }).map(drop)
}

/// The `timespec` pair that sets the modification time to `t` and leaves the access time.
fn mtime_times(t: Mtime) -> [libc::timespec; 2] {
    [
        libc::timespec { tv_sec: 0, tv_nsec: libc::UTIME_OMIT },
        libc::timespec { tv_sec: t.secs as libc::time_t, tv_nsec: t.nanos as libc::c_long },
    ]
}

/// `futimens(fd)`: sets the modification time of an open file or directory (the access
/// time stays).
pub(crate) fn set_mtime(fd: BorrowedFd<'_>, t: Mtime) -> io::Result<()> {
    let times = mtime_times(t);
    // SAFETY: live descriptor, and a pointer to two timespecs.
    check(unsafe { libc::futimens(fd.as_raw_fd(), times.as_ptr()) }).map(drop)
}

/// `utimensat(dir, name, AT_SYMLINK_NOFOLLOW)`: sets the modification time of `name` itself
/// (a symlink's own, never its target's).
pub(crate) fn set_mtime_at(dir: BorrowedFd<'_>, name: &CStr, t: Mtime) -> io::Result<()> {
    let times = mtime_times(t);
    let flags = libc::AT_SYMLINK_NOFOLLOW;
    // SAFETY: live descriptor, a valid C string and a pointer to two timespecs.
    check(unsafe { libc::utimensat(dir.as_raw_fd(), name.as_ptr(), times.as_ptr(), flags) })
        .map(drop)
}

/// Removes `name` from `dir`: a directory (empty) with `AT_REMOVEDIR`, anything else as a link.
pub(crate) fn unlink_at(dir: BorrowedFd<'_>, name: &CStr, is_dir: bool) -> io::Result<()> {
    let flags = if is_dir { libc::AT_REMOVEDIR } else { 0 };
    // SAFETY: valid C string and live descriptor.
    check(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), flags) }).map(drop)
}

/// `renameat2(dir, from, dir, to, flags)` (`RENAME_NOREPLACE`, `RENAME_EXCHANGE`).
pub(crate) fn rename2_at(
    dir: BorrowedFd<'_>,
    from: &CStr,
    to: &CStr,
    flags: libc::c_uint,
) -> io::Result<()> {
    let fd = dir.as_raw_fd();
    // SAFETY: valid C strings and live descriptor; renameat2 takes no other pointers.
    let ret =
        unsafe { libc::syscall(libc::SYS_renameat2, fd, from.as_ptr(), fd, to.as_ptr(), flags) };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Up to `limit` names in directory `dir` (not `.` or `..`), read through a duplicate of its
/// descriptor.
pub(crate) fn list_dir(dir: BorrowedFd<'_>, limit: usize) -> io::Result<Vec<CString>> {
    let dup = dir.try_clone_to_owned()?;
    // SAFETY: `dup` is a fresh descriptor; on success fdopendir owns it (closedir closes it).
    let stream = unsafe { libc::fdopendir(dup.as_raw_fd()) };
    if stream.is_null() {
        return Err(io::Error::last_os_error());
    }
    std::mem::forget(dup);
    // SAFETY: `stream` is valid; rewind in case the shared offset was moved before.
    unsafe { libc::rewinddir(stream) };
    let mut names = Vec::new();
    let mut failure = None;
    while names.len() < limit {
        // readdir signals an error only through errno, so clear it first.
        // SAFETY: errno is thread-local and always writable.
        unsafe { *libc::__errno_location() = 0 };
        // SAFETY: `stream` is valid until closedir below.
        let ent = unsafe { libc::readdir(stream) };
        if ent.is_null() {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(0) {
                failure = Some(e);
            }
            break;
        }
        // SAFETY: readdir returns a valid entry whose d_name is NUL-terminated.
        let name = unsafe { CStr::from_ptr((*ent).d_name.as_ptr()) };
        if name.to_bytes() != b"." && name.to_bytes() != b".." {
            names.push(name.to_owned());
        }
    }
    // SAFETY: `stream` is valid and not used afterwards.
    unsafe { libc::closedir(stream) };
    match failure {
        Some(e) => Err(e),
        None => Ok(names),
    }
}

/// Removes `name` in `dir` and, if it is a directory, everything below it, never following a
/// symlink (a symlink is removed, not what it points to). Directories without `rwx` for their
/// owner are given it first, so a tree with read-only directories can be removed. A missing
/// `name` is not an error.
pub(crate) fn remove_tree_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    let st = match lstat_at(dir, name) {
        Ok(st) => st,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if is_dir_mode(st.st_mode) {
        let sub = open_dir_at(dir, name)?;
        if st.st_mode & 0o700 != 0o700 {
            fchmod(sub.as_fd(), 0o700)?;
        }
        for child in list_dir(sub.as_fd(), usize::MAX)? {
            remove_tree_at(sub.as_fd(), &child)?;
        }
    }
    match unlink_at(dir, name, is_dir_mode(st.st_mode)) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> CString {
        cstring(s.as_bytes()).unwrap()
    }

    #[test]
    fn nothing_follows_a_symlink() {
        let base = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("f"), b"keep").unwrap();
        std::os::unix::fs::symlink(outside.path(), base.path().join("ld")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("f"), base.path().join("lf")).unwrap();
        let d = open_dir_path(base.path()).unwrap();
        let eloop = |e: io::Error| e.raw_os_error() == Some(libc::ELOOP);
        // O_DIRECTORY | O_NOFOLLOW on a symlink: "not a directory".
        let e = open_dir_at(d.as_fd(), &c("ld")).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOTDIR));
        assert!(eloop(open_file_at(d.as_fd(), &c("lf"), true).unwrap_err()));
        let e = create_file_at(d.as_fd(), &c("lf")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert!(open_dir_path(&base.path().join("ld")).is_err());
        remove_tree_at(d.as_fd(), &c("ld")).unwrap();
        remove_tree_at(d.as_fd(), &c("lf")).unwrap();
        assert_eq!(std::fs::read(outside.path().join("f")).unwrap(), b"keep");
        assert_eq!(std::fs::read_dir(base.path()).unwrap().count(), 0);
    }

    #[test]
    fn remove_tree_handles_read_only_dirs_and_missing_names() {
        use std::os::unix::fs::PermissionsExt;
        let base = tempfile::tempdir().unwrap();
        let t = base.path().join("t");
        std::fs::create_dir_all(t.join("a/b")).unwrap();
        std::fs::write(t.join("a/b/f"), b"x").unwrap();
        std::os::unix::fs::symlink("b", t.join("a/l")).unwrap();
        std::fs::set_permissions(t.join("a/b"), std::fs::Permissions::from_mode(0o500)).unwrap();
        std::fs::set_permissions(t.join("a"), std::fs::Permissions::from_mode(0o000)).unwrap();
        let d = open_dir_path(base.path()).unwrap();
        remove_tree_at(d.as_fd(), &c("t")).unwrap();
        assert!(!t.exists());
        remove_tree_at(d.as_fd(), &c("t")).unwrap();
    }

    #[test]
    fn rename_flags() {
        let base = tempfile::tempdir().unwrap();
        std::fs::create_dir(base.path().join("a")).unwrap();
        std::fs::write(base.path().join("a/x"), b"a").unwrap();
        std::fs::create_dir(base.path().join("b")).unwrap();
        let d = open_dir_path(base.path()).unwrap();
        let e = rename2_at(d.as_fd(), &c("a"), &c("b"), libc::RENAME_NOREPLACE).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        rename2_at(d.as_fd(), &c("a"), &c("b"), libc::RENAME_EXCHANGE).unwrap();
        assert!(base.path().join("b/x").exists());
        assert!(!base.path().join("a/x").exists());
        rename2_at(d.as_fd(), &c("a"), &c("c"), libc::RENAME_NOREPLACE).unwrap();
        assert!(base.path().join("c").is_dir());
    }
}
