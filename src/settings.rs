//! Reading settings from the environment: the error that names a variable and what it expects,
//! and the parsers shared by every module that owns settings (`config` composes them). A leaf
//! module, so that those modules need not import one another.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A variable whose value is not acceptable.
#[derive(Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub variable: &'static str,
    pub expected: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {}: expected {}", self.variable, self.expected)
    }
}

impl std::error::Error for ConfigError {}

pub fn invalid(variable: &'static str, expected: impl Into<String>) -> ConfigError {
    ConfigError {
        variable,
        expected: expected.into(),
    }
}

/// A whole number from `min` to `max`, or `default` when the variable is unset.
pub fn number<T>(
    get: &impl Fn(&str) -> Option<String>,
    variable: &'static str,
    default: T,
    min: T,
    max: T,
) -> Result<T, ConfigError>
where
    T: FromStr + PartialOrd + fmt::Display + Copy,
{
    let Some(raw) = get(variable) else {
        return Ok(default);
    };
    raw.trim()
        .parse::<T>()
        .ok()
        .filter(|n| *n >= min && *n <= max)
        .ok_or_else(|| invalid(variable, format!("a whole number from {min} to {max}")))
}

/// A time in milliseconds, from 1 ms to an hour.
pub fn millis(
    get: &impl Fn(&str) -> Option<String>,
    variable: &'static str,
    default: u64,
) -> Result<Duration, ConfigError> {
    number(get, variable, default, 1, 3_600_000).map(Duration::from_millis)
}
