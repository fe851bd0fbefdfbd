//! The server log: php-websocket's `date('Y-m-d H:i:s') [type] message`
//! lines on PHP's output (so output buffering and redirection apply), the
//! runtime's refused handshakes among them.

use ext_php_rs::error::php_error;
use ext_php_rs::flags::ErrorType;
use ext_php_rs::types::ZendCallable;

/// The local time as PHP's `date()` formats it (honours `date.timezone`).
fn now() -> String {
    ZendCallable::try_from_name("date")
        .ok()
        .and_then(|date| date.try_call(vec![&"Y-m-d H:i:s"]).ok())
        .and_then(|v| v.string())
        .unwrap_or_default()
}

/// One log line.
pub fn write(message: &str, kind: &str) {
    let line = format!("{} [{kind}] {message}\n", now());
    let _ = ext_php_rs::zend::output_write(line.as_bytes());
}

/// A PHP warning (E_WARNING) at the current call site.
pub fn warning(message: &str) {
    php_error(&ErrorType::Warning, message);
}

/// The runtime's line per refused handshake (core's `ACCESS_LOG` target:
/// the client's real address, the status, the reason) as an `[info]` line
/// of this log. Written only while a server's `run()` serves on the
/// thread, where the runtime runs and PHP may be called.
struct AccessLog;

/// An event's `message` field.
struct Message(String);

impl tracing::field::Visit for Message {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl tracing::Subscriber for AccessLog {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        metadata.target() == polysocket::runtime::ACCESS_LOG
            && *metadata.level() <= tracing::Level::INFO
    }

    fn event(&self, event: &tracing::Event<'_>) {
        if !crate::cluster::is_running() {
            return;
        }
        let mut message = Message(String::new());
        event.record(&mut message);
        write(&message.0, "info");
    }

    fn new_span(&self, _span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _span: &tracing::span::Id, _values: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _span: &tracing::span::Id, _follows: &tracing::span::Id) {}
    fn enter(&self, _span: &tracing::span::Id) {}
    fn exit(&self, _span: &tracing::span::Id) {}
}

/// Sends refused handshakes to this log, unless the process (an embedding
/// program) has a tracing subscriber already.
pub fn install() {
    let _ = tracing::subscriber::set_global_default(AccessLog);
}
