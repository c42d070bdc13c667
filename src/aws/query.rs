//! The AWS Query protocol: a form-encoded `POST` of `Action`, `Version` and parameters, signed
//! with SigV4, answered with XML. The thin I/O shell around the pure signer and parsers.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::credentials::Provider;
use super::sigv4::{self, form_encode, Scope};
use super::{agent, body_text, xml, AwsError};

const CONTENT_TYPE: &str = "application/x-www-form-urlencoded; charset=utf-8";

/// One API (service, version) at one endpoint.
pub struct QueryClient {
    url: String,
    host: String,
    path: String,
    region: String,
    service: &'static str,
    version: &'static str,
    credentials: Arc<Provider>,
    agent: ureq::Agent,
}

impl QueryClient {
    /// `endpoint` is `scheme://host[:port][/path]`.
    pub fn new(
        endpoint: &str,
        region: &str,
        service: &'static str,
        version: &'static str,
        credentials: Arc<Provider>,
        timeout: Duration,
    ) -> Result<QueryClient, String> {
        let rest = endpoint
            .strip_prefix("https://")
            .or_else(|| endpoint.strip_prefix("http://"))
            .ok_or_else(|| format!("{endpoint:?} is not an http(s) URL"))?;
        let (host, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if host.is_empty() {
            return Err(format!("{endpoint:?} has no host"));
        }
        Ok(QueryClient {
            url: format!("{}{}", &endpoint[..endpoint.len() - rest.len()], rest),
            host: host.to_owned(),
            path: path.to_owned(),
            region: region.to_owned(),
            service,
            version,
            credentials,
            agent: agent(timeout.min(Duration::from_secs(2)), timeout),
        })
    }

    /// Calls `action` and returns the XML body of a successful answer.
    pub fn call(&self, action: &str, params: &[(String, String)]) -> Result<String, AwsError> {
        let mut all: Vec<(&str, &str)> = vec![("Action", action), ("Version", self.version)];
        all.extend(params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let body = form_encode(&all);
        let credentials = self.credentials.get()?;
        let headers = vec![
            ("content-type".to_owned(), CONTENT_TYPE.to_owned()),
            ("host".to_owned(), self.host.clone()),
        ];
        let request = sigv4::Request {
            method: "POST",
            path: &self.path,
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
        let mut http = self
            .agent
            .post(&self.url)
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
