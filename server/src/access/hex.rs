//! Lowercase hex for tokens and ids: one spelling only, so a value has exactly one text form.

/// `bytes` as lowercase hex digits.
pub(crate) fn encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    text
}

/// Exactly `N` bytes written as `2N` lowercase hex digits; anything else is `None`.
pub(crate) fn decode<const N: usize>(text: &str) -> Option<[u8; N]> {
    let digits = text.as_bytes();
    if digits.len() != N * 2 {
        return None;
    }
    let mut bytes = [0; N];
    for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = (value(pair[0])? << 4) | value(pair[1])?;
    }
    Some(bytes)
}

fn value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hex_is_lowercase_and_exact() {
        assert_eq!(encode(&[0x00, 0xab, 0xff]), "00abff");
        assert_eq!(decode::<3>("00abff"), Some([0x00, 0xab, 0xff]));
        assert_eq!(decode::<3>("00ABFF"), None);
        assert_eq!(decode::<3>("00abf"), None);
        assert_eq!(decode::<2>("00abff"), None);
        assert_eq!(decode::<1>("é"), None);
    }

    proptest! {
        #[test]
        fn bytes_round_trip(bytes in any::<[u8; 16]>()) {
            prop_assert_eq!(decode::<16>(&encode(&bytes)), Some(bytes));
        }

        #[test]
        fn any_text_decodes_or_is_refused_without_panicking(text in ".{0,40}") {
            let _ = decode::<16>(&text);
        }
    }
}
