//! [`Producer`], the stream of `mcast-send --image - --image-from CMD`: the standard output of
//! a command that mcast-send runs itself, so that the command's failure fails the push.
//!
//! Through a plain pipe (`partclone ... | mcast-send --image -`) a producer that dies half way
//! closes the pipe exactly as one that finished: the stream reads as ended, and the receivers
//! place the shorter image. Run by mcast-send, the end of the command's output counts as the
//! end of the stream only once the command has exited with status 0; any other exit, or a
//! signal, is a read error of the stream ([`StreamSource`](super::StreamSource) then never
//! builds the last block, whose trailer gives the length, so no receiver completes, and the
//! sender stops and aborts the push). The command is killed if the push ends first.

use std::io::Read;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};

/// The running command and its standard output.
#[derive(Debug)]
pub struct Producer {
    command: String,
    child: Child,
    stdout: ChildStdout,
    /// The exit status, once reaped.
    status: Option<ExitStatus>,
}

impl Producer {
    /// Start `sh -c command` with its standard output piped to the stream (standard input is
    /// closed; standard error stays the caller's).
    pub fn spawn(command: &str) -> std::io::Result<Self> {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(command)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdout = child.stdout.take().ok_or_else(|| std::io::Error::other("no stdout pipe"))?;
        Ok(Producer { command: command.to_string(), child, stdout, status: None })
    }

    /// The end of the output: the stream's end if the command succeeded, else an error that
    /// names the command and how it ended.
    fn finish(&mut self) -> std::io::Result<usize> {
        let status = match self.status {
            Some(s) => s,
            None => *self.status.insert(self.child.wait()?),
        };
        if status.success() {
            Ok(0)
        } else {
            Err(std::io::Error::other(format!(
                "--image-from command `{}` failed ({status}): its output is not a whole image",
                self.command
            )))
        }
    }
}

impl Read for Producer {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        match self.stdout.read(buf)? {
            0 => self.finish(),
            n => Ok(n),
        }
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        if self.status.is_none() {
            // The push ended first (done, failed or the stream was too long): stop it.
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(p: &mut Producer) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        p.read_to_end(&mut out).map(|_| out)
    }

    #[test]
    fn a_command_that_succeeds_ends_the_stream() {
        let mut p = Producer::spawn("printf abc; printf def").unwrap();
        assert_eq!(read_all(&mut p).unwrap(), b"abcdef");
        // Reading past the end stays at the end.
        assert_eq!(p.read(&mut [0; 4]).unwrap(), 0);
    }

    #[test]
    fn a_command_that_fails_after_its_output_is_an_error_not_an_end() {
        let mut p = Producer::spawn("printf abc; exit 3").unwrap();
        let e = read_all(&mut p).unwrap_err();
        assert!(e.to_string().contains("exit status: 3"), "{e}");
        assert!(e.to_string().contains("printf abc; exit 3"), "{e}");
    }

    #[test]
    fn a_command_killed_by_a_signal_is_an_error() {
        let mut p = Producer::spawn("printf abc; kill -9 $$").unwrap();
        let e = read_all(&mut p).unwrap_err();
        assert!(e.to_string().contains("signal"), "{e}");
    }

    #[test]
    fn a_producer_dropped_early_is_killed() {
        let p = Producer::spawn("echo $$ > /dev/null; exec sleep 60").unwrap();
        let pid = p.child.id();
        drop(p);
        // Reaped by the drop: no such process any more (or at least not ours running).
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(!stat.contains(") S ") && !stat.contains(") R "), "{stat}");
    }
}
