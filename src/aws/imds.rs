//! The EC2 instance metadata service: IMDSv2 (a session token from `PUT /latest/api/token`,
//! sent with every `GET`), falling back to IMDSv1 only when the token call is refused.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{agent, body_text, within, AwsError};
use crate::sync;

pub const DEFAULT_ENDPOINT: &str = "http://169.254.169.254";
/// Token lifetime asked for; it is renewed a minute before.
const TOKEN_TTL: Duration = Duration::from_secs(21_600);
/// Most time one call may take: off EC2 the service is simply not there, and callers must learn
/// that quickly.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

pub struct Imds {
    endpoint: String,
    agent: ureq::Agent,
    /// `Some(None)`: the token call was refused, so IMDSv1 is used.
    token: Mutex<Option<(Option<String>, Instant)>>,
}

impl Imds {
    pub fn new(endpoint: &str) -> Imds {
        Imds {
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            agent: agent(Duration::from_millis(500)),
            token: Mutex::new(None),
        }
    }

    /// `path`'s content; the token call and this one share the time until `deadline` (each at
    /// most `CALL_TIMEOUT`).
    pub fn get(&self, path: &str, deadline: Instant) -> Result<String, AwsError> {
        let token = self.token(deadline)?;
        let mut request = within(
            self.agent.get(format!("{}{path}", self.endpoint)),
            deadline,
            CALL_TIMEOUT,
            "instance metadata",
        )?;
        if let Some(t) = &token {
            request = request.header("X-aws-ec2-metadata-token", t);
        }
        let response = request
            .call()
            .map_err(|e| AwsError::Transport(format!("instance metadata: {e}")))?;
        let (status, body) = body_text(response)?;
        if status == 401 {
            // The token expired early (e.g. the instance was stopped): forget it.
            *sync::lock(&self.token) = None;
        }
        if status != 200 {
            return Err(AwsError::Transport(format!(
                "instance metadata {path} answered {status}"
            )));
        }
        Ok(body)
    }

    pub fn instance_id(&self) -> Result<String, AwsError> {
        let id = self.get(
            "/latest/meta-data/instance-id",
            Instant::now() + CALL_TIMEOUT,
        )?;
        Ok(id.trim().to_owned())
    }

    /// The region, from the instance identity document.
    pub fn region(&self) -> Result<String, AwsError> {
        let doc = self.get(
            "/latest/dynamic/instance-identity/document",
            Instant::now() + CALL_TIMEOUT,
        )?;
        let value: serde_json::Value = serde_json::from_str(&doc)
            .map_err(|e| AwsError::Malformed(format!("instance identity document: {e}")))?;
        value["region"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| AwsError::Malformed("instance identity document has no region".into()))
    }

    fn token(&self, deadline: Instant) -> Result<Option<String>, AwsError> {
        let mut cached = sync::lock(&self.token);
        if let Some((token, until)) = cached.as_ref() {
            if Instant::now() < *until {
                return Ok(token.clone());
            }
        }
        let put = self
            .agent
            .put(format!("{}/latest/api/token", self.endpoint));
        let response = within(put, deadline, CALL_TIMEOUT, "instance metadata token")?
            .header(
                "X-aws-ec2-metadata-token-ttl-seconds",
                TOKEN_TTL.as_secs().to_string(),
            )
            .send_empty()
            .map_err(|e| AwsError::Transport(format!("instance metadata token: {e}")))?;
        let (status, body) = body_text(response)?;
        let token = match status {
            200 => Some(body.trim().to_owned()),
            // Refused (e.g. an old or proxied service): IMDSv1.
            403..=405 => None,
            other => {
                return Err(AwsError::Transport(format!(
                    "instance metadata token call answered {other}"
                )))
            }
        };
        *cached = Some((
            token.clone(),
            Instant::now() + TOKEN_TTL - Duration::from_secs(60),
        ));
        Ok(token)
    }
}
