//! Which EC2 instance this task runs on, for `/health`'s `ec2_instance_id`: learned in the
//! background at start-up, from ECS (through the agent's container metadata file and
//! `DescribeContainerInstances`) or from instance metadata, so that neither start-up nor
//! `/health` waits for it.

use std::fmt::Display;
use std::sync::{Arc, OnceLock};
use std::thread;

use log::Level;

use super::credentials::Source;
use super::ecs;
use super::imds::Imds;
use super::AwsSettings;

/// Learns the EC2 instance under this task in the background, where there is one to learn,
/// into `slot` (which `/health` reads: `local` until then).
pub fn learn_id(aws: &AwsSettings, imds: Option<Arc<Imds>>, slot: Arc<OnceLock<String>>) {
    // On ECS the agent's container metadata file leads to the instance (instance metadata is
    // out of the containers' reach there); elsewhere on EC2, instance metadata tells it.
    match (&aws.ecs_metadata_file, imds) {
        (Some(path), imds) => {
            let (path, endpoint) = (path.clone(), aws.ecs_endpoint.clone());
            match Source::new(&aws.credentials, imds) {
                Some(source) => learn_instance_id("ECS", Level::Warn, slot, move || {
                    ecs::instance_id_from_metadata(&path, endpoint, source)
                }),
                None => log::warn!(
                    "no AWS credentials to ask ECS for this task's instance: the instance id stays \"local\""
                ),
            }
        }
        (None, Some(imds)) => {
            // Off EC2 there is no instance metadata: no cause for a warning.
            learn_instance_id("instance metadata", Level::Info, slot, move || {
                imds.instance_id()
            })
        }
        (None, None) => {}
    }
}

/// Asks `from` for the EC2 instance under this task in the background, so that start-up (and
/// `/health`, which says `local` meanwhile) never waits for it; a failure is logged at
/// `failure`.
fn learn_instance_id<E: Display>(
    from: &'static str,
    failure: Level,
    slot: Arc<OnceLock<String>>,
    ask: impl FnOnce() -> Result<String, E> + Send + 'static,
) {
    let spawned = thread::Builder::new()
        .name("instance-id".into())
        .spawn(move || match ask() {
            Ok(id) => {
                log::info!("running on EC2 instance {id} (from {from})");
                let _ = slot.set(id);
            }
            Err(e) => log::log!(
                failure,
                "cannot learn this task's EC2 instance from {from} ({e}): the instance id stays \"local\""
            ),
        });
    if let Err(e) = spawned {
        log::warn!("cannot ask {from} for this task's instance: {e}");
    }
}
