//! nginx as a peer of the resilience suite: a load balancer in front of several nodes, or the
//! reference a scenario measures the service against. Started on a free port with its own
//! configuration in a temporary folder; stopped gracefully (SIGQUIT) when dropped.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_port, send_signal, wait_until, Signal};

pub struct Nginx {
    child: Child,
    dir: PathBuf,
    pub addr: SocketAddr,
}

impl Nginx {
    /// nginx with one worker, `http` among the `http` block's directives and `server` inside
    /// its one `server` block (after `listen`).
    pub fn start(http: &str, server: &str) -> Nginx {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("hello-nginx-{port}"));
        std::fs::create_dir_all(&dir).unwrap();
        let conf = format!(
            "daemon off; pid {dir}/nginx.pid; error_log {dir}/error.log warn; worker_processes 1;
             events {{ worker_connections 4096; }}
             http {{ access_log off; client_body_temp_path {dir}; keepalive_requests 1000000;
               {http}
               server {{ listen 127.0.0.1:{port}; {server} }} }}",
            dir = dir.display()
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let child = Command::new("nginx")
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx (Debian package) is needed");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        wait_until("nginx", Duration::from_secs(10), || {
            TcpStream::connect(addr).is_ok()
        });
        Nginx { child, dir, addr }
    }

    /// The HTTP-only reference: a constant answer to every request, as `GET /` is answered.
    pub fn constant() -> Nginx {
        Nginx::start(
            "",
            "location / { default_type text/plain; return 200 'Welcome to the Hello Service'; }",
        )
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGQUIT: a graceful stop that takes the worker processes with it.
        send_signal(self.child.id(), Signal::QUIT);
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
