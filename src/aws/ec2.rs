//! EC2 `DescribeInstances` (API 2016-11-15): the private IP address of each instance.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

use super::paging;
use super::query::QueryClient;
use super::xml::{self, child, child_text, descendants};
use super::AwsError;

pub const VERSION: &str = "2016-11-15";

/// Private IPs of `ids` (instances without one are left out). Follows `nextToken`; every page
/// shares the time until `deadline`.
pub fn private_ips(
    client: &QueryClient,
    ids: &[String],
    deadline: Instant,
) -> Result<HashMap<String, IpAddr>, AwsError> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let pages = paging::collect("DescribeInstances", |token| {
        let mut params: Vec<(String, String)> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (format!("InstanceId.{}", i + 1), id.clone()))
            .collect();
        if let Some(t) = token {
            params.push(("NextToken".to_owned(), t.to_owned()));
        }
        let page = parse_instances(&client.call("DescribeInstances", &params, deadline)?)?;
        Ok((page.ips, page.next_token))
    })?;
    Ok(pages.into_iter().collect())
}

/// One page of `DescribeInstances`: (instance id, private IP) pairs and the next page's token.
pub struct Page {
    pub ips: Vec<(String, IpAddr)>,
    pub next_token: Option<String>,
}

pub fn parse_instances(text: &str) -> Result<Page, AwsError> {
    let doc = xml::parse(text)?;
    let mut ips = Vec::new();
    for set in descendants(doc.root(), "instancesSet") {
        for item in set.children().filter(|c| c.is_element()) {
            let (Some(id), Some(ip)) = (
                child_text(item, "instanceId"),
                child_text(item, "privateIpAddress").and_then(|ip| ip.parse().ok()),
            ) else {
                continue;
            };
            ips.push((id.to_owned(), ip));
        }
    }
    let next = child(doc.root_element(), "nextToken")
        .and_then(|n| n.text())
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned);
    Ok(Page {
        ips,
        next_token: next,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_each_instance_own_private_ip_not_its_interfaces() {
        let text = r#"<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
          <requestId>r</requestId>
          <reservationSet><item><reservationId>r-1</reservationId><instancesSet>
            <item>
              <networkInterfaceSet><item><privateIpAddress>10.9.9.9</privateIpAddress></item></networkInterfaceSet>
              <privateIpAddress>10.0.0.5</privateIpAddress>
              <instanceId>i-1</instanceId>
            </item>
            <item><instanceId>i-2</instanceId><privateIpAddress>10.0.0.6</privateIpAddress></item>
            <item><instanceId>i-3</instanceId></item>
          </instancesSet></item></reservationSet>
          <nextToken>page2</nextToken>
        </DescribeInstancesResponse>"#;
        let Page { ips, next_token } = parse_instances(text).unwrap();
        assert_eq!(
            ips,
            [
                ("i-1".to_string(), "10.0.0.5".parse().unwrap()),
                ("i-2".to_string(), "10.0.0.6".parse().unwrap())
            ]
        );
        assert_eq!(next_token.as_deref(), Some("page2"));
    }
}
