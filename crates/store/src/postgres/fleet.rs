//! A node's own connection to the shared store, for what the fleet
//! coordinates outside the log: changes announced by other nodes (LISTEN),
//! leases on work that must run on one node at a time (session-level
//! advisory locks: held while this connection lives, gone with it when the
//! node dies), the node's heartbeat, and the data-plane sessions open on
//! each node, which a task's connection limit counts fleet-wide.

use std::time::Duration;

use tokio::sync::Mutex;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_postgres::{Client, Notification};

use super::{NOTIFY_CHANNEL, PgOptions};
use crate::Result;

/// A node not seen for this long is taken for dead: its sessions no longer
/// count against a task's limit.
pub const NODE_TIMEOUT: Duration = Duration::from_secs(5);

/// Namespace of Taskgate's advisory locks (the first key of the pair), so
/// they cannot collide with an application's own on the same database.
const LOCK_SPACE: i32 = 0x7461_736b; // "task"

pub struct FleetLink {
    /// One connection: the leases live and die with it. Behind a lock for
    /// the transaction that opens a session.
    client: Mutex<Client>,
    node: String,
}

/// A change another node (or this one) committed, as announced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Announcement {
    Task { id: String, state: String },
    Review { id: String, state: String },
}

impl Announcement {
    pub fn parse(notification: &Notification) -> Option<Announcement> {
        let mut parts = notification.payload().splitn(3, ' ');
        let (what, id, state) = (parts.next()?, parts.next()?, parts.next()?);
        let (id, state) = (id.to_owned(), state.to_owned());
        match what {
            "task" => Some(Announcement::Task { id, state }),
            "review" => Some(Announcement::Review { id, state }),
            _ => None,
        }
    }
}

impl FleetLink {
    /// Connects, listens for announcements, and records the node as alive.
    pub async fn connect(
        options: &PgOptions,
        node: &str,
    ) -> Result<(FleetLink, UnboundedReceiver<Notification>)> {
        let (client, notifications) = options.connect_async().await?;
        client
            .batch_execute(&format!("LISTEN {NOTIFY_CHANNEL}"))
            .await?;
        let link = FleetLink {
            client: Mutex::new(client),
            node: node.to_owned(),
        };
        link.heartbeat().await?;
        Ok((link, notifications))
    }

    pub async fn is_closed(&self) -> bool {
        self.client.lock().await.is_closed()
    }

    /// Marks the node alive now.
    pub async fn heartbeat(&self) -> Result<()> {
        self.client
            .lock()
            .await
            .execute(
                "INSERT INTO taskgate.nodes (node, seen_at) VALUES ($1, now())
                 ON CONFLICT (node) DO UPDATE SET seen_at = now()",
                &[&self.node],
            )
            .await?;
        Ok(())
    }

    /// Takes the lease `name` if no other node holds it: true when taken.
    /// Ask only for a lease not held yet (a held one is counted again).
    pub async fn try_lease(&self, name: &str) -> Result<bool> {
        let row = self
            .client
            .lock()
            .await
            .query_one(
                "SELECT pg_try_advisory_lock($1::int4, hashtext($2))",
                &[&LOCK_SPACE, &name],
            )
            .await?;
        Ok(row.get(0))
    }

    /// Forgets the sessions this node recorded before it restarted.
    pub async fn forget_own_sessions(&self) -> Result<u64> {
        Ok(self
            .client
            .lock()
            .await
            .execute(
                "DELETE FROM taskgate.sessions WHERE node = $1",
                &[&self.node],
            )
            .await?)
    }

    /// Records a session of `task` unless the task already has `limit`
    /// open on live nodes; the count and the insert run under the task's
    /// lock, so two nodes cannot both take the last place. Returns the
    /// count found when refused.
    pub async fn open_session(&self, id: &str, task: &str, limit: usize) -> Result<Option<usize>> {
        let mut client = self.client.lock().await;
        let conn = client.transaction().await?;
        conn.execute(
            "SELECT pg_advisory_xact_lock($1::int4, hashtext($2))",
            &[&LOCK_SPACE, &format!("task {task}")],
        )
        .await?;
        let open: i64 = conn
            .query_one(
                "SELECT count(*) FROM taskgate.sessions s JOIN taskgate.nodes n ON n.node = s.node
                 WHERE s.task = $1 AND (s.node = $2 OR n.seen_at > now() - make_interval(secs => $3))",
                &[&task, &self.node, &NODE_TIMEOUT.as_secs_f64()],
            )
            .await?
            .get(0);
        let open = usize::try_from(open).unwrap_or(usize::MAX);
        if open >= limit {
            conn.rollback().await?;
            return Ok(Some(open));
        }
        conn.execute(
            "INSERT INTO taskgate.sessions (id, node, task) VALUES ($1, $2, $3)",
            &[&id, &self.node, &task],
        )
        .await?;
        conn.commit().await?;
        Ok(None)
    }

    pub async fn close_session(&self, id: &str) -> Result<()> {
        self.client
            .lock()
            .await
            .execute("DELETE FROM taskgate.sessions WHERE id = $1", &[&id])
            .await?;
        Ok(())
    }
}
