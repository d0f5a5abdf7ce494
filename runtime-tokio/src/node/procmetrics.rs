//! The process metrics every Prometheus exporter gives, under their standard names (no `timed_`
//! prefix, so the usual dashboards and alerts apply): `process_cpu_seconds_total`,
//! `process_resident_memory_bytes`, `process_virtual_memory_bytes`, `process_open_fds`,
//! `process_max_fds`, `process_start_time_seconds`. Read from `/proc/self` at each scrape; where
//! there is no `/proc` (not Linux) they stay at 0.

use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// One reading of the process.
#[derive(Debug, Default, PartialEq)]
pub struct Reading {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub open_fds: u64,
    pub max_fds: u64,
}

/// The process metrics as OpenMetrics text without `# EOF` (to go before the registry's).
pub fn encode(start_time_seconds: f64) -> String {
    let r = read();
    let mut registry = Registry::with_prefix("process");
    let gauge = |v: f64| {
        let g: Gauge<f64, AtomicU64> = Gauge::default();
        g.set(v);
        g
    };
    registry.register(
        "cpu_seconds",
        "Total user and system CPU time spent in seconds",
        ConstCounter::new(r.cpu_seconds),
    );
    let gauges = [
        (
            "resident_memory_bytes",
            "Resident memory size in bytes",
            r.resident_bytes as f64,
        ),
        (
            "virtual_memory_bytes",
            "Virtual memory size in bytes",
            r.virtual_bytes as f64,
        ),
        (
            "open_fds",
            "Number of open file descriptors",
            r.open_fds as f64,
        ),
        (
            "max_fds",
            "Maximum number of open file descriptors",
            r.max_fds as f64,
        ),
        (
            "start_time_seconds",
            "Start time of the process since unix epoch in seconds",
            start_time_seconds,
        ),
    ];
    for (name, help, value) in gauges {
        registry.register(name, help, gauge(value));
    }
    let mut out = String::new();
    let _ = prometheus_client::encoding::text::encode_registry(&mut out, &registry);
    out
}

/// The process now, from `/proc/self` (zeros where it cannot be read).
pub fn read() -> Reading {
    let page = rustix::param::page_size() as u64;
    let ticks = rustix::param::clock_ticks_per_second() as f64;
    let mut r = Reading::default();
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        // Fields after the command name (which may hold spaces), from field 3 (state) on.
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let f: Vec<&str> = after.split_whitespace().collect();
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        // utime is field 14, stime 15, vsize 23, rss 24 (1-based): 11, 12, 20, 21 here.
        r.cpu_seconds = (num(11) + num(12)) as f64 / ticks.max(1.0);
        r.virtual_bytes = num(20);
        r.resident_bytes = num(21) * page;
    }
    r.open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
    r.max_fds = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(u64::MAX);
    r
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_process_reads_as_itself() {
        let r = super::read();
        assert!(r.resident_bytes > 1 << 20, "{r:?}");
        assert!(r.virtual_bytes >= r.resident_bytes, "{r:?}");
        assert!(r.open_fds >= 3 && r.max_fds >= r.open_fds, "{r:?}");
        let text = super::encode(1.0);
        assert!(text.contains("# TYPE process_cpu_seconds counter\nprocess_cpu_seconds_total "));
        assert!(
            text.contains("\nprocess_start_time_seconds 1.0\n"),
            "{text}"
        );
    }
}
