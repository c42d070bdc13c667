//! The AWS Query protocol: a form-encoded `POST` of `Action`, `Version` and parameters, signed
//! with SigV4, answered with XML. The thin I/O shell around the pure signer and parsers.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::credentials::Provider;
use super::endpoint::Endpoint;
use super::sigv4::{self, form_encode, Scope};
use super::{agent, body_text, xml, AwsError};

const CONTENT_TYPE: &str = "application/x-www-form-urlencoded; charset=utf-8";

/// One API (service, version) at one endpoint.
pub struct QueryClient {
    endpoint: Endpoint,
    region: String,
    service: &'static str,
    version: &'static str,
    credentials: Arc<Provider>,
    agent: ureq::Agent,
}

impl QueryClient {
    pub fn new(
        endpoint: Endpoint,
        region: &str,
        service: &'static str,
        version: &'static str,
        credentials: Arc<Provider>,
        timeout: Duration,
    ) -> QueryClient {
        QueryClient {
            endpoint,
            region: region.to_owned(),
            service,
            version,
            credentials,
            agent: agent(timeout.min(Duration::from_secs(2)), timeout),
        }
    }

    /// Calls `action` and returns the XML body of a successful answer.
    pub fn call(&self, action: &str, params: &[(String, String)]) -> Result<String, AwsError> {
        let mut all: Vec<(&str, &str)> = vec![("Action", action), ("Version", self.version)];
        all.extend(params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let body = form_encode(&all);
        let credentials = self.credentials.get()?;
        let headers = vec![
            ("content-type".to_owned(), CONTENT_TYPE.to_owned()),
            ("host".to_owned(), self.endpoint.host.clone()),
        ];
        let request = sigv4::Request {
            method: "POST",
            path: &self.endpoint.path,
            query: "",
            headers: &headers,
            body: body.as_bytes(),
        };
        let scope = Scope {
            region: &self.region,
            service: self.service,
            time: SystemTime::now(),
        };
        let signature = sigv4::sign(&request, &credentials, scope);
        // The Host header signed is the one sent, rather than whatever the HTTP client makes of
        // the URL.
        let mut http = self
            .agent
            .post(&self.endpoint.url)
            .header("Host", &self.endpoint.host)
            .header("Content-Type", CONTENT_TYPE);
        for (name, value) in &signature.headers {
            http = http.header(*name, value);
        }
        let response = http
            .send(body.as_bytes())
            .map_err(|e| AwsError::Transport(format!("{} {action}: {e}", self.service)))?;
        let (status, text) = body_text(response)?;
        if status != 200 {
            return Err(xml::error(status, &text));
        }
        Ok(text)
    }
}
