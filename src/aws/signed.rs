//! The one signed request both AWS protocols make (the Query API's form POST, ECS's JSON POST):
//! the body SigV4-signed with the `Host` header that is sent, rather than whatever the HTTP
//! client makes of the URL, then sent within the caller's deadline.

use std::time::{Duration, Instant, SystemTime};

use super::credentials::Provider;
use super::endpoint::ServiceEndpoint;
use super::sigv4::{self, Scope};
use super::{body_text, within, AwsError};

/// Where a signed request goes and who signs it.
pub struct Signer<'a> {
    pub endpoint: &'a ServiceEndpoint,
    pub region: &'a str,
    pub service: &'a str,
    pub credentials: &'a Provider,
    pub agent: &'a ureq::Agent,
}

impl Signer<'_> {
    /// POSTs `body` with `content_type` and the `extra` headers (lower-case names), all signed;
    /// the status and text of the answer. The call (credentials included) may take the time
    /// left until `deadline`; `what` names it in errors.
    pub fn post(
        &self,
        content_type: &str,
        extra: &[(&'static str, &str)],
        body: &[u8],
        what: &str,
        deadline: Instant,
    ) -> Result<(u16, String), AwsError> {
        let credentials = self.credentials.get(deadline)?;
        let mut headers = vec![
            ("content-type".to_owned(), content_type.to_owned()),
            ("host".to_owned(), self.endpoint.host.clone()),
        ];
        headers.extend(
            extra
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned())),
        );
        let request = sigv4::Request {
            method: "POST",
            path: &self.endpoint.path,
            query: "",
            headers: &headers,
            body,
        };
        let scope = Scope {
            region: self.region,
            service: self.service,
            time: SystemTime::now(),
        };
        let signature = sigv4::sign(&request, &credentials, scope);
        let mut http = within(
            self.agent.post(&self.endpoint.url),
            deadline,
            Duration::MAX,
            what,
        )?
        .header("Host", &self.endpoint.host)
        .header("Content-Type", content_type);
        for (name, value) in extra {
            http = http.header(*name, *value);
        }
        for (name, value) in &signature.headers {
            http = http.header(*name, value);
        }
        let response = http
            .send(body)
            .map_err(|e| AwsError::Transport(format!("{what}: {e}")))?;
        body_text(response)
    }
}
