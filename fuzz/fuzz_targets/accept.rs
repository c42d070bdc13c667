//! Accept negotiation over arbitrary field values.
//! Invariants: no panic; the choice is always one of the offers; with no offers, none.
//!
//! Input: field values separated by newlines.
#![no_main]

use hello::http::negotiate::choose;
use libfuzzer_sys::fuzz_target;

const OFFERS: [&str; 2] = ["text/plain", "application/json"];

fuzz_target!(|data: &[u8]| {
    let values = || data.split(|&b| b == b'\n');
    let chosen = choose(values(), &OFFERS);
    assert!(OFFERS.contains(&chosen), "{chosen:?}");
    // Order of offers is a preference only: the same ranges pick the same offer or the other
    // on a tie, never something else.
    let reversed = [OFFERS[1], OFFERS[0]];
    assert!(OFFERS.contains(&choose(values(), &reversed)));
    assert_eq!(choose(values(), &[]), "");
});
