//! Latency histograms and the final report (text table or one JSON object).

use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::args::{Scenario, ScenarioArgs};

/// Highest latency a histogram holds: one hour, in microseconds (larger values are clamped).
const LATENCY_US_MAX: u64 = 3_600_000_000;

/// An HDR histogram of latencies in microseconds, 3 significant digits.
#[derive(Debug, Clone)]
pub struct Latency {
    hist: Histogram<u64>,
}

impl Default for Latency {
    fn default() -> Self {
        Latency::new()
    }
}

impl Latency {
    pub fn new() -> Self {
        Latency {
            hist: Histogram::new_with_bounds(1, LATENCY_US_MAX, 3)
                .expect("static histogram bounds are valid"),
        }
    }

    /// Records one latency (clamped to [1 µs, 1 h]).
    pub fn record(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.record_us(us);
    }

    /// Records one latency in microseconds (clamped to [1 µs, 1 h]).
    pub fn record_us(&mut self, us: u64) {
        self.hist.saturating_record(us.clamp(1, LATENCY_US_MAX));
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &Latency) {
        // Same bounds on both sides, so adding cannot fail; saturate rather than panic anyway.
        if self.hist.add(&other.hist).is_err() {
            for v in other.hist.iter_recorded() {
                self.hist
                    .saturating_record_n(v.value_iterated_to(), v.count_at_value());
            }
        }
    }

    /// Percentiles in milliseconds; `None` when nothing was recorded.
    pub fn summary(&self) -> Option<LatencySummary> {
        if self.hist.is_empty() {
            return None;
        }
        let ms = |us: u64| round3(us as f64 / 1e3);
        Some(LatencySummary {
            p50: ms(self.hist.value_at_quantile(0.50)),
            p90: ms(self.hist.value_at_quantile(0.90)),
            p99: ms(self.hist.value_at_quantile(0.99)),
            p999: ms(self.hist.value_at_quantile(0.999)),
            max: ms(self.hist.max()),
            mean: round3(self.hist.mean() / 1e3),
            count: self.hist.len(),
        })
    }
}

fn round3(v: f64) -> f64 {
    (v * 1e3).round() / 1e3
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatencySummary {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
    pub count: u64,
}

/// Throughput and latency of one side (producers or consumers).
#[derive(Debug, Clone, Serialize)]
pub struct SideReport {
    /// Records acknowledged (producers) or received (consumers).
    pub records: u64,
    /// Key and value bytes of those records.
    pub bytes: u64,
    /// From the first send (fetch) to the last acknowledgement (record).
    pub elapsed_secs: f64,
    pub records_per_sec: f64,
    /// 10^6 bytes per second.
    pub mb_per_sec: f64,
    /// Producers: send to acknowledgement; consumers: one `poll` call.
    pub latency_ms: Option<LatencySummary>,
    /// Records that failed (producers) or errors seen (consumers).
    pub errors: u64,
}

impl SideReport {
    pub fn new(
        records: u64,
        bytes: u64,
        elapsed: Duration,
        latency: &Latency,
        errors: u64,
    ) -> Self {
        let secs = elapsed.as_secs_f64().max(1e-9);
        SideReport {
            records,
            bytes,
            elapsed_secs: round3(secs),
            records_per_sec: (records as f64 / secs).round(),
            mb_per_sec: round3(bytes as f64 / secs / 1e6),
            latency_ms: latency.summary(),
            errors,
        }
    }
}

/// The local cluster a `cluster` run started.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterReport {
    pub nodes: u32,
    pub data_dir: String,
    /// Peak resident set (VmHWM) of each node process, MiB, read just before it was stopped.
    pub node_rss_peak_mib: Vec<f64>,
    /// Peak anonymous resident memory (`RssAnon`, sampled every 100 ms) of each node, MiB: the
    /// node's own memory, without the log segment pages it maps.
    pub node_rss_anon_peak_mib: Vec<f64>,
    /// CPU seconds (user + system) each node used from its start to the end of the run.
    pub node_cpu_secs: Vec<f64>,
}

/// One run's report. `records_per_sec`, `mb_per_sec` and `latency_ms` are the producers' for
/// `produce` and `e2e` and the consumers' for `consume`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: Scenario,
    pub records: u64,
    pub bytes: u64,
    pub elapsed_secs: f64,
    pub records_per_sec: f64,
    pub mb_per_sec: f64,
    /// What `latency_ms` measures: `produce_ack` or `consume_poll`.
    pub latency_kind: &'static str,
    /// Zeros when nothing was measured.
    pub latency_ms: LatencySummary,
    /// Produce (send) to consume (receipt), `e2e` only.
    pub e2e_latency_ms: Option<LatencySummary>,
    pub produce: Option<SideReport>,
    pub consume: Option<SideReport>,
    /// Records that failed to produce, or consumer errors.
    pub errors: u64,
    /// CPU seconds (user + system) this `skein-bench` process used, setup included.
    pub bench_cpu_secs: f64,
    /// With `--rate`: latency counts from each record's scheduled send time.
    pub latency_from: &'static str,
    pub settings: ScenarioArgs,
    pub cluster: Option<ClusterReport>,
}

const ZERO: LatencySummary = LatencySummary {
    p50: 0.0,
    p90: 0.0,
    p99: 0.0,
    p999: 0.0,
    max: 0.0,
    mean: 0.0,
    count: 0,
};

impl Report {
    pub fn new(
        scenario: Scenario,
        settings: ScenarioArgs,
        produce: Option<SideReport>,
        consume: Option<SideReport>,
        e2e: Option<LatencySummary>,
    ) -> Self {
        let (main, kind) = match scenario {
            Scenario::Consume => (consume.as_ref(), "consume_poll"),
            Scenario::Produce | Scenario::E2e => (produce.as_ref(), "produce_ack"),
        };
        let errors =
            produce.as_ref().map_or(0, |p| p.errors) + consume.as_ref().map_or(0, |c| c.errors);
        Report {
            scenario,
            records: main.map_or(0, |m| m.records),
            bytes: main.map_or(0, |m| m.bytes),
            elapsed_secs: main.map_or(0.0, |m| m.elapsed_secs),
            records_per_sec: main.map_or(0.0, |m| m.records_per_sec),
            mb_per_sec: main.map_or(0.0, |m| m.mb_per_sec),
            latency_kind: kind,
            latency_ms: main.and_then(|m| m.latency_ms).unwrap_or(ZERO),
            e2e_latency_ms: e2e,
            errors,
            bench_cpu_secs: 0.0,
            latency_from: if settings.rate.is_some() {
                "scheduled_send_time"
            } else {
                "send_call"
            },
            produce,
            consume,
            settings,
            cluster: None,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a report of numbers and strings serializes")
    }

    /// A table for people.
    pub fn to_text(&self) -> String {
        let s = &self.settings;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "skein-bench {}: topic {} ({} partitions), {} B records, {} producer(s), {} consumer(s), acks={}, compression={}, batch {} B, linger {:?}, {}{}",
            self.scenario.name(),
            s.topic,
            s.partitions,
            s.record_size,
            s.producers,
            s.consumers,
            s.acks,
            s.compression,
            s.batch_bytes,
            s.linger,
            if s.keyed { "keyed" } else { "keyless" },
            s.rate.map(|r| format!(", rate {r:.0}/s")).unwrap_or_default(),
        );
        if let Some(c) = &self.cluster {
            let rss: Vec<String> = c
                .node_rss_peak_mib
                .iter()
                .map(|m| format!("{m:.0}"))
                .collect();
            let anon: Vec<String> = c
                .node_rss_anon_peak_mib
                .iter()
                .map(|m| format!("{m:.0}"))
                .collect();
            let cpu: Vec<String> = c.node_cpu_secs.iter().map(|s| format!("{s:.1}")).collect();
            let _ = writeln!(
                out,
                "local cluster: {} node(s) in {}, peak RSS per node (MiB): {} (anonymous: {}), CPU s per node: {}",
                c.nodes,
                c.data_dir,
                rss.join(", "),
                anon.join(", "),
                cpu.join(", ")
            );
        }
        let _ = writeln!(
            out,
            "{:<10} {:>12} {:>14} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7}",
            "",
            "records",
            "records/s",
            "MB/s",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "p99.9 ms",
            "max ms",
            "elapsed",
            "errors"
        );
        let row = |out: &mut String, name: &str, r: &SideReport| {
            let l = r.latency_ms.unwrap_or(ZERO);
            let _ = writeln!(
                out,
                "{:<10} {:>12} {:>14.0} {:>10.2} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>8.2}s {:>7}",
                name, r.records, r.records_per_sec, r.mb_per_sec, l.p50, l.p90, l.p99, l.p999,
                l.max, r.elapsed_secs, r.errors
            );
        };
        if let Some(p) = &self.produce {
            row(&mut out, "produce", p);
        }
        if let Some(c) = &self.consume {
            row(&mut out, "consume", c);
        }
        if let Some(e) = &self.e2e_latency_ms {
            let _ = writeln!(
                out,
                "{:<10} {:>12} {:>14} {:>10} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
                "end-to-end", e.count, "", "", e.p50, e.p90, e.p99, e.p999, e.max
            );
        }
        let _ = writeln!(out, "skein-bench CPU: {:.1} s", self.bench_cpu_secs);
        let _ = writeln!(
            out,
            "(produce latency: send to acknowledgement{}; consume latency: one poll call)",
            if s.rate.is_some() {
                ", from the scheduled send time"
            } else {
                ""
            }
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{Cli, Command};
    use clap::Parser;

    fn settings() -> ScenarioArgs {
        match Cli::try_parse_from(["skein-bench", "produce", "--rate", "1000"])
            .expect("parses")
            .command
        {
            Command::Produce(a) => a,
            _ => panic!("produce"),
        }
    }

    #[test]
    fn percentiles_come_from_the_histogram() {
        let mut l = Latency::new();
        for us in 1..=10_000u64 {
            l.record_us(us * 10); // 10 µs .. 100 ms, uniform
        }
        let s = l.summary().expect("values");
        assert_eq!(s.count, 10_000);
        // 3 significant digits: within 0.1 %.
        let close = |got: f64, want: f64| (got - want).abs() <= want * 0.001 + 0.001;
        assert!(close(s.p50, 50.0), "{s:?}");
        assert!(close(s.p90, 90.0), "{s:?}");
        assert!(close(s.p99, 99.0), "{s:?}");
        assert!(close(s.p999, 99.9), "{s:?}");
        assert!(close(s.max, 100.0), "{s:?}");
        assert!(close(s.mean, 50.005), "{s:?}");
        assert!(s.p50 <= s.p90 && s.p90 <= s.p99 && s.p99 <= s.p999 && s.p999 <= s.max);
    }

    #[test]
    fn empty_histograms_have_no_summary_and_extremes_are_clamped() {
        assert!(Latency::new().summary().is_none());
        let mut l = Latency::new();
        l.record(Duration::ZERO);
        l.record(Duration::from_secs(10 * 3600));
        let s = l.summary().expect("values");
        assert_eq!(s.count, 2);
        assert!(s.max >= 3_600_000.0 * 0.999, "{s:?}");
    }

    #[test]
    fn merging_adds_counts() {
        let mut a = Latency::new();
        let mut b = Latency::new();
        a.record(Duration::from_millis(1));
        b.record(Duration::from_millis(3));
        b.record(Duration::from_millis(5));
        a.merge(&b);
        assert_eq!(a.summary().map(|s| s.count), Some(3));
        let s = a.summary().expect("values");
        assert!((s.max - 5.0).abs() < 0.01, "{s:?}");
    }

    #[test]
    fn json_has_the_promised_shape() {
        let mut l = Latency::new();
        for ms in 1..=100u64 {
            l.record(Duration::from_millis(ms));
        }
        let produce = SideReport::new(2_000_000, 200_000_000, Duration::from_secs(2), &l, 0);
        let report = Report::new(
            Scenario::E2e,
            settings(),
            Some(produce.clone()),
            Some(produce),
            l.summary(),
        );
        let v: serde_json::Value = serde_json::from_str(&report.to_json()).expect("valid JSON");
        assert_eq!(v["scenario"], "e2e");
        assert_eq!(v["records_per_sec"].as_f64(), Some(1_000_000.0));
        assert_eq!(v["mb_per_sec"].as_f64(), Some(100.0));
        for k in ["p50", "p90", "p99", "p999", "max", "mean", "count"] {
            assert!(v["latency_ms"][k].is_number(), "latency_ms.{k}: {v}");
            assert!(
                v["e2e_latency_ms"][k].is_number(),
                "e2e_latency_ms.{k}: {v}"
            );
        }
        assert!(v["latency_ms"]["p99"].as_f64().expect("p99") >= 98.0);
        assert_eq!(v["latency_kind"], "produce_ack");
        assert_eq!(v["latency_from"], "scheduled_send_time");
        assert_eq!(v["settings"]["acks"], "all");
        assert_eq!(v["settings"]["linger"].as_f64(), Some(5.0));
        assert_eq!(v["settings"]["rate"].as_f64(), Some(1000.0));
        assert!(v["produce"]["records"].is_number());
        assert!(v["cluster"].is_null());
        assert!(v["bench_cpu_secs"].is_number());
        // The text form mentions every row.
        let text = report.to_text();
        for word in ["produce", "consume", "end-to-end", "p99.9 ms"] {
            assert!(text.contains(word), "{text}");
        }
    }

    #[test]
    fn consume_reports_use_the_consumers_numbers() {
        let l = Latency::new();
        let c = SideReport::new(10, 1000, Duration::from_secs(1), &l, 2);
        let r = Report::new(Scenario::Consume, settings(), None, Some(c), None);
        assert_eq!(r.records, 10);
        assert_eq!(r.latency_kind, "consume_poll");
        assert_eq!(r.latency_ms, ZERO);
        assert_eq!(r.errors, 2);
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).expect("valid JSON");
        assert!(v["latency_ms"]["p999"].is_number());
        assert!(v["e2e_latency_ms"].is_null());
    }
}
