//! The server log: php-websocket's `date('Y-m-d H:i:s') [type] message`
//! lines on PHP's output (so output buffering and redirection apply).

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
