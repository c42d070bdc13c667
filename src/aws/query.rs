//! The AWS Query protocol: a form-encoded `POST` of `Action`, `Version` and parameters, signed
//! with SigV4, answered with XML. The thin I/O shell around the pure signer and parsers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::credentials::Provider;
use super::endpoint::ServiceEndpoint;
use super::signed::Signer;
use super::sigv4::form_encode;
use super::{agent, xml, AwsError};

const CONTENT_TYPE: &str = "application/x-www-form-urlencoded; charset=utf-8";

/// One API (service, version) at one endpoint.
pub struct QueryClient {
    endpoint: ServiceEndpoint,
    region: String,
    service: &'static str,
    version: &'static str,
    credentials: Arc<Provider>,
    agent: ureq::Agent,
}

impl QueryClient {
    pub fn new(
        endpoint: ServiceEndpoint,
        region: &str,
        service: &'static str,
        version: &'static str,
        credentials: Arc<Provider>,
    ) -> QueryClient {
        QueryClient {
            endpoint,
            region: region.to_owned(),
            service,
            version,
            credentials,
            agent: agent(Duration::from_secs(2)),
        }
    }

    /// Calls `action` and returns the XML body of a successful answer. The call (credentials
    /// included) may take the time left until `deadline`.
    pub fn call(
        &self,
        action: &str,
        params: &[(String, String)],
        deadline: Instant,
    ) -> Result<String, AwsError> {
        let mut all: Vec<(&str, &str)> = vec![("Action", action), ("Version", self.version)];
        all.extend(params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let body = form_encode(&all);
        let signer = Signer {
            endpoint: &self.endpoint,
            region: &self.region,
            service: self.service,
            credentials: &self.credentials,
            agent: &self.agent,
        };
        let what = format!("{} {action}", self.service);
        let (status, text) = signer.post(CONTENT_TYPE, &[], body.as_bytes(), &what, deadline)?;
        if status != 200 {
            return Err(xml::error(status, &text));
        }
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::thread;

    use super::*;
    use crate::aws::credentials::{Credentials, Source};
    use crate::aws::elb;
    use crate::secret::Secret;

    const LOAD_BALANCER: &str = "<DescribeLoadBalancersResponse><DescribeLoadBalancersResult>\
        <LoadBalancerDescriptions><member><ListenerDescriptions><member><Listener>\
        <InstancePort>8080</InstancePort><InstanceProtocol>HTTP</InstanceProtocol>\
        </Listener></member></ListenerDescriptions></member></LoadBalancerDescriptions>\
        </DescribeLoadBalancersResult></DescribeLoadBalancersResponse>";

    /// An ELB endpoint that answers its first call after `delay` and then hangs.
    fn slow_then_hung(delay: Duration) -> QueryClient {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        thread::spawn(move || {
            let mut hung = Vec::new();
            for (n, mut stream) in listener.incoming().flatten().enumerate() {
                if n > 0 {
                    hung.push(stream);
                    continue;
                }
                let _ = stream.read(&mut [0; 4096]);
                thread::sleep(delay);
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{LOAD_BALANCER}",
                    LOAD_BALANCER.len()
                );
            }
        });
        let credentials = Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: Secret::new("secret"),
            session_token: None,
            expires_at: None,
        };
        QueryClient::new(
            ServiceEndpoint::parse(&url).unwrap(),
            "us-east-1",
            "elasticloadbalancing",
            elb::CLASSIC_VERSION,
            Arc::new(Provider::new(Source::Static(Arc::new(credentials)))),
        )
    }

    #[test]
    fn calls_in_a_row_share_one_budget() {
        // DescribeLoadBalancers takes 0.6 s of a 1 s budget, DescribeInstanceHealth hangs: it
        // gets the 0.4 s left, not a second whole budget (which would make 1.6 s).
        let client = slow_then_hung(Duration::from_millis(600));
        let started = Instant::now();
        let budget = Duration::from_secs(1);
        let error = elb::classic_in_service(&client, "hello", started + budget).unwrap_err();
        let took = started.elapsed();
        assert!(matches!(error, AwsError::Transport(_)), "{error}");
        assert!(took >= budget, "{took:?}");
        assert!(took < Duration::from_millis(1400), "{took:?}");
    }

    #[test]
    fn no_call_is_made_with_no_time_left() {
        let client = slow_then_hung(Duration::ZERO);
        let started = Instant::now();
        let error = client
            .call("DescribeLoadBalancers", &[], started)
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "could not reach AWS: elasticloadbalancing DescribeLoadBalancers: no time left to ask"
        );
        assert!(started.elapsed() < Duration::from_millis(100));
    }
}
