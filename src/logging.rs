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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Once};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use env_logger::fmt::Formatter;
use log::kv::{self, Key, Value, VisitSource};
use log::{Level, Record};
use serde_json::Map;

use crate::settings::{invalid, millis, value, variables, ConfigError};
use crate::sync;

variables! {
    LOG_FORMAT = "text",
        "text or json";
    RUST_LOG = "info",
        "env_logger directives, e.g. info,hello=debug,access=off,rustls=warn (targets: \
              hello, access, ureq, rustls); unreadable: refused";
    LOG_REPEAT_INTERVAL_MS = "10000",
        "a line that repeats fast (a store failure per request, a refused connection) is \
              written once, then summed up with a count once per this interval";
}

/// `LOG_REPEAT_INTERVAL_MS`: how often a [`Repeated`] kind of line is summed up.
pub fn repeat_interval_from_env(
    get: &impl Fn(&str) -> Option<String>,
) -> Result<Duration, ConfigError> {
    millis(get, &LOG_REPEAT_INTERVAL_MS)
}

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

/// Installs the logger; only the first call has an effect. `repeat_interval`: how often each
/// [`Repeated`] kind of line is summed up.
pub fn init(format: Format, filter: &Filter, repeat_interval: Duration) {
    REPEAT_INTERVAL_MS.store(
        u64::try_from(repeat_interval.as_millis()).unwrap_or(u64::MAX),
        Ordering::Relaxed,
    );
    let _ = env_logger::Builder::new()
        .parse_filters(&filter.0)
        .format(move |out, record| match format {
            Format::Text => write_text(out, record),
            Format::Json => write_json(out, record),
        })
        .try_init();
}

/// `LOG_REPEAT_INTERVAL_MS`, as set by [`init`] (its default until then, e.g. in unit tests).
static REPEAT_INTERVAL_MS: AtomicU64 = AtomicU64::new(10_000);

fn repeat_interval() -> Duration {
    Duration::from_millis(REPEAT_INTERVAL_MS.load(Ordering::Relaxed).max(1))
}

/// A kind of log line that can come once per request or per connection, and so thousands of
/// times a second while a fault lasts (Redis gone, a client reconnecting in a loop). The first
/// is written at once; the others in the same interval are only counted, and one summary line
/// per interval says how many there were, at the same level and target. Exact counts are the
/// metrics' job; a log that floods costs money (CloudWatch bills by the byte) and buries the
/// line that mattered. A quiet interval ends the run: the next occurrence is written at once.
pub struct Repeated {
    target: &'static str,
    what: &'static str,
    level: Level,
    window: Mutex<Window>,
    registered: Once,
}

impl Repeated {
    /// `what` names the kind in its summary line (`store increment failed`).
    pub const fn new(target: &'static str, level: Level, what: &'static str) -> Repeated {
        Repeated {
            target,
            what,
            level,
            window: Mutex::new(Window {
                open_since: None,
                repeats: 0,
            }),
            registered: Once::new(),
        }
    }

    /// Whether this occurrence is to be written now; if not, it is counted for the summary.
    pub fn admit(&'static self) -> bool {
        self.registered.call_once(|| register(self));
        self.window().admit(Instant::now())
    }

    fn window(&self) -> std::sync::MutexGuard<'_, Window> {
        sync::lock(&self.window)
    }

    /// Writes the summary of an interval that has ended, if anything was held back in it.
    fn summarise(&self, now: Instant, interval: Duration) {
        let Some(repeats) = self.window().close(now, interval) else {
            return;
        };
        log::log!(
            target: self.target,
            self.level,
            "{}: {repeats} more time(s) in the last {} ms, not written one by one",
            self.what,
            interval.as_millis()
        );
    }
}

/// One kind's run of repeats: pure, so it is tested with made-up instants.
#[derive(Debug)]
struct Window {
    /// When the line last written (or the last summary) went out; `None` while quiet.
    open_since: Option<Instant>,
    /// Occurrences held back since then.
    repeats: u64,
}

impl Window {
    fn admit(&mut self, now: Instant) -> bool {
        if self.open_since.is_none() {
            self.open_since = Some(now);
            return true;
        }
        self.repeats += 1;
        false
    }

    /// At `now`: when the window is `interval` old, the number held back in it (if any, and a
    /// new window opens for the next ones) or `None` (and the window closes).
    fn close(&mut self, now: Instant, interval: Duration) -> Option<u64> {
        let since = self.open_since?;
        if now.saturating_duration_since(since) < interval {
            return None;
        }
        let repeats = std::mem::take(&mut self.repeats);
        self.open_since = (repeats > 0).then_some(now);
        (repeats > 0).then_some(repeats)
    }
}

/// Every kind used so far, summed up by one thread started with the first.
static KINDS: Mutex<Vec<&'static Repeated>> = Mutex::new(Vec::new());

fn register(kind: &'static Repeated) {
    let mut kinds = sync::lock(&KINDS);
    kinds.push(kind);
    if kinds.len() > 1 {
        return;
    }
    let started = thread::Builder::new()
        .name("log-repeats".into())
        .spawn(|| loop {
            // A quarter of the interval: a summary is at most that late.
            let interval = repeat_interval();
            thread::sleep(interval / 4);
            let now = Instant::now();
            let kinds = sync::lock(&KINDS).clone();
            for kind in kinds {
                kind.summarise(now, interval);
            }
        });
    if let Err(e) = started {
        // Lines are still limited; only their summaries are lost.
        log::error!("cannot start the thread that sums up repeated log lines: {e}");
    }
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
    write!(
        out,
        "{} \"{} {}\" {} {}B {millis:.3}ms",
        field("peer"),
        escaped("method"),
        escaped("path"),
        field("status"),
        field("bytes"),
    )?;
    // Checked when logged: letters, digits and `=;._-` only.
    match fields.get(Key::from_str("trace_id")) {
        Some(trace) => writeln!(out, " {trace}"),
        None => writeln!(out),
    }
}

/// `{"level":"info","msg":"…","target":"hello::api","ts":"2026-11-26T12:04:36.123Z"}`, plus
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
            writer.write_all(&rest.as_bytes()[..at])?;
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
/// line and paragraph separators, and every bidi control (Unicode's Bidi_Control property: the
/// marks U+061C, U+200E and U+200F, embeddings, overrides and isolates), which reorder what a
/// terminal shows.
fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
        )
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

    #[test]
    fn a_repeated_line_is_written_once_then_summed_up_once_per_interval() {
        let interval = Duration::from_secs(10);
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut w = Window {
            open_since: None,
            repeats: 0,
        };
        assert!(w.admit(at(0)), "the first goes out at once");
        assert!((0..1000).all(|i| !w.admit(at(i))));
        assert_eq!(
            w.close(at(9_999), interval),
            None,
            "not before the interval ends"
        );
        assert_eq!(w.close(at(10_000), interval), Some(1000));
        // Still repeating: counted for the next summary, not written.
        assert!(!w.admit(at(10_001)));
        assert_eq!(w.close(at(20_000), interval), Some(1));
        // A quiet interval closes the run; the next occurrence is written at once.
        assert_eq!(w.close(at(30_000), interval), None);
        assert!(w.admit(at(30_001)));
        assert_eq!(w.close(at(40_001), interval), None);
        assert!(w.admit(at(40_002)));
    }

    fn one_line(value: &serde_json::Value) -> String {
        let mut out = Vec::new();
        let mut json = serde_json::Serializer::with_formatter(&mut out, OneLine);
        serde::Serialize::serialize(value, &mut json).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn json_strings_escape_every_line_break_and_hidden_character() {
        let text = "a\u{85}b\u{2028}c\u{2029}d\u{7f}\u{9b}e\u{202e}f\u{2067}g\u{200f}h\u{200e}i\u{61c}\n\"\\é😀";
        let line = one_line(&serde_json::json!({ "msg": text, "k\u{2028}": 1 }));
        assert_eq!(
            line,
            r#"{"k\u2028":1,"msg":"a\u0085b\u2028c\u2029d\u007f\u009be\u202ef\u2067g\u200fh\u200ei\u061c\n\"\\é😀"}"#
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
