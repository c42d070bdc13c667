//! The health of every node serving behind the load balancer. In local mode, that is this
//! node alone.

use serde::Serialize;

use crate::health::{Monitor, NodeHealth};

/// How the cluster's members are found.
pub enum Cluster {
    /// `DEBUG=true`, or no load balancer configured: this node is the cluster.
    Local,
}

/// The `/health/cluster` document.
#[derive(Debug, Serialize)]
pub struct ClusterHealth {
    pub node_healths: Vec<NodeHealth>,
}

impl Cluster {
    pub fn health(&self, own: &Monitor) -> ClusterHealth {
        match self {
            Cluster::Local => ClusterHealth {
                node_healths: vec![own.node_health()],
            },
        }
    }
}
