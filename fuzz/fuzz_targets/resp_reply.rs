//! The Redis reply reader over arbitrary bytes, read whole and through a tiny buffer.
//! Invariants: no panic; every reply read consumes bytes; a reply read through a one-byte
//! buffer is the same as one read at once.
#![no_main]

use std::io::BufReader;

use hello::store::resp::read_reply;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut whole = data;
    let mut tiny = BufReader::with_capacity(1, data);
    loop {
        let before = whole.len();
        let (a, b) = (read_reply(&mut whole), read_reply(&mut tiny));
        match (a, b) {
            (Ok(a), Ok(b)) => {
                assert_eq!(a, b);
                assert!(whole.len() < before, "a reply from no bytes");
            }
            (Err(_), Err(_)) => break,
            (a, b) => panic!("whole {a:?}, byte by byte {b:?}"),
        }
        if whole.is_empty() {
            break;
        }
    }
});
