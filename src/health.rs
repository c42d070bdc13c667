//! This node's health: host statistics sampled by a background thread (so a request never waits
//! for a CPU interval), and the store's reachability as of its last check. The same thread
//! refreshes the store's room for new names once a second (Redis's memory and the set's size,
//! which admission reads), so that no request waits for it and no other thread is needed.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use serde::Serialize;
use sysinfo::{Disks, System};

use crate::store::Store;
use crate::sync;

/// How often statistics are sampled; CPU use is the average over this interval.
const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);
/// Disks change slowly and cost a `statvfs` each, so they are read every few samples.
const DISK_EVERY: u32 = 5;
/// Filesystems that hold no data of their own.
const VIRTUAL_FILESYSTEMS: [&str; 6] =
    ["tmpfs", "devtmpfs", "ramfs", "squashfs", "nsfs", "efivarfs"];

/// The `/health` document, field names as the original service had them.
#[derive(Clone, Debug, Serialize)]
pub struct NodeHealth {
    pub ec2_instance_id: String,
    /// Host uptime in seconds.
    pub uptime: u64,
    pub cpu_utilization_percent: f64,
    pub disk_utilization_percent: f64,
    pub total_ram_bytes_used: u64,
    pub total_ram_bytes_available: u64,
    /// Present when the process runs under a cgroup memory limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup_memory_limit_bytes: Option<u64>,
    pub store: StoreHealth,
}

#[derive(Clone, Debug, Serialize)]
pub struct StoreHealth {
    pub kind: &'static str,
    /// Whether the store answered its last check.
    pub reachable: bool,
    /// Whether counts outlive the process.
    pub persistent: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Redis's `used_memory` in bytes, as last sampled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub used_memory: Option<u64>,
    /// Redis's `maxmemory` in bytes, as last sampled (0: no limit).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maxmemory: Option<u64>,
    /// Names in the set, as last known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub names: Option<u64>,
    /// Whether a new name would be counted now (names already counted always are).
    pub admitting_new_names: bool,
}

#[derive(Clone, Debug, Default)]
struct Sample {
    cpu_percent: f64,
    disk_percent: f64,
    ram_used: u64,
    ram_available: u64,
    cgroup_limit: Option<u64>,
    store_error: Option<String>,
}

/// Reports this node's health from the latest sample.
pub struct Monitor {
    /// Set once the instance metadata service has answered; `local` until then.
    instance_id: Arc<OnceLock<String>>,
    /// Read for its room for new names, which the store lane changes between samples.
    store: Arc<dyn Store>,
    latest: Arc<Mutex<Sample>>,
}

impl Monitor {
    /// Takes a first sample and starts the sampling thread.
    pub fn start(store: Arc<dyn Store>) -> Monitor {
        let latest = Arc::new(Mutex::new(Sample::default()));
        let mut sampler = Sampler::new(store.clone(), Arc::clone(&latest));
        sampler.sample(true);
        let spawned = thread::Builder::new()
            .name("health".into())
            .spawn(move || loop {
                thread::sleep(SAMPLE_INTERVAL);
                sampler.tick();
            });
        if let Err(e) = spawned {
            log::error!("cannot start the health sampler: {e}; /health will not change");
        }
        Monitor {
            instance_id: Arc::new(OnceLock::new()),
            store,
            latest,
        }
    }

    /// Where the EC2 instance id goes once it is known (from another thread).
    pub fn instance_id_slot(&self) -> Arc<OnceLock<String>> {
        Arc::clone(&self.instance_id)
    }

    pub fn instance_id(&self) -> String {
        self.instance_id
            .get()
            .cloned()
            .unwrap_or_else(|| "local".to_owned())
    }

    pub fn node_health(&self) -> NodeHealth {
        let s = sync::lock(&self.latest).clone();
        let kind = self.store.kind();
        let room = self.store.room();
        NodeHealth {
            ec2_instance_id: self.instance_id(),
            uptime: System::uptime(),
            cpu_utilization_percent: s.cpu_percent,
            disk_utilization_percent: s.disk_percent,
            total_ram_bytes_used: s.ram_used,
            total_ram_bytes_available: s.ram_available,
            cgroup_memory_limit_bytes: s.cgroup_limit,
            store: StoreHealth {
                kind,
                reachable: s.store_error.is_none(),
                persistent: kind != "memory",
                error: s.store_error,
                used_memory: room.used_memory,
                maxmemory: room.max_memory,
                names: room.names,
                admitting_new_names: room.admitting,
            },
        }
    }
}

struct Sampler {
    system: System,
    disks: Disks,
    store: Arc<dyn Store>,
    latest: Arc<Mutex<Sample>>,
    ticks: u32,
}

impl Sampler {
    fn new(store: Arc<dyn Store>, latest: Arc<Mutex<Sample>>) -> Sampler {
        let mut system = System::new();
        system.refresh_cpu_usage();
        Sampler {
            system,
            disks: Disks::new_with_refreshed_list(),
            store,
            latest,
            ticks: 0,
        }
    }

    fn tick(&mut self) {
        self.ticks = self.ticks.wrapping_add(1);
        self.sample(self.ticks.is_multiple_of(DISK_EVERY));
    }

    fn sample(&mut self, with_disks: bool) {
        self.system.refresh_cpu_usage();
        self.system.refresh_memory();
        let disk_percent = if with_disks {
            self.disks.refresh(true);
            Some(disk_percent(&self.disks))
        } else {
            None
        };
        let started = Instant::now();
        let store_error = self.store.refresh().err().map(|e| e.to_string());
        let mut s = sync::lock(&self.latest);
        // Log changes only, not every failed check while the store stays down.
        match (&s.store_error, &store_error) {
            (None, Some(e)) => log::error!(
                "store check failed after {} ms: {e}",
                started.elapsed().as_millis()
            ),
            (Some(_), None) => log::info!("store reachable again"),
            _ => {}
        }
        s.cpu_percent = f64::from(self.system.global_cpu_usage());
        if let Some(d) = disk_percent {
            s.disk_percent = d;
        }
        s.ram_used = self.system.used_memory();
        s.ram_available = self.system.available_memory();
        s.cgroup_limit = self
            .system
            .cgroup_limits()
            .map(|c| c.total_memory)
            .filter(|limit| *limit > 0 && *limit < self.system.total_memory());
        s.store_error = store_error;
    }
}

/// Space used across real filesystems, each device counted once, as `df` reckons it (and the
/// original's gopsutil): used / (used + available), with used = total − free, so that blocks
/// reserved for root count on neither side.
fn disk_percent(disks: &Disks) -> f64 {
    let mut seen = HashSet::new();
    let (mut used, mut available) = (0u64, 0u64);
    for disk in disks.list() {
        let fs = disk.file_system().to_string_lossy();
        if disk.total_space() == 0
            || VIRTUAL_FILESYSTEMS.contains(&fs.as_ref())
            || !seen.insert(disk.name().to_os_string())
        {
            continue;
        }
        if let Some((u, a)) = usage(disk.mount_point()) {
            used += u;
            available += a;
        }
    }
    percent(used, used + available)
}

/// Bytes used and available to unprivileged users on the filesystem mounted at `mount`.
fn usage(mount: &Path) -> Option<(u64, u64)> {
    let st = rustix::fs::statvfs(mount).ok()?;
    let block = if st.f_frsize > 0 {
        st.f_frsize
    } else {
        st.f_bsize
    };
    let used = st.f_blocks.saturating_sub(st.f_bfree).saturating_mul(block);
    Some((used, st.f_bavail.saturating_mul(block)))
}

fn percent(used: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        (used as f64 / total as f64 * 100.0).clamp(0.0, 100.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[test]
    fn percent_stays_within_bounds() {
        assert_eq!(percent(0, 0), 0.0);
        assert_eq!(percent(50, 200), 25.0);
        assert_eq!(percent(300, 200), 100.0);
    }

    #[test]
    fn disk_use_agrees_with_df() {
        let df = std::process::Command::new("df")
            .args(["-P", "/"])
            .output()
            .expect("df (coreutils)");
        let text = String::from_utf8_lossy(&df.stdout);
        let pcent: f64 = text
            .lines()
            .nth(1)
            .and_then(|l| l.split_whitespace().nth(4))
            .and_then(|p| p.trim_end_matches('%').parse().ok())
            .expect("df's Capacity column");
        let (used, available) = usage(Path::new("/")).unwrap();
        let ours = percent(used, used + available);
        // df rounds up to a whole percent.
        assert!(
            ours <= pcent && pcent - ours < 1.0 + 1e-9,
            "ours {ours}, df {pcent}"
        );
    }

    #[test]
    fn reports_real_numbers_for_this_machine() {
        let monitor = Monitor::start(Arc::new(MemoryStore::new()));
        let h = monitor.node_health();
        assert_eq!(h.ec2_instance_id, "local");
        assert!(h.uptime > 0);
        assert!(h.total_ram_bytes_used > 0);
        assert!(h.total_ram_bytes_available > 0);
        assert!((0.0..=100.0).contains(&h.disk_utilization_percent));
        assert!(h.disk_utilization_percent > 0.0, "no real filesystem found");
        assert!((0.0..=100.0).contains(&h.cpu_utilization_percent));
        assert!(h.store.reachable && !h.store.persistent);
        assert!(h.store.admitting_new_names && h.store.names == Some(0));
        assert_eq!((h.store.used_memory, h.store.maxmemory), (None, None));
    }
}
