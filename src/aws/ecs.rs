//! The EC2 instance under an ECS task, without instance metadata. The stack keeps containers
//! away from instance metadata (hop limit 1: the instance profile's credentials are the ECS
//! agent's, not the task's), so a task learns its instance from ECS instead: the container
//! metadata file the ECS agent writes (`ECS_CONTAINER_METADATA_FILE`) names the cluster and the
//! container instance, and `ecs:DescribeContainerInstances` (AWS JSON 1.1, SigV4) names that
//! container instance's EC2 instance.

use std::path::Path;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::credentials::{Provider, Source};
use super::endpoint::ServiceEndpoint;
use super::signed::Signer;
use super::{agent, AwsError};

/// Set by the ECS agent (with `ECS_ENABLE_CONTAINER_METADATA=true`) to the file's path.
pub const METADATA_FILE: &str = "ECS_CONTAINER_METADATA_FILE";
const CONTENT_TYPE: &str = "application/x-amz-json-1.1";
const TARGET_PREFIX: &str = "AmazonEC2ContainerServiceV20141113";
/// How long the metadata file may take to become `READY`; the agent needs about a second.
const READY_WITHIN: Duration = Duration::from_secs(30);
/// Pauses between attempts at the API while it fails in a way that may pass (throttling, no
/// network yet): 1, 2, 4, 8, 16 s, then give up.
const FIRST_PAUSE: Duration = Duration::from_secs(1);
const LAST_PAUSE: Duration = Duration::from_secs(16);

/// The EC2 instance id of the container instance that the metadata file at `path` names, asked
/// from ECS at `endpoint` (by default the regional one of the instance's ARN) with credentials
/// from `source`. Blocks for up to a minute: call it off the serving threads.
pub fn instance_id_from_metadata(
    path: &Path,
    endpoint: Option<ServiceEndpoint>,
    source: Source,
) -> Result<String, String> {
    let waited = Instant::now();
    let instance = loop {
        let read = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: {e}", path.display()))
            .and_then(|text| container_instance(&text).map_err(|e| e.to_string()));
        match read {
            Ok(Some(instance)) => break instance,
            Ok(None) | Err(_) if waited.elapsed() < READY_WITHIN => {
                thread::sleep(Duration::from_millis(250))
            }
            Ok(None) => {
                return Err(format!(
                    "{} is not READY after {READY_WITHIN:?}",
                    path.display()
                ))
            }
            Err(e) => return Err(e),
        }
    };
    let region = instance
        .region()
        .ok_or_else(|| format!("no region in the ARN {:?}", instance.arn))?;
    let endpoint = match endpoint {
        Some(e) => e,
        None => ServiceEndpoint::parse(&format!("https://ecs.{region}.amazonaws.com"))?,
    };
    let client = EcsClient::new(endpoint, region, Arc::new(Provider::new(source)));
    let mut pause = FIRST_PAUSE;
    loop {
        match client.ec2_instance_id(&instance, Instant::now() + Duration::from_secs(5)) {
            Err(e) if e.is_retry_later() && pause <= LAST_PAUSE => {
                thread::sleep(pause);
                pause *= 2;
            }
            answer => return answer.map_err(|e| e.to_string()),
        }
    }
}

/// The container instance that runs this task.
#[derive(Debug, PartialEq, Eq)]
pub struct ContainerInstance {
    /// The cluster's name or ARN, as the file gives it (the API takes either).
    pub cluster: String,
    pub arn: String,
}

impl ContainerInstance {
    /// The region, from the ARN (`arn:aws:ecs:<region>:…`).
    pub fn region(&self) -> Option<&str> {
        self.arn.split(':').nth(3).filter(|r| !r.is_empty())
    }
}

/// The container metadata file's instance, or `None` while the agent has not marked the file
/// `READY` (it writes a partial file first, then completes it within about a second).
pub fn container_instance(metadata: &str) -> Result<Option<ContainerInstance>, AwsError> {
    let value: Value = serde_json::from_str(metadata)
        .map_err(|e| AwsError::Malformed(format!("container metadata file: {e}")))?;
    if value["MetadataFileStatus"] != "READY" {
        return Ok(None);
    }
    let field = |name: &str| {
        value[name]
            .as_str()
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| AwsError::Malformed(format!("container metadata file has no {name}")))
    };
    Ok(Some(ContainerInstance {
        cluster: field("Cluster")?,
        arn: field("ContainerInstanceARN")?,
    }))
}

/// The ECS API at one endpoint.
pub struct EcsClient {
    endpoint: ServiceEndpoint,
    region: String,
    credentials: Arc<Provider>,
    agent: ureq::Agent,
}

impl EcsClient {
    pub fn new(endpoint: ServiceEndpoint, region: &str, credentials: Arc<Provider>) -> EcsClient {
        EcsClient {
            endpoint,
            region: region.to_owned(),
            credentials,
            agent: agent(Duration::from_secs(2)),
        }
    }

    /// The EC2 instance id of `instance`.
    pub fn ec2_instance_id(
        &self,
        instance: &ContainerInstance,
        deadline: Instant,
    ) -> Result<String, AwsError> {
        let body = json!({"cluster": instance.cluster, "containerInstances": [instance.arn]});
        let answer = self.call("DescribeContainerInstances", &body.to_string(), deadline)?;
        instance_id(&answer)
    }

    fn call(&self, action: &str, body: &str, deadline: Instant) -> Result<String, AwsError> {
        let target = format!("{TARGET_PREFIX}.{action}");
        let signer = Signer {
            endpoint: &self.endpoint,
            region: &self.region,
            service: "ecs",
            credentials: &self.credentials,
            agent: &self.agent,
        };
        let what = format!("ecs {action}");
        let extra = [("x-amz-target", target.as_str())];
        let (status, text) = signer.post(CONTENT_TYPE, &extra, body.as_bytes(), &what, deadline)?;
        if status != 200 {
            return Err(json_error(status, &text));
        }
        Ok(text)
    }
}

/// `containerInstances[0].ec2InstanceId` of a `DescribeContainerInstances` answer; a listed
/// failure (e.g. `MISSING`) is the error.
pub fn instance_id(answer: &str) -> Result<String, AwsError> {
    let value: Value = serde_json::from_str(answer)
        .map_err(|e| AwsError::Malformed(format!("DescribeContainerInstances: {e}")))?;
    if let Some(id) = value["containerInstances"][0]["ec2InstanceId"].as_str() {
        return Ok(id.to_owned());
    }
    let failure = &value["failures"][0];
    Err(AwsError::Malformed(match failure["reason"].as_str() {
        Some(reason) => format!(
            "DescribeContainerInstances: {reason} {}",
            failure["arn"].as_str().unwrap_or("")
        ),
        None => "DescribeContainerInstances: no container instance in the answer".to_owned(),
    }))
}

/// An AWS JSON protocol error: `{"__type": "[namespace#]Code", "message": "…"}`.
fn json_error(status: u16, text: &str) -> AwsError {
    let value: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    match value["__type"].as_str() {
        Some(kind) => AwsError::Api {
            status,
            code: kind.rsplit('#').next().unwrap_or(kind).to_owned(),
            message: value["message"]
                .as_str()
                .or(value["Message"].as_str())
                .unwrap_or("")
                .to_owned(),
        },
        None => AwsError::unexplained(status, text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const READY: &str = r#"{"Cluster": "arn:aws:ecs:eu-west-1:123456789012:cluster/hello",
        "ContainerInstanceARN": "arn:aws:ecs:eu-west-1:123456789012:container-instance/hello/1f7f",
        "TaskARN": "arn:aws:ecs:eu-west-1:123456789012:task/hello/9c1d",
        "MetadataFileStatus": "READY"}"#;

    #[test]
    fn the_metadata_file_names_the_container_instance_once_ready() {
        let instance = container_instance(READY).unwrap().unwrap();
        assert_eq!(
            instance.cluster,
            "arn:aws:ecs:eu-west-1:123456789012:cluster/hello"
        );
        assert!(instance.arn.ends_with("container-instance/hello/1f7f"));
        assert_eq!(instance.region(), Some("eu-west-1"));
        // The agent's first, partial file.
        let partial =
            r#"{"Cluster": "hello", "TaskARN": "arn:aws:ecs:eu-west-1:1:task/hello/9c1d"}"#;
        assert_eq!(container_instance(partial).unwrap(), None);
        let without = READY.replace("ContainerInstanceARN", "Other");
        assert_eq!(
            container_instance(&without).unwrap_err().to_string(),
            "unexpected answer from AWS: container metadata file has no ContainerInstanceARN"
        );
        assert!(container_instance("{").is_err());
    }

    #[test]
    fn the_answer_names_the_instance_or_the_failure() {
        let found = r#"{"containerInstances": [{"ec2InstanceId": "i-0abc", "status": "ACTIVE"}],
            "failures": []}"#;
        assert_eq!(instance_id(found).unwrap(), "i-0abc");
        let missing = r#"{"containerInstances": [],
            "failures": [{"arn": "arn:aws:ecs:eu-west-1:1:container-instance/hello/x", "reason": "MISSING"}]}"#;
        assert_eq!(
            instance_id(missing).unwrap_err().to_string(),
            "unexpected answer from AWS: DescribeContainerInstances: MISSING arn:aws:ecs:eu-west-1:1:container-instance/hello/x"
        );
    }

    #[test]
    fn json_errors_keep_the_code_without_its_namespace() {
        let error = json_error(
            400,
            r#"{"__type": "com.amazonaws.ecs#AccessDeniedException", "message": "not allowed"}"#,
        );
        assert_eq!(
            error,
            AwsError::Api {
                status: 400,
                code: "AccessDeniedException".into(),
                message: "not allowed".into()
            }
        );
        assert!(
            matches!(json_error(502, "<html>"), AwsError::Api { code, .. } if code == "HTTP502")
        );
    }

    #[test]
    fn throttling_is_worth_asking_again_and_a_refusal_is_not() {
        let throttled = json_error(
            400,
            r#"{"__type": "ThrottlingException", "message": "Rate exceeded"}"#,
        );
        assert!(throttled.is_retry_later(), "{throttled:?}");
        let denied = json_error(400, r#"{"__type": "AccessDeniedException"}"#);
        assert!(!denied.is_retry_later(), "{denied:?}");
    }
}
