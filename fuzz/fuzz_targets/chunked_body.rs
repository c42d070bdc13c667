//! Chunked request bodies, thrown away as they arrive.
//! Invariants: no panic; however the bytes are split, the body ends at the same byte with the
//! same verdict; it never takes more bytes than it was given, nor any after its end.
//!
//! Input: a byte saying where to split, then the bytes.
#![no_main]

use hello::http::body::Discard;
use hello::http::request::BodyLength;
use libfuzzer_sys::fuzz_target;

const LIMIT: u64 = 256;

/// Feeds `pieces` in turn: the bytes taken and whether the body ended, or the refusal.
fn feed(pieces: &[&[u8]]) -> Result<(usize, bool), hello::http::Rejection> {
    let mut body = Discard::new(BodyLength::Chunked, LIMIT)?.expect("chunked has a body");
    let mut taken = 0;
    for piece in pieces {
        let (n, done) = body.feed(piece)?;
        assert!(n <= piece.len());
        taken += n;
        if done {
            return Ok((taken, true));
        }
        assert_eq!(n, piece.len(), "stopped early without ending");
    }
    Ok((taken, false))
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, bytes)) = data.split_first() else {
        return;
    };
    let cut = usize::from(cut).min(bytes.len());
    let whole = feed(&[bytes]);
    let split = feed(&[&bytes[..cut], &bytes[cut..]]);
    let bytewise: Vec<&[u8]> = bytes.chunks(1).collect();
    let one_by_one = feed(&bytewise);
    assert_eq!(whole, split, "cut at {cut}");
    assert_eq!(whole, one_by_one);
    if let Ok((taken, _)) = whole {
        assert!(taken <= bytes.len());
    }
});
