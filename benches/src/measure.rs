//! Measuring: CPU time of processes from /proc, percentiles, and the one
//! JSON line a benchmark binary prints for its script.

use std::time::Instant;

/// CPU seconds (user + system) a process has used, from /proc/PID/stat.
pub fn proc_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After "pid (comm) ", field 3 (state) is index 0: utime is field 14
    // (index 11), stime field 15 (index 12).
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((utime + stime) / hz)
}

pub fn self_cpu_seconds() -> f64 {
    // SAFETY: getrusage with a valid pointer to a zeroed struct.
    unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
        t(ru.ru_utime) + t(ru.ru_stime)
    }
}

/// CPU use of some processes (the servers) and of this process over a
/// window.
pub struct CpuWindow {
    pids: Vec<u32>,
    procs0: Vec<Option<f64>>,
    self0: f64,
    t0: Instant,
}

impl CpuWindow {
    pub fn start(pids: Vec<u32>) -> CpuWindow {
        CpuWindow {
            procs0: pids.iter().map(|&p| proc_cpu_seconds(p)).collect(),
            pids,
            self0: self_cpu_seconds(),
            t0: Instant::now(),
        }
    }
    /// (cores busy for each process, cores busy for this one); `None` for
    /// a process that could not be read at both ends.
    pub fn end(&self) -> (Vec<Option<f64>>, f64) {
        let dt = self.t0.elapsed().as_secs_f64();
        let procs = self
            .pids
            .iter()
            .zip(&self.procs0)
            .map(|(&p, a)| Some((proc_cpu_seconds(p)? - (*a)?) / dt))
            .collect();
        (procs, (self_cpu_seconds() - self.self0) / dt)
    }
}

pub fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

pub struct Report {
    fields: Vec<(String, String)>,
}

impl Report {
    pub fn new(mode: &str) -> Report {
        Report {
            fields: vec![("mode".into(), format!("\"{mode}\""))],
        }
    }
    pub fn num(&mut self, k: &str, v: f64) {
        let s = if v.is_finite() {
            format!("{v:.3}")
        } else {
            "null".into()
        };
        self.fields.push((k.into(), s));
    }
    pub fn opt(&mut self, k: &str, v: Option<f64>) {
        match v {
            Some(v) => self.num(k, v),
            None => self.fields.push((k.into(), "null".into())),
        }
    }
    pub fn text(&mut self, k: &str, v: Option<&str>) {
        let s = match v {
            Some(v) => format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "'")),
            None => "null".into(),
        };
        self.fields.push((k.into(), s));
    }
    /// A JSON array of numbers (`null` for the missing ones).
    pub fn list(&mut self, k: &str, v: &[Option<f64>]) {
        let items: Vec<String> = v
            .iter()
            .map(|x| x.map_or("null".into(), |x| format!("{x:.3}")))
            .collect();
        self.fields
            .push((k.into(), format!("[{}]", items.join(", "))));
    }
    pub fn print(&self) {
        let body: Vec<String> = self
            .fields
            .iter()
            .map(|(k, v)| format!("\"{k}\": {v}"))
            .collect();
        println!("{{{}}}", body.join(", "));
    }
}

pub fn add_latencies(report: &mut Report, mut lat: Vec<u64>) {
    lat.sort_unstable();
    report.num("p50_us", percentile(&lat, 0.50));
    report.num("p90_us", percentile(&lat, 0.90));
    report.num("p99_us", percentile(&lat, 0.99));
    report.num(
        "max_us",
        lat.last().map(|v| *v as f64 / 1000.0).unwrap_or(0.0),
    );
}

pub fn percentiles_line(lat: &[u64]) -> String {
    let mut v = lat.to_vec();
    v.sort_unstable();
    format!(
        "p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs",
        percentile(&v, 0.5),
        percentile(&v, 0.99),
        v.last().copied().unwrap_or(0) as f64 / 1000.0
    )
}
