//! The results of a comparison and their markdown: per measure, each
//! system's median over the rounds with the spread (lowest to highest),
//! and ipcbus's ratio to every other system.

use crate::compare::Args;
use crate::systems::System;
use anyhow::Context;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// One measure of one scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Metric {
    /// Sorts the report: the scenario's letter, then the measure's order.
    pub(crate) order: (char, u8),
    /// What it is, in the report.
    pub(crate) label: &'static str,
    /// How a value is printed.
    pub(crate) unit: Unit,
    /// Whether a larger value is better.
    pub(crate) higher_is_better: bool,
}

/// How a value is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Unit {
    /// Per second, as k/s or M/s.
    Rate,
    /// Nanoseconds.
    Ns,
    /// Microseconds.
    Us,
    /// Milliseconds.
    Ms,
    /// Percent.
    Percent,
    /// A count.
    Count,
    /// MiB.
    Mib,
    /// Percent of one core: context for the other measures, not compared.
    Cpu,
}

macro_rules! metric {
    ($name:ident, $s:literal, $n:literal, $label:literal, $unit:ident, $higher:literal) => {
        #[doc = $label]
        pub(crate) const $name: Metric = Metric {
            order: ($s, $n),
            label: $label,
            unit: Unit::$unit,
            higher_is_better: $higher,
        };
    };
}

impl Metric {
    metric!(
        A_RATE,
        'a',
        0,
        "(a) 1 publisher → 1 subscriber, deliveries/s",
        Rate,
        true
    );
    metric!(A_CPU, 'a', 1, "(a) server CPU per delivery", Ns, false);
    metric!(A_SERVER, 'a', 2, "(a) server CPU use", Cpu, false);
    metric!(A_LOAD, 'a', 3, "(a) load generator CPU use", Cpu, false);
    metric!(
        B_RATE,
        'b',
        0,
        "(b) 1 publisher → N subscribers, deliveries/s",
        Rate,
        true
    );
    metric!(B_CPU, 'b', 1, "(b) server CPU per delivery", Ns, false);
    metric!(B_SERVER, 'b', 2, "(b) server CPU use", Cpu, false);
    metric!(B_LOAD, 'b', 3, "(b) load generator CPU use", Cpu, false);
    metric!(
        C_RATE,
        'c',
        0,
        "(c) 10 publishers × 10 subscribers, deliveries/s",
        Rate,
        true
    );
    metric!(C_CPU, 'c', 1, "(c) server CPU per delivery", Ns, false);
    metric!(C_SERVER, 'c', 2, "(c) server CPU use", Cpu, false);
    metric!(C_LOAD, 'c', 3, "(c) load generator CPU use", Cpu, false);
    metric!(D_P50, 'd', 0, "(d) latency p50", Us, false);
    metric!(D_P99, 'd', 1, "(d) latency p99", Us, false);
    metric!(D_P999, 'd', 2, "(d) latency p99.9", Us, false);
    metric!(
        E_CONNECT,
        'e',
        0,
        "(e) new clients get the current value, connect included",
        Ms,
        false
    );
    metric!(
        E_CONNECTED,
        'e',
        1,
        "(e) the same, already connected",
        Ms,
        false
    );
    metric!(
        G_KEPT,
        'g',
        0,
        "(g) healthy subscriber's rate beside a stalled one, of its rate alone",
        Percent,
        true
    );
    metric!(
        G_LOST,
        'g',
        1,
        "(g) messages the healthy subscriber lost",
        Count,
        false
    );
    metric!(
        G_RSS,
        'g',
        2,
        "(g) server RSS growth while one subscriber is stalled",
        Mib,
        false
    );
    metric!(
        H_1,
        'h',
        0,
        "(h) durable writes/s (fsync before the reply), 1 in flight",
        Rate,
        true
    );
    metric!(H_64, 'h', 1, "(h) the same, 64 in flight", Rate, true);
    metric!(
        H_1_EVERYSEC,
        'h',
        2,
        "(h) Redis appendfsync everysec (reply before the fsync), 1 in flight",
        Rate,
        true
    );
    metric!(
        H_64_EVERYSEC,
        'h',
        3,
        "(h) the same, 64 in flight",
        Rate,
        true
    );

    fn format(&self, v: f64) -> String {
        match self.unit {
            Unit::Rate if v >= 1e6 => format!("{:.2} M", v / 1e6),
            Unit::Rate if v >= 1e4 => format!("{:.0} k", v / 1e3),
            Unit::Rate => format!("{v:.0}"),
            Unit::Ns => format!("{v:.0} ns"),
            Unit::Us => format!("{v:.0} µs"),
            Unit::Ms if v < 10.0 => format!("{v:.1} ms"),
            Unit::Ms => format!("{v:.0} ms"),
            Unit::Percent => format!("{v:.0}%"),
            Unit::Count => format!("{v:.0}"),
            Unit::Mib => format!("{v:.1} MiB"),
            Unit::Cpu => format!("{v:.0}% of a core"),
        }
    }
}

/// Every value measured, by measure and system, in the order measured.
#[derive(Debug, Default)]
pub(crate) struct Results {
    values: BTreeMap<Metric, BTreeMap<System, Vec<f64>>>,
    noisy: BTreeMap<(Metric, System), usize>,
    rss: BTreeMap<System, Vec<(f64, u64)>>,
}

impl Results {
    /// Records one value; `noisy` when other processes were busy meanwhile.
    pub(crate) fn add(&mut self, metric: Metric, system: System, value: f64, noisy: bool) {
        let by_system = self.values.entry(metric).or_default();
        by_system.entry(system).or_default().push(value);
        if noisy {
            *self.noisy.entry((metric, system)).or_default() += 1;
        }
    }

    /// Keeps the last RSS trace of scenario (g) for `system`.
    pub(crate) fn rss_trace(&mut self, system: System, trace: Vec<(f64, u64)>) {
        self.rss.insert(system, trace);
    }

    /// The median of `metric` for `system`.
    pub(crate) fn median(&self, metric: Metric, system: System) -> Option<f64> {
        let values = self.values.get(&metric)?.get(&system)?;
        median(values)
    }

    /// The (g) RSS traces.
    pub(crate) fn traces(&self) -> &BTreeMap<System, Vec<(f64, u64)>> {
        &self.rss
    }

    /// The systems that have a value of `metric`.
    pub(crate) fn systems(&self, metric: Metric) -> Vec<System> {
        self.values
            .get(&metric)
            .map(|m| m.keys().copied().collect())
            .unwrap_or_default()
    }

    /// The report: a table of medians with spreads, and one of ratios.
    pub(crate) fn markdown(&self, args: &Args, pinned: bool) -> String {
        let mut systems: Vec<System> = args.systems.clone();
        systems.sort();
        systems.dedup();
        let mut out = crate::about::describe(&systems, args.server.as_deref());
        out.push('\n');
        let _ = write!(out, "| measure |");
        for s in &systems {
            let _ = write!(out, " {s} |");
        }
        out.push_str("\n|---|");
        out.push_str(&"---:|".repeat(systems.len()));
        out.push('\n');
        for (metric, by_system) in &self.values {
            let _ = write!(out, "| {} |", metric.label);
            for s in &systems {
                match by_system.get(s).and_then(|v| spread(v).map(|m| (v, m))) {
                    Some((v, (lo, mid, hi))) => {
                        let noisy = self.noisy.get(&(*metric, *s)).copied().unwrap_or(0);
                        let flag = if noisy > 0 {
                            format!(" ⚠{noisy}")
                        } else {
                            String::new()
                        };
                        let range = if v.len() > 1 {
                            format!(" ({}–{})", metric.format(lo), metric.format(hi))
                        } else {
                            String::new()
                        };
                        let _ = write!(out, " {}{range}{flag} |", metric.format(mid));
                    }
                    None => out.push_str(" — |"),
                }
            }
            out.push('\n');
        }
        let others: Vec<System> = systems
            .iter()
            .copied()
            .filter(|&s| s != System::Ipcbus)
            .collect();
        if systems.contains(&System::Ipcbus) && !others.is_empty() {
            out.push_str("\nipcbus against each system (above 1.00×: ipcbus is ahead, whether the measure is a rate or a time):\n\n| measure |");
            for s in &others {
                let _ = write!(out, " vs {s} |");
            }
            out.push_str("\n|---|");
            out.push_str(&"---:|".repeat(others.len()));
            out.push('\n');
            for metric in self.values.keys() {
                if matches!(metric.unit, Unit::Count | Unit::Cpu) {
                    continue;
                }
                let _ = write!(out, "| {} |", metric.label);
                for &s in &others {
                    match (
                        self.median(*metric, System::Ipcbus),
                        self.median(*metric, s),
                    ) {
                        (Some(ours), Some(theirs)) if ours > 0.0 && theirs > 0.0 => {
                            let ratio = if metric.higher_is_better {
                                ours / theirs
                            } else {
                                theirs / ours
                            };
                            let _ = write!(out, " {ratio:.2}× |");
                        }
                        _ => out.push_str(" — |"),
                    }
                }
                out.push('\n');
            }
        }
        let _ = write!(
            out,
            "\n{} rounds of {} s per run; {}. ⚠n: n runs during which other processes used more than a fifth of a core.\n",
            args.rounds,
            args.seconds,
            if pinned { "servers started on core 0 (each sized to one core), the load generator on the other cores" } else { "not pinned" }
        );
        out
    }
}

/// (lowest, median, highest).
fn spread(values: &[f64]) -> Option<(f64, f64, f64)> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    Some((*v.first()?, median(&v)?, *v.last()?))
}

fn median(values: &[f64]) -> Option<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// The markers around the generated part of a markdown file.
const BEGIN: &str = "<!-- compare:begin -->";
const END: &str = "<!-- compare:end -->";

/// Replaces the text between [`BEGIN`] and [`END`] in `path` with `report`.
pub(crate) fn splice(path: &Path, report: &str) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let (Some(begin), Some(end)) = (text.find(BEGIN), text.find(END)) else {
        anyhow::bail!(
            "{} has no {BEGIN} … {END} section to replace",
            path.display()
        );
    };
    let mut out = String::with_capacity(text.len() + report.len());
    out.push_str(&text[..begin + BEGIN.len()]);
    out.push('\n');
    out.push_str(report);
    out.push_str(&text[end..]);
    std::fs::write(path, out).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_spread() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(spread(&[5.0, 1.0, 3.0]), Some((1.0, 3.0, 5.0)));
    }
}
