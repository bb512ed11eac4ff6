//! The `nats` sink: publishes each event to NATS JetStream with its id as
//! the `Nats-Msg-Id`, and waits for the stream's acknowledgements. A retry
//! after a failure or a restart publishes the same ids again, and JetStream
//! drops them as duplicates within the stream's duplicate window: the
//! stream holds each event once.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use taskgate_policy::config::Sink;

use super::{Deliver, Delivery, Failure, Outgoing};

/// The duplicate window of a stream this sink creates: longer than any
/// outage the retry schedule rides out before its hourly attempts.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(3600);

pub struct NatsSink {
    url: String,
    subject: String,
    stream: String,
    timeout: Duration,
    /// Connected on first use, and again after a failure.
    context: Option<jetstream::Context>,
}

fn retry(what: &str) -> impl Fn(String) -> Failure + '_ {
    move |e| Failure::Retry(format!("{what}: {e}"))
}

impl NatsSink {
    pub fn new(config: &Sink) -> Result<Self, String> {
        Ok(Self {
            url: config.url.clone().ok_or("no url")?,
            subject: config
                .subject
                .clone()
                .unwrap_or_else(|| "taskgate.events".into()),
            stream: config.stream.clone().unwrap_or_else(|| "TASKGATE".into()),
            timeout: config.timeout.0,
            context: None,
        })
    }

    async fn connect(&self) -> Result<jetstream::Context, Failure> {
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(self.timeout)
            .connect(&self.url)
            .await
            .map_err(|e| Failure::Retry(format!("{}: {e}", self.url)))?;
        let context = jetstream::new(client);
        context
            .get_or_create_stream(stream::Config {
                name: self.stream.clone(),
                subjects: vec![self.subject.clone()],
                duplicate_window: DUPLICATE_WINDOW,
                ..Default::default()
            })
            .await
            .map_err(|e| Failure::Retry(format!("stream {}: {e}", self.stream)))?;
        Ok(context)
    }

    async fn publish(&mut self, events: &[Outgoing]) -> Result<(), Failure> {
        if self.context.is_none() {
            self.context = Some(self.connect().await?);
        }
        let Some(context) = self.context.as_ref() else {
            return Err(Failure::Retry("not connected".into()));
        };
        // Publish all, then wait for every acknowledgement.
        let mut acks = Vec::with_capacity(events.len());
        for event in events {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(async_nats::header::NATS_MESSAGE_ID, event.id.as_str());
            let payload =
                serde_json::to_vec(&event.json).map_err(|e| retry("encode")(e.to_string()))?;
            let ack = context
                .publish_with_headers(self.subject.clone(), headers, payload.into())
                .await
                .map_err(|e| retry("publish")(e.to_string()))?;
            acks.push(ack);
        }
        for ack in acks {
            tokio::time::timeout(self.timeout, ack)
                .await
                .map_err(|_| Failure::Retry("no acknowledgement in time".into()))?
                .map_err(|e| retry("acknowledgement")(e.to_string()))?;
        }
        Ok(())
    }
}

impl Deliver for NatsSink {
    fn deliver<'a>(&'a mut self, events: &'a [Outgoing]) -> Delivery<'a> {
        Box::pin(async move {
            let result = self.publish(events).await;
            if result.is_err() {
                // Reconnect next time rather than trust a broken connection.
                self.context = None;
            }
            result
        })
    }
}
