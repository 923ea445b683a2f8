//! The engine's metrics, through the OpenTelemetry global meter (exported
//! by whatever provider the binary installed; a no-op otherwise). Labelled
//! by provider only: never by user, calendar or event.

use std::time::Duration;

use juy_domain::Provider;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram};

use crate::engine::RunStats;

pub(crate) struct Metrics {
    syncs: Counter<u64>,
    events_written: Counter<u64>,
    events_deleted: Counter<u64>,
    drift_repaired: Counter<u64>,
    rejected: Counter<u64>,
    errors: Counter<u64>,
    throttles: Counter<u64>,
    duration: Histogram<f64>,
    lag: Histogram<f64>,
}

fn provider(provider: Provider) -> KeyValue {
    KeyValue::new("provider", provider.as_str())
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let meter = opentelemetry::global::meter("juy-calendar");
        Self {
            syncs: meter
                .u64_counter("juy.sync.runs")
                .with_description("Calendar sync runs that completed, by provider and kind (full or incremental)")
                .build(),
            events_written: meter
                .u64_counter("juy.sync.events_written")
                .with_description("Events inserted or updated by sync")
                .build(),
            events_deleted: meter
                .u64_counter("juy.sync.events_deleted")
                .with_description("Events deleted by sync")
                .build(),
            drift_repaired: meter
                .u64_counter("juy.sync.drift_repaired")
                .with_description(
                    "Rows a full listing found stale although no change said so: deleted by its sweep, or \
                     (reconciliation) missing or with another etag and rewritten",
                )
                .build(),
            rejected: meter
                .u64_counter("juy.sync.events_rejected")
                .with_description("Provider items skipped because they could not be normalised or stored")
                .build(),
            errors: meter
                .u64_counter("juy.sync.errors")
                .with_description("Sync failures by provider and kind")
                .build(),
            throttles: meter
                .u64_counter("juy.sync.throttles")
                .with_description("Throttled or unavailable answers from providers")
                .build(),
            duration: meter
                .f64_histogram("juy.sync.duration")
                .with_unit("s")
                .with_description("Wall time of completed sync runs")
                .build(),
            lag: meter
                .f64_histogram("juy.sync.lag")
                .with_unit("s")
                .with_description("Age of a calendar's data when its sync run starts")
                .build(),
        }
    }

    pub(crate) fn synced(&self, which: Provider, stats: &RunStats, took: Duration) {
        let kind = KeyValue::new("kind", if stats.full.is_some() { "full" } else { "incremental" });
        self.syncs.add(1, &[provider(which), kind.clone()]);
        self.events_written.add(stats.written, &[provider(which)]);
        self.events_deleted.add(stats.deleted, &[provider(which)]);
        if stats.swept + stats.repaired > 0 {
            self.drift_repaired
                .add(stats.swept + stats.repaired, &[provider(which)]);
        }
        if stats.rejected > 0 {
            self.rejected.add(stats.rejected, &[provider(which)]);
        }
        self.duration.record(took.as_secs_f64(), &[provider(which), kind]);
    }

    pub(crate) fn error(&self, which: Provider, kind: &'static str) {
        self.errors.add(1, &[provider(which), KeyValue::new("kind", kind)]);
    }

    pub(crate) fn throttled(&self, which: Provider) {
        self.throttles.add(1, &[provider(which)]);
    }

    pub(crate) fn lag(&self, which: Provider, lag: Duration) {
        self.lag.record(lag.as_secs_f64(), &[provider(which)]);
    }
}
