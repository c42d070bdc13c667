//! `/health/cluster`, in the AWS lane: the view waits for discovery and the peers on a
//! blocking thread, and its answer comes back as a pool job's; at most `CLUSTER_MAX_REQUESTS`
//! at once. In local mode it is this node alone, answered at once.

use std::sync::Arc;

use super::error::ApiError;
use super::render::{self, finish};
use super::Api;
use crate::cluster::Cluster;
use crate::health::Monitor;
use crate::http::{Answer, Response, Status, Wait};
use crate::route::Route;

pub fn view(api: &Api) -> Result<Answer<Wait>, ApiError> {
    if let Cluster::Local = api.cluster.as_ref() {
        return Ok(Answer::Now(cluster_view(&api.cluster, &api.monitor)));
    }
    let permit = api.cluster_requests.enter().ok_or_else(|| {
        ApiError::overloaded("too many cluster views are being gathered right now")
    })?;
    let (cluster, monitor) = (Arc::clone(&api.cluster), Arc::clone(&api.monitor));
    Ok(Answer::Later(Wait::Pool(Box::new(move || {
        let _permit = permit;
        finish(Route::Cluster, cluster_view(&cluster, &monitor))
    }))))
}

fn cluster_view(cluster: &Cluster, monitor: &Monitor) -> Response {
    match cluster.health(monitor) {
        Ok(health) => render::json(Status::Ok, &health),
        Err(e) => {
            log::error!("cluster discovery failed: {e}");
            ApiError::new(Status::BadGateway, "upstream_error", e.to_string()).into_response()
        }
    }
}
