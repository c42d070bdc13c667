//! Writing to a non-blocking socket from a worker thread: wait for room with `poll(2)`, up to a
//! timeout per wait, so a client that stops reading cannot hold a worker for ever.

use std::io::{self, Write};
use std::net::TcpStream;
use std::time::Duration;

use rustix::event::{poll, PollFd, PollFlags, Timespec};

pub struct TimedWriter<'a> {
    pub stream: &'a TcpStream,
    pub timeout: Duration,
}

impl Write for TimedWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        loop {
            match (&*self.stream).write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    wait_writable(self.stream, self.timeout)?
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => return other,
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn wait_writable(stream: &TcpStream, timeout: Duration) -> io::Result<()> {
    let mut fds = [PollFd::new(stream, PollFlags::OUT)];
    let timeout = Timespec::try_from(timeout).unwrap_or(Timespec {
        tv_sec: i64::MAX,
        tv_nsec: 0,
    });
    match poll(&mut fds, Some(&timeout)) {
        Ok(0) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "client did not read the response in time",
        )),
        Ok(_) | Err(rustix::io::Errno::INTR) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
