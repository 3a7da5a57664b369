//! The comparison's charts, as SVG (plotters): deliveries per second of
//! scenarios (a), (b) and (c) by system, and the server's RSS over time in
//! scenario (g).

use crate::report::{Metric, Results};
use crate::systems::System;
use anyhow::anyhow;
use plotters::prelude::*;
use std::path::Path;

const PALETTE: [RGBColor; 6] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0x7f, 0x7f, 0x7f),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0xff, 0x7f, 0x0e),
];

fn color(system: System) -> RGBColor {
    PALETTE[system as usize % PALETTE.len()]
}

/// Writes `throughput.svg` and `stall.svg` into `dir`. The second shows
/// each server's RSS growth since the subscriber stalled: the servers'
/// absolute sizes differ by orders of magnitude.
pub(crate) fn write(dir: &Path, results: &Results) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    // A chart of scenarios that were not run would be empty: it is left as it is.
    if !results.systems(Metric::A_RATE).is_empty() {
        throughput(&dir.join("throughput.svg"), results)
            .map_err(|e| anyhow!("throughput.svg: {e}"))?;
    }
    if !results.traces().is_empty() {
        stall(&dir.join("stall.svg"), results).map_err(|e| anyhow!("stall.svg: {e}"))?;
    }
    Ok(())
}

type Drawn = Result<(), Box<dyn std::error::Error>>;

fn throughput(path: &Path, results: &Results) -> Drawn {
    let metrics = [Metric::A_RATE, Metric::B_RATE, Metric::C_RATE];
    let mut systems: Vec<System> = metrics.iter().flat_map(|&m| results.systems(m)).collect();
    systems.sort();
    systems.dedup();
    let top = metrics
        .iter()
        .flat_map(|&m| systems.iter().filter_map(move |&s| results.median(m, s)))
        .fold(0.0f64, f64::max)
        / 1e6;
    let root = SVGBackend::new(path, (760, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let slots = (metrics.len() * (systems.len() + 1)) as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Deliveries per second (median of the rounds)",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..slots, 0.0..(top * 1.15).max(0.1))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc("million deliveries/s")
        .draw()?;
    let names = ["(a) 1 → 1", "(b) 1 → N", "(c) 10 × 10"];
    for (i, (&metric, name)) in metrics.iter().zip(names).enumerate() {
        let base = (i * (systems.len() + 1)) as f64;
        let middle = base + systems.len() as f64 / 2.0;
        chart.draw_series(std::iter::once(Text::new(
            name,
            (middle - 0.6, -(top * 0.04)),
            ("sans-serif", 14),
        )))?;
        for (j, &system) in systems.iter().enumerate() {
            let Some(v) = results.median(metric, system) else {
                continue;
            };
            let x = base + j as f64 + 0.5;
            chart.draw_series(std::iter::once(Rectangle::new(
                [(x, 0.0), (x + 0.9, v / 1e6)],
                color(system).filled(),
            )))?;
        }
    }
    for &system in &systems {
        chart
            .draw_series(std::iter::empty::<Rectangle<(f64, f64)>>())?
            .label(system.to_string())
            .legend(move |(x, y)| {
                Rectangle::new([(x, y - 5), (x + 10, y + 5)], color(system).filled())
            });
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE)
        .draw()?;
    root.present()?;
    Ok(())
}

fn stall(path: &Path, results: &Results) -> Drawn {
    let traces = results.traces();
    let end = traces
        .values()
        .flatten()
        .map(|&(t, _)| t)
        .fold(1.0f64, f64::max);
    let points: Vec<f64> = traces
        .values()
        .flat_map(|t| growth(t))
        .map(|(_, m)| m)
        .collect();
    let top = points.iter().copied().fold(1.0f64, f64::max);
    let bottom = points.iter().copied().fold(0.0f64, f64::min);
    let root = SVGBackend::new(path, (760, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "(g) Server RSS growth while one subscriber is stalled",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..end, bottom * 1.15..top * 1.15)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("MiB since the stall began")
        .draw()?;
    for (&system, trace) in traces {
        let points = growth(trace);
        chart
            .draw_series(LineSeries::new(points, color(system).stroke_width(2)))?
            .label(system.to_string())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color(system)));
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE)
        .draw()?;
    root.present()?;
    Ok(())
}

/// A trace as MiB above its first sample.
fn growth(trace: &[(f64, u64)]) -> Vec<(f64, f64)> {
    let base = trace.first().map_or(0, |&(_, kib)| kib) as f64;
    trace
        .iter()
        .map(|&(t, kib)| (t, (kib as f64 - base) / 1024.0))
        .collect()
}
