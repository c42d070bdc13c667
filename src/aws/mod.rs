//! The outside world on AWS, without an SDK: SigV4 signing (pure), credentials, the instance
//! metadata service, the Elastic Load Balancing and EC2 query APIs, and ECS for the instance
//! under a task.

pub mod credentials;
pub mod ec2;
pub mod ecs;
pub mod elb;
pub mod endpoint;
pub mod imds;
pub mod instance;
pub mod paging;
pub mod query;
mod signed;
pub mod sigv4;
pub mod xml;

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::settings::{boolean, invalid, ConfigError, Variable};

use self::credentials::CredentialSettings;
use self::endpoint::ServiceEndpoint;

const fn sdk(name: &'static str, default: &'static str, meaning: &'static str) -> Variable {
    Variable {
        name,
        default,
        meaning,
    }
}

const REGION: &str = "region of the APIs, as the AWS SDKs read it";
const STATIC: &str = "credentials, first in the chain";
const CONTAINER: &str = "ECS task role credentials, second in the chain";
const ENDPOINT: &str = "endpoint of every AWS API below, for VPC endpoints and tests";
const SERVICE_ENDPOINT: &str = "endpoint of this one API; wins over AWS_ENDPOINT_URL";
const SERVICE_DEFAULT: &str = "as AWS_ENDPOINT_URL";

/// The variables read by this module and by `credentials`, as the AWS SDKs read them, for
/// `hello --help`. The defaults are the README's words where no value stands for them.
pub const VARIABLES: &[Variable] = &[
    sdk("AWS_REGION", "from instance metadata", REGION),
    sdk("AWS_DEFAULT_REGION", "from instance metadata", REGION),
    sdk("AWS_ACCESS_KEY_ID", "", STATIC),
    sdk("AWS_SECRET_ACCESS_KEY", "", STATIC),
    sdk("AWS_SESSION_TOKEN", "", STATIC),
    sdk("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "", CONTAINER),
    sdk("AWS_CONTAINER_CREDENTIALS_FULL_URI", "", CONTAINER),
    sdk("AWS_CONTAINER_AUTHORIZATION_TOKEN", "", CONTAINER),
    sdk("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "", CONTAINER),
    IMDS_ENDPOINT,
    IMDS_DISABLED,
    sdk("AWS_ENDPOINT_URL", "regional endpoints", ENDPOINT),
    sdk(
        "AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING",
        SERVICE_DEFAULT,
        SERVICE_ENDPOINT,
    ),
    sdk("AWS_ENDPOINT_URL_EC2", SERVICE_DEFAULT, SERVICE_ENDPOINT),
    sdk("AWS_ENDPOINT_URL_ECS", SERVICE_DEFAULT, SERVICE_ENDPOINT),
    sdk(
        ecs::METADATA_FILE,
        "",
        "set by the ECS agent: the instance id is asked from ECS (DescribeContainerInstances), \
         not from instance metadata",
    ),
];
const IMDS_ENDPOINT: Variable = sdk(
    "AWS_EC2_METADATA_SERVICE_ENDPOINT",
    imds::DEFAULT_ENDPOINT,
    "instance metadata (instance id, region, instance profile: third in the chain)",
);
const IMDS_DISABLED: Variable = sdk(
    "AWS_EC2_METADATA_DISABLED",
    "false",
    "true: no instance metadata calls",
);

/// Where the AWS APIs are, as the AWS SDKs read it from the environment. Credentials are read
/// by `credentials` itself, so that they never sit in this struct.
#[derive(Debug)]
pub struct AwsSettings {
    /// `AWS_REGION` (or `AWS_DEFAULT_REGION`); otherwise asked from instance metadata.
    pub region: Option<String>,
    pub elb_endpoint: Option<ServiceEndpoint>,
    pub ec2_endpoint: Option<ServiceEndpoint>,
    pub ecs_endpoint: Option<ServiceEndpoint>,
    /// `None` when `DEBUG=true` or `AWS_EC2_METADATA_DISABLED=true`.
    pub imds_endpoint: Option<String>,
    /// Where credentials come from.
    pub credentials: CredentialSettings,
    /// The ECS agent's container metadata file (`ECS_CONTAINER_METADATA_FILE`), which leads to
    /// the instance under the task; `None` off ECS and in local mode.
    pub ecs_metadata_file: Option<PathBuf>,
}

impl AwsSettings {
    /// `get` returns a variable's value when it is set and not blank; `debug` (local mode)
    /// leaves instance metadata alone.
    pub fn from_env(
        get: &impl Fn(&str) -> Option<String>,
        debug: bool,
    ) -> Result<AwsSettings, ConfigError> {
        let endpoint = |variable: &'static str| -> Result<Option<ServiceEndpoint>, ConfigError> {
            get(variable)
                .or_else(|| get("AWS_ENDPOINT_URL"))
                .map(|url| ServiceEndpoint::parse(url.trim()))
                .transpose()
                .map_err(|why| invalid(variable, format!("an http:// or https:// URL ({why})")))
        };
        let metadata_disabled = boolean(get, &IMDS_DISABLED)?;
        let imds_endpoint = match get(IMDS_ENDPOINT.name) {
            Some(url) if !url.starts_with("http://") && !url.starts_with("https://") => {
                return Err(invalid(IMDS_ENDPOINT.name, "an http:// or https:// URL"))
            }
            Some(url) => url.trim().to_owned(),
            None => IMDS_ENDPOINT.default.to_owned(),
        };
        Ok(AwsSettings {
            region: get("AWS_REGION")
                .or_else(|| get("AWS_DEFAULT_REGION"))
                .map(|r| r.trim().to_owned()),
            elb_endpoint: endpoint("AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING")?,
            ec2_endpoint: endpoint("AWS_ENDPOINT_URL_EC2")?,
            ecs_endpoint: endpoint("AWS_ENDPOINT_URL_ECS")?,
            imds_endpoint: (!debug && !metadata_disabled).then_some(imds_endpoint),
            credentials: CredentialSettings::from_env(get),
            ecs_metadata_file: get(ecs::METADATA_FILE)
                .filter(|_| !debug)
                .map(PathBuf::from),
        })
    }
}

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

impl AwsError {
    /// An error answer whose body does not say what went wrong in AWS's words: named by its
    /// status, with the start of the body.
    fn unexplained(status: u16, text: &str) -> AwsError {
        AwsError::Api {
            status,
            code: format!("HTTP{status}"),
            message: text.chars().take(200).collect(),
        }
    }

    /// Whether asking again later may well succeed: AWS throttling (`Throttling` and
    /// `RequestLimitExceeded` in the Query APIs, `ThrottlingException` in JSON ones such as
    /// ECS's), a 5xx, no answer at all, or credentials that could not be fetched. A refused
    /// signature, a missing permission or an unreadable answer will be the same next time.
    pub fn is_retry_later(&self) -> bool {
        match self {
            AwsError::Api { status, code, .. } => {
                *status >= 500
                    || matches!(
                        code.as_str(),
                        "Throttling" | "RequestLimitExceeded" | "ThrottlingException"
                    )
            }
            AwsError::Transport(_) | AwsError::Credentials(_) => true,
            AwsError::Malformed(_) => false,
        }
    }
}

impl std::error::Error for AwsError {}

/// A blocking HTTP agent that hands back 4xx/5xx answers as answers (AWS explains its errors
/// in the body). It bounds connecting only: each call gets its own total with [`within`].
pub fn agent(connect: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_connect(Some(connect))
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into()
}

/// Gives a call the time left until `deadline`, at most `cap`, so that calls made one after
/// another share one budget instead of each having a whole one. With no time left the call is
/// not made, and the error names `what` was not asked.
pub fn within<B>(
    request: ureq::RequestBuilder<B>,
    deadline: Instant,
    cap: Duration,
    what: &str,
) -> Result<ureq::RequestBuilder<B>, AwsError> {
    let left = deadline.saturating_duration_since(Instant::now()).min(cap);
    if left.is_zero() {
        return Err(AwsError::Transport(format!("{what}: no time left to ask")));
    }
    Ok(request.config().timeout_global(Some(left)).build())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn imds(url: &str) -> Result<Option<String>, ConfigError> {
        let get = |name: &str| (name == IMDS_ENDPOINT.name).then(|| url.to_owned());
        AwsSettings::from_env(&get, false).map(|s| s.imds_endpoint)
    }

    #[test]
    fn the_metadata_endpoint_takes_either_scheme_and_says_so_when_refused() {
        assert_eq!(
            imds("http://169.254.169.254").unwrap().unwrap(),
            "http://169.254.169.254"
        );
        assert_eq!(
            imds("https://imds.test").unwrap().unwrap(),
            "https://imds.test"
        );
        let refused = imds("imds.test:80").unwrap_err();
        assert_eq!(refused.variable, "AWS_EC2_METADATA_SERVICE_ENDPOINT");
        assert_eq!(refused.expected, "an http:// or https:// URL");
    }
}
