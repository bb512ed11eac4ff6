//! A node's part in a fleet sharing one PostgreSQL store: what the other
//! nodes announce (a revoke or window end cuts this node's sessions of the
//! task; a review decided elsewhere wakes the statement held here), the
//! leases on work that runs on one node at a time (expiry, time-based
//! checkpoints, each export sink), and each task's sessions counted across
//! the fleet. All of it rides one connection: when it drops, every lease
//! goes with it (another node takes them over) and this node reconnects.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use taskgate_store::postgres::PgOptions;
use taskgate_store::postgres::fleet::{Announcement, FleetLink};
use taskgate_store::{StoreRead, Writer};
use tokio::sync::{Notify, watch};

use crate::pg::sessions::{CloseReason, Sessions};

/// How often the node beats, retries leases it lacks, and reconnects.
const TICK: Duration = Duration::from_secs(1);

/// Longest a new session waits for the coordination connection.
const LINK_WAIT: Duration = Duration::from_secs(5);

/// The lease on expiring due tasks.
pub const EXPIRY_LEASE: &str = "expiry";
/// The lease on time-based signed checkpoints.
pub const CHECKPOINT_LEASE: &str = "checkpoints";

/// The lease on delivering the sink `name`.
pub fn sink_lease(name: &str) -> String {
    format!("sink {name}")
}

pub struct Fleet {
    options: PgOptions,
    node: String,
    link: watch::Sender<Option<Arc<FleetLink>>>,
    held: watch::Sender<HashSet<String>>,
}

/// Whether this node holds one lease, and a wait for that to change.
#[derive(Clone)]
pub struct Lease {
    name: String,
    held: watch::Receiver<HashSet<String>>,
}

impl Lease {
    pub fn held(&self) -> bool {
        self.held.borrow().contains(&self.name)
    }

    /// Waits until the lease is held (at once if it is).
    pub async fn acquired(&mut self) {
        let name = self.name.clone();
        let _ = self.held.wait_for(|held| held.contains(&name)).await;
    }
}

/// What the fleet's connection wakes on this node.
pub struct Wakes {
    pub sessions: Arc<Sessions>,
    pub writer: Writer,
    pub reader: Arc<dyn StoreRead>,
    pub deadlines: Arc<Notify>,
}

/// A data-plane session's place in the fleet-wide count; given back when
/// dropped.
pub struct Seat {
    link: Arc<FleetLink>,
    id: String,
}

impl Drop for Seat {
    fn drop(&mut self) {
        let (link, id) = (Arc::clone(&self.link), std::mem::take(&mut self.id));
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(error) = link.close_session(&id).await {
                    // The row stays until this node restarts or is seen dead.
                    tracing::warn!(%error, session = %id, "cannot remove a closed session from the shared store");
                }
            });
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SeatError {
    #[error("task {task} already has {open} open sessions across the fleet, its limit")]
    Full { task: String, open: usize },
    #[error("the shared store cannot be reached to count the task's sessions")]
    Unreachable,
}

impl Fleet {
    pub fn new(options: PgOptions, node: &str) -> Arc<Fleet> {
        Arc::new(Fleet {
            options,
            node: node.to_owned(),
            link: watch::channel(None).0,
            held: watch::channel(HashSet::new()).0,
        })
    }

    pub fn lease(&self, name: &str) -> Lease {
        Lease {
            name: name.to_owned(),
            held: self.held.subscribe(),
        }
    }

    /// Takes a place for session `id` of `task`, within `limit` across the
    /// fleet. Refused while the shared store is out of reach: a limit that
    /// cannot be counted is not granted.
    pub async fn seat(&self, id: &str, task: &str, limit: usize) -> Result<Seat, SeatError> {
        let link = self.current_link().await.ok_or(SeatError::Unreachable)?;
        match link.open_session(id, task, limit).await {
            Ok(None) => Ok(Seat {
                link,
                id: id.to_owned(),
            }),
            Ok(Some(open)) => Err(SeatError::Full {
                task: task.to_owned(),
                open,
            }),
            Err(error) => {
                tracing::warn!(%error, "cannot count a task's sessions in the shared store");
                Err(SeatError::Unreachable)
            }
        }
    }

    /// The coordination connection, waiting a moment for it while it is
    /// being made (just after start, or after the store came back), so a
    /// session then is not refused for a race.
    async fn current_link(&self) -> Option<Arc<FleetLink>> {
        if let Some(link) = self.link.borrow().clone() {
            return Some(link);
        }
        let mut link = self.link.subscribe();
        let waited = tokio::time::timeout(LINK_WAIT, link.wait_for(Option::is_some)).await;
        waited.ok()?.ok()?.clone()
    }

    /// Keeps the node's connection up: listens, beats, takes the `wanted`
    /// leases it can, and wakes what announcements concern.
    pub async fn run(
        self: Arc<Self>,
        wanted: Vec<String>,
        wakes: Wakes,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut first = true;
        let mut failing = false;
        loop {
            match FleetLink::connect(&self.options, &self.node).await {
                Ok((link, mut announcements)) => {
                    failing = false;
                    let link = Arc::new(link);
                    if first {
                        // Rows of sessions from before a restart are stale.
                        match link.forget_own_sessions().await {
                            Ok(n) if n > 0 => tracing::info!(
                                sessions = n,
                                "forgot this node's sessions from before its restart"
                            ),
                            Ok(_) => {}
                            Err(error) => {
                                tracing::warn!(%error, "cannot forget this node's old sessions")
                            }
                        }
                        first = false;
                    } else {
                        // Announcements made while disconnected were missed.
                        catch_up(&wakes).await;
                    }
                    self.link.send_replace(Some(Arc::clone(&link)));
                    tracing::info!(node = %self.node, "joined the fleet's shared store");
                    let stop = self
                        .serve(&link, &mut announcements, &wanted, &wakes, &mut shutdown)
                        .await;
                    self.link.send_replace(None);
                    self.held.send_replace(HashSet::new());
                    if stop {
                        return;
                    }
                    tracing::warn!(
                        "lost the fleet's connection to the shared store; leases released, reconnecting"
                    );
                }
                Err(error) if !failing => {
                    failing = true;
                    tracing::error!(%error, "cannot reach the shared store for the fleet's coordination; retrying");
                }
                Err(_) => {}
            }
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(TICK) => {}
            }
        }
    }

    /// Serves one connection until it drops (false) or the node stops (true).
    async fn serve(
        &self,
        link: &FleetLink,
        announcements: &mut tokio::sync::mpsc::UnboundedReceiver<tokio_postgres::Notification>,
        wanted: &[String],
        wakes: &Wakes,
        shutdown: &mut watch::Receiver<bool>,
    ) -> bool {
        let mut tick = tokio::time::interval(TICK);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return true,
                note = announcements.recv() => match note {
                    Some(note) => match Announcement::parse(&note) {
                        Some(announcement) => wake(&announcement, wakes),
                        None => tracing::debug!(payload = note.payload(), "an announcement not understood"),
                    },
                    None => return false,
                },
                _ = tick.tick() => {
                    if link.is_closed().await || link.heartbeat().await.is_err() {
                        return false;
                    }
                    for name in wanted {
                        if self.held.borrow().contains(name) {
                            continue;
                        }
                        match link.try_lease(name).await {
                            Ok(true) => {
                                tracing::info!(lease = %name, node = %self.node, "took the lease");
                                self.held.send_modify(|held| {
                                    held.insert(name.clone());
                                });
                            }
                            Ok(false) => {}
                            Err(_) => return false,
                        }
                    }
                }
            }
        }
    }
}

/// What an announcement means on this node.
fn wake(announcement: &Announcement, wakes: &Wakes) {
    match announcement {
        Announcement::Task { id, state } => {
            let reason = match state.as_str() {
                "revoked" => Some(CloseReason::Revoked),
                "ended" => Some(CloseReason::Ended),
                "expired" => Some(CloseReason::WindowEnded),
                _ => None,
            };
            match reason {
                Some(reason) => {
                    let closed = wakes.sessions.close_task(id, reason);
                    if closed > 0 {
                        tracing::info!(task = %id, %state, sessions = closed, "closed the task's sessions on this node");
                    }
                }
                // A new or approved task may bring a nearer deadline.
                None => wakes.deadlines.notify_one(),
            }
        }
        Announcement::Review { .. } => wakes.writer.reviews_changed_elsewhere(),
    }
}

/// After a gap in announcements: closes this node's sessions of tasks that
/// are no longer active, and wakes held statements to look again.
async fn catch_up(wakes: &Wakes) {
    wakes.writer.reviews_changed_elsewhere();
    wakes.deadlines.notify_one();
    for task in wakes.sessions.tasks() {
        let reader = Arc::clone(&wakes.reader);
        let id = task.clone();
        let found = tokio::task::spawn_blocking(move || reader.task(&id)).await;
        if let Ok(Ok(Some(found))) = found
            && found.state.is_final()
        {
            wake(
                &Announcement::Task {
                    id: task,
                    state: found.state.as_str().to_owned(),
                },
                wakes,
            );
        }
    }
}

/// The node's name when `[server] node` is not set: the host's name.
/// (Read from the kernel rather than through a crate: one file, Linux only,
/// with a fallback.)
pub fn default_node_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "gateway".to_owned())
}
