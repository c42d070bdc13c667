//! The release script against the moto emulator's ECR, ECS and STS: it pushes, waits for the
//! image's scan and refuses critical findings, registers a new task definition revision (with
//! the family's tags, naming the image by digest), points the service at it, and fails when
//! ECS rolled the release back. Two stubs, where nothing real exists here:
//! - the container tool: no container registry exists, so image build, login and push go to a
//!   script that records them; its push puts an image into moto's ECR and begins its scan, as
//!   a push to a repository with scan on push does;
//! - `aws ecs describe-services` (tests/aws/ecs_rollout.py): moto never moves a service's
//!   deployments, so the stub rewrites them as ECS reports a completed or a rolled-back
//!   release; every other `aws` call reaches moto through the real CLI.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::aws::{venv_bin, Moto};

/// A service in moto on `task_revision_example.json` (revision 1), its ECR repository, and the
/// stubs and outputs file `scripts/deploy.sh` needs, in a directory of the test's own.
struct Stack {
    moto: Moto,
    root: &'static Path,
    work: PathBuf,
    fakes: PathBuf,
    outputs: serde_json::Value,
    outputs_file: PathBuf,
    /// What the container tool was asked to do, one call a line.
    record: PathBuf,
    tool: PathBuf,
    repository: String,
    /// The task definition the service was created with.
    first_revision: String,
}

fn executable(path: &Path, script: &str) {
    std::fs::write(path, script).unwrap();
    Command::new("chmod").arg("+x").arg(path).status().unwrap();
}

impl Stack {
    fn new(name: &str) -> Stack {
        let moto = Moto::start_with(&[("MOTO_ECS_SERVICE_RUNNING", "1")]);
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let made = moto.script(&[
            "ecs-service",
            root.join("task_revision_example.json").to_str().unwrap(),
        ]);
        let work = std::env::temp_dir().join(format!("hello-deploy-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(&work).unwrap();

        let outputs = serde_json::json!({
            "ecr_repository_url": {"value": made["repository"]},
            "cluster_name": {"value": "hello"},
            "service_name": {"value": "hello"},
            "task_family": {"value": "hello"},
            "region": {"value": "us-east-1"},
        });
        let outputs_file = work.join("outputs.json");
        std::fs::write(&outputs_file, outputs.to_string()).unwrap();

        let record = work.join("container-tool.log");
        let tool = work.join("container-tool");
        executable(
            &tool,
            &format!(
                "#!/bin/sh\n[ \"$1\" = login ] && cat >/dev/null\necho \"$@\" >> {record}\n\
                 if [ \"$1\" = push ]; then\n  \
                 MOTO_URL=\"$AWS_ENDPOINT_URL\" {python} {moto} put-image hello \"${{2##*:}}\" >/dev/null\n\
                 fi\n",
                record = record.display(),
                python = venv_bin("python"),
                moto = root.join("tests/aws/moto.py").display(),
            ),
        );

        // A docker client whose engine does not answer, and podman: the builder must be podman,
        // as `make image` would choose (scripts/lib.sh's container_tool, shared by both). And
        // `aws`, the rollout stub in front of the real CLI.
        let fakes = work.join("bin");
        std::fs::create_dir_all(&fakes).unwrap();
        for (name, script) in [("docker", "exit 1"), ("podman", "exit 0")] {
            executable(&fakes.join(name), &format!("#!/bin/sh\n{script}\n"));
        }
        executable(
            &fakes.join("aws"),
            &format!(
                "#!/bin/sh\nexec {} {} \"$@\"\n",
                venv_bin("python"),
                root.join("tests/aws/ecs_rollout.py").display()
            ),
        );
        Stack {
            moto,
            root,
            work,
            fakes,
            outputs,
            outputs_file,
            record,
            tool,
            repository: made["repository"].as_str().unwrap().to_owned(),
            first_revision: made["task_definition"].as_str().unwrap().to_owned(),
        }
    }

    /// The task definition the service runs.
    fn task(&self) -> serde_json::Value {
        self.moto.script(&["service-task", "hello", "hello"])
    }

    /// `scripts/deploy.sh args`, with `outputs`, the container tool `tool` (None: chosen by
    /// the script), ECS reporting the release as `rollout` (see tests/aws/ecs_rollout.py) and
    /// `env` besides.
    fn run(
        &self,
        args: &[&str],
        outputs: &Path,
        tool: Option<&Path>,
        rollout: &str,
        env: &[(&str, &str)],
    ) -> Output {
        let path = format!(
            "{}:{}:{}",
            self.fakes.display(),
            Path::new(&venv_bin("aws")).parent().unwrap().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut command = Command::new(self.root.join("scripts/deploy.sh"));
        command
            .args(args)
            .env("PATH", path)
            .env("TF_OUTPUT_JSON", outputs)
            .env("IMAGE_TAG", "rev-abc123")
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .env("SCAN_TIMEOUT", "20")
            .env("AWS_ENDPOINT_URL", &self.moto.url)
            .env("AWS_ACCESS_KEY_ID", &self.moto.key)
            .env("AWS_SECRET_ACCESS_KEY", &self.moto.secret)
            .env("REAL_AWS", venv_bin("aws"))
            .env("ROLLOUT", rollout)
            .env("ROLLOUT_PREVIOUS", &self.first_revision)
            .env_remove("ALLOW_CRITICAL_FINDINGS")
            .env_remove("IMAGE_BASE")
            .envs(env.iter().copied());
        match tool {
            Some(tool) => command.env("CONTAINER_TOOL", tool),
            None => command.env_remove("CONTAINER_TOOL"),
        };
        command.output().expect("run scripts/deploy.sh")
    }

    /// A release with the recording container tool.
    fn deploy(&self, args: &[&str], rollout: &str, env: &[(&str, &str)]) -> Output {
        self.run(args, &self.outputs_file, Some(&self.tool), rollout, env)
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.work);
    }
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn deploy_registers_a_revision_and_updates_the_service() {
    let stack = Stack::new("release");
    let first = stack.task();
    assert_eq!(first["revision"], 1);
    // Terraform changes the task definition (a new variable): it registers revision 2, which
    // the service does not run yet.
    let mut changed: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(stack.root.join("task_revision_example.json")).unwrap(),
    )
    .unwrap();
    changed["containerDefinitions"][0]["environment"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"name": "ADDED_BY_TERRAFORM", "value": "yes"}));
    let changed_file = stack.work.join("changed.json");
    std::fs::write(&changed_file, changed.to_string()).unwrap();
    let registered = stack
        .moto
        .script(&["register-task", changed_file.to_str().unwrap()]);
    assert_eq!(registered["revision"], 2);
    assert_eq!(stack.task()["revision"], 1);

    // An arm64 stack: the arm64 binary and image, with podman chosen as above.
    let mut arm64 = stack.outputs.clone();
    arm64["architecture"] = serde_json::json!({"value": "arm64"});
    let arm64_file = stack.work.join("outputs-arm64.json");
    std::fs::write(&arm64_file, arm64.to_string()).unwrap();
    let dry = stack.run(&["--dry-run"], &arm64_file, None, "completed", &[]);
    let (stdout, stderr) = text(&dry);
    assert!(dry.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("(dry run) make static-arm64"), "{stdout}");
    assert!(
        stdout.contains(
            "(dry run) podman build --format docker --timestamp 1700000000 --platform linux/arm64"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("BINARY=target/aarch64-unknown-linux-musl/release/hello"),
        "{stdout}"
    );

    let dry = stack.deploy(&["--dry-run"], "completed", &[]);
    let (stdout, stderr) = text(&dry);
    assert!(dry.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("dry run: nothing changed"));
    assert_eq!(stack.task()["revision"], 1, "a dry run changed the service");
    assert!(stdout.contains("from arn:aws:ecs:us-east-1:"), "{stdout}");
    assert!(
        stdout.contains("task-definition/hello:2 (the service runs"),
        "{stdout}"
    );
    assert!(!stack.record.exists(), "a dry run ran the container tool");
    // It shows the task definition it would register: Terraform's latest, with the new image.
    assert!(stdout.contains("\"ADDED_BY_TERRAFORM\""), "{stdout}");
    assert!(stdout.contains("@<digest>\""), "{stdout}");
    assert!(stdout.contains("rollout COMPLETED"), "{stdout}");

    let out = stack.deploy(&[], "completed", &[]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    let now = stack.task();
    assert_eq!(now["revision"], 3);
    // Built on the family's latest revision: Terraform's change reached the service.
    assert!(
        now["environment"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "ADDED_BY_TERRAFORM"),
        "{now}"
    );
    // The image by the digest ECR gave the pushed tag.
    let image = format!("{}:rev-abc123", stack.repository);
    let by_digest = now["image"].as_str().unwrap();
    let digest = by_digest
        .strip_prefix(&format!("{}@sha256:", stack.repository))
        .unwrap_or_else(|| panic!("not the repository's image by digest: {by_digest}"));
    assert_eq!(digest.len(), 64, "{by_digest}");
    assert!(
        stdout.contains(&format!("released {by_digest} as ")),
        "{stdout}"
    );
    // The secret reference, the limits and the tags survive the re-registration.
    assert_eq!(now["secrets"][0]["name"], "REDIS_URL");
    assert_eq!(now["ulimits"], first["ulimits"]);
    assert!(!first["tags"].as_array().unwrap().is_empty(), "{first}");
    assert_eq!(now["tags"], first["tags"], "the revision lost its tags");
    // moto's scan of an image reports one HIGH finding: not critical, released.
    assert!(stdout.contains("scan COMPLETE: 0 critical"), "{stdout}");
    let recorded = std::fs::read_to_string(&stack.record).unwrap();
    // No BASE argument: the Dockerfile's own, pinned by digest.
    assert!(
        recorded.contains(&format!(
            "build --build-arg SOURCE_DATE_EPOCH=1700000000 --platform linux/amd64 \
             --build-arg BINARY=target/x86_64-unknown-linux-musl/release/hello -t {image} ."
        )),
        "{recorded}"
    );
    assert!(recorded.contains(&format!("push {image}")), "{recorded}");
    assert!(
        recorded.contains("login --username AWS --password-stdin"),
        "{recorded}"
    );

    // A clear failure when the outputs are missing.
    std::fs::write(&stack.outputs_file, "{}").unwrap();
    let failed = stack.deploy(&[], "completed", &[]);
    assert!(!failed.status.success());
    assert!(
        String::from_utf8_lossy(&failed.stderr).contains("the outputs have no ecr_repository_url")
    );
}

#[test]
fn a_release_ecs_rolled_back_fails_and_says_why() {
    let stack = Stack::new("rollback");
    let out = stack.deploy(&[], "rolled-back", &[]);
    let (stdout, stderr) = text(&out);
    assert!(
        !out.status.success(),
        "a rolled-back release reported success: {stdout}{stderr}"
    );
    assert!(!stdout.contains("==> released"), "{stdout}");
    // What runs instead of what was registered, the rollout's reason, and the events.
    for wanted in [
        "deploy: ECS rolled the release back: the service runs hello:1, not hello:2, which this release registered",
        "ecs-svc/3333333333333333333 hello:2 ACTIVE, rollout FAILED: ECS deployment circuit breaker: tasks failed to start.",
        "ecs-svc/2222222222222222222 hello:1 PRIMARY, rollout COMPLETED",
        "(service hello) rolling back to deployment ecs-svc/2222222222222222222.",
        "(service hello) (deployment ecs-svc/3333333333333333333) deployment failed: tasks failed to start.",
        "deploy: not released:",
    ] {
        assert!(stderr.contains(wanted), "{wanted:?} not in:\n{stderr}");
    }
    // The release did happen as far as ECS was asked: revision 2 registered, service updated.
    assert_eq!(stack.task()["revision"], 2);
}

#[test]
fn critical_findings_stop_a_release_unless_allowed() {
    let stack = Stack::new("scan");
    stack
        .moto
        .script(&["scan-findings", "hello", "rev-abc123", "2"]);
    let out = stack.deploy(&[], "completed", &[]);
    let (stdout, stderr) = text(&out);
    assert!(
        !out.status.success(),
        "released with critical findings: {stdout}"
    );
    assert!(
        stderr.contains("ECR's scan found 2 CRITICAL finding(s)")
            && stderr.contains("CVE-2026-1000 CVE-2026-1001")
            && stderr.contains("--allow-critical"),
        "{stderr}"
    );
    // Stopped before ECS was touched.
    assert_eq!(stack.task()["revision"], 1);
    assert!(
        !stdout.contains("registering a task definition"),
        "{stdout}"
    );

    // Told otherwise, by the flag or by the environment (a new tag each: tags are immutable).
    for (tag, args, env) in [
        ("rev-abc124", &["--allow-critical"][..], &[][..]),
        (
            "rev-abc125",
            &[][..],
            &[("ALLOW_CRITICAL_FINDINGS", "1")][..],
        ),
    ] {
        stack.moto.script(&["scan-findings", "hello", tag, "1"]);
        let mut env = env.to_vec();
        env.push(("IMAGE_TAG", tag));
        let out = stack.deploy(args, "completed", &env);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{args:?} {env:?}: {stdout}{stderr}");
        assert!(
            stdout.contains("1 CRITICAL finding(s) (CVE-2026-1000); released anyway"),
            "{stdout}"
        );
    }
    assert_eq!(stack.task()["revision"], 3);
}

/// The release runs on a hosted CI from pinned inputs: every action pinned by commit, the
/// image's base by digest, the providers by the lock file; and it tests, scans, deploys with
/// the scan gate and the rollback check, never told to let critical findings through.
#[test]
fn releases_come_from_ci_with_pinned_inputs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let workflow = std::fs::read_to_string(root.join(".github/workflows/release.yml")).unwrap();
    let mut actions = 0;
    for line in workflow.lines() {
        let Some((_, used)) = line.split_once("uses:") else {
            continue;
        };
        actions += 1;
        let reference = used.split_whitespace().next().unwrap_or("");
        let commit = reference.rsplit_once('@').map_or("", |(_, c)| c);
        assert!(
            commit.len() == 40 && commit.bytes().all(|b| b.is_ascii_hexdigit()),
            "an action not pinned by commit: {line}"
        );
    }
    assert!(actions > 0);
    for wanted in [
        "run: make test",
        "cargo audit",
        "run: make deploy",
        "id-token: write",
        "needs: test",
        "-lockfile=readonly",
    ] {
        assert!(workflow.contains(wanted), "the workflow lacks {wanted:?}");
    }
    for unwanted in [
        "allow-critical",
        "ALLOW_CRITICAL_FINDINGS",
        "aws-access-key-id",
    ] {
        assert!(
            !workflow.contains(unwanted),
            "the workflow has {unwanted:?}"
        );
    }

    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).unwrap();
    let base = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("ARG BASE="))
        .expect("ARG BASE in the Dockerfile");
    let digest = base.split_once("@sha256:").map_or("", |(_, d)| d).trim();
    assert!(
        digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()),
        "the base is not pinned by digest: {base}"
    );
}
