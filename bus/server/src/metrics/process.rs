//! The process's figures under the names every Prometheus client uses
//! (`process_*`), read from `/proc/self` at each scrape. Linux only: on
//! other systems the collector writes nothing (docs/metrics.md).

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;

/// Reads `/proc/self`.
#[derive(Debug)]
pub(super) struct ProcessFigures;

#[cfg(target_os = "linux")]
impl Collector for ProcessFigures {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::counter::ConstCounter;
        use prometheus_client::metrics::gauge::ConstGauge;

        let e = &mut encoder;
        let mut gauge = |name: &str, help: &str, value: Option<u64>| {
            let Some(value) = value else { return Ok(()) };
            let metric = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
            metric.encode(e.encode_descriptor(name, help, None, metric.metric_type())?)
        };
        gauge(
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            linux::rss_bytes(),
        )?;
        gauge(
            "process_open_fds",
            "Open file descriptors",
            linux::open_fds(),
        )?;
        gauge("process_max_fds", "The open-file limit", linux::max_fds())?;
        if let Some(seconds) = linux::cpu_seconds() {
            let metric = ConstCounter::new(seconds);
            let help = "User and system CPU time spent, in seconds";
            metric.encode(e.encode_descriptor(
                "process_cpu_seconds",
                help,
                None,
                metric.metric_type(),
            )?)?;
        }
        Ok(())
    }
}

#[cfg(not(target_os = "linux"))]
impl Collector for ProcessFigures {
    fn encode(&self, _: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        Ok(())
    }
}

#[cfg(target_os = "linux")]
mod linux {
    /// `VmRSS` of `/proc/self/status`, which is in kB.
    pub(super) fn rss_bytes() -> Option<u64> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    }

    pub(super) fn open_fds() -> Option<u64> {
        let entries = std::fs::read_dir("/proc/self/fd").ok()?;
        // Less the one `read_dir` itself holds open.
        Some((entries.count() as u64).saturating_sub(1))
    }

    pub(super) fn max_fds() -> Option<u64> {
        rustix::process::getrlimit(rustix::process::Resource::Nofile).current
    }

    /// `utime` + `stime` of `/proc/self/stat` (fields 14 and 15, in clock ticks).
    pub(super) fn cpu_seconds() -> Option<f64> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // The command name (field 2) may hold spaces; count after its ')'.
        let rest = &stat[stat.rfind(')')? + 1..];
        let mut fields = rest.split_whitespace().skip(11);
        let utime: u64 = fields.next()?.parse().ok()?;
        let stime: u64 = fields.next()?.parse().ok()?;
        let ticks = rustix::param::clock_ticks_per_second();
        Some((utime + stime) as f64 / ticks as f64)
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn the_figures_of_this_process_are_read() {
            assert!(super::rss_bytes().is_some_and(|b| b > 0));
            assert!(super::open_fds().is_some_and(|n| n >= 3));
            assert!(super::cpu_seconds().is_some());
            assert!(super::max_fds().is_some());
        }
    }
}
