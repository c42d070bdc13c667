//! Writing to a non-blocking socket from a worker thread: wait for room with `poll(2)`, up to a
//! timeout per wait, so a client that stops reading cannot hold a worker for ever.

use std::io::{self, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::Duration;

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
    let mut fd = libc::pollfd {
        fd: stream.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    let millis = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: `fd` is a valid pollfd for the duration of the call, and the count is 1.
    let n = unsafe { libc::poll(&mut fd, 1, millis) };
    match n {
        n if n < 0 => {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                Ok(())
            } else {
                Err(e)
            }
        }
        0 => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "client did not read the response in time",
        )),
        _ => Ok(()),
    }
}
