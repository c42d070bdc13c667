//! The container image, built FROM scratch and run with podman: `/health` answers through a
//! published port, and `podman stop` ends it by SIGTERM (exit 0 or 143), well before the stop
//! timeout (137 would mean SIGTERM was ignored). `make test` installs podman, so without it the
//! test fails; `HELLO_SKIP_IMAGE_TEST=1` skips it on purpose (a machine that cannot run
//! containers), and says so.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::free_port;

fn podman(root: &Path, args: &[&str]) -> Output {
    let storage = std::env::temp_dir().join("hello-podman");
    Command::new("podman")
        .arg("--root")
        .arg(storage.join("root"))
        .arg("--runroot")
        .arg(storage.join("run"))
        .args([
            "--storage-driver",
            "vfs",
            "--runtime",
            "runc",
            "--cgroup-manager",
            "cgroupfs",
        ])
        .args(args)
        .current_dir(root)
        .output()
        .expect("run podman")
}

#[test]
fn scratch_image_serves_and_stops_on_sigterm() {
    if std::env::var_os("HELLO_SKIP_IMAGE_TEST").is_some_and(|v| v == "1") {
        println!("SKIPPED: HELLO_SKIP_IMAGE_TEST=1");
        return;
    }
    assert!(
        Command::new("podman").arg("--version").output().is_ok(),
        "podman is needed to build and run the image (make test installs it; \
         HELLO_SKIP_IMAGE_TEST=1 skips this test)"
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let binary = root.join("target/x86_64-unknown-linux-musl/release/hello");
    assert!(
        binary.exists(),
        "build the static binary first (make static; make test does)"
    );
    let build = podman(
        root,
        &[
            "build",
            "--build-arg",
            "BASE=scratch",
            "-t",
            "hello-test:scratch",
            ".",
        ],
    );
    assert!(
        build.status.success(),
        "{}",
        String::from_utf8_lossy(&build.stderr)
    );

    let port = free_port();
    let name = format!("hello-test-{port}");
    let publish = format!("127.0.0.1:{port}:8080");
    let run = podman(
        root,
        &[
            "run",
            "-d",
            "--name",
            &name,
            "--network",
            "slirp4netns",
            "-p",
            &publish,
            "--ulimit",
            "nofile=20000:20000",
            "--ulimit",
            "nproc=32768:32768",
            "hello-test:scratch",
        ],
    );
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let started = Instant::now();
    let body = loop {
        let out = Command::new("curl")
            .args([
                "-s",
                "--max-time",
                "1",
                &format!("http://127.0.0.1:{port}/health"),
            ])
            .output()
            .expect("curl");
        if out.status.success() && !out.stdout.is_empty() {
            break String::from_utf8_lossy(&out.stdout).into_owned();
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no /health through the published port"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(body.contains("\"ec2_instance_id\""), "{body}");

    let stop_started = Instant::now();
    let stop = podman(root, &["stop", "--time", "20", &name]);
    let took = stop_started.elapsed();
    assert!(
        stop.status.success(),
        "{}",
        String::from_utf8_lossy(&stop.stderr)
    );
    let inspect = podman(root, &["inspect", "--format", "{{.State.ExitCode}}", &name]);
    let code = String::from_utf8_lossy(&inspect.stdout).trim().to_owned();
    podman(root, &["rm", "-f", &name]);
    println!("podman stop took {took:?}; exit code {code}");
    assert!(
        code == "0" || code == "143",
        "exit code {code} (137 means SIGTERM was ignored)"
    );
    assert!(
        took < Duration::from_secs(10),
        "SIGTERM ignored? stop took {took:?}"
    );
}
