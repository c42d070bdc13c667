//! Reading settings from the environment: the table entry that names a variable with its default
//! and meaning, the error that names a variable and what it expects, and the parsers shared by
//! every module that owns settings (`config` composes them). A leaf module, so that those
//! modules need not import one another.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// One environment variable, as `hello --help` and the README list it. Each module that reads
/// variables declares each once with [`variables!`], which makes it a constant for the module's
/// parsers and an entry of the module's `VARIABLES` table for the help, so that a name, default
/// and meaning are written once, where both the help and the parser take them from. The AWS
/// SDK's variables are read by their names, as the SDKs read them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Variable {
    pub name: &'static str,
    /// As the README writes it; empty when unset means "not used" (or, where the meaning says
    /// so, something decided at start-up). Numbers and words here are what the parser reads.
    pub default: &'static str,
    pub meaning: &'static str,
}

/// Declares a module's variables: `NAME = "default", "meaning";` each, in the order the help
/// lists them. Each becomes a constant of that name and an entry of `pub const VARIABLES`.
macro_rules! variables {
    ($($id:ident = $default:expr, $meaning:expr;)+) => {
        $(
            const $id: $crate::settings::Variable = $crate::settings::Variable {
                name: stringify!($id),
                default: $default,
                meaning: $meaning,
            };
        )+
        /// The variables read here, for `hello --help`.
        pub const VARIABLES: &[$crate::settings::Variable] = &[$($id),+];
    };
}
pub(crate) use variables;

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

/// The variable's value, or its default when it is unset.
pub fn value(get: &impl Fn(&str) -> Option<String>, variable: &Variable) -> String {
    get(variable.name).unwrap_or_else(|| variable.default.to_owned())
}

/// A whole number from `min` to `max`, or the variable's default when it is unset.
pub fn number<T>(
    get: &impl Fn(&str) -> Option<String>,
    variable: &Variable,
    min: T,
    max: T,
) -> Result<T, ConfigError>
where
    T: FromStr + PartialOrd + fmt::Display + Copy,
{
    value(get, variable)
        .trim()
        .parse::<T>()
        .ok()
        .filter(|n| *n >= min && *n <= max)
        .ok_or_else(|| invalid(variable.name, format!("a whole number from {min} to {max}")))
}

/// A time in milliseconds, from 1 ms to an hour.
pub fn millis(
    get: &impl Fn(&str) -> Option<String>,
    variable: &Variable,
) -> Result<Duration, ConfigError> {
    number(get, variable, 1, 3_600_000).map(Duration::from_millis)
}

/// A yes-or-no setting: `true`, `1` or `yes`; `false`, `0` or `no` (any case). `None` when the
/// variable is unset, for the callers whose default depends on something else.
pub fn flag(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
) -> Result<Option<bool>, ConfigError> {
    match get(name).map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None => Ok(None),
        Some("true" | "1" | "yes") => Ok(Some(true)),
        Some("false" | "0" | "no") => Ok(Some(false)),
        Some(_) => Err(invalid(name, "true or false")),
    }
}

/// A yes-or-no setting with its default (`true` or `false`) from the table.
pub fn boolean(
    get: &impl Fn(&str) -> Option<String>,
    variable: &Variable,
) -> Result<bool, ConfigError> {
    match flag(get, variable.name)? {
        Some(b) => Ok(b),
        None => Ok(variable.default == "true"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V: Variable = Variable {
        name: "V",
        default: "false",
        meaning: "",
    };

    #[test]
    fn one_boolean_parser_for_every_variable() {
        let read = |raw: Option<&str>| boolean(&|_| raw.map(str::to_owned), &V);
        for yes in ["true", "1", "yes", " TRUE ", "Yes"] {
            assert_eq!(read(Some(yes)), Ok(true), "{yes}");
        }
        for no in ["false", "0", "no", "False"] {
            assert_eq!(read(Some(no)), Ok(false), "{no}");
        }
        assert_eq!(read(None), Ok(false));
        assert_eq!(
            read(Some("on")).unwrap_err().to_string(),
            "invalid V: expected true or false"
        );
    }
}
