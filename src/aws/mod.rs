//! The outside world on AWS, without an SDK: SigV4 signing (pure), credentials, the instance
//! metadata service, and the Elastic Load Balancing and EC2 query APIs.

pub mod credentials;
pub mod ec2;
pub mod elb;
pub mod imds;
pub mod query;
pub mod sigv4;
pub mod xml;

use std::fmt;
use std::time::Duration;

/// Why a call to AWS (or to a metadata endpoint) failed. Messages never hold credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AwsError {
    /// The API answered with an error document, e.g. `Throttling` or `AccessDenied`.
    Api {
        status: u16,
        code: String,
        message: String,
    },
    /// No answer: connection refused, timed out, TLS failure.
    Transport(String),
    /// An answer that could not be understood.
    Malformed(String),
    /// No credentials could be found or fetched.
    Credentials(String),
}

impl fmt::Display for AwsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AwsError::Api {
                status,
                code,
                message,
            } => write!(f, "AWS answered {status} {code}: {message}"),
            AwsError::Transport(why) => write!(f, "could not reach AWS: {why}"),
            AwsError::Malformed(why) => write!(f, "unexpected answer from AWS: {why}"),
            AwsError::Credentials(why) => write!(f, "no AWS credentials: {why}"),
        }
    }
}

impl std::error::Error for AwsError {}

/// A blocking HTTP agent with a total timeout per call, that hands back 4xx/5xx answers as
/// answers (AWS explains its errors in the body).
pub fn agent(connect: Duration, total: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_connect(Some(connect))
        .timeout_global(Some(total))
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into()
}

/// Reads a response body as text, bounded.
fn body_text(response: ureq::http::Response<ureq::Body>) -> Result<(u16, String), AwsError> {
    let status = response.status().as_u16();
    let text = response
        .into_body()
        .with_config()
        .limit(4 * 1024 * 1024)
        .read_to_string()
        .map_err(|e| AwsError::Transport(e.to_string()))?;
    Ok((status, text))
}
