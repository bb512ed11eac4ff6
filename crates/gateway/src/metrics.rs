//! Prometheus metrics. Counters the audit writer keeps itself are read at
//! scrape time, so its hot path touches only atomics.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;
use taskgate_store::WriterStats;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransitionLabels {
    pub to: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkLabels {
    pub sink: String,
}

pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<HttpLabels, Counter>,
    pub api_auth_failures: Counter,
    pub task_transitions: Family<TransitionLabels, Counter>,
    pub sink_lag: Family<SinkLabels, Gauge>,
}

#[derive(Debug)]
struct WriterCollector(Arc<WriterStats>);

impl Collector for WriterCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = &self.0;
        let counters = [
            (
                "taskgate_audit_events",
                "Audit events moved into the store",
                &stats.events,
            ),
            (
                "taskgate_audit_batches",
                "Audit store transactions committed",
                &stats.batches,
            ),
            (
                "taskgate_audit_operations",
                "Operations committed by the audit writer",
                &stats.ops,
            ),
            (
                "taskgate_audit_failed_batches",
                "Audit transactions that failed and were refused",
                &stats.failed_batches,
            ),
            (
                "taskgate_audit_commit_microseconds",
                "Time spent applying and committing audit batches",
                &stats.commit_micros,
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value.load(Ordering::Relaxed));
            let metric = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            counter.encode(metric)?;
        }
        let gauges = [
            (
                "taskgate_audit_sealed_seq",
                "Last audit event sequence number committed to the journal",
                &stats.sealed_seq,
            ),
            (
                "taskgate_audit_stored_seq",
                "Last audit event sequence number moved into the store",
                &stats.stored_seq,
            ),
        ];
        for (name, help, value) in gauges {
            let seq = i64::try_from(value.load(Ordering::Relaxed)).unwrap_or(i64::MAX);
            let gauge = ConstGauge::new(seq);
            let metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
            gauge.encode(metric)?;
        }
        Ok(())
    }
}

impl Metrics {
    pub fn new(writer: Arc<WriterStats>) -> Self {
        let mut registry = Registry::default();
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "taskgate_http_requests",
            "API requests by route and status",
            http_requests.clone(),
        );
        let api_auth_failures = Counter::default();
        registry.register(
            "taskgate_api_auth_failures",
            "API requests with a missing or invalid bearer token",
            api_auth_failures.clone(),
        );
        let task_transitions = Family::<TransitionLabels, Counter>::default();
        registry.register(
            "taskgate_task_transitions",
            "Tasks entering each state",
            task_transitions.clone(),
        );
        let sink_lag = Family::<SinkLabels, Gauge>::default();
        registry.register(
            "taskgate_sink_lag_events",
            "Events recorded but not yet acknowledged by each export sink",
            sink_lag.clone(),
        );
        registry.register_collector(Box::new(WriterCollector(writer)));
        Self {
            registry,
            http_requests,
            api_auth_failures,
            task_transitions,
            sink_lag,
        }
    }

    pub fn task_entered(&self, state: &str) {
        self.task_transitions
            .get_or_create(&TransitionLabels {
                to: state.to_owned(),
            })
            .inc();
    }

    pub fn sink_lag(&self, sink: &str, lag: u64) {
        self.sink_lag
            .get_or_create(&SinkLabels {
                sink: sink.to_owned(),
            })
            .set(i64::try_from(lag).unwrap_or(i64::MAX));
    }

    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}
