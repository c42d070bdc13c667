//! On ECS the stack keeps containers away from instance metadata (hop limit 1), so a task learns
//! its EC2 instance from the ECS agent's container metadata file and
//! `ecs:DescribeContainerInstances`, here against the moto emulator (signatures checked).
//! Instance metadata points at a closed port throughout: the id cannot come from there.

mod common;

use std::path::Path;
use std::time::Duration;

use common::aws::Moto;
use common::{free_port, wait_until, Service};

fn metadata(arn: &str, status: &str) -> String {
    serde_json::json!({
        "Cluster": "hello",
        "ContainerInstanceARN": arn,
        "TaskARN": "arn:aws:ecs:us-east-1:123456789012:task/hello/0123456789abcdef",
        "MetadataFileStatus": status,
    })
    .to_string()
}

fn start(moto: &Moto, file: &Path) -> Service {
    let closed = format!("http://127.0.0.1:{}", free_port());
    Service::start(&[
        ("DEBUG", "false"),
        ("AWS_ENDPOINT_URL", &moto.url),
        ("AWS_ACCESS_KEY_ID", &moto.key),
        ("AWS_SECRET_ACCESS_KEY", &moto.secret),
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT", &closed),
        ("ECS_CONTAINER_METADATA_FILE", file.to_str().unwrap()),
    ])
}

fn instance_id(node: &Service) -> String {
    let health = node.get("/health");
    assert_eq!(health.status, 200, "{}", health.text());
    health.json()["ec2_instance_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn health_names_the_instance_that_ecs_names_for_the_container_instance() {
    let moto = Moto::start();
    let registered = moto.script(&["container-instance", "hello"]);
    let (arn, instance) = (
        registered["arn"].as_str().unwrap(),
        registered["instance"].as_str().unwrap(),
    );
    let file = std::env::temp_dir().join(format!("hello-ecs-metadata-{}", std::process::id()));

    // The agent writes a partial file first; the service waits for READY.
    std::fs::write(&file, metadata(arn, "NOT_READY")).unwrap();
    let node = start(&moto, &file);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(instance_id(&node), "local");
    std::fs::write(&file, metadata(arn, "READY")).unwrap();
    wait_until("the instance id from ECS", Duration::from_secs(10), || {
        instance_id(&node) == instance
    });
    assert!(node
        .logs()
        .contains(&format!("running on EC2 instance {instance} (from ECS)")));

    // A container instance ECS does not know: the id stays "local", and the log says why.
    let unknown = arn.replace(
        arn.rsplit('/').next().unwrap(),
        "00000000-0000-0000-0000-000000000000",
    );
    std::fs::write(&file, metadata(&unknown, "READY")).unwrap();
    let lost = start(&moto, &file);
    wait_until("the failure in the log", Duration::from_secs(10), || {
        lost.logs()
            .contains("cannot learn this task's EC2 instance from ECS")
    });
    assert!(lost.logs().contains("MISSING"), "{}", lost.logs());
    assert_eq!(instance_id(&lost), "local");
    let _ = std::fs::remove_file(&file);
}
