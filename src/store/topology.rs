//! What a Redis cluster says of itself, read as pure functions over its replies: whether it is
//! one (`INFO cluster`), which primary serves each hash slot (`CLUSTER SHARDS`, or `CLUSTER
//! SLOTS` on servers before 7.0), and where a command that reached the wrong primary must go
//! (`-MOVED`, `-ASK`).

use std::fmt;

use super::resp::RedisReply;
use super::slots::SLOTS;

/// Where a server listens.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeAddr {
    pub host: String,
    pub port: u16,
}

impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host.contains(':') {
            true => write!(f, "[{}]:{}", self.host, self.port),
            false => write!(f, "{}:{}", self.host, self.port),
        }
    }
}

/// No primary serves the slot (as after a failed shard, before a failover).
const UNSERVED: u16 = u16::MAX;

/// Which primary serves each slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotMap {
    primaries: Vec<NodeAddr>,
    /// For each slot, the index of its primary in `primaries`, or [`UNSERVED`].
    owner: Vec<u16>,
}

impl SlotMap {
    /// One server serving every slot: standalone Redis.
    pub fn single(addr: NodeAddr) -> SlotMap {
        SlotMap {
            primaries: vec![addr],
            owner: vec![0; usize::from(SLOTS)],
        }
    }

    fn empty() -> SlotMap {
        SlotMap {
            primaries: Vec::new(),
            owner: vec![UNSERVED; usize::from(SLOTS)],
        }
    }

    pub fn primaries(&self) -> &[NodeAddr] {
        &self.primaries
    }

    /// The primary that serves `slot`, if one does.
    pub fn owner(&self, slot: u16) -> Option<&NodeAddr> {
        let index = *self.owner.get(usize::from(slot))?;
        self.primaries.get(usize::from(index))
    }

    /// `slot` is served by `addr` from now on, as a `-MOVED` says.
    pub fn moved(&mut self, slot: u16, addr: &NodeAddr) {
        let index = self.index_of(addr);
        if let Some(owner) = self.owner.get_mut(usize::from(slot)) {
            *owner = index;
        }
    }

    fn index_of(&mut self, addr: &NodeAddr) -> u16 {
        match self.primaries.iter().position(|p| p == addr) {
            Some(i) => i as u16,
            None => {
                self.primaries.push(addr.clone());
                (self.primaries.len() - 1) as u16
            }
        }
    }

    fn serve(&mut self, first: i64, last: i64, addr: &NodeAddr) -> Result<(), String> {
        let range = |n: i64| u16::try_from(n).ok().filter(|s| *s < SLOTS);
        let (Some(first), Some(last)) = (range(first), range(last)) else {
            return Err(format!("slot range {first}-{last} outside 0-16383"));
        };
        let index = self.index_of(addr);
        for slot in first..=last {
            self.owner[usize::from(slot)] = index;
        }
        Ok(())
    }

    /// Slots that no primary serves.
    pub fn unserved(&self) -> usize {
        self.owner.iter().filter(|o| **o == UNSERVED).count()
    }
}

/// `cluster_enabled` from an `INFO cluster` reply: whether the server runs in cluster mode.
pub fn cluster_enabled(info: &[u8]) -> Option<bool> {
    let text = std::str::from_utf8(info).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("cluster_enabled:"))
        .and_then(|value| match value.trim() {
            "1" => Some(true),
            "0" => Some(false),
            _ => None,
        })
}

/// The slot map in a `CLUSTER SHARDS` reply. `asked` is the server that answered, whose host
/// stands in where a node's endpoint is unknown (`?` or empty); `tls`: the port to use is the
/// TLS one.
pub fn from_shards(reply: RedisReply, asked: &str, tls: bool) -> Result<SlotMap, String> {
    let RedisReply::Array(shards) = reply else {
        return Err(reply.unexpected("CLUSTER SHARDS"));
    };
    let mut map = SlotMap::empty();
    for shard in shards {
        let fields = pairs(shard)?;
        let slots = match field(&fields, "slots") {
            Some(RedisReply::Array(slots)) => integers(slots)?,
            _ => return Err("a shard without slots".into()),
        };
        let Some(RedisReply::Array(nodes)) = field(&fields, "nodes") else {
            return Err("a shard without nodes".into());
        };
        let mut primary = None;
        for node in nodes {
            let node = pairs(node.clone())?;
            if text(field(&node, "role")).as_deref() == Some("master") {
                primary = Some(node_addr(&node, asked, tls)?);
            }
        }
        // A shard may serve no slot, or have lost its primary: nothing to route to it.
        let Some(primary) = primary else { continue };
        if slots.len() % 2 != 0 {
            return Err("an odd number of slot bounds".into());
        }
        for range in slots.chunks(2) {
            map.serve(range[0], range[1], &primary)?;
        }
    }
    Ok(map)
}

/// The slot map in a `CLUSTER SLOTS` reply: `[first, last, [host, port, id, …], replicas…]`
/// per range, the primary first.
pub fn from_slots(reply: RedisReply, asked: &str) -> Result<SlotMap, String> {
    let RedisReply::Array(ranges) = reply else {
        return Err(reply.unexpected("CLUSTER SLOTS"));
    };
    let mut map = SlotMap::empty();
    for range in ranges {
        let RedisReply::Array(items) = range else {
            return Err("a slot range that is not an array".into());
        };
        let (Some(RedisReply::Integer(first)), Some(RedisReply::Integer(last))) =
            (items.first(), items.get(1))
        else {
            return Err("a slot range without its bounds".into());
        };
        let Some(RedisReply::Array(primary)) = items.get(2) else {
            return Err("a slot range without a primary".into());
        };
        let host = match primary.first() {
            Some(RedisReply::Bulk(host)) => String::from_utf8_lossy(host).into_owned(),
            _ => return Err("a primary without a host".into()),
        };
        let port = match primary.get(1) {
            Some(RedisReply::Integer(port)) => port_of(*port)?,
            _ => return Err("a primary without a port".into()),
        };
        let addr = NodeAddr {
            host: known_host(host, asked),
            port,
        };
        map.serve(*first, *last, &addr)?;
    }
    Ok(map)
}

/// Where an error reply sends a command that reached the wrong primary. Neither ran it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Redirect {
    /// The slot lives elsewhere now: update the map and send it there.
    Moved { slot: u16, addr: NodeAddr },
    /// The slot is being moved and this key is already there: send it there once, after
    /// `ASKING`, without changing the map.
    Ask { slot: u16, addr: NodeAddr },
}

impl Redirect {
    /// The redirect in an error line (`MOVED 3999 127.0.0.1:6381`), if it is one. `asked` is
    /// the host that answered, for an address whose host is unknown (`:6381`).
    pub fn parse(line: &str, asked: &str) -> Option<Redirect> {
        let mut words = line.split(' ');
        let kind = words.next()?;
        let slot = words.next()?.parse::<u16>().ok().filter(|s| *s < SLOTS)?;
        let (host, port) = words.next()?.rsplit_once(':')?;
        let addr = NodeAddr {
            host: known_host(host.to_owned(), asked),
            port: port.parse().ok().filter(|p| *p != 0)?,
        };
        match kind {
            "MOVED" => Some(Redirect::Moved { slot, addr }),
            "ASK" => Some(Redirect::Ask { slot, addr }),
            _ => None,
        }
    }
}

/// A host as announced, or the one asked when the cluster does not know its own (`?`, empty).
fn known_host(host: String, asked: &str) -> String {
    match host.as_str() {
        "" | "?" => asked.to_owned(),
        _ => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
    }
}

fn port_of(n: i64) -> Result<u16, String> {
    u16::try_from(n)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("port {n} out of range"))
}

/// A map written as a flat array of names and values, as RESP2 writes one.
fn pairs(reply: RedisReply) -> Result<Vec<(String, RedisReply)>, String> {
    let RedisReply::Array(items) = reply else {
        return Err("a map that is not an array".into());
    };
    if items.len() % 2 != 0 {
        return Err("a map with a name and no value".into());
    }
    let mut items = items.into_iter();
    let mut fields = Vec::new();
    while let (Some(name), Some(value)) = (items.next(), items.next()) {
        let RedisReply::Bulk(name) = name else {
            return Err("a map's field name is not a string".into());
        };
        fields.push((String::from_utf8_lossy(&name).into_owned(), value));
    }
    Ok(fields)
}

fn field<'a>(fields: &'a [(String, RedisReply)], name: &str) -> Option<&'a RedisReply> {
    fields.iter().find(|(n, _)| n == name).map(|(_, v)| v)
}

fn text(value: Option<&RedisReply>) -> Option<String> {
    match value? {
        RedisReply::Bulk(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        RedisReply::Status(s) => Some(s.clone()),
        _ => None,
    }
}

fn integers(items: &[RedisReply]) -> Result<Vec<i64>, String> {
    items
        .iter()
        .map(|item| match item {
            RedisReply::Integer(n) => Ok(*n),
            _ => Err("a slot bound that is not a number".to_owned()),
        })
        .collect()
}

fn node_addr(node: &[(String, RedisReply)], asked: &str, tls: bool) -> Result<NodeAddr, String> {
    let port_field = |name| match field(node, name) {
        Some(RedisReply::Integer(port)) => Some(port_of(*port)),
        _ => None,
    };
    let port = match tls {
        true => port_field("tls-port").or_else(|| port_field("port")),
        false => port_field("port"),
    }
    .ok_or_else(|| format!("a node without a {} port", if tls { "TLS" } else { "TCP" }))??;
    let host = text(field(node, "endpoint"))
        .or_else(|| text(field(node, "ip")))
        .unwrap_or_default();
    Ok(NodeAddr {
        host: known_host(host, asked),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(fields: Vec<(&str, RedisReply)>) -> RedisReply {
        RedisReply::Array(
            fields
                .into_iter()
                .flat_map(|(name, value)| [RedisReply::bulk(name), value])
                .collect(),
        )
    }

    fn node(role: &str, endpoint: &str, port: Option<i64>, tls_port: Option<i64>) -> RedisReply {
        let mut fields = vec![("id", RedisReply::bulk("0123abcd"))];
        if let Some(port) = port {
            fields.push(("port", RedisReply::Integer(port)));
        }
        if let Some(port) = tls_port {
            fields.push(("tls-port", RedisReply::Integer(port)));
        }
        fields.extend([
            ("ip", RedisReply::bulk("10.0.0.9")),
            ("endpoint", RedisReply::bulk(endpoint)),
            ("role", RedisReply::bulk(role)),
            ("replication-offset", RedisReply::Integer(0)),
            ("health", RedisReply::bulk("online")),
        ]);
        map(fields)
    }

    fn shard(ranges: &[i64], nodes: Vec<RedisReply>) -> RedisReply {
        map(vec![
            (
                "slots",
                RedisReply::Array(ranges.iter().map(|n| RedisReply::Integer(*n)).collect()),
            ),
            ("nodes", RedisReply::Array(nodes)),
        ])
    }

    fn addr(host: &str, port: u16) -> NodeAddr {
        NodeAddr {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn cluster_shards_gives_each_slot_its_primary() {
        let reply = RedisReply::Array(vec![
            shard(
                &[0, 5460, 16000, 16383],
                vec![
                    node("replica", "10.0.0.2", Some(7004), None),
                    node("master", "10.0.0.1", Some(7001), None),
                ],
            ),
            shard(
                &[5461, 15999],
                vec![node("master", "?", Some(7002), Some(8002))],
            ),
            // A shard that lost its primary and serves nothing yet.
            shard(&[], vec![node("replica", "10.0.0.5", Some(7005), None)]),
        ]);
        let map = from_shards(reply.clone(), "config.example", false).unwrap();
        assert_eq!(map.owner(0), Some(&addr("10.0.0.1", 7001)));
        assert_eq!(map.owner(16383), Some(&addr("10.0.0.1", 7001)));
        // An unknown endpoint is the host that was asked.
        assert_eq!(map.owner(5461), Some(&addr("config.example", 7002)));
        assert_eq!(map.primaries().len(), 2);
        assert_eq!(map.unserved(), 0);
        // Over TLS, the TLS port.
        let tls = from_shards(reply, "config.example", true).unwrap();
        assert_eq!(tls.owner(6000), Some(&addr("config.example", 8002)));
    }

    #[test]
    fn cluster_slots_gives_each_range_its_first_node() {
        let primary = |host: &str, port| {
            RedisReply::Array(vec![
                RedisReply::bulk(host),
                RedisReply::Integer(port),
                RedisReply::bulk("id"),
                RedisReply::Array(vec![]),
            ])
        };
        let reply = RedisReply::Array(vec![
            RedisReply::Array(vec![
                RedisReply::Integer(0),
                RedisReply::Integer(8191),
                primary("127.0.0.1", 7001),
                primary("127.0.0.1", 7004),
            ]),
            RedisReply::Array(vec![
                RedisReply::Integer(8192),
                RedisReply::Integer(16000),
                primary("", 7002),
            ]),
        ]);
        let map = from_slots(reply, "seed.example").unwrap();
        assert_eq!(map.owner(8191), Some(&addr("127.0.0.1", 7001)));
        assert_eq!(map.owner(8192), Some(&addr("seed.example", 7002)));
        assert_eq!(map.owner(16001), None);
        assert_eq!(map.unserved(), 383);
    }

    #[test]
    fn malformed_topologies_are_refused() {
        for reply in [
            RedisReply::bulk("no"),
            RedisReply::bulks(&["x"]),
            RedisReply::Array(vec![shard(&[0], vec![node("master", "h", Some(1), None)])]),
            RedisReply::Array(vec![shard(
                &[0, 16384],
                vec![node("master", "h", Some(1), None)],
            )]),
            RedisReply::Array(vec![shard(&[0, 1], vec![node("master", "h", None, None)])]),
        ] {
            assert!(from_shards(reply, "h", false).is_err());
        }
        assert!(from_slots(RedisReply::Array(vec![RedisReply::Integer(1)]), "h").is_err());
    }

    #[test]
    fn redirects_name_their_slot_and_server() {
        // An empty host is the node that answered (the seed); an IPv6 host comes bracketed.
        for (error, moved, slot, host, port) in [
            ("MOVED 3999 127.0.0.1:6381", true, 3999, "127.0.0.1", 6381),
            (
                "ASK 12 node-3.example:6379",
                false,
                12,
                "node-3.example",
                6379,
            ),
            ("MOVED 1 :7000", true, 1, "seed", 7000),
            ("MOVED 1 [::1]:7000", true, 1, "::1", 7000),
        ] {
            let addr = addr(host, port);
            let expected = match moved {
                true => Redirect::Moved { slot, addr },
                false => Redirect::Ask { slot, addr },
            };
            assert_eq!(Redirect::parse(error, "seed"), Some(expected), "{error}");
        }
        for other in [
            "ERR unknown",
            "MOVED x 1.2.3.4:5",
            "MOVED 16384 h:1",
            "MOVED 1 h",
            "TRYAGAIN",
        ] {
            assert_eq!(Redirect::parse(other, "seed"), None, "{other}");
        }
    }

    #[test]
    fn a_moved_slot_changes_its_owner_only() {
        let mut map = SlotMap::single(addr("a", 1));
        map.moved(7, &addr("b", 2));
        assert_eq!(map.owner(7), Some(&addr("b", 2)));
        assert_eq!(map.owner(8), Some(&addr("a", 1)));
        assert_eq!(map.primaries().len(), 2);
    }

    #[test]
    fn info_cluster_says_whether_the_server_is_one() {
        assert_eq!(
            cluster_enabled(b"# Cluster\r\ncluster_enabled:1\r\n"),
            Some(true)
        );
        assert_eq!(cluster_enabled(b"cluster_enabled:0\r\n"), Some(false));
        assert_eq!(cluster_enabled(b"# Cluster\r\n"), None);
    }
}
