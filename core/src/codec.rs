//! The one binary encoding of everything that crosses a wire, reaches a disk, is signed or is
//! hashed: the machinery (`Wire`, `Reader`, the primitive rules) and the envelope's version and
//! size limit (the envelope itself, `message::encode_message`, is beside the messages: this
//! module names no type of the domain, so every other module may build on it). The
//! layout of each type is written out by hand in `formats.rs`, field by field, so that renaming a
//! Rust field or variant changes no byte; a change to any layout is a change to that file, and the
//! conformance vectors (`core/tests/conformance.rs`) fail until it is made on purpose.
//!
//! The rules, which make every value's encoding unique (so hashes and signatures over encodings
//! are unambiguous), with no self-description (a decoder knows the type it reads):
//! - an unsigned integer is a LEB128 varint: 7 bits a byte, low bits first, the high bit set on
//!   every byte but the last, in the fewest bytes (a last byte of 0 after others is refused);
//! - a fixed-size byte array (hash, key, signature) is its bytes;
//! - `bool` and the tag of an `Option` are one byte, 0 or 1;
//! - a sequence or a string is its length (varint), then its items (a string's UTF-8 bytes);
//! - a struct is its fields in the stated order; an enum its variant's tag (varint), then that
//!   variant's fields.
//!
//! Decoding is hostile-input safe: the size limit is checked before a byte is parsed, a declared
//! length beyond the bytes that remain is refused and reserves at most `PREALLOC_BYTES` before its
//! items are read (memory then grows only with items actually decoded, each of which consumes
//! input), every read is bounds-checked, and garbage is an error, never a panic.

/// The envelope, at the path its callers outside this crate use. It is defined beside the messages
/// (`crate::message`); nothing in this module depends on it.
pub use crate::message::{decode_message, encode_message};

/// The wire format version this build speaks: the first byte of every envelope (and the ALPN
/// `timed/4`). Version 1 was the CBOR encoding with Rust's field names; version 2 had no staking
/// (ADR 0026: transfers without `op`, and the genesis without its staking parameters); version 3
/// had the same bytes as 4 but a flat state root (ADR 0029: the state root now commits to the
/// accounts' Merkle tree, so nodes of the two versions would refuse each other's blocks: they
/// refuse each other at the handshake instead).
pub const WIRE_VERSION: u8 = 4;

/// The most a sequence reserves before its items are read (see `Vec::get`).
const PREALLOC_BYTES: usize = 64 * 1024;

/// The largest message accepted from a peer (a full block plus its certificate fits well within).
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// Why bytes did not decode.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    /// Refused before parsing: longer than the caller's limit.
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The input's length in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// An envelope of zero bytes (no version byte).
    #[error("empty message")]
    Empty,
    /// An envelope whose version byte is not `WIRE_VERSION`.
    #[error("unsupported wire version {0} (this node speaks version {WIRE_VERSION})")]
    UnsupportedVersion(u8),
    /// Not a value of the type: truncated, an unknown tag, an out-of-range integer, ...
    #[error("malformed: {0}")]
    Malformed(&'static str),
    /// A whole value was read and this many bytes were left over.
    #[error("{0} trailing bytes after the value")]
    TrailingBytes(usize),
    /// A value in a form other than its one canonical encoding (a varint not in its fewest
    /// bytes).
    #[error("the value is not in its canonical encoding: {0}")]
    NotCanonical(&'static str),
}

/// A type with a binary layout.
pub trait Wire: Sized {
    /// Appends this value's encoding to `out`.
    fn put(&self, out: &mut Vec<u8>);
    /// Reads one value from `r`.
    fn get(r: &mut Reader<'_>) -> Result<Self, CodecError>;
}

/// Bytes being decoded; every read is bounds-checked.
pub struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader at the start of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.bytes.len()
    }

    /// The next byte; `Malformed` at the end of the input.
    pub fn byte(&mut self) -> Result<u8, CodecError> {
        let (&b, rest) = self
            .bytes
            .split_first()
            .ok_or(CodecError::Malformed("truncated"))?;
        self.bytes = rest;
        Ok(b)
    }

    /// The next `n` bytes; `Malformed` if fewer remain.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        if n > self.bytes.len() {
            return Err(CodecError::Malformed("truncated"));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    /// A minimal LEB128 varint of at most 64 bits.
    pub fn varint(&mut self) -> Result<u64, CodecError> {
        let mut value: u64 = 0;
        for i in 0..10 {
            let b = self.byte()?;
            let bits = u64::from(b & 0x7f);
            if i == 9 && bits > 1 {
                return Err(CodecError::Malformed("integer over 64 bits"));
            }
            value |= bits << (7 * i);
            if b & 0x80 == 0 {
                if b == 0 && i > 0 {
                    return Err(CodecError::NotCanonical("integer not in its fewest bytes"));
                }
                return Ok(value);
            }
        }
        Err(CodecError::Malformed("integer over 64 bits"))
    }

    /// A sequence's length, refused when even one byte per item could not fit in what remains.
    pub fn seq_len(&mut self) -> Result<usize, CodecError> {
        let n = self.varint()?;
        if n > self.remaining() as u64 {
            return Err(CodecError::Malformed("length beyond the input"));
        }
        Ok(n as usize)
    }

    /// An enum's tag.
    pub fn tag(&mut self) -> Result<u64, CodecError> {
        self.varint()
    }
}

/// Appends `v` as a minimal LEB128 varint (1 to 10 bytes).
pub fn put_varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends a string: its length in bytes (varint), then its UTF-8 bytes.
pub fn put_str(s: &str, out: &mut Vec<u8>) {
    put_varint(s.len() as u64, out);
    out.extend_from_slice(s.as_bytes());
}

/// Appends the encoding of `value` to `out`.
pub fn encode_into<T: Wire>(value: &T, out: &mut Vec<u8>) {
    value.put(out);
}

/// The encoding of `value`.
pub fn encode<T: Wire>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    value.put(&mut out);
    out
}

/// Decodes one value that must fill `bytes` exactly and be at most `limit` bytes.
pub fn decode<T: Wire>(bytes: &[u8], limit: usize) -> Result<T, CodecError> {
    if bytes.len() > limit {
        return Err(CodecError::TooLarge {
            size: bytes.len(),
            limit,
        });
    }
    let mut r = Reader::new(bytes);
    let value = T::get(&mut r)?;
    if r.remaining() > 0 {
        return Err(CodecError::TrailingBytes(r.remaining()));
    }
    // Canonical by construction (every rule above reads one form only); checked where it is
    // cheap to, in the builds the tests and fuzzers run.
    debug_assert!(
        encode(&value) == bytes,
        "a decoded value encodes back to the same bytes"
    );
    Ok(value)
}

// ----- the primitive rules -----------------------------------------------------------------------

impl Wire for u8 {
    fn put(&self, out: &mut Vec<u8>) {
        out.push(*self);
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        r.byte()
    }
}

macro_rules! wire_uint {
    ($($t:ty),*) => {$(
        impl Wire for $t {
            fn put(&self, out: &mut Vec<u8>) {
                put_varint(u64::from(*self), out);
            }
            fn get(r: &mut Reader<'_>) -> Result<Self, CodecError> {
                <$t>::try_from(r.varint()?)
                    .map_err(|_| CodecError::Malformed(concat!("integer over ", stringify!($t))))
            }
        }
    )*};
}
wire_uint!(u16, u32, u64);

impl Wire for bool {
    fn put(&self, out: &mut Vec<u8>) {
        out.push(u8::from(*self));
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        match r.byte()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(CodecError::Malformed("a bool other than 0 or 1")),
        }
    }
}

impl<const N: usize> Wire for [u8; N] {
    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        let mut a = [0u8; N];
        a.copy_from_slice(r.take(N)?);
        Ok(a)
    }
}

impl Wire for String {
    fn put(&self, out: &mut Vec<u8>) {
        put_str(self, out);
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        let n = r.seq_len()?;
        let bytes = r.take(n)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| CodecError::Malformed("a string not UTF-8"))
    }
}

impl<T: Wire> Wire for Option<T> {
    fn put(&self, out: &mut Vec<u8>) {
        match self {
            None => out.push(0),
            Some(v) => {
                out.push(1);
                v.put(out);
            }
        }
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        match r.byte()? {
            0 => Ok(None),
            1 => Ok(Some(T::get(r)?)),
            _ => Err(CodecError::Malformed("an option tag other than 0 or 1")),
        }
    }
}

impl<T: Wire> Wire for Vec<T> {
    fn put(&self, out: &mut Vec<u8>) {
        put_varint(self.len() as u64, out);
        for item in self {
            item.put(out);
        }
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        let n = r.seq_len()?;
        // A length is at most the bytes that remain, but an item may take far more room in
        // memory than its one byte: reserve for what `PREALLOC_BYTES` holds, and grow only as
        // items are actually read (each consumes input).
        let mut items = Vec::with_capacity(n.min(PREALLOC_BYTES / std::mem::size_of::<T>().max(1)));
        for _ in 0..n {
            items.push(T::get(r)?);
        }
        Ok(items)
    }
}

impl<T: Wire> Wire for Box<T> {
    fn put(&self, out: &mut Vec<u8>) {
        (**self).put(out);
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(Box::new(T::get(r)?))
    }
}

macro_rules! wire_tuple {
    ($($name:ident),+) => {
        impl<$($name: Wire),+> Wire for ($($name,)+) {
            #[allow(non_snake_case)]
            fn put(&self, out: &mut Vec<u8>) {
                let ($($name,)+) = self;
                $($name.put(out);)+
            }
            fn get(r: &mut Reader<'_>) -> Result<Self, CodecError> {
                Ok(($($name::get(r)?,)+))
            }
        }
    };
}
wire_tuple!(A, B);
wire_tuple!(A, B, C);
wire_tuple!(A, B, C, D);
wire_tuple!(A, B, C, D, E);

/// A struct's layout: its fields, in this order.
#[macro_export]
macro_rules! wire_struct {
    ($t:ty { $($f:ident),+ $(,)? }) => {
        impl $crate::codec::Wire for $t {
            fn put(&self, out: &mut Vec<u8>) {
                $( $crate::codec::Wire::put(&self.$f, out); )+
            }
            fn get(
                r: &mut $crate::codec::Reader<'_>,
            ) -> Result<Self, $crate::codec::CodecError> {
                // A struct expression evaluates its fields in the order written: this order.
                Ok(Self { $( $f: $crate::codec::Wire::get(r)?, )+ })
            }
        }
    };
}

/// A newtype's layout: its one field's.
#[macro_export]
macro_rules! wire_newtype {
    ($($t:ident),+) => {$(
        impl $crate::codec::Wire for $t {
            fn put(&self, out: &mut Vec<u8>) {
                $crate::codec::Wire::put(&self.0, out);
            }
            fn get(
                r: &mut $crate::codec::Reader<'_>,
            ) -> Result<Self, $crate::codec::CodecError> {
                Ok($t($crate::codec::Wire::get(r)?))
            }
        }
    )+};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_are_minimal_and_bounded() {
        for v in [0u64, 1, 127, 128, 300, 1 << 35, u64::MAX] {
            let bytes = encode(&v);
            assert_eq!(decode::<u64>(&bytes, 16).unwrap(), v);
        }
        assert_eq!(encode(&300u64), vec![0xac, 0x02]);
        // 5 in two bytes instead of one.
        assert!(matches!(
            decode::<u64>(&[0x85, 0x00], 16),
            Err(CodecError::NotCanonical(_))
        ));
        // Eleven bytes, or a tenth byte over the 64th bit.
        assert!(decode::<u64>(&[0xff; 11], 16).is_err());
        let mut over = vec![0xff; 9];
        over.push(0x02);
        assert!(decode::<u64>(&over, 16).is_err());
        // In range for u64, not for u16.
        assert!(decode::<u16>(&encode(&70_000u64), 16).is_err());
    }

    #[test]
    fn trailing_bytes_are_refused() {
        assert_eq!(
            decode::<u64>(&[0x05, 0x00], 16).unwrap_err(),
            CodecError::TrailingBytes(1)
        );
    }

    #[test]
    fn tags_other_than_zero_and_one_are_refused() {
        assert!(decode::<bool>(&[2], 4).is_err());
        assert!(decode::<Option<u8>>(&[2, 0], 4).is_err());
        assert_eq!(decode::<Option<u8>>(&[1, 7], 4).unwrap(), Some(7));
    }

    #[test]
    fn a_huge_declared_length_does_not_allocate_it() {
        // A sequence claiming 2^62 items followed by almost nothing.
        let mut bytes = Vec::new();
        put_varint(1 << 62, &mut bytes);
        bytes.extend_from_slice(&[1, 2, 3]);
        assert!(decode::<Vec<u64>>(&bytes, 1024).is_err());
        assert!(decode::<String>(&bytes, 1024).is_err());
    }
}
