//! The server half of a session: forwards the server's answers (with the
//! gateway's own where they are due), records each command's outcome, and
//! ends the session when told to: window end, revocation, or the client
//! half's fault. Every wait, writes to the client included, races the
//! cut-off, so a client that stops reading cannot keep its session alive.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use taskgate_audit::Timestamp;
use taskgate_wire_pg::backend::{self, BackendMessage};
use taskgate_wire_pg::frame::{self, Direction, Frame, Limits};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, watch};

use super::super::ClientStream;
use super::super::sessions::CloseReason;
use super::{Ending, Shared};

/// Longest wait to deliver the final FATAL to a client that is not reading.
const FATAL_WRITE_TIMEOUT: Duration = Duration::from_millis(200);

/// Why the session must end now, if it must.
struct Cut<'a> {
    closing: &'a mut watch::Receiver<Option<CloseReason>>,
    stop: &'a mut mpsc::Receiver<Ending>,
}

impl Cut<'_> {
    /// Resolves when the session is cut (revoked, ended, told to stop).
    async fn wait(&mut self) -> Ending {
        loop {
            tokio::select! {
                changed = self.closing.changed() => {
                    if changed.is_err() {
                        // The registry entry is gone: nothing can close us
                        // through it any more, so only `stop` remains.
                        return self.stop.recv().await.unwrap_or(Ending::ClientLeft);
                    }
                    if let Some(reason) = *self.closing.borrow() {
                        return Ending::Closed(reason);
                    }
                }
                Some(ending) = self.stop.recv() => return ending,
            }
        }
    }
}

pub async fn server_half(
    shared: Arc<Shared>,
    mut upstream: ReadHalf<ClientStream>,
    mut buf: BytesMut,
    mut client: WriteHalf<ClientStream>,
    mut closing: watch::Receiver<Option<CloseReason>>,
    ends_at: Option<Timestamp>,
    mut stop: mpsc::Receiver<Ending>,
) -> Ending {
    let window_end = async {
        match ends_at {
            Some(end) => tokio::time::sleep(Timestamp::now().until(end)).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(window_end);
    let mut cut = Cut {
        closing: &mut closing,
        stop: &mut stop,
    };
    let mut out = Vec::with_capacity(16 * 1024);
    let ending = loop {
        out.clear();
        let failed = tokio::select! {
            read = upstream.read_buf(&mut buf) => match read {
                Ok(0) => break Ending::ServerClosed,
                Ok(_) => forward_answers(&shared, &mut buf, &mut out).await.err(),
                Err(e) => break Ending::Io(e.to_string()),
            },
            () = shared.made.notified() => {
                shared.tracker().take_made(&mut out);
                None
            }
            ending = cut.wait() => break ending,
            () = &mut window_end => break Ending::Closed(CloseReason::WindowEnded),
        };
        if !out.is_empty() {
            tokio::select! {
                written = client.write_all(&out) => if let Err(e) = written {
                    break Ending::Io(e.to_string());
                },
                ending = cut.wait() => break ending,
                () = &mut window_end => break Ending::Closed(CloseReason::WindowEnded),
            }
        }
        if let Some(ending) = failed {
            break ending;
        }
    };
    if let Some(fatal) = ending.fatal() {
        let _ = tokio::time::timeout(FATAL_WRITE_TIMEOUT, async {
            let _ = client.write_all(&fatal).await;
            let _ = client.shutdown().await;
        })
        .await;
    }
    ending
}

/// A notification this session sent itself, naming the process id the
/// client was given rather than the server's (clients tell their own
/// notifications from others' by it); `None` for any other.
fn own_notification(frame: &Frame, own_pid: Option<(u32, u32)>) -> Option<Vec<u8>> {
    let (server, client) = own_pid?;
    let body = frame.body();
    let pid = u32::from_be_bytes(body.get(..4)?.try_into().ok()?);
    if pid != server {
        return None;
    }
    let mut raw = frame.raw.to_vec();
    // The tag and the length come before the body.
    raw.get_mut(5..9)?.copy_from_slice(&client.to_be_bytes());
    Some(raw)
}

/// Forwards every whole server message in `buf`, recording the outcomes
/// they carry before the client sees them.
async fn forward_answers(
    shared: &Shared,
    buf: &mut BytesMut,
    out: &mut Vec<u8>,
) -> Result<(), Ending> {
    let mut done = Vec::new();
    let mut ready = false;
    let unsafe_change = {
        let mut tracker = shared.tracker();
        let now = Instant::now();
        loop {
            let frame = match frame::decode(buf, Direction::Backend, &Limits::default()) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => return Err(Ending::ServerProtocol(e.to_string())),
            };
            // Read in the client's encoding (the server converts its
            // answers to it); forwarded as it came.
            let read = tracker
                .reading
                .encoding
                .transcode(&frame, Direction::Backend);
            let message =
                backend::decode(&read).map_err(|e| Ending::ServerProtocol(e.to_string()))?;
            // Followed where the client half sees it under the same lock
            // that tells it everything is answered.
            let mut shown = None;
            if let BackendMessage::ParameterStatus { name, value } = message {
                if tracker.unsafe_setting.is_none() {
                    tracker.unsafe_setting =
                        tracker.reading.follow(name, value, &shared.record.task);
                }
                shown = crate::pg::app_name::shown_report(name, value, &shared.record.task);
            }
            if matches!(message, BackendMessage::NotificationResponse) {
                shown = own_notification(&frame, shared.own_pid);
            }
            // DDL is seen by other sessions once its transaction ends:
            // their catalog views go stale before the client hears of it.
            if matches!(message, BackendMessage::ReadyForQuery(b'I'))
                && shared
                    .catalog_changing
                    .swap(false, std::sync::atomic::Ordering::AcqRel)
            {
                (shared.catalog_changed)();
            }
            let forward = tracker.on_backend(&message, frame.body().len(), now, &mut done);
            // Everything sent has been answered (by a ReadyForQuery, or by
            // an error that makes the server discard the rest): a client
            // half waiting on names may go on.
            ready |= tracker.unanswered() == 0;
            tracker.take_due(out);
            if forward {
                match shown {
                    Some(shown) => out.extend(shown),
                    None => out.extend_from_slice(&frame.raw),
                }
            }
            tracker.take_made(out);
        }
        tracker.unsafe_setting.clone()
    };
    // A client half waiting for these answers must not go on reading
    // under a setting the gateway cannot read by: the session ends first.
    if ready && unsafe_change.is_none() {
        shared.answered.notify_one();
    }
    let committed = |shared: &Shared| {
        shared
            .committed_through
            .load(std::sync::atomic::Ordering::Acquire)
    };
    // The mark only rises: outcomes under it are recorded at once. One
    // over it waits for its start, decided under the tracker's lock, as
    // the client half moves the mark: never both deferred and missed.
    let first = committed(shared);
    let done: Vec<_> = if done.iter().all(|c| c.id <= first) {
        done
    } else {
        let mut tracker = shared.tracker();
        let mark = committed(shared);
        let (now, later): (Vec<_>, Vec<_>) = done.into_iter().partition(|c| c.id <= mark);
        tracker.deferred.extend(later);
        now
    };
    for completion in &done {
        let draft = shared.record.completed(completion);
        if let Err(e) = shared.writer.append_queued(draft).await {
            return Err(Ending::AuditUnavailable(e.to_string()));
        }
    }
    match unsafe_change {
        Some(why) => Err(Ending::UnsafeSetting(why)),
        None => Ok(()),
    }
}
