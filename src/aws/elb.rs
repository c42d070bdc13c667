//! Elastic Load Balancing: which instances a Classic ELB has in service and on which port
//! (API 2012-06-01), and which targets an ALB/NLB target group has healthy (API 2015-12-01).
//! The parsers are pure functions of the XML.

use std::net::IpAddr;
use std::time::Instant;

use super::paging;
use super::query::QueryClient;
use super::xml::{self, child, child_text, descendants};
use super::AwsError;

pub const CLASSIC_VERSION: &str = "2012-06-01";
pub const V2_VERSION: &str = "2015-12-01";

/// A load-balancer target: an EC2 instance, or an IP address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetId {
    Instance(String),
    Ip(IpAddr),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub id: TargetId,
    pub port: u16,
}

/// Instances `InService` on a Classic ELB, with the port its listener sends traffic to.
/// Both calls share the time until `deadline`.
pub fn classic_in_service(
    client: &QueryClient,
    name: &str,
    deadline: Instant,
) -> Result<Vec<Target>, AwsError> {
    let names = [("LoadBalancerNames.member.1".to_owned(), name.to_owned())];
    let port = instance_port(&client.call("DescribeLoadBalancers", &names, deadline)?)?;
    let health = client.call(
        "DescribeInstanceHealth",
        &[("LoadBalancerName".to_owned(), name.to_owned())],
        deadline,
    )?;
    Ok(in_service(&health)?
        .into_iter()
        .map(|id| Target {
            id: TargetId::Instance(id),
            port,
        })
        .collect())
}

/// Targets `healthy` in a target group, each with its own port. Follows `NextMarker`; every
/// page shares the time until `deadline`.
pub fn healthy_targets(
    client: &QueryClient,
    arn: &str,
    deadline: Instant,
) -> Result<Vec<Target>, AwsError> {
    paging::collect("DescribeTargetHealth", |marker| {
        let mut params = vec![("TargetGroupArn".to_owned(), arn.to_owned())];
        if let Some(m) = marker {
            params.push(("Marker".to_owned(), m.to_owned()));
        }
        parse_target_health(&client.call("DescribeTargetHealth", &params, deadline)?)
    })
}

/// The instance port of the load balancer's listener (the first HTTP one, else the first).
pub fn instance_port(text: &str) -> Result<u16, AwsError> {
    let doc = xml::parse(text)?;
    let listeners: Vec<_> = descendants(doc.root(), "Listener").collect();
    let chosen = listeners
        .iter()
        .find(|l| {
            child_text(**l, "InstanceProtocol").is_some_and(|p| p.eq_ignore_ascii_case("HTTP"))
        })
        .or(listeners.first())
        .ok_or_else(|| AwsError::Malformed("the load balancer has no listener".into()))?;
    child_text(*chosen, "InstancePort")
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| AwsError::Malformed("a listener without a valid InstancePort".into()))
}

/// Instance ids whose state is `InService`.
pub fn in_service(text: &str) -> Result<Vec<String>, AwsError> {
    let doc = xml::parse(text)?;
    let states = descendants(doc.root(), "InstanceStates")
        .next()
        .ok_or_else(|| AwsError::Malformed("no InstanceStates".into()))?;
    Ok(states
        .children()
        .filter(|m| m.is_element())
        .filter(|m| child_text(*m, "State") == Some("InService"))
        .filter_map(|m| child_text(m, "InstanceId").map(str::to_owned))
        .collect())
}

/// Healthy targets and the marker of the next page, if any.
pub fn parse_target_health(text: &str) -> Result<(Vec<Target>, Option<String>), AwsError> {
    let doc = xml::parse(text)?;
    let descriptions = descendants(doc.root(), "TargetHealthDescriptions")
        .next()
        .ok_or_else(|| AwsError::Malformed("no TargetHealthDescriptions".into()))?;
    let mut targets = Vec::new();
    for member in descriptions.children().filter(|m| m.is_element()) {
        let state = child(member, "TargetHealth").and_then(|h| child_text(h, "State"));
        if state != Some("healthy") {
            continue;
        }
        let Some(target) = child(member, "Target") else {
            continue;
        };
        let (Some(id), Some(port)) = (
            child_text(target, "Id"),
            child_text(target, "Port").and_then(|p| p.parse().ok()),
        ) else {
            return Err(AwsError::Malformed("a target without Id or Port".into()));
        };
        let id = match id.parse::<IpAddr>() {
            Ok(ip) => TargetId::Ip(ip),
            Err(_) => TargetId::Instance(id.to_owned()),
        };
        targets.push(Target { id, port });
    }
    let next = descendants(doc.root(), "NextMarker")
        .next()
        .and_then(|n| n.text())
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(str::to_owned);
    Ok((targets, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_listener_instance_port() {
        let text = r#"<DescribeLoadBalancersResponse xmlns="http://elasticloadbalancing.amazonaws.com/doc/2012-06-01/">
          <DescribeLoadBalancersResult><LoadBalancerDescriptions><member>
            <ListenerDescriptions>
              <member><Listener><InstancePort>8443</InstancePort><Protocol>TCP</Protocol><InstanceProtocol>TCP</InstanceProtocol><LoadBalancerPort>443</LoadBalancerPort></Listener></member>
              <member><Listener><LoadBalancerPort>80</LoadBalancerPort><InstanceProtocol>HTTP</InstanceProtocol><InstancePort>8080</InstancePort></Listener></member>
            </ListenerDescriptions>
            <LoadBalancerName>hello</LoadBalancerName>
          </member></LoadBalancerDescriptions></DescribeLoadBalancersResult></DescribeLoadBalancersResponse>"#;
        assert_eq!(instance_port(text).unwrap(), 8080);
        assert!(instance_port("<x/>").is_err());
    }

    #[test]
    fn keeps_only_in_service_instances() {
        let text = r#"<DescribeInstanceHealthResponse><DescribeInstanceHealthResult><InstanceStates>
            <member><State>InService</State><InstanceId>i-1</InstanceId><ReasonCode>N/A</ReasonCode></member>
            <member><InstanceId>i-2</InstanceId><State>OutOfService</State></member>
            <member><Description>N/A</Description><InstanceId>i-3</InstanceId><State>InService</State></member>
          </InstanceStates></DescribeInstanceHealthResult></DescribeInstanceHealthResponse>"#;
        assert_eq!(in_service(text).unwrap(), ["i-1", "i-3"]);
    }

    #[test]
    fn keeps_only_healthy_targets_with_their_ports() {
        let text = r#"<DescribeTargetHealthResponse xmlns="http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/">
          <DescribeTargetHealthResult><TargetHealthDescriptions>
            <member><HealthCheckPort>32768</HealthCheckPort><TargetHealth><State>healthy</State></TargetHealth>
              <Target><Port>32768</Port><Id>i-0abc</Id></Target></member>
            <member><Target><Id>10.0.1.7</Id><Port>8080</Port></Target><TargetHealth><State>healthy</State></TargetHealth></member>
            <member><Target><Id>i-0def</Id><Port>32769</Port></Target><TargetHealth><State>draining</State></TargetHealth></member>
          </TargetHealthDescriptions></DescribeTargetHealthResult></DescribeTargetHealthResponse>"#;
        let (targets, next) = parse_target_health(text).unwrap();
        assert_eq!(
            targets,
            [
                Target {
                    id: TargetId::Instance("i-0abc".into()),
                    port: 32768
                },
                Target {
                    id: TargetId::Ip("10.0.1.7".parse().unwrap()),
                    port: 8080
                },
            ]
        );
        assert_eq!(next, None);
    }
}
