//! Which nodes the load balancer has in service, asked of AWS: a Classic ELB's in-service
//! instances with its listener's instance port, or a target group's healthy targets with
//! their ports; then EC2 for the instances' private IPs.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use super::Unreachable;
use crate::aws::elb::{self, Target, TargetId};
use crate::aws::query::QueryClient;
use crate::aws::{ec2, AwsError};

/// Which load balancer lists the cluster's nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Discovery {
    ClassicElb(String),
    TargetGroup(String),
}

/// The nodes a discovery found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Nodes {
    pub peers: Vec<Peer>,
    /// In service, but with no address to ask.
    pub unaddressed: Vec<Unreachable>,
}

/// A node to ask.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub instance_id: Option<String>,
    pub address: SocketAddr,
}

/// The load balancer and the clients of the two APIs that discovery calls.
pub struct Discoverer {
    pub discovery: Discovery,
    pub elb: QueryClient,
    pub ec2: QueryClient,
}

impl Discoverer {
    /// The nodes in service, now; every AWS call shares the time until `deadline`.
    pub fn discover(&self, deadline: Instant) -> Result<Nodes, AwsError> {
        let targets = match &self.discovery {
            Discovery::ClassicElb(name) => elb::classic_in_service(&self.elb, name, deadline)?,
            Discovery::TargetGroup(arn) => elb::healthy_targets(&self.elb, arn, deadline)?,
        };
        let instance_ids: Vec<String> = targets
            .iter()
            .filter_map(|t| match &t.id {
                TargetId::Instance(id) => Some(id.clone()),
                TargetId::Ip(_) => None,
            })
            .collect();
        let ips = ec2::private_ips(&self.ec2, &instance_ids, deadline)?;
        Ok(resolve(&targets, &ips))
    }
}

/// Pairs targets with addresses: instance targets by their private IP, IP targets as they are.
pub fn resolve(targets: &[Target], ips: &HashMap<String, IpAddr>) -> Nodes {
    let mut nodes = Nodes::default();
    for t in targets {
        match &t.id {
            TargetId::Ip(ip) => nodes.peers.push(Peer {
                instance_id: None,
                address: SocketAddr::new(*ip, t.port),
            }),
            TargetId::Instance(id) => match ips.get(id) {
                Some(ip) => nodes.peers.push(Peer {
                    instance_id: Some(id.clone()),
                    address: SocketAddr::new(*ip, t.port),
                }),
                None => nodes.unaddressed.push(Unreachable {
                    ec2_instance_id: Some(id.clone()),
                    address: None,
                    error: "EC2 reports no private IP for this instance".into(),
                }),
            },
        }
    }
    nodes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_instance_and_ip_targets() {
        let targets = [
            Target {
                id: TargetId::Instance("i-1".into()),
                port: 8080,
            },
            Target {
                id: TargetId::Ip("10.0.0.9".parse().unwrap()),
                port: 9000,
            },
            Target {
                id: TargetId::Instance("i-2".into()),
                port: 8080,
            },
        ];
        let ips = HashMap::from([("i-1".to_string(), "10.0.0.1".parse().unwrap())]);
        let nodes = resolve(&targets, &ips);
        assert_eq!(
            nodes.peers,
            [
                Peer {
                    instance_id: Some("i-1".into()),
                    address: "10.0.0.1:8080".parse().unwrap()
                },
                Peer {
                    instance_id: None,
                    address: "10.0.0.9:9000".parse().unwrap()
                },
            ]
        );
        assert_eq!(nodes.unaddressed.len(), 1);
        assert_eq!(nodes.unaddressed[0].ec2_instance_id.as_deref(), Some("i-2"));
    }
}
