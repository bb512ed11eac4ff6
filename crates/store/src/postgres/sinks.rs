//! Export sinks' progress in the shared store: the same ledger as a node's
//! `taskgate.sinks.db`, so the node that takes a sink over (its lease, see
//! the gateway's fleet module) goes on from where the last holder stopped.

use taskgate_audit::Timestamp;

use super::PgOptions;
use super::read::PgReader;
use crate::Result;
use crate::sinks::{Parked, SinkLedger, SinkProgress, seq_param};

pub struct PgSinks {
    pool: PgReader,
}

impl PgSinks {
    pub fn new(options: PgOptions) -> Self {
        Self {
            pool: PgReader::new(options),
        }
    }
}

fn seqs_param(seqs: &[u64]) -> Vec<i64> {
    seqs.iter().map(|s| seq_param(*s)).collect()
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl SinkLedger for PgSinks {
    fn cursor(&self, sink: &str) -> Result<u64> {
        self.pool.with(|c| {
            let row = c.query_opt(
                "SELECT cursor FROM taskgate.sinks WHERE name = $1",
                &[&sink],
            )?;
            Ok(row.map_or(0, |r| u64::try_from(r.get::<_, i64>(0)).unwrap_or(0)))
        })
    }

    fn advance(&self, sink: &str, through: u64, delivered: u64) -> Result<()> {
        self.pool.with(|c| {
            c.execute(
                "INSERT INTO taskgate.sinks (name, cursor, delivered, last_delivery_us) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (name) DO UPDATE SET cursor = greatest(sinks.cursor, $2),
                     delivered = sinks.delivered + $3,
                     last_delivery_us = CASE WHEN $3 > 0 THEN $4 ELSE sinks.last_delivery_us END,
                     last_error = NULL, last_error_us = NULL",
                &[&sink, &seq_param(through), &seq_param(delivered), &Timestamp::now().as_micros()],
            )?;
            Ok(())
        })
    }

    fn park(&self, sink: &str, seqs: &[u64], through: u64, reason: &str) -> Result<()> {
        self.pool.with(|c| {
            let mut tx = c.transaction()?;
            let now = Timestamp::now().as_micros();
            tx.execute(
                "INSERT INTO taskgate.sink_parked (sink, seq, reason, at_us)
                 SELECT $1, seq, $3, $4 FROM unnest($2::bigint[]) AS seq
                 ON CONFLICT (sink, seq) DO UPDATE SET reason = $3, at_us = $4",
                &[&sink, &seqs_param(seqs), &reason, &now],
            )?;
            tx.execute(
                "INSERT INTO taskgate.sinks (name, cursor, parked, last_error, last_error_us) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (name) DO UPDATE SET cursor = greatest(sinks.cursor, $2),
                     parked = sinks.parked + $3, last_error = $4, last_error_us = $5",
                &[&sink, &seq_param(through), &count(seqs.len()), &format!("parked: {reason}"), &now],
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    fn failed(&self, sink: &str, error: &str) -> Result<()> {
        self.pool.with(|c| {
            c.execute(
                "INSERT INTO taskgate.sinks (name, last_error, last_error_us) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO UPDATE SET last_error = $2, last_error_us = $3",
                &[&sink, &error, &Timestamp::now().as_micros()],
            )?;
            Ok(())
        })
    }

    fn parked(&self, sink: &str) -> Result<Vec<Parked>> {
        self.pool.with(|c| {
            let rows = c.query(
                "SELECT p.seq, p.reason, p.at_us, r.seq IS NOT NULL FROM taskgate.sink_parked p
                 LEFT JOIN taskgate.sink_redeliver r ON r.sink = p.sink AND r.seq = p.seq
                 WHERE p.sink = $1 ORDER BY p.seq",
                &[&sink],
            )?;
            Ok(rows
                .iter()
                .map(|r| Parked {
                    seq: u64::try_from(r.get::<_, i64>(0)).unwrap_or(0),
                    reason: r.get(1),
                    at: Timestamp::from_micros(r.get(2)),
                    queued: r.get(3),
                })
                .collect())
        })
    }

    fn requeue(&self, sink: &str, from: u64, to: u64) -> Result<u64> {
        self.pool.with(|c| {
            Ok(c.execute(
                "INSERT INTO taskgate.sink_redeliver (sink, seq)
                 SELECT sink, seq FROM taskgate.sink_parked WHERE sink = $1 AND seq BETWEEN $2 AND $3
                 ON CONFLICT DO NOTHING",
                &[&sink, &seq_param(from), &seq_param(to)],
            )?)
        })
    }

    fn queued(&self, sink: &str, limit: usize) -> Result<Vec<u64>> {
        self.pool.with(|c| {
            let rows = c.query(
                "SELECT seq FROM taskgate.sink_redeliver WHERE sink = $1 ORDER BY seq LIMIT $2",
                &[&sink, &count(limit)],
            )?;
            Ok(rows
                .iter()
                .map(|r| u64::try_from(r.get::<_, i64>(0)).unwrap_or(0))
                .collect())
        })
    }

    fn redelivered(&self, sink: &str, seqs: &[u64]) -> Result<()> {
        self.pool.with(|c| {
            let mut tx = c.transaction()?;
            let seqs = seqs_param(seqs);
            tx.execute(
                "DELETE FROM taskgate.sink_redeliver WHERE sink = $1 AND seq = ANY($2)",
                &[&sink, &seqs],
            )?;
            let unparked = tx.execute(
                "DELETE FROM taskgate.sink_parked WHERE sink = $1 AND seq = ANY($2)",
                &[&sink, &seqs],
            )?;
            tx.execute(
                "UPDATE taskgate.sinks SET parked = greatest(parked - $2, 0), delivered = delivered + $2,
                     last_delivery_us = $3, last_error = NULL, last_error_us = NULL
                 WHERE name = $1",
                &[&sink, &(unparked as i64), &Timestamp::now().as_micros()],
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    fn parked_again(&self, sink: &str, seqs: &[u64], reason: &str) -> Result<()> {
        self.pool.with(|c| {
            let mut tx = c.transaction()?;
            let now = Timestamp::now().as_micros();
            let seqs = seqs_param(seqs);
            tx.execute(
                "DELETE FROM taskgate.sink_redeliver WHERE sink = $1 AND seq = ANY($2)",
                &[&sink, &seqs],
            )?;
            tx.execute(
                "UPDATE taskgate.sink_parked SET reason = $3, at_us = $4 WHERE sink = $1 AND seq = ANY($2)",
                &[&sink, &seqs, &reason, &now],
            )?;
            tx.execute(
                "UPDATE taskgate.sinks SET last_error = $2, last_error_us = $3 WHERE name = $1",
                &[&sink, &format!("parked again: {reason}"), &now],
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    fn progress(&self, sink: &str) -> Result<SinkProgress> {
        self.pool.with(|c| {
            let row = c.query_opt(
                "SELECT cursor, delivered, parked, last_delivery_us, last_error, last_error_us
                 FROM taskgate.sinks WHERE name = $1",
                &[&sink],
            )?;
            Ok(row.map_or_else(
                || SinkProgress::new(sink),
                |r| SinkProgress {
                    name: sink.to_owned(),
                    cursor: u64::try_from(r.get::<_, i64>(0)).unwrap_or(0),
                    delivered: u64::try_from(r.get::<_, i64>(1)).unwrap_or(0),
                    parked: u64::try_from(r.get::<_, i64>(2)).unwrap_or(0),
                    last_delivery: r.get::<_, Option<i64>>(3).map(Timestamp::from_micros),
                    last_error: r.get(4),
                    last_error_at: r.get::<_, Option<i64>>(5).map(Timestamp::from_micros),
                },
            ))
        })
    }
}
