//! Content negotiation on `Accept` (RFC 9110 §12.5.1): each offered media type gets the weight
//! of the most specific media range that matches it (`type/subtype` over `type/*` over `*/*`);
//! the heaviest wins, the earlier offer on a tie, and the first offer when nothing is
//! acceptable (a fallback rather than 406).

/// Which of `offers` (media types such as `text/plain`, most preferred first) to answer with,
/// given the request's `Accept` field values. No `Accept` at all accepts everything.
pub fn choose<'o, 'a>(accept: impl Iterator<Item = &'a [u8]>, offers: &[&'o str]) -> &'o str {
    let ranges: Vec<Range> = accept
        .flat_map(|value| value.split(|&b| b == b','))
        .filter_map(Range::parse)
        .collect();
    let Some(first) = offers.first() else {
        return "";
    };
    if ranges.is_empty() {
        return first;
    }
    let mut best = (first, 0u16);
    for offer in offers {
        let weight = weight(&ranges, offer);
        if weight > best.1 {
            best = (offer, weight);
        }
    }
    best.0
}

/// One media range with its weight in thousandths.
struct Range<'a> {
    kind: &'a [u8],
    subtype: &'a [u8],
    q: u16,
}

impl<'a> Range<'a> {
    fn parse(text: &'a [u8]) -> Option<Range<'a>> {
        let mut params = text.split(|&b| b == b';');
        let media = params.next()?.trim_ascii();
        let slash = media.iter().position(|&b| b == b'/')?;
        let (kind, subtype) = (&media[..slash], &media[slash + 1..]);
        if kind.is_empty() || subtype.is_empty() {
            return None;
        }
        let mut q = 1000;
        for param in params {
            let param = param.trim_ascii();
            if let Some(value) = param
                .strip_prefix(b"q=")
                .or_else(|| param.strip_prefix(b"Q="))
            {
                q = qvalue(value.trim_ascii())?;
            }
        }
        Some(Range { kind, subtype, q })
    }

    /// How specifically this range matches `offer`: 3 exactly, 2 by type, 1 by `*/*`.
    fn matches(&self, offer: &str) -> Option<u8> {
        let (kind, subtype) = offer.split_once('/')?;
        if self.kind == b"*" && self.subtype == b"*" {
            Some(1)
        } else if !self.kind.eq_ignore_ascii_case(kind.as_bytes()) {
            None
        } else if self.subtype == b"*" {
            Some(2)
        } else {
            self.subtype
                .eq_ignore_ascii_case(subtype.as_bytes())
                .then_some(3)
        }
    }
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`, in thousandths.
fn qvalue(text: &[u8]) -> Option<u16> {
    let (whole, fraction) = match text.iter().position(|&b| b == b'.') {
        Some(dot) => (&text[..dot], &text[dot + 1..]),
        None => (text, &b""[..]),
    };
    if fraction.len() > 3 || !fraction.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut thousandths: u16 = 0;
    for i in 0..3 {
        thousandths = thousandths * 10 + fraction.get(i).map_or(0, |d| u16::from(d - b'0'));
    }
    match whole {
        b"0" => Some(thousandths),
        b"1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// The weight of the most specific range matching `offer`; 0 when none does.
fn weight(ranges: &[Range<'_>], offer: &str) -> u16 {
    ranges
        .iter()
        .filter_map(|r| r.matches(offer).map(|specificity| (specificity, r.q)))
        .max_by_key(|(specificity, _)| *specificity)
        .map_or(0, |(_, q)| q)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFERS: [&str; 2] = ["text/plain", "application/json"];

    fn pick(accept: &[&str]) -> &'static str {
        choose(accept.iter().map(|a| a.as_bytes()), &OFFERS)
    }

    #[test]
    fn text_unless_json_weighs_more() {
        assert_eq!(pick(&[]), "text/plain");
        assert_eq!(pick(&["*/*"]), "text/plain");
        assert_eq!(pick(&["application/json"]), "application/json");
        assert_eq!(pick(&["Application/JSON"]), "application/json");
        assert_eq!(pick(&["application/*"]), "application/json");
        assert_eq!(
            pick(&["text/html, application/json;q=0.9"]),
            "application/json"
        );
        assert_eq!(pick(&["application/json, text/plain"]), "text/plain");
        assert_eq!(pick(&["application/json;q=0, text/plain"]), "text/plain");
        assert_eq!(
            pick(&["application/json;q=0.5, text/*;q=0.4"]),
            "application/json"
        );
        assert_eq!(pick(&["application/json;q=0.5, */*;q=0.9"]), "text/plain");
        assert_eq!(
            pick(&["text/plain;q=0, application/json;q=0.001"]),
            "application/json"
        );
        assert_eq!(
            pick(&["text/plain", "application/json;q=1.0"]),
            "text/plain"
        );
        assert_eq!(
            pick(&["application/json", "text/plain;q=0.5"]),
            "application/json"
        );
    }

    #[test]
    fn the_most_specific_range_decides() {
        // `*/*` would accept text, but `text/plain;q=0` is more specific and refuses it.
        assert_eq!(pick(&["*/*, text/plain;q=0"]), "application/json");
        assert_eq!(pick(&["text/*;q=0.1, text/plain"]), "text/plain");
        assert_eq!(
            pick(&["application/*;q=0, application/json;q=0.2"]),
            "application/json"
        );
    }

    #[test]
    fn nothing_acceptable_falls_back_to_the_first_offer() {
        assert_eq!(pick(&["image/png"]), "text/plain");
        assert_eq!(pick(&["application/json;q=0"]), "text/plain");
        assert_eq!(pick(&["*/*;q=0"]), "text/plain");
    }

    #[test]
    fn malformed_ranges_and_weights_are_ignored() {
        assert_eq!(pick(&["application/json;q=2"]), "text/plain");
        assert_eq!(pick(&["application/json;q=0.1234"]), "text/plain");
        assert_eq!(pick(&["application/json;q=x"]), "text/plain");
        assert_eq!(pick(&["json, /, application/"]), "text/plain");
        assert_eq!(
            pick(&["application/json ; Q=0.5 ; charset=utf-8"]),
            "application/json"
        );
        assert_eq!(qvalue(b"1.000"), Some(1000));
        assert_eq!(qvalue(b"0.5"), Some(500));
        assert_eq!(qvalue(b"0."), Some(0));
        assert_eq!(qvalue(b"1.001"), None);
    }
}
