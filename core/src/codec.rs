//! The one encoding of everything that crosses a wire or reaches a disk: CBOR (ciborium), behind a
//! one-byte version envelope for messages.
//!
//! Decoding is hostile-input safe: the size limit is checked before a byte is parsed (ciborium then
//! grows buffers only as real input arrives, and nesting is capped at 256 levels), garbage is an
//! error and never a panic, and a value is accepted only in its canonical encoding: after decoding,
//! the value is encoded again and must give back the very same bytes. So one value has one encoding,
//! and hashes and signatures over encodings are unambiguous.

use serde::{Serialize, de::DeserializeOwned};

use crate::message::Message;

/// The wire format version this build speaks; the first byte of every envelope.
pub const WIRE_VERSION: u8 = 1;

/// The largest message accepted from a peer (a full block plus its certificate fits well within).
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("empty message")]
    Empty,
    #[error("unsupported wire version {0} (this node speaks version {WIRE_VERSION})")]
    UnsupportedVersion(u8),
    #[error("malformed CBOR: {0}")]
    Malformed(String),
    #[error("{0} trailing bytes after the value")]
    TrailingBytes(usize),
    #[error("the value is not in its canonical encoding")]
    NotCanonical,
}

/// Appends the CBOR encoding of `value` to `out`.
pub fn encode_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) {
    // Writing to a Vec cannot fail, and every type we encode is representable in CBOR (no maps with
    // non-string keys that ciborium rejects), so an error here is a programming error.
    ciborium::into_writer(value, out).expect("CBOR encoding into a Vec cannot fail");
}

/// The CBOR encoding of `value`.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    encode_into(value, &mut out);
    out
}

/// Decodes one value that must fill `bytes` exactly, be at most `limit` bytes, and be canonical.
pub fn decode<T: Serialize + DeserializeOwned>(
    bytes: &[u8],
    limit: usize,
) -> Result<T, CodecError> {
    if bytes.len() > limit {
        return Err(CodecError::TooLarge {
            size: bytes.len(),
            limit,
        });
    }
    let mut reader = bytes;
    let value: T =
        ciborium::from_reader(&mut reader).map_err(|e| CodecError::Malformed(e.to_string()))?;
    if !reader.is_empty() {
        return Err(CodecError::TrailingBytes(reader.len()));
    }
    // Re-encoding costs about as much as decoding and buys one encoding per value.
    let mut again = Vec::with_capacity(bytes.len());
    encode_into(&value, &mut again);
    if again != bytes {
        return Err(CodecError::NotCanonical);
    }
    Ok(value)
}

/// A message as it travels: the version byte, then the message's CBOR.
pub fn encode_message(msg: &Message) -> Vec<u8> {
    let mut out = Vec::with_capacity(160);
    out.push(WIRE_VERSION);
    encode_into(msg, &mut out);
    out
}

/// Opens an envelope from a peer. Size is checked first, then version, then content.
pub fn decode_message(bytes: &[u8]) -> Result<Message, CodecError> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(CodecError::TooLarge {
            size: bytes.len(),
            limit: MAX_MESSAGE_BYTES,
        });
    }
    match bytes.split_first() {
        None => Err(CodecError::Empty),
        Some((&WIRE_VERSION, body)) => decode(body, MAX_MESSAGE_BYTES),
        Some((&v, _)) => Err(CodecError::UnsupportedVersion(v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Hash;

    #[test]
    fn oversized_input_is_refused_before_parsing() {
        let big = vec![0u8; MAX_MESSAGE_BYTES + 1];
        assert!(matches!(
            decode_message(&big),
            Err(CodecError::TooLarge { .. })
        ));
    }

    #[test]
    fn unknown_version_and_empty_input_are_refused() {
        assert_eq!(decode_message(&[]).unwrap_err(), CodecError::Empty);
        assert_eq!(
            decode_message(&[9, 0]).unwrap_err(),
            CodecError::UnsupportedVersion(9)
        );
    }

    #[test]
    fn non_minimal_integer_is_not_canonical() {
        // 5 encoded in two bytes (0x18 0x05) instead of one (0x05).
        assert_eq!(
            decode::<u64>(&[0x18, 0x05], 16).unwrap_err(),
            CodecError::NotCanonical
        );
        assert_eq!(decode::<u64>(&[0x05], 16).unwrap(), 5);
    }

    #[test]
    fn trailing_bytes_are_refused() {
        assert_eq!(
            decode::<u64>(&[0x05, 0x00], 16).unwrap_err(),
            CodecError::TrailingBytes(1)
        );
    }

    #[test]
    fn a_huge_declared_length_does_not_allocate_it() {
        // A byte string header claiming 2^62 bytes followed by almost nothing.
        let bytes = [0x5b, 0x40, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3];
        assert!(decode::<Hash>(&bytes, 1024).is_err());
        let mut msg = vec![WIRE_VERSION];
        msg.extend_from_slice(&bytes);
        assert!(decode_message(&msg).is_err());
    }
}
