//! Decimal numbers written straight into byte buffers, without the formatting machinery: the
//! HTTP status line and lengths, and RESP's counts and lengths, are written for every response
//! and every command, where musl's many small copies show in a profile.

pub fn push(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_width_is_written_as_formatting_would() {
        for n in [0, 7, 10, 99, 100, 65_535, u64::from(u32::MAX), u64::MAX] {
            let mut out = Vec::new();
            super::push(&mut out, n);
            assert_eq!(out, n.to_string().into_bytes());
        }
    }
}
