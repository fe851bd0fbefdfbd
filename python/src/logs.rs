//! The runtime's log lines a user must know about and would otherwise not
//! see (they happen in Rust, on its own tasks), on Python's `logging`: the
//! cluster bus's (logger `polysocket.cluster`: Redis lost and back,
//! messages that could not cross, nodes joining and expiring) and one line
//! per refused handshake (logger `polysocket.access`, INFO: the client's
//! real address, the status, the reason). The runtime's other tracing stays
//! where it was (nowhere, unless the embedding program installs a
//! subscriber first: this one is installed only if none is).
//!
//! An event is handed to a thread of its own that takes the GIL to log it:
//! the bus logs while holding its own locks, on threads that may hold the
//! GIL or wait for it, so taking the GIL right there could deadlock. The
//! bus rate-limits what it logs; refusals are not, so the channel is bounded
//! and lines past it are dropped (the metrics still count every refusal).

use std::fmt::Write;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Mutex;

use polysocket::runtime::ACCESS_LOG;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// The module path of the bus's events.
const CLUSTER: &str = "polysocket::runtime::cluster";

/// Lines waiting for the GIL at most; more are dropped.
const BACKLOG: usize = 4096;

/// The Python loggers, by index.
const LOGGERS: [&str; 2] = ["polysocket.cluster", "polysocket.access"];

/// A line for a logger of [`LOGGERS`], at a `logging` level.
type LogLine = (usize, u8, String);

struct ToLogging {
    lines: Mutex<SyncSender<LogLine>>,
}

/// `message` first, then every other field as `name=value`.
#[derive(Default)]
struct Line {
    message: String,
    fields: String,
}

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value}", field.name());
        }
    }
}

impl Subscriber for ToLogging {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        let target = metadata.target();
        (target.starts_with(CLUSTER) || target == ACCESS_LOG) && *metadata.level() <= Level::INFO
    }

    fn event(&self, event: &Event<'_>) {
        let mut line = Line::default();
        event.record(&mut line);
        let level = match *event.metadata().level() {
            Level::ERROR => 40,
            Level::WARN => 30,
            _ => 20,
        };
        let text = format!("{}{}", line.message, line.fields);
        let logger = usize::from(event.metadata().target() == ACCESS_LOG);
        // Full: the line is dropped (see BACKLOG); disconnected: the
        // forwarding thread could not start, nobody would log it.
        let _ = self
            .lines
            .lock()
            .expect("log lock")
            .try_send((logger, level, text));
    }

    fn new_span(&self, _span: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _span: &Id, _values: &Record<'_>) {}
    fn record_follows_from(&self, _span: &Id, _follows: &Id) {}
    fn enter(&self, _span: &Id) {}
    fn exit(&self, _span: &Id) {}
}

/// Forward the bus's events to `logging`, unless the process already has
/// a tracing subscriber.
pub fn install() {
    let (lines, rx) = sync_channel::<LogLine>(BACKLOG);
    if tracing::subscriber::set_global_default(ToLogging {
        lines: Mutex::new(lines),
    })
    .is_err()
    {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("polysocket-log".into())
        .spawn(move || {
            for (logger, level, text) in rx {
                Python::attach(|py| log(py, logger, level, &text));
            }
        });
    drop(spawned);
}

fn log(py: Python<'_>, logger: usize, level: u8, text: &str) {
    static CACHED: [PyOnceLock<Py<PyAny>>; 2] = [PyOnceLock::new(), PyOnceLock::new()];
    let logger = CACHED[logger].get_or_try_init(py, || {
        let logging = py.import("logging")?;
        PyResult::Ok(
            logging
                .call_method1("getLogger", (LOGGERS[logger],))?
                .unbind(),
        )
    });
    if let Err(err) = logger.and_then(|l| l.bind(py).call_method1("log", (level, text))) {
        err.write_unraisable(py, None);
    }
}
