//! Credentials, from the first source that has them: environment variables, the ECS container
//! credentials endpoint, or the EC2 instance profile through the metadata service. Fetched
//! credentials are cached until five minutes before they expire; one refresh runs at a time.
//! When a refresh fails, the cached credentials stay in use (with a warning) until they really
//! expire.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::Deserialize;

use crate::secret::Secret;

use super::imds::Imds;
use super::{agent, body_text, within, AwsError};
use crate::sync;

/// How long before expiry cached credentials are replaced.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);
/// After a failed refresh, how long the cached credentials are used before the next attempt,
/// so that a source that is down or hangs does not cost every call its time.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);
const ECS_HOST: &str = "http://169.254.170.2";
/// Most time a call to the container endpoint may take.
const CONTAINER_TIMEOUT: Duration = Duration::from_secs(3);

pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub session_token: Option<Secret>,
    pub expires_at: Option<SystemTime>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Where the environment says credentials come from: read once at start-up (with the rest of
/// the configuration), in the AWS SDKs' order. The instance profile is the last resort, taken
/// when instance metadata may be asked.
#[derive(Clone, Debug)]
pub enum CredentialSettings {
    /// `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN`).
    Environment(Arc<Credentials>),
    /// ECS: `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` (on the agent's address) or `FULL_URI`,
    /// with `AWS_CONTAINER_AUTHORIZATION_TOKEN` (or the file `…_TOKEN_FILE` names) for the
    /// latter.
    Container {
        url: String,
        authorization: Option<Secret>,
    },
    InstanceProfile,
}

impl CredentialSettings {
    /// `get` returns a variable's value when it is set and not blank.
    pub fn from_env(get: &impl Fn(&str) -> Option<String>) -> CredentialSettings {
        if let (Some(id), Some(secret)) = (get("AWS_ACCESS_KEY_ID"), get("AWS_SECRET_ACCESS_KEY")) {
            return CredentialSettings::Environment(Arc::new(Credentials {
                access_key_id: id,
                secret_access_key: Secret::new(secret),
                session_token: get("AWS_SESSION_TOKEN").map(Secret::new),
                expires_at: None,
            }));
        }
        if let Some(relative) = get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") {
            return CredentialSettings::Container {
                url: format!("{ECS_HOST}{relative}"),
                authorization: None,
            };
        }
        if let Some(full) = get("AWS_CONTAINER_CREDENTIALS_FULL_URI") {
            let authorization = get("AWS_CONTAINER_AUTHORIZATION_TOKEN").or_else(|| {
                get("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")
                    .and_then(|path| std::fs::read_to_string(path).ok())
                    .map(|t| t.trim().to_owned())
            });
            return CredentialSettings::Container {
                url: full,
                authorization: authorization.map(Secret::new),
            };
        }
        CredentialSettings::InstanceProfile
    }
}

/// Where credentials come from, with what asking it needs.
pub enum Source {
    Static(Arc<Credentials>),
    /// ECS: a full URL and, for `FULL_URI`, the authorization header value.
    Container {
        url: String,
        authorization: Option<Secret>,
    },
    InstanceProfile(Arc<Imds>),
}

impl Source {
    /// The source `settings` name; `None` for the instance profile when instance metadata may
    /// not be asked (`imds` is `None`).
    pub fn new(settings: &CredentialSettings, imds: Option<Arc<Imds>>) -> Option<Source> {
        Some(match settings {
            CredentialSettings::Environment(credentials) => Source::Static(Arc::clone(credentials)),
            CredentialSettings::Container { url, authorization } => Source::Container {
                url: url.clone(),
                authorization: authorization.clone(),
            },
            CredentialSettings::InstanceProfile => Source::InstanceProfile(imds?),
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Source::Static(_) => "environment",
            Source::Container { .. } => "ECS container endpoint",
            Source::InstanceProfile(_) => "EC2 instance profile",
        }
    }
}

/// A credential source with its cache.
pub struct Provider {
    source: Source,
    cache: Mutex<Cache>,
    agent: ureq::Agent,
}

#[derive(Default)]
struct Cache {
    credentials: Option<Arc<Credentials>>,
    /// When the last refresh failed, if it did.
    failed_at: Option<Instant>,
}

impl Credentials {
    /// Whether AWS still accepts them at `now`.
    fn valid_at(&self, now: SystemTime) -> bool {
        self.expires_at.is_none_or(|at| now < at)
    }
}

impl Provider {
    pub fn new(source: Source) -> Provider {
        Provider {
            source,
            cache: Mutex::new(Cache::default()),
            agent: agent(Duration::from_secs(1)),
        }
    }

    /// Current credentials, fetching them (within the time until `deadline`) when there are
    /// none or they are about to expire. Callers wait on the lock while one of them refreshes,
    /// so there is one refresh at a time. A failed refresh is an error only when no cached
    /// credentials are still valid.
    pub fn get(&self, deadline: Instant) -> Result<Arc<Credentials>, AwsError> {
        if let Source::Static(c) = &self.source {
            return Ok(Arc::clone(c));
        }
        let mut cache = sync::lock(&self.cache);
        let now = SystemTime::now();
        let usable = cache.credentials.clone().filter(|c| c.valid_at(now));
        if let Some(c) = &usable {
            let fresh = c.expires_at.is_none_or(|at| now + REFRESH_MARGIN < at);
            let resting = cache
                .failed_at
                .is_some_and(|at| at.elapsed() < RETRY_AFTER_FAILURE);
            if fresh || resting {
                return Ok(Arc::clone(c));
            }
        }
        // With valid credentials in hand, a refresh may take half the time left: the call they
        // are for keeps the other half.
        let refresh_deadline = match &usable {
            Some(_) => {
                let start = Instant::now();
                start + deadline.saturating_duration_since(start) / 2
            }
            None => deadline,
        };
        match self.fetch(refresh_deadline) {
            Ok(fetched) => {
                cache.credentials = Some(Arc::clone(&fetched));
                cache.failed_at = None;
                Ok(fetched)
            }
            Err(e) => {
                cache.failed_at = Some(Instant::now());
                let c = usable.ok_or(e.clone())?;
                let left = c
                    .expires_at
                    .and_then(|at| at.duration_since(now).ok())
                    .unwrap_or_default();
                log::warn!(
                    "could not refresh the AWS credentials from the {} ({e}); the cached ones stay in use, for {} s more at most",
                    self.source.name(),
                    left.as_secs()
                );
                Ok(c)
            }
        }
    }

    fn fetch(&self, deadline: Instant) -> Result<Arc<Credentials>, AwsError> {
        let fetched = match &self.source {
            Source::Static(c) => return Ok(Arc::clone(c)),
            Source::Container { url, authorization } => {
                let mut request = within(
                    self.agent.get(url),
                    deadline,
                    CONTAINER_TIMEOUT,
                    "container endpoint",
                )?;
                if let Some(auth) = authorization {
                    request = request.header("Authorization", auth.expose());
                }
                let response = request
                    .call()
                    .map_err(|e| AwsError::Credentials(format!("container endpoint: {e}")))?;
                let (status, body) = body_text(response)?;
                if status != 200 {
                    return Err(AwsError::Credentials(format!(
                        "container endpoint answered {status}"
                    )));
                }
                parse_credentials_json(&body)
            }
            Source::InstanceProfile(imds) => {
                let roles = imds.get("/latest/meta-data/iam/security-credentials/", deadline)?;
                let role = roles
                    .lines()
                    .next()
                    .map(str::trim)
                    .filter(|r| !r.is_empty())
                    .ok_or_else(|| AwsError::Credentials("the instance has no role".into()))?;
                let body = imds.get(
                    &format!("/latest/meta-data/iam/security-credentials/{role}"),
                    deadline,
                )?;
                parse_credentials_json(&body)
            }
        };
        fetched.map(Arc::new)
    }
}

/// The JSON both the ECS endpoint and IMDS answer with.
pub fn parse_credentials_json(body: &str) -> Result<Credentials, AwsError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Document {
        access_key_id: String,
        secret_access_key: String,
        token: Option<String>,
        expiration: Option<String>,
        code: Option<String>,
    }
    let doc: Document = serde_json::from_str(body)
        .map_err(|e| AwsError::Credentials(format!("unreadable credentials document: {e}")))?;
    if let Some(code) = doc.code.filter(|c| c != "Success") {
        return Err(AwsError::Credentials(format!(
            "metadata service says {code}"
        )));
    }
    let expires_at = match doc.expiration {
        Some(text) => Some(
            humantime::parse_rfc3339(&text)
                .map_err(|_| AwsError::Credentials(format!("unreadable Expiration {text:?}")))?,
        ),
        None => None,
    };
    Ok(Credentials {
        access_key_id: doc.access_key_id,
        secret_access_key: Secret::new(doc.secret_access_key),
        session_token: doc.token.map(Secret::new),
        expires_at,
    })
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::thread;

    use super::*;

    /// An ECS credentials endpoint that answers its first call with credentials expiring at
    /// `expires`, and every later one with 500. Counts the calls.
    fn failing_after_one_answer(expires: SystemTime) -> (Provider, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/creds", listener.local_addr().unwrap());
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&calls);
        let document = format!(
            r#"{{"AccessKeyId":"ASIAFIRST","SecretAccessKey":"s","Token":"t","Expiration":"{}"}}"#,
            humantime::format_rfc3339_millis(expires)
        );
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(stream);
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap_or(0) > 2 {
                    line.clear();
                }
                let (status, body) = match counted.fetch_add(1, Ordering::SeqCst) {
                    0 => ("200 OK", document.as_str()),
                    _ => ("500 Internal Server Error", "agent restarting"),
                };
                let _ = write!(
                    reader.into_inner(),
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        let source = Source::Container {
            url,
            authorization: None,
        };
        (Provider::new(source), calls)
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(2)
    }

    #[test]
    fn a_failed_refresh_keeps_credentials_that_are_still_valid() {
        // Inside the refresh margin: every use wants new credentials.
        let (provider, calls) =
            failing_after_one_answer(SystemTime::now() + Duration::from_secs(240));
        assert_eq!(provider.get(soon()).unwrap().access_key_id, "ASIAFIRST");
        assert_eq!(provider.get(soon()).unwrap().access_key_id, "ASIAFIRST");
        assert_eq!(calls.load(Ordering::SeqCst), 2, "the refresh was tried");
        // Right after a failure, the source is left alone for a while.
        assert_eq!(provider.get(soon()).unwrap().access_key_id, "ASIAFIRST");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn expired_credentials_are_not_kept_when_the_refresh_fails() {
        let (provider, calls) =
            failing_after_one_answer(SystemTime::now() - Duration::from_secs(1));
        provider.get(soon()).unwrap();
        let error = provider.get(soon()).unwrap_err();
        assert_eq!(
            error,
            AwsError::Credentials("container endpoint answered 500".into())
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn environment_comes_first() {
        let env = |k: &str| match k {
            "AWS_ACCESS_KEY_ID" => Some("AKID".to_string()),
            "AWS_SECRET_ACCESS_KEY" => Some("SECRET".to_string()),
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI" => Some("/v2/creds".to_string()),
            _ => None,
        };
        let source = Source::new(&CredentialSettings::from_env(&env), None).unwrap();
        assert_eq!(source.name(), "environment");
        let env =
            |k: &str| (k == "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI").then(|| "/v2/c".to_string());
        match Source::new(&CredentialSettings::from_env(&env), None).unwrap() {
            Source::Container { url, authorization } => {
                assert_eq!(url, "http://169.254.170.2/v2/c");
                assert!(authorization.is_none());
            }
            _ => panic!("expected the container source"),
        }
        let none = CredentialSettings::from_env(&|_| None);
        assert!(matches!(none, CredentialSettings::InstanceProfile));
        // No instance metadata to ask: no source at all.
        assert!(Source::new(&none, None).is_none());
    }

    #[test]
    fn reads_credential_documents() {
        let c = parse_credentials_json(
            r#"{"Code":"Success","AccessKeyId":"ASIA","SecretAccessKey":"s","Token":"t","Expiration":"2026-11-26T18:00:00Z"}"#,
        )
        .unwrap();
        assert_eq!(c.access_key_id, "ASIA");
        assert_eq!(c.session_token.unwrap().expose(), "t");
        let expiry = std::time::UNIX_EPOCH + Duration::from_secs(1_795_716_000);
        assert_eq!(c.expires_at, Some(expiry));
        assert!(parse_credentials_json(
            r#"{"Code":"Failure","AccessKeyId":"","SecretAccessKey":""}"#
        )
        .is_err());
        let e = parse_credentials_json("not json {\"SecretAccessKey\":\"leak\"").unwrap_err();
        assert!(!e.to_string().contains("leak"));
    }
}
