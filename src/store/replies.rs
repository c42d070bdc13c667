//! Redis's replies read as the store's answers: what an error reply means for the command and
//! for its connection, counts and scores, listings and `INFO` fields. Pure functions.

use super::pool::Fate;
use super::resp::{RedisReply, ServerError};
use super::{NameCount, StoreError};

/// What an error reply means for the command. An error reply is not a broken connection: it
/// came whole and in order (see [`fate`] for what it leaves of the connection). `OOM` (Redis at
/// `maxmemory` under `noeviction`) is `Full`: nothing done, and nothing to try again at once.
/// An error about the command itself (a wrong type, a bad argument) is `Refused`: retrying will
/// not help. Every other error reply is a transient state of the server (`LOADING`, `BUSY`,
/// `TRYAGAIN`, `CLUSTERDOWN`, `MASTERDOWN`, `NOSCRIPT`, `MISCONF`, a redirect not followed…):
/// `Unavailable`, certainly not applied.
pub fn classify(e: ServerError) -> StoreError {
    match e.code() {
        "OOM" => StoreError::Full(e.line),
        "READONLY" => StoreError::Unavailable(e.line),
        "ERR" if is_max_clients(&e) => StoreError::Unavailable(e.line),
        "WRONGTYPE" | "ERR" => StoreError::Refused(e.line),
        _ => StoreError::Unavailable(e.line),
    }
}

/// What an error reply leaves of its connection: it stays in the pool unless the server
/// changed role (`READONLY`: a failover made it a replica) or is about to close it (`max number
/// of clients`).
pub fn fate(e: &ServerError) -> Fate {
    match e.code() {
        "READONLY" => Fate::Retire,
        "ERR" if is_max_clients(e) => Fate::Close,
        _ => Fate::Keep,
    }
}

fn is_max_clients(e: &ServerError) -> bool {
    e.line.starts_with("ERR max number of clients reached")
}

/// `used_memory` and `maxmemory` (0 when Redis does not write it) from an `INFO memory` reply
/// (`field:value` lines); `None` without `used_memory`.
pub fn memory_from_info(text: &[u8]) -> Option<(u64, u64)> {
    let text = std::str::from_utf8(text).ok()?;
    let field = |name: &str| {
        text.lines().find_map(|line| {
            line.strip_prefix(name)?
                .strip_prefix(':')?
                .trim()
                .parse::<u64>()
                .ok()
        })
    };
    Some((field("used_memory")?, field("maxmemory").unwrap_or(0)))
}

/// The count in a `ZINCRBY` reply. Redis writes whole scores as integers; a fractional score
/// someone else wrote is truncated towards zero (and `inf` saturates).
pub fn count_of(score: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(score).ok()?;
    text.parse::<i64>()
        .ok()
        .or_else(|| text.parse::<f64>().ok().map(|f| f as i64))
}

/// A score as Redis writes one (a number, possibly `inf` or `-inf`), as a number.
pub fn score_of(text: &str) -> Option<f64> {
    text.parse::<f64>().ok().filter(|f| !f.is_nan())
}

/// The members of a `ZRANGE … WITHSCORES` reply, names as Redis holds them (bytes) with their
/// scores as Redis writes them.
pub fn to_pairs(reply: RedisReply, command: &str) -> Result<Vec<(Vec<u8>, String)>, StoreError> {
    let refused = |why: String| StoreError::Refused(format!("{command}: {why}"));
    let items = match reply {
        RedisReply::Array(items) if items.len() % 2 == 0 => items,
        other => return Err(refused(other.unexpected(command))),
    };
    let mut pairs = Vec::with_capacity(items.len() / 2);
    let mut items = items.into_iter();
    while let (Some(name), Some(score)) = (items.next(), items.next()) {
        let (RedisReply::Bulk(name), RedisReply::Bulk(score)) = (name, score) else {
            return Err(refused("a name or score is not a bulk string".into()));
        };
        let score = String::from_utf8(score)
            .ok()
            .filter(|s| score_of(s).is_some())
            .ok_or_else(|| refused("a score is not a number".into()))?;
        pairs.push((name, score));
    }
    Ok(pairs)
}

/// One listed member as a client sees it: a name that is not UTF-8 (written by someone else)
/// keeps its readable parts.
pub fn name_count(name: Vec<u8>, score: String) -> NameCount {
    NameCount {
        name: match String::from_utf8(name) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        },
        score,
    }
}

/// The members of a `ZRANGE … WITHSCORES` reply.
pub fn to_entries(reply: RedisReply, command: &str) -> Result<Vec<NameCount>, StoreError> {
    Ok(to_pairs(reply, command)?
        .into_iter()
        .map(|(name, score)| name_count(name, score))
        .collect())
}

/// A read's failure: whatever went out, asking again is safe, so it is unavailable.
pub fn read_failure(e: StoreError) -> StoreError {
    match e {
        StoreError::OutcomeUnknown(why) => StoreError::Unavailable(why),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn increment_replies_are_read_as_counts() {
        assert_eq!(count_of(b"12"), Some(12));
        assert_eq!(count_of(b"-3"), Some(-3));
        assert_eq!(count_of(b"2.75"), Some(2));
        assert_eq!(count_of(b"1e3"), Some(1000));
        assert_eq!(count_of(b"inf"), Some(i64::MAX));
        assert_eq!(count_of(b"x"), None);
        assert_eq!(count_of(b"\xff"), None);
    }

    #[test]
    fn listed_scores_keep_redis_text() {
        let reply = RedisReply::bulks(&["a", "1.5", "b", "1e+20", "c", "inf"]);
        let scores: Vec<String> = to_entries(reply, "ZRANGE")
            .unwrap()
            .into_iter()
            .map(|e| e.score)
            .collect();
        assert_eq!(scores, ["1.5", "1e+20", "inf"]);
        let nan = RedisReply::bulks(&["a", "nan"]);
        assert!(to_entries(nan, "ZRANGE").is_err());
        assert_eq!(score_of("-inf"), Some(f64::NEG_INFINITY));
    }

    #[test]
    fn range_replies_become_entries() {
        let reply = RedisReply::bulks(&["Ann", "1", "Bob", "7"]);
        let entries = to_entries(reply, "ZRANGE").unwrap();
        assert_eq!(
            entries,
            vec![
                NameCount {
                    name: "Ann".into(),
                    score: "1".into()
                },
                NameCount {
                    name: "Bob".into(),
                    score: "7".into()
                },
            ]
        );
        let lossy = RedisReply::Array(vec![
            RedisReply::Bulk(b"a\xffb".to_vec()),
            RedisReply::bulk("1"),
        ]);
        assert_eq!(to_entries(lossy, "ZRANGE").unwrap()[0].name, "a\u{fffd}b");
    }

    #[test]
    fn malformed_range_replies_are_refused() {
        for reply in [
            RedisReply::bulks(&["Ann"]),
            RedisReply::bulks(&["Ann", "many"]),
            RedisReply::Array(vec![RedisReply::Integer(1), RedisReply::bulk("1")]),
            RedisReply::Nil,
        ] {
            assert!(matches!(
                to_entries(reply, "ZRANGE"),
                Err(StoreError::Refused(_))
            ));
        }
    }

    #[test]
    fn each_error_reply_is_classified_and_only_a_role_change_or_a_parting_server_drops_it() {
        #[derive(Debug, PartialEq)]
        enum Kind {
            Refused,
            Unavailable,
            Full,
        }
        let kind = |e: &StoreError| match e {
            StoreError::Refused(_) => Kind::Refused,
            StoreError::Unavailable(_) => Kind::Unavailable,
            StoreError::Full(_) => Kind::Full,
            other => panic!("not from an error reply: {other:?}"),
        };
        for (line, want, its_fate) in [
            (
                "WRONGTYPE Operation against a key",
                Kind::Refused,
                Fate::Keep,
            ),
            ("ERR syntax error", Kind::Refused, Fate::Keep),
            (
                "OOM command not allowed when used memory > 'maxmemory'.",
                Kind::Full,
                Fate::Keep,
            ),
            ("LOADING Redis is loading", Kind::Unavailable, Fate::Keep),
            (
                "BUSY Redis is busy running a script",
                Kind::Unavailable,
                Fate::Keep,
            ),
            ("NOSCRIPT No matching script", Kind::Unavailable, Fate::Keep),
            (
                "TRYAGAIN Multiple keys request",
                Kind::Unavailable,
                Fate::Keep,
            ),
            (
                "CLUSTERDOWN The cluster is down",
                Kind::Unavailable,
                Fate::Keep,
            ),
            (
                "MASTERDOWN Link with MASTER is down",
                Kind::Unavailable,
                Fate::Keep,
            ),
            (
                "MISCONF Redis is configured to save",
                Kind::Unavailable,
                Fate::Keep,
            ),
            ("MOVED 3999 127.0.0.1:6381", Kind::Unavailable, Fate::Keep),
            ("READONLY You can't write", Kind::Unavailable, Fate::Retire),
            (
                "ERR max number of clients reached",
                Kind::Unavailable,
                Fate::Close,
            ),
        ] {
            let e = ServerError { line: line.into() };
            assert_eq!(fate(&e), its_fate, "{line}");
            let error = classify(e);
            assert_eq!(kind(&error), want, "{line}");
            assert!(error.to_string().contains(line), "{error}");
        }
    }

    #[test]
    fn info_memory_gives_used_and_max_memory() {
        let info = b"# Memory\r\nused_memory:1043232\r\nused_memory_human:1018.78K\r\n\
                     used_memory_rss:7000000\r\nmaxmemory:16777216\r\nmaxmemory_human:16.00M\r\n\
                     maxmemory_policy:noeviction\r\n";
        assert_eq!(memory_from_info(info), Some((1_043_232, 16_777_216)));
        // A server that writes no maxmemory has none.
        assert_eq!(memory_from_info(b"used_memory:5\r\n"), Some((5, 0)));
        assert_eq!(memory_from_info(b"maxmemory:5\r\n"), None);
        assert_eq!(
            memory_from_info(b"used_memory_rss:9\r\nused_memory:5\r\nmaxmemory:0\r\n"),
            Some((5, 0))
        );
    }
}
