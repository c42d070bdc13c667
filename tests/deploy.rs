//! The release script against the moto emulator's ECR, ECS and STS: it registers a new task
//! definition revision with the new image and points the service at it. No container registry
//! exists here, so image build, login and push go to a stub that records them (the only stub).

mod common;

use std::path::Path;
use std::process::Command;

use common::aws::{venv_bin, Moto};

fn task(moto: &Moto) -> serde_json::Value {
    moto.script(&["service-task", "hello", "hello"])
}

#[test]
fn deploy_registers_a_revision_and_updates_the_service() {
    let moto = Moto::start_with(&[("MOTO_ECS_SERVICE_RUNNING", "1")]);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let made = moto.script(&[
        "ecs-service",
        root.join("task_revision_example.json").to_str().unwrap(),
    ]);
    assert_eq!(task(&moto)["revision"], 1);

    let work = std::env::temp_dir().join(format!("hello-deploy-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    // Terraform changes the task definition (a new variable): it registers revision 2, which
    // the service does not run yet.
    let mut changed: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("task_revision_example.json")).unwrap(),
    )
    .unwrap();
    changed["containerDefinitions"][0]["environment"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"name": "ADDED_BY_TERRAFORM", "value": "yes"}));
    let changed_file = work.join("changed.json");
    std::fs::write(&changed_file, changed.to_string()).unwrap();
    let registered = moto.script(&["register-task", changed_file.to_str().unwrap()]);
    assert_eq!(registered["revision"], 2);
    assert_eq!(task(&moto)["revision"], 1);

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
    let stub = work.join("container-tool");
    std::fs::write(
        &stub,
        format!(
            "#!/bin/sh\n[ \"$1\" = login ] && cat >/dev/null\necho \"$@\" >> {}\n",
            record.display()
        ),
    )
    .unwrap();
    Command::new("chmod").arg("+x").arg(&stub).status().unwrap();

    // A docker client whose engine does not answer, and podman: the builder must be podman,
    // as `make image` would choose (scripts/lib.sh's container_tool, shared by both).
    let fakes = work.join("bin");
    std::fs::create_dir_all(&fakes).unwrap();
    for (name, script) in [("docker", "exit 1"), ("podman", "exit 0")] {
        std::fs::write(fakes.join(name), format!("#!/bin/sh\n{script}\n")).unwrap();
        Command::new("chmod")
            .arg("+x")
            .arg(fakes.join(name))
            .status()
            .unwrap();
    }
    let run = |args: &[&str], outputs: &Path, tool: Option<&Path>| {
        let path = format!(
            "{}:{}:{}",
            fakes.display(),
            Path::new(&venv_bin("aws")).parent().unwrap().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut command = Command::new(root.join("scripts/deploy.sh"));
        command
            .args(args)
            .env("PATH", path)
            .env("TF_OUTPUT_JSON", outputs)
            .env("IMAGE_TAG", "rev-abc123")
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .env("AWS_ENDPOINT_URL", &moto.url)
            .env("AWS_ACCESS_KEY_ID", &moto.key)
            .env("AWS_SECRET_ACCESS_KEY", &moto.secret);
        match tool {
            Some(tool) => command.env("CONTAINER_TOOL", tool),
            None => command.env_remove("CONTAINER_TOOL"),
        };
        command.output().expect("run scripts/deploy.sh")
    };
    let deploy = |args: &[&str]| run(args, &outputs_file, Some(&stub));

    // An arm64 stack: the arm64 binary and image, with podman chosen as above.
    let mut arm64 = outputs.clone();
    arm64["architecture"] = serde_json::json!({"value": "arm64"});
    let arm64_file = work.join("outputs-arm64.json");
    std::fs::write(&arm64_file, arm64.to_string()).unwrap();
    let dry = run(&["--dry-run"], &arm64_file, None);
    let stdout = String::from_utf8_lossy(&dry.stdout);
    assert!(
        dry.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&dry.stderr)
    );
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

    let dry = deploy(&["--dry-run"]);
    let stdout = String::from_utf8_lossy(&dry.stdout);
    assert!(
        dry.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    assert!(stdout.contains("dry run: nothing changed"));
    assert_eq!(task(&moto)["revision"], 1, "a dry run changed the service");
    assert!(stdout.contains("from arn:aws:ecs:us-east-1:"), "{stdout}");
    assert!(
        stdout.contains("task-definition/hello:2 (the service runs"),
        "{stdout}"
    );
    assert!(!record.exists(), "a dry run ran the container tool");
    // It shows the task definition it would register: Terraform's latest, with the new image.
    assert!(stdout.contains("\"ADDED_BY_TERRAFORM\""), "{stdout}");
    assert!(stdout.contains(":rev-abc123\""), "{stdout}");

    let out = deploy(&[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let now = task(&moto);
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
    let image = format!("{}:rev-abc123", made["repository"].as_str().unwrap());
    assert_eq!(now["image"], image.as_str());
    // The secret reference survives the re-registration.
    assert_eq!(now["secrets"][0]["name"], "REDIS_URL");
    let recorded = std::fs::read_to_string(&record).unwrap();
    assert!(
        recorded.contains(&format!(
            "build --build-arg SOURCE_DATE_EPOCH=1700000000 --platform linux/amd64 \
             --build-arg BASE=alpine:3.23 \
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
    std::fs::write(&outputs_file, "{}").unwrap();
    let failed = deploy(&[]);
    assert!(!failed.status.success());
    assert!(
        String::from_utf8_lossy(&failed.stderr).contains("the outputs have no ecr_repository_url")
    );
    let _ = std::fs::remove_dir_all(&work);
}
