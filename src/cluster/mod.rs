//! The health of every node serving behind the load balancer: the nodes in service, as a
//! background thread discovers them (`membership`, asking AWS through `discovery`), each one's
//! `/health` asked by a small pool of threads under a deadline (`fanout`), and those that could
//! not be asked listed apart. In local mode the cluster is this node alone.
//!
//! No request calls AWS. The node list is reused for a few seconds and the peers' answers for
//! about one, so that dashboards polling `/health/cluster` cost AWS one discovery per period
//! and each peer one `/health` per second, whatever their number; when AWS fails (throttling,
//! an outage, a hang), the last list found stands in for a while, and the answer says so.

mod discovery;
mod fanout;
mod membership;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use self::discovery::Discoverer;
use self::fanout::FanOut;
use self::membership::Tracker;
use crate::aws::credentials::{Provider, Source};
use crate::aws::elb;
use crate::aws::endpoint::ServiceEndpoint;
use crate::aws::imds::Imds;
use crate::aws::query::QueryClient;
use crate::aws::{ec2, AwsError, AwsSettings};
use crate::health::Monitor;
use crate::settings::{boolean, invalid, millis, number, variables, ConfigError};

pub use self::discovery::Discovery;

pub enum Cluster {
    /// `DEBUG=true`, or no load balancer configured: this node is the cluster.
    Local,
    Balanced(Box<Balanced>),
}

variables! {
    DEBUG = "false",
        "true: local mode, no AWS calls (instance id local, the cluster is this node)";
    ELB_NAME = "",
        "Classic ELB whose in-service instances form the cluster";
    TARGET_GROUP_ARN = "",
        "or: ALB/NLB target group whose healthy targets form the cluster";
    CLUSTER_PEER_TIMEOUT_MS = "1500",
        "time each peer's /health may take";
    CLUSTER_DEADLINE_MS = "3000",
        "time /health/cluster may take in all, and the time the AWS calls of one discovery \
              share";
    CLUSTER_MEMBERSHIP_TTL_MS = "5000",
        "age at which the node list is discovered again (0: on every request)";
    CLUSTER_MAX_REQUESTS = "64",
        "/health/cluster requests answered at once (the AWS lane); more get 503 overloaded";
}

/// What `/health/cluster` needs: which load balancer lists the nodes, how long asking may
/// take, and where the AWS APIs are.
#[derive(Debug)]
pub struct ClusterSettings {
    /// `DEBUG=true`: local mode, as in the original service.
    pub local: bool,
    /// `None` in local mode or when no load balancer is named.
    pub discovery: Option<Discovery>,
    pub peer_timeout: Duration,
    pub deadline: Duration,
    /// How long a discovered membership is reused; zero: discover on every request.
    pub membership_ttl: Duration,
    /// `/health/cluster` requests in flight at once, each on a blocking thread.
    pub max_requests: usize,
    pub aws: AwsSettings,
}

impl ClusterSettings {
    /// `get` returns a variable's value when it is set and not blank; `debug` is local mode,
    /// which makes no AWS calls.
    pub fn from_env(get: &impl Fn(&str) -> Option<String>) -> Result<ClusterSettings, ConfigError> {
        let local = boolean(get, &DEBUG)?;
        let discovery = match (get(ELB_NAME.name), get(TARGET_GROUP_ARN.name)) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    TARGET_GROUP_ARN.name,
                    "either ELB_NAME or TARGET_GROUP_ARN, not both",
                ))
            }
            (Some(name), None) => Some(Discovery::ClassicElb(name.trim().to_owned())),
            (None, Some(arn)) if arn.trim().starts_with("arn:") => {
                Some(Discovery::TargetGroup(arn.trim().to_owned()))
            }
            (None, Some(_)) => {
                return Err(invalid(
                    TARGET_GROUP_ARN.name,
                    "a target group ARN (arn:aws:elasticloadbalancing:…)",
                ))
            }
            (None, None) => None,
        };
        let aws = AwsSettings::from_env(get, local)?;
        Ok(ClusterSettings {
            local,
            discovery: if local { None } else { discovery },
            peer_timeout: millis(get, &CLUSTER_PEER_TIMEOUT_MS)?,
            deadline: millis(get, &CLUSTER_DEADLINE_MS)?,
            membership_ttl: number(get, &CLUSTER_MEMBERSHIP_TTL_MS, 0, 3_600_000)
                .map(Duration::from_millis)?,
            max_requests: number(get, &CLUSTER_MAX_REQUESTS, 1, 1024)?,
            aws,
        })
    }
}

/// Discovery through a load balancer: the membership kept in the background, and the pool that
/// asks the peers.
pub struct Balanced {
    membership: Tracker,
    fan_out: FanOut,
    /// Time allowed to each peer.
    peer_timeout: Duration,
    /// Time the whole answer may take.
    deadline: Duration,
}

/// The `/health/cluster` document.
#[derive(Debug, Serialize)]
pub struct ClusterHealth {
    pub node_healths: Vec<Value>,
    pub unreachable: Vec<Unreachable>,
    /// Present only when AWS failed and the last membership found was used instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stale_membership: Option<StaleMembership>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct StaleMembership {
    /// How old the node list used is.
    pub age_seconds: u64,
    /// Why it could not be discovered afresh.
    pub error: String,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Unreachable {
    pub ec2_instance_id: Option<String>,
    pub address: Option<String>,
    pub error: String,
}

impl Cluster {
    /// The cluster view: local, or discovery through a load balancer with clients built from the
    /// environment, started at once in the background. An error names the variable to fix.
    /// At most half of the requests in the AWS lane wait for a discovery at once.
    pub fn new(settings: &ClusterSettings, imds: Option<Arc<Imds>>) -> Result<Cluster, String> {
        let Some(discovery) = settings.discovery.clone() else {
            return Ok(Cluster::Local);
        };
        let aws = &settings.aws;
        let region = match (&aws.region, &imds) {
            (Some(r), _) => r.clone(),
            (None, Some(imds)) => imds.region().map_err(|e| {
                format!("invalid AWS_REGION: not set, and instance metadata gave none ({e})")
            })?,
            (None, None) => {
                return Err("invalid AWS_REGION: expected a region such as us-east-1".into())
            }
        };
        let source = Source::new(&aws.credentials, imds).ok_or(
            "invalid AWS_ACCESS_KEY_ID: no AWS credentials in the environment, the ECS container endpoint or instance metadata",
        )?;
        log::info!(
            "AWS credentials from the {}; region {region}",
            source.name()
        );
        let credentials = Arc::new(Provider::new(source));
        let regional = |service: &str| {
            ServiceEndpoint::parse(&format!("https://{service}.{region}.amazonaws.com")).map_err(
                |e| format!("invalid AWS_REGION: expected a region such as us-east-1 ({e})"),
            )
        };
        let elb_endpoint = match &aws.elb_endpoint {
            Some(e) => e.clone(),
            None => regional("elasticloadbalancing")?,
        };
        let ec2_endpoint = match &aws.ec2_endpoint {
            Some(e) => e.clone(),
            None => regional("ec2")?,
        };
        log::info!(
            "cluster = {discovery:?}, via {} and {}",
            elb_endpoint.url,
            ec2_endpoint.url
        );
        let version = match discovery {
            Discovery::ClassicElb(_) => elb::CLASSIC_VERSION,
            Discovery::TargetGroup(_) => elb::V2_VERSION,
        };
        let elb = QueryClient::new(
            elb_endpoint,
            &region,
            "elasticloadbalancing",
            version,
            Arc::clone(&credentials),
        );
        let ec2 = QueryClient::new(ec2_endpoint, &region, "ec2", ec2::VERSION, credentials);
        let discoverer = Discoverer {
            discovery,
            elb,
            ec2,
        };
        // A discovery in the background has the time a request has.
        let membership = Tracker::start(
            move |deadline| discoverer.discover(deadline),
            settings.deadline,
            settings.membership_ttl,
            (settings.max_requests / 2).max(1),
        )
        .map_err(|e| format!("cannot start cluster discovery: {e}"))?;
        let fan_out = FanOut::start(
            crate::aws::agent(settings.peer_timeout),
            settings.peer_timeout,
        )
        .map_err(|e| format!("cannot start the threads that ask peers: {e}"))?;
        Ok(Cluster::Balanced(Box::new(Balanced {
            membership,
            fan_out,
            peer_timeout: settings.peer_timeout,
            deadline: settings.deadline,
        })))
    }

    pub fn health(&self, own: &Monitor) -> Result<ClusterHealth, AwsError> {
        let own_health = || serde_json::to_value(own.node_health()).unwrap_or(Value::Null);
        match self {
            Cluster::Local => Ok(ClusterHealth {
                node_healths: vec![own_health()],
                unreachable: Vec::new(),
                stale_membership: None,
            }),
            Cluster::Balanced(b) => {
                let deadline = Instant::now() + b.deadline;
                // Waiting for a discovery leaves the peers their timeout (or half the time).
                let membership = b
                    .membership
                    .current(deadline - b.peer_timeout.min(b.deadline / 2))?;
                let answers =
                    b.fan_out
                        .answers(&membership, &own.instance_id(), own_health, deadline);
                Ok(ClusterHealth {
                    node_healths: answers.node_healths.clone(),
                    unreachable: answers.unreachable.clone(),
                    stale_membership: membership.stale,
                })
            }
        }
    }
}
