//! Saying hello: the validated `Name` a greeting is for, and the greeting's text, quoted exactly
//! as the original Go service quoted it (`fmt`'s `%q`, i.e. `strconv.Quote`).

use std::fmt;
use std::fmt::Write as _;

use unicode_properties::{GeneralCategoryGroup, UnicodeGeneralCategory};

/// The longest name accepted, in bytes.
pub const MAX_NAME_BYTES: usize = 256;

/// A name that may be counted: valid UTF-8, 1 to 256 bytes, no control characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Name(String);

/// Why a path segment is not a `Name`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameError {
    Empty,
    TooLong,
    BadPercentEncoding,
    NotUtf8,
    ControlCharacter,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameError::Empty => "name must not be empty",
            NameError::TooLong => "name must be at most 256 bytes after percent-decoding",
            NameError::BadPercentEncoding => {
                "name has a '%' that is not followed by two hexadecimal digits"
            }
            NameError::NotUtf8 => "name is not valid UTF-8 after percent-decoding",
            NameError::ControlCharacter => "name must not contain control characters",
        })
    }
}

impl Name {
    /// Decodes one raw path segment (still percent-encoded) into a name.
    pub fn from_segment(raw: &str) -> Result<Name, NameError> {
        let bytes = raw.as_bytes();
        for (i, &b) in bytes.iter().enumerate() {
            if b == b'%'
                && !(bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                    && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
            {
                return Err(NameError::BadPercentEncoding);
            }
        }
        let decoded: Vec<u8> = percent_encoding::percent_decode(bytes).collect();
        Name::from_bytes(decoded)
    }

    fn from_bytes(bytes: Vec<u8>) -> Result<Name, NameError> {
        if bytes.is_empty() {
            return Err(NameError::Empty);
        }
        if bytes.len() > MAX_NAME_BYTES {
            return Err(NameError::TooLong);
        }
        let s = String::from_utf8(bytes).map_err(|_| NameError::NotUtf8)?;
        if s.chars().any(char::is_control) {
            return Err(NameError::ControlCharacter);
        }
        Ok(Name(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `Hello, "{name}"` with the name quoted as Go's `%q` quotes it.
pub fn greeting(name: &Name) -> String {
    let mut out = String::with_capacity(name.as_str().len() + 9);
    out.push_str("Hello, ");
    quote_into(&mut out, name.as_str());
    out
}

/// Quotes `s` as Go's `strconv.Quote` does: printable runes as they are, `"` and `\` escaped,
/// the C escapes for their control characters, and `\x`, `\u` or `\U` for other runes that
/// are not printable.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    quote_into(&mut out, s);
    out
}

/// [`go_quote`], appended to `out`.
fn quote_into(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            c if is_go_printable(c) => out.push(c),
            c if (c as u32) < 0x20 || c == '\x7f' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if (c as u32) < 0x10000 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08x}", c as u32);
            }
        }
    }
    out.push('"');
}

/// Go's `unicode.IsPrint`: letters, marks, numbers, punctuation, symbols and the ASCII space.
fn is_go_printable(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    matches!(
        c.general_category_group(),
        GeneralCategoryGroup::Letter
            | GeneralCategoryGroup::Mark
            | GeneralCategoryGroup::Number
            | GeneralCategoryGroup::Punctuation
            | GeneralCategoryGroup::Symbol
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected outputs are those of Go's strconv.Quote.
    #[test]
    fn quotes_like_go() {
        let cases = [
            ("Bob", r#""Bob""#),
            ("", r#""""#),
            (r#"say "hi""#, r#""say \"hi\"""#),
            (r"back\slash", r#""back\\slash""#),
            ("\x07\x08\x0c\r\n\t\x0b", r#""\a\b\f\r\n\t\v""#),
            ("\x04", r#""\x04""#),
            ("\x00", r#""\x00""#),
            ("\x7f", r#""\x7f""#),
            ("☺", r#""☺""#),
            ("Zoë Åsa José", r#""Zoë Åsa José""#),
            ("日本語", r#""日本語""#),
            ("\u{10ffff}", r#""\U0010ffff""#),
            ("!\u{a0}!\u{2000}!\u{3000}!", r#""!\u00a0!\u2000!\u3000!""#),
            ("zero\u{200b}width", r#""zero\u200bwidth""#),
            ("\u{feff}bom", r#""\ufeffbom""#),
            ("line\u{2028}sep", r#""line\u2028sep""#),
            ("private\u{e000}", r#""private\ue000""#),
            ("\u{85}", r#""\u0085""#),
            ("emoji 😀", r#""emoji 😀""#),
            ("e\u{301}", "\"e\u{301}\""),
        ];
        for (input, want) in cases {
            assert_eq!(go_quote(input), want, "quoting {input:?}");
        }
    }

    #[test]
    fn greeting_wraps_the_quoted_name() {
        let name = Name::from_segment("Bob%20%22B%22").unwrap();
        assert_eq!(greeting(&name), r#"Hello, "Bob \"B\"""#);
    }

    #[test]
    fn decodes_percent_encoded_segments() {
        assert_eq!(Name::from_segment("Bob").unwrap().as_str(), "Bob");
        assert_eq!(Name::from_segment("a%2Fb").unwrap().as_str(), "a/b");
        assert_eq!(Name::from_segment("Zo%C3%AB").unwrap().as_str(), "Zoë");
        assert_eq!(Name::from_segment("%e6%97%a5").unwrap().as_str(), "日");
        assert_eq!(Name::from_segment("a+b").unwrap().as_str(), "a+b");
    }

    #[test]
    fn refuses_bad_names_with_the_reason() {
        assert_eq!(Name::from_segment(""), Err(NameError::Empty));
        assert_eq!(Name::from_segment("%"), Err(NameError::BadPercentEncoding));
        assert_eq!(
            Name::from_segment("a%2"),
            Err(NameError::BadPercentEncoding)
        );
        assert_eq!(
            Name::from_segment("a%zz"),
            Err(NameError::BadPercentEncoding)
        );
        assert_eq!(Name::from_segment("%ff"), Err(NameError::NotUtf8));
        assert_eq!(Name::from_segment("%C3"), Err(NameError::NotUtf8));
        assert_eq!(
            Name::from_segment("a%00b"),
            Err(NameError::ControlCharacter)
        );
        assert_eq!(
            Name::from_segment("a%0Ab"),
            Err(NameError::ControlCharacter)
        );
        assert_eq!(Name::from_segment("%7F"), Err(NameError::ControlCharacter));
        assert_eq!(
            Name::from_segment("%C2%85"),
            Err(NameError::ControlCharacter)
        );
    }

    #[test]
    fn length_limit_counts_decoded_bytes() {
        assert!(Name::from_segment(&"a".repeat(256)).is_ok());
        assert_eq!(
            Name::from_segment(&"a".repeat(257)),
            Err(NameError::TooLong)
        );
        // 86 three-byte characters = 258 bytes, though only 86 characters.
        assert_eq!(
            Name::from_segment(&"日".repeat(86)),
            Err(NameError::TooLong)
        );
        // Encoded form longer than 256, decoded form exactly 256.
        assert!(Name::from_segment(&"%61".repeat(256)).is_ok());
    }
}
