//! What is recorded of each exchange once it is over: the route's counters and latency in
//! [`Metrics`], and the access line.

use crate::http::{path, Exchange, Status};
use crate::logging;
use crate::metrics::Metrics;
use crate::route::Route;

/// Counts `exchange` under its route and writes its access line.
pub fn record(metrics: &Metrics, exchange: &Exchange<'_>) {
    metrics.request(route_of(exchange), exchange.status.code(), exchange.elapsed);
    access(exchange);
}

/// The route an exchange is counted under: the one its path resolves to as the router resolved
/// it, except a redirect, which no route answered (`Other`, as 404s, `OPTIONS *` and the HTTP
/// layer's refusals, whose path is `-`).
fn route_of(exchange: &Exchange<'_>) -> Route {
    if exchange.status == Status::MovedPermanently {
        return Route::Other;
    }
    Route::resolve(&path::clean(exchange.path)).0
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
        trace_id,
    } = *exchange;
    let status = status.code();
    // Milliseconds to the microsecond: enough for a latency, and short.
    let duration_ms = (elapsed.as_secs_f64() * 1_000_000.0).round() / 1000.0;
    match trace_id.and_then(alb_trace_id) {
        Some(trace_id) => log::info!(
            target: logging::ACCESS, method, path, status, duration_ms, bytes, peer:%, trace_id; "request"
        ),
        None => {
            log::info!(target: logging::ACCESS, method, path, status, duration_ms, bytes, peer:%; "request")
        }
    }
}

/// An `X-Amzn-Trace-Id` as the ALB writes it (`Root=1-67891233-abcdef012345678912345678`,
/// maybe with `;Parent=…;Sampled=1` or `Self=…` fields), so that an access line can be joined
/// with the ALB's own log line. Anything else is left out of the log: at most 256 bytes of
/// letters, digits and `=;._-`, with a `Root=1-` of 8 and 24 hexadecimal digits.
fn alb_trace_id(raw: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(raw).ok()?;
    let allowed = |c: char| c.is_ascii_alphanumeric() || "=;._-".contains(c);
    if text.len() > 256 || !text.chars().all(allowed) {
        return None;
    }
    let root = text
        .split(';')
        .find_map(|field| field.strip_prefix("Root=1-"))?;
    let (time, id) = root.split_once('-')?;
    let hex = |s: &str, n: usize| s.len() == n && s.chars().all(|c| c.is_ascii_hexdigit());
    (hex(time, 8) && hex(id, 24)).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_trace_ids_of_the_albs_shape() {
        for good in [
            "Root=1-67891233-abcdef012345678912345678",
            "Self=1-67891233-12456789abcdef012345678;Root=1-67891233-abcdef012345678912345678",
            "Root=1-67891233-abcdef012345678912345678;Parent=53995c3f42cd8ad8;Sampled=1",
        ] {
            assert_eq!(alb_trace_id(good.as_bytes()), Some(good), "{good}");
        }
        let long = format!(
            "Root=1-67891233-abcdef012345678912345678;{}",
            "a".repeat(250)
        );
        for bad in [
            "Root=1-6789123-abcdef012345678912345678",
            "Root=1-67891233-abcdef01234567891234567g",
            "Root=1-67891233-abcdef012345678912345678 x",
            "Root=1-67891233-abcdef012345678912345678\n\"fake\"",
            "Parent=53995c3f42cd8ad8",
            long.as_str(),
        ] {
            assert_eq!(alb_trace_id(bad.as_bytes()), None, "{bad}");
        }
        assert_eq!(alb_trace_id(b"Root=1-67891233-\xff"), None);
    }
}
