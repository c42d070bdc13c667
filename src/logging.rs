//! Log lines on standard error, as text for people or one JSON object per line for CloudWatch:
//! a `log` backend for ordinary messages, and the access line written for every request. In
//! text, a message's control characters are escaped (as the access line's method and path
//! are), so that text from outside (an AWS error body, a peer's error) cannot end a line, forge
//! another, or send escape codes to a terminal.

use std::borrow::Cow;
use std::io::Write;
use std::sync::OnceLock;

use log::{Level, LevelFilter, Log, Metadata, Record};
use serde_json::json;

use crate::clock::Utc;
use crate::http::Exchange;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

struct Logger;

static FORMAT: OnceLock<Format> = OnceLock::new();

/// Installs the logger; only the first call has an effect.
pub fn init(format: Format, level: LevelFilter) {
    if FORMAT.set(format).is_ok() && log::set_boxed_logger(Box::new(Logger)).is_ok() {
        log::set_max_level(level);
    }
}

fn format() -> Format {
    FORMAT.get().copied().unwrap_or(Format::Text)
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = match format() {
            Format::Text => format!(
                "{} {:<5} {}\n",
                Utc::now().rfc3339(),
                record.level(),
                escape_controls(&record.args().to_string())
            ),
            Format::Json => {
                let mut s = json!({
                    "ts": Utc::now().rfc3339(),
                    "level": level_name(record.level()),
                    "msg": record.args().to_string(),
                })
                .to_string();
                s.push('\n');
                s
            }
        };
        emit(&line);
    }

    fn flush(&self) {}
}

/// `text` with its control characters (C0, DEL, C1), line and paragraph separators and bidi
/// overrides written as escapes (`\n`, `\u{1b}`); everything else as it is.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    let hidden = |c: char| {
        c.is_control()
            || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !text.contains(hidden) {
        return Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match hidden(c) {
            true => escaped.extend(c.escape_default()),
            false => escaped.push(c),
        }
    }
    Cow::Owned(escaped)
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Error => "error",
        Level::Warn => "warn",
        Level::Info => "info",
        Level::Debug => "debug",
        Level::Trace => "trace",
    }
}

/// One write per line, so lines from different threads never interleave.
fn emit(line: &str) {
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// The access line for one request, at `info`.
pub fn access(exchange: &Exchange<'_>) {
    if log::max_level() < LevelFilter::Info {
        return;
    }
    let Exchange {
        method,
        path,
        status,
        elapsed,
        bytes,
        peer,
    } = exchange;
    let millis = elapsed.as_secs_f64() * 1000.0;
    let line = match format() {
        Format::Text => format!(
            "{} INFO  {peer} \"{} {}\" {status} {bytes}B {millis:.3}ms\n",
            Utc::now().rfc3339(),
            method.escape_default(),
            path.escape_default(),
        ),
        Format::Json => {
            let mut s = json!({
                "ts": Utc::now().rfc3339(),
                "level": "info",
                "msg": "request",
                "method": method,
                "path": path,
                "status": status,
                "duration_ms": (millis * 1000.0).round() / 1000.0,
                "bytes": bytes,
                "peer": peer.to_string(),
            })
            .to_string();
            s.push('\n');
            s
        }
    };
    emit(&line);
}

/// Reads `RUST_LOG`: a level (`error` … `trace`, or `off`), or `env_logger`-style directives
/// of which the bare level or the one for `hello` is used.
pub fn parse_level(spec: &str) -> Option<LevelFilter> {
    let mut level = None;
    for directive in spec.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        match directive.split_once('=') {
            Some(("hello", l)) => level = Some(l.parse().ok()?),
            Some(_) => {}
            None => {
                let parsed: LevelFilter = directive.parse().ok()?;
                level = level.or(Some(parsed));
            }
        }
    }
    level
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert!(matches!(
            escape_controls("plain é ✓"),
            Cow::Borrowed("plain é ✓")
        ));
        assert_eq!(
            escape_controls("AWS said\r\n2026-01-01 ERROR forged\x1b[31mred\x1b[0m\u{85}\u{2028}\u{202e}"),
            "AWS said\\r\\n2026-01-01 ERROR forged\\u{1b}[31mred\\u{1b}[0m\\u{85}\\u{2028}\\u{202e}"
        );
        assert_eq!(escape_controls("tab\there\0"), "tab\\there\\u{0}");
    }

    #[test]
    fn reads_rust_log() {
        assert_eq!(parse_level("debug"), Some(LevelFilter::Debug));
        assert_eq!(parse_level("WARN"), Some(LevelFilter::Warn));
        assert_eq!(parse_level("info,hello=trace"), Some(LevelFilter::Trace));
        assert_eq!(parse_level("other=debug,error"), Some(LevelFilter::Error));
        assert_eq!(parse_level("off"), Some(LevelFilter::Off));
        assert_eq!(parse_level("loud"), None);
        assert_eq!(parse_level(""), None);
    }
}
