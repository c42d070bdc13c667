//! Log lines on standard error, through `env_logger`: `RUST_LOG` directives choose what is
//! written by target (`hello…` for the service's own lines, `access` for the line written for
//! every request, a crate's name such as `ureq` or `rustls` for its lines), and a format
//! closure writes each line as text for people or as one JSON object for CloudWatch. In text, a
//! message's control characters are escaped (as the access line's method and path are), so
//! that text from outside (an AWS error body, a peer's error) cannot end a line, forge another,
//! or send escape codes to a terminal.

use std::borrow::Cow;
use std::io::{self, Write};
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use env_logger::fmt::Formatter;
use log::kv::{self, Key, Value, VisitSource};
use log::{Level, Record};
use serde_json::Map;

use crate::http::Exchange;
use crate::settings::{invalid, value, ConfigError, Variable};

const LOG_FORMAT: Variable = Variable {
    name: "LOG_FORMAT",
    default: "text",
    meaning: "text or json",
};
const RUST_LOG: Variable = Variable {
    name: "RUST_LOG",
    default: "info",
    meaning: "env_logger directives, e.g. info,hello=debug,access=off,rustls=warn (targets: \
              hello, access, ureq, rustls); unreadable: refused",
};

/// The variables read here, for `hello --help`.
pub const VARIABLES: &[Variable] = &[LOG_FORMAT, RUST_LOG];

/// `LOG_FORMAT` and `RUST_LOG`. `get` returns a variable's value when it is set and not blank.
pub fn settings_from_env(
    get: &impl Fn(&str) -> Option<String>,
) -> Result<(Format, Filter), ConfigError> {
    let format = match value(get, &LOG_FORMAT).trim().to_ascii_lowercase().as_str() {
        "text" => Format::Text,
        "json" => Format::Json,
        _ => return Err(invalid(LOG_FORMAT.name, "text or json")),
    };
    let filter = value(get, &RUST_LOG).trim().parse().map_err(|e| {
        invalid(
            RUST_LOG.name,
            format!("env_logger directives such as info or warn,hello=debug ({e})"),
        )
    })?;
    Ok((format, filter))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

/// The target of the access line: apart from the service's own lines, so that `RUST_LOG` can
/// keep or drop it alone (`RUST_LOG=info,access=off`).
pub const ACCESS: &str = "access";

/// A `RUST_LOG` value in `env_logger`'s directive syntax (`info`, `warn,hello=debug`,
/// `info,access=off,rustls=warn`), checked when read: `env_logger` would only warn about a
/// directive it cannot read and go on without it, and a start-up refusal is easier to notice
/// than a missing directive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter(String);

impl FromStr for Filter {
    type Err = env_filter::ParseError;

    fn from_str(spec: &str) -> Result<Filter, Self::Err> {
        env_filter::Builder::new().try_parse(spec)?;
        Ok(Filter(spec.to_owned()))
    }
}

/// Installs the logger; only the first call has an effect.
pub fn init(format: Format, filter: &Filter) {
    let _ = env_logger::Builder::new()
        .parse_filters(&filter.0)
        .format(move |out, record| match format {
            Format::Text => write_text(out, record),
            Format::Json => write_json(out, record),
        })
        .try_init();
}

/// The access line for one request, at `info`. Its fields go as key-values, so that the JSON
/// line carries them as they are (numbers as numbers); the text line is made from them too.
pub fn access(exchange: &Exchange<'_>) {
    let Exchange {
        method,
        path,
        status,
        elapsed,
        bytes,
        peer,
    } = *exchange;
    // Milliseconds to the microsecond: enough for a latency, and short.
    let duration_ms = (elapsed.as_secs_f64() * 1_000_000.0).round() / 1000.0;
    log::info!(target: ACCESS, method, path, status, duration_ms, bytes, peer:%; "request");
}

/// `2026-11-26T12:04:36.123Z INFO  hello::store::redis message`; an access line is
/// `… INFO  access 127.0.0.1:40312 "GET /hello/Bob" 200 18B 0.412ms`, method and path
/// escaped (they are the client's bytes).
fn write_text(out: &mut Formatter, record: &Record<'_>) -> io::Result<()> {
    write!(
        out,
        "{} {:<5} {} ",
        timestamp(),
        record.level(),
        record.target()
    )?;
    if record.target() != ACCESS {
        return match record.args().as_str() {
            Some(text) => writeln!(out, "{}", escape_controls(text)),
            None => writeln!(out, "{}", escape_controls(&record.args().to_string())),
        };
    }
    let fields = record.key_values();
    let field = |key: &str| fields.get(Key::from_str(key)).unwrap_or_else(Value::null);
    let escaped = |key: &str| {
        fields
            .get(Key::from_str(key))
            .and_then(|v| v.to_borrowed_str())
            .unwrap_or("-")
            .escape_default()
    };
    let millis = field("duration_ms").to_f64().unwrap_or(f64::NAN);
    writeln!(
        out,
        "{} \"{} {}\" {} {}B {millis:.3}ms",
        field("peer"),
        escaped("method"),
        escaped("path"),
        field("status"),
        field("bytes"),
    )
}

/// `{"level":"info","msg":"…","target":"hello::app","ts":"2026-11-26T12:04:36.123Z"}`, plus
/// the record's key-values (an access line's `method`, `path`, `status`, `duration_ms`,
/// `bytes` and `peer`), keys in order.
fn write_json(out: &mut Formatter, record: &Record<'_>) -> io::Result<()> {
    let mut line = Map::new();
    let _ = record.key_values().visit(&mut JsonFields(&mut line));
    line.insert("ts".into(), timestamp().to_string().into());
    line.insert("level".into(), level_name(record.level()).into());
    line.insert("target".into(), record.target().into());
    line.insert("msg".into(), record.args().to_string().into());
    let mut json = serde_json::Serializer::with_formatter(&mut *out, OneLine);
    serde::Serialize::serialize(&line, &mut json)?;
    out.write_all(b"\n")
}

/// JSON as `serde_json` writes it compactly, but with every character some tool takes for a
/// line break, or that reorders or hides text on a terminal, written as a `\uXXXX` escape:
/// `serde_json` escapes only `"`, `\` and C0 controls, so U+0085, U+2028, U+2029 (line breaks
/// to Python's `str.splitlines()`, JavaScript and many log viewers), DEL, C1 controls and bidi
/// overrides would otherwise reach the line raw and split or disguise it.
struct OneLine;

impl serde_json::ser::Formatter for OneLine {
    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut rest = fragment;
        while let Some(at) = rest.find(hidden) {
            writer.write_all(rest[..at].as_bytes())?;
            let mut chars = rest[at..].chars();
            if let Some(c) = chars.next() {
                // All hidden characters are in the Basic Multilingual Plane: one escape each.
                write!(writer, "\\u{:04x}", u32::from(c))?;
            }
            rest = chars.as_str();
        }
        writer.write_all(rest.as_bytes())
    }
}

/// Adds each key-value to a JSON object: numbers and booleans as such, anything else as text.
struct JsonFields<'a>(&'a mut Map<String, serde_json::Value>);

impl<'kvs> VisitSource<'kvs> for JsonFields<'_> {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), kv::Error> {
        let json = if let Some(n) = value.to_u64() {
            n.into()
        } else if let Some(n) = value.to_i64() {
            n.into()
        } else if let Some(x) = value.to_f64() {
            x.into()
        } else if let Some(b) = value.to_bool() {
            b.into()
        } else if let Some(s) = value.to_borrowed_str() {
            s.into()
        } else {
            value.to_string().into()
        };
        self.0.insert(key.as_str().to_owned(), json);
        Ok(())
    }
}

/// Now, as `2026-11-26T12:04:36.123Z`. Linux keeps the system clock between 1970 and 2262,
/// inside the years `humantime` formats (1970 to 9999); the `max` keeps its panic on a time
/// before 1970 out even so.
fn timestamp() -> humantime::Rfc3339Timestamp {
    humantime::format_rfc3339_millis(SystemTime::now().max(UNIX_EPOCH))
}

/// `text` with its control characters (C0, DEL, C1), line and paragraph separators and bidi
/// overrides written as escapes (`\n`, `\u{1b}`); everything else as it is.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
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

/// Control characters (C0, DEL, C1: among them U+0085, a line break to many splitters), the
/// line and paragraph separators, and bidi embeddings, overrides and isolates.
fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
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

#[cfg(test)]
mod tests {
    use super::*;

    fn one_line(value: &serde_json::Value) -> String {
        let mut out = Vec::new();
        let mut json = serde_json::Serializer::with_formatter(&mut out, OneLine);
        serde::Serialize::serialize(value, &mut json).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn json_strings_escape_every_line_break_and_hidden_character() {
        let text = "a\u{85}b\u{2028}c\u{2029}d\u{7f}\u{9b}e\u{202e}f\u{2067}g\n\"\\é😀";
        let line = one_line(&serde_json::json!({ "msg": text, "k\u{2028}": 1 }));
        assert_eq!(
            line,
            r#"{"k\u2028":1,"msg":"a\u0085b\u2028c\u2029d\u007f\u009be\u202ef\u2067g\n\"\\é😀"}"#
        );
        assert!(!line.contains(|c: char| hidden(c)));
        // Still JSON, and the same text once read back.
        let back: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(back["msg"], text);
    }

    #[test]
    fn reads_rust_log_directives() {
        for good in [
            "debug",
            "WARN",
            "off",
            "info,hello=trace",
            "ureq=debug",
            "info,rustls=warn",
            "info,access=off",
            "hello::store=debug,warn",
            "info/request",
        ] {
            assert!(good.parse::<Filter>().is_ok(), "{good}");
        }
        for bad in ["hello=loud", "info,ureq=sometimes", "a=b=c", "info/a/b"] {
            assert!(bad.parse::<Filter>().is_err(), "{bad}");
        }
    }
}
