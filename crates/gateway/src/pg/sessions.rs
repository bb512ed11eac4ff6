//! Live data-plane sessions: which task each belongs to, so a window's end
//! or a revocation reaches every one of them, and the cancel keys the
//! gateway handed out, so a `CancelRequest` finds its upstream backend.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use subtle::ConstantTimeEq;
use tokio::sync::watch;

/// Why the gateway ends a task's sessions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    WindowEnded,
    Revoked,
    Ended,
    ShuttingDown,
}

impl CloseReason {
    /// The message the client sees with `FATAL 57P01`.
    pub fn message(self) -> &'static str {
        match self {
            CloseReason::WindowEnded => "task window ended",
            CloseReason::Revoked => "task revoked",
            CloseReason::Ended => "task ended",
            CloseReason::ShuttingDown => "the gateway is shutting down",
        }
    }
}

/// Where a gateway-issued cancel key leads.
#[derive(Clone, Debug)]
pub struct UpstreamKey {
    pub address: String,
    pub process_id: u32,
    pub secret_key: Vec<u8>,
}

struct Entry {
    task: String,
    close: watch::Sender<Option<CloseReason>>,
    /// Counts the client's cancel requests (a held statement ends on one).
    cancels: watch::Sender<u64>,
    cancel: Option<(u32, [u8; 4], UpstreamKey)>,
}

#[derive(Default)]
struct Table {
    sessions: HashMap<u64, Entry>,
}

#[derive(Default)]
pub struct Sessions {
    table: Mutex<Table>,
    next: AtomicU64,
}

/// Dropping the guard removes the session from the registry.
pub struct SessionGuard {
    sessions: Arc<Sessions>,
    number: u64,
    pub closing: watch::Receiver<Option<CloseReason>>,
    pub cancels: watch::Receiver<u64>,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.sessions.lock().sessions.remove(&self.number);
    }
}

#[derive(Debug, thiserror::Error)]
#[error("task {task} already has {limit} open sessions, its limit")]
pub struct TooManySessions {
    pub task: String,
    pub limit: usize,
}

impl Sessions {
    fn lock(&self) -> MutexGuard<'_, Table> {
        // A panic while holding this lock leaves a plain map behind, still
        // consistent, so carry on with it.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a session of `task`, refusing it past `per_task_limit`.
    pub fn register(
        self: &Arc<Self>,
        task: &str,
        per_task_limit: usize,
    ) -> Result<SessionGuard, TooManySessions> {
        let mut table = self.lock();
        let open = table.sessions.values().filter(|e| e.task == task).count();
        if open >= per_task_limit {
            return Err(TooManySessions {
                task: task.to_owned(),
                limit: per_task_limit,
            });
        }
        let number = self.next.fetch_add(1, Ordering::Relaxed);
        let (close, closing) = watch::channel(None);
        let (cancel_count, cancels) = watch::channel(0);
        table.sessions.insert(
            number,
            Entry {
                task: task.to_owned(),
                close,
                cancels: cancel_count,
                cancel: None,
            },
        );
        Ok(SessionGuard {
            sessions: Arc::clone(self),
            number,
            closing,
            cancels,
        })
    }

    /// Tells every live session of `task` to close; returns how many.
    pub fn close_task(&self, task: &str, reason: CloseReason) -> usize {
        let table = self.lock();
        let mut n = 0;
        for entry in table.sessions.values().filter(|e| e.task == task) {
            entry.close.send_replace(Some(reason));
            n += 1;
        }
        n
    }

    pub fn close_all(&self, reason: CloseReason) {
        for entry in self.lock().sessions.values() {
            entry.close.send_replace(Some(reason));
        }
    }

    /// The tasks with a session open on this node.
    pub fn tasks(&self) -> Vec<String> {
        let mut tasks: Vec<String> = self
            .lock()
            .sessions
            .values()
            .map(|e| e.task.clone())
            .collect();
        tasks.sort();
        tasks.dedup();
        tasks
    }

    pub fn open_sessions(&self) -> usize {
        self.lock().sessions.len()
    }

    /// Records the key the gateway gave this session's client.
    pub fn set_cancel_key(
        &self,
        guard: &SessionGuard,
        process_id: u32,
        key: [u8; 4],
        upstream: UpstreamKey,
    ) {
        if let Some(entry) = self.lock().sessions.get_mut(&guard.number) {
            entry.cancel = Some((process_id, key, upstream));
        }
    }

    /// A client's cancel request: tells the session its key names (so a
    /// statement held for review ends) and returns the upstream backend to
    /// cancel, if any.
    pub fn cancel(&self, process_id: u32, key: &[u8]) -> Option<UpstreamKey> {
        let table = self.lock();
        table.sessions.values().find_map(|e| match &e.cancel {
            Some((pid, k, upstream))
                if *pid == process_id && bool::from(k.as_slice().ct_eq(key)) =>
            {
                e.cancels.send_modify(|n| *n += 1);
                Some(upstream.clone())
            }
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closing_a_task_reaches_only_its_sessions() {
        let sessions = Arc::new(Sessions::default());
        let a1 = sessions.register("a", 5).unwrap();
        let a2 = sessions.register("a", 5).unwrap();
        let b = sessions.register("b", 5).unwrap();
        assert_eq!(sessions.close_task("a", CloseReason::Revoked), 2);
        assert_eq!(*a1.closing.borrow(), Some(CloseReason::Revoked));
        assert_eq!(*a2.closing.borrow(), Some(CloseReason::Revoked));
        assert_eq!(*b.closing.borrow(), None);
        drop(a1);
        assert_eq!(sessions.open_sessions(), 2);
    }

    #[test]
    fn per_task_limit_is_enforced_and_freed_on_drop() {
        let sessions = Arc::new(Sessions::default());
        let first = sessions.register("a", 1).unwrap();
        assert!(sessions.register("a", 1).is_err());
        drop(first);
        assert!(sessions.register("a", 1).is_ok());
    }

    #[test]
    fn cancel_keys_must_match_exactly() {
        let sessions = Arc::new(Sessions::default());
        let s = sessions.register("a", 1).unwrap();
        let upstream = UpstreamKey {
            address: "db:5432".into(),
            process_id: 77,
            secret_key: vec![9, 9, 9, 9],
        };
        sessions.set_cancel_key(&s, 5, [1, 2, 3, 4], upstream);
        assert_eq!(
            sessions.cancel(5, &[1, 2, 3, 4]).map(|u| u.process_id),
            Some(77)
        );
        assert!(sessions.cancel(5, &[1, 2, 3, 5]).is_none());
        assert!(sessions.cancel(6, &[1, 2, 3, 4]).is_none());
    }
}
