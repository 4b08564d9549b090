//! PostgreSQL's binary `COPY` format (`COPY … FROM STDIN (FORMAT binary)`), written field by
//! field, for the few column types iptrack's bulk writes use. Tests also write rows of
//! SeaORM values ([`BinaryCopy::row`]): the reference a typed writer is held to.
//!
//! The stream (<https://www.postgresql.org/docs/current/sql-copy.html>, "Binary Format"):
//! an 11-byte signature, a 32-bit flags field and a 32-bit header-extension length; per row
//! a 16-bit field count, then per field a 32-bit length (-1 for NULL) and the value in the
//! type's binary send format; a 16-bit -1 at the end. Every integer is big-endian.
//!
//! Binary rather than text or CSV: values go in as bytes, so no quote, backslash, tab or
//! newline in a path or user agent needs escaping, and nothing is parsed on the server
//! side but lengths. A NUL in text is still refused by PostgreSQL (its `text` cannot hold
//! one), and fails the `COPY` as it failed the `INSERT` it replaces.

use chrono::{DateTime, Utc};
#[cfg(test)]
use sea_orm::Value;

/// The signature, flags (no OIDs) and an empty header extension.
pub const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// The end-of-data marker: a field count of -1.
const TRAILER: [u8; 2] = (-1_i16).to_be_bytes();

/// A value the encoder has no binary form for, or one too large for the format.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CopyError {
    #[error("no binary COPY encoding for {0}")]
    #[cfg(test)]
    Unsupported(String),
    #[error("a value or row is too large for binary COPY")]
    TooLarge,
}

/// One `COPY` stream, built in memory (a batch is bounded: the web's batch size).
#[derive(Debug, Clone)]
pub struct BinaryCopy {
    buffer: Vec<u8>,
}

impl Default for BinaryCopy {
    fn default() -> Self {
        Self::new()
    }
}

impl BinaryCopy {
    /// A stream holding the header.
    pub fn new() -> Self {
        Self::with_capacity(0)
    }

    /// A stream holding the header, with room for `bytes` more before it grows.
    pub fn with_capacity(bytes: usize) -> Self {
        let mut buffer = Vec::with_capacity(HEADER.len() + bytes + TRAILER.len());
        buffer.extend_from_slice(HEADER);
        Self { buffer }
    }

    /// Appends one row of [`Value`]s. The values must be in the column order of the
    /// `COPY` statement, and of the columns' types: PostgreSQL reads the bytes as that
    /// type, and a mismatch (an `Int` for a `bigint` column) fails the whole `COPY`.
    #[cfg(test)]
    pub fn row<'a>(
        &mut self,
        values: impl ExactSizeIterator<Item = &'a Value>,
    ) -> Result<(), CopyError> {
        self.start_row(values.len())?;
        for value in values {
            self.value(value)?;
        }
        Ok(())
    }

    /// Starts a row of `fields` fields, each to be appended next with [`Self::text`],
    /// [`Self::int4`], [`Self::int8`] or [`Self::timestamptz`], in the `COPY`
    /// statement's column order: the typed path, for a writer that has its values
    /// without a [`Value`] each.
    pub fn start_row(&mut self, fields: usize) -> Result<(), CopyError> {
        let fields = i16::try_from(fields).map_err(|_| CopyError::TooLarge)?;
        self.buffer.extend_from_slice(&fields.to_be_bytes());
        Ok(())
    }

    /// A `text` field.
    pub fn text(&mut self, text: &str) -> Result<(), CopyError> {
        self.field(Some(text.as_bytes()))
    }

    /// An `integer` field.
    pub fn int4(&mut self, n: i32) {
        self.buffer.extend_from_slice(&4_i32.to_be_bytes());
        self.buffer.extend_from_slice(&n.to_be_bytes());
    }

    /// A `bigint` field.
    pub fn int8(&mut self, n: i64) {
        self.buffer.extend_from_slice(&8_i32.to_be_bytes());
        self.buffer.extend_from_slice(&n.to_be_bytes());
    }

    /// A `timestamptz` field.
    pub fn timestamptz(&mut self, time: &DateTime<Utc>) -> Result<(), CopyError> {
        self.int8(micros_since_2000(time)?);
        Ok(())
    }

    /// The finished stream.
    pub fn finish(mut self) -> Vec<u8> {
        self.buffer.extend_from_slice(&TRAILER);
        self.buffer
    }

    #[cfg(test)]
    fn value(&mut self, value: &Value) -> Result<(), CopyError> {
        match value {
            Value::String(Some(text)) => self.text(text),
            Value::Int(Some(n)) => {
                self.int4(*n);
                Ok(())
            }
            Value::BigInt(Some(n)) => {
                self.int8(*n);
                Ok(())
            }
            Value::ChronoDateTimeUtc(Some(time)) => self.timestamptz(time),
            Value::String(None)
            | Value::Int(None)
            | Value::BigInt(None)
            | Value::ChronoDateTimeUtc(None) => self.field(None),
            other => Err(CopyError::Unsupported(format!("{:?}", other.array_type()))),
        }
    }

    /// A length and the bytes, or -1 for NULL.
    fn field(&mut self, bytes: Option<&[u8]>) -> Result<(), CopyError> {
        match bytes {
            None => self.buffer.extend_from_slice(&(-1_i32).to_be_bytes()),
            Some(bytes) => {
                let len = i32::try_from(bytes.len()).map_err(|_| CopyError::TooLarge)?;
                self.buffer.extend_from_slice(&len.to_be_bytes());
                self.buffer.extend_from_slice(bytes);
            }
        }
        Ok(())
    }
}

/// `timestamptz`'s binary form: microseconds since 2000-01-01 00:00 UTC. Sub-microsecond
/// digits are cut toward zero, as sqlx does when it binds the same value to an `INSERT`,
/// so both writes store the same instant.
pub(crate) fn micros_since_2000(time: &DateTime<Utc>) -> Result<i64, CopyError> {
    (*time - POSTGRES_EPOCH)
        .num_microseconds()
        .ok_or(CopyError::TooLarge)
}

/// 2000-01-01 00:00 UTC, PostgreSQL's epoch.
pub(crate) const POSTGRES_EPOCH: DateTime<Utc> =
    DateTime::from_timestamp_nanos(946_684_800_000_000_000);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn an_empty_stream_is_the_header_and_the_trailer() {
        let bytes = BinaryCopy::new().finish();
        assert_eq!(
            bytes,
            [
                b'P', b'G', b'C', b'O', b'P', b'Y', b'\n', 0xff, b'\r', b'\n', 0, // signature
                0, 0, 0, 0, // flags
                0, 0, 0, 0, // header extension
                0xff, 0xff, // trailer
            ]
        );
    }

    #[test]
    fn a_row_has_its_field_count_and_each_field_its_length() {
        let mut copy = BinaryCopy::new();
        let row = [
            Value::String(Some("a\t\"\\\n".to_owned())),
            Value::String(None),
            Value::Int(Some(404)),
            Value::BigInt(Some(-2)),
        ];
        copy.row(row.iter()).unwrap();
        let bytes = copy.finish();
        let body = &bytes[HEADER.len()..bytes.len() - 2];
        assert_eq!(
            body,
            [
                &[0, 4][..],
                &[0, 0, 0, 5],
                b"a\t\"\\\n",
                &[0xff, 0xff, 0xff, 0xff], // NULL: length -1, no bytes
                &[0, 0, 0, 4, 0, 0, 0x01, 0x94],
                &[0, 0, 0, 8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe],
            ]
            .concat()
        );
    }

    #[test]
    fn a_timestamp_is_microseconds_since_2000_cut_toward_zero() {
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let encode = |t: DateTime<Utc>| {
            let mut copy = BinaryCopy::new();
            copy.row([Value::ChronoDateTimeUtc(Some(t))].iter())
                .unwrap();
            let bytes = copy.finish();
            bytes[HEADER.len() + 2..bytes.len() - 2].to_vec()
        };
        assert_eq!(
            encode(at("2000-01-01T00:00:00Z")),
            [0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        // One second and 1.999 µs later: 1,000,001 µs.
        let later = encode(at("2000-01-01T00:00:01.000001999Z"));
        assert_eq!(later[4..], 1_000_001_i64.to_be_bytes());
        // 1999-12-31T23:59:59Z: -1,000,000 µs.
        let before = encode(at("1999-12-31T23:59:59Z"));
        assert_eq!(before[4..], (-1_000_000_i64).to_be_bytes());
        // 2026-12-02T00:00:00Z, cross-checked with PostgreSQL:
        // SELECT extract(epoch FROM '2026-12-02Z'::timestamptz - '2000-01-01Z') * 1e6
        let now = encode(at("2026-12-02T00:00:00Z"));
        assert_eq!(now[4..], 849_484_800_000_000_i64.to_be_bytes());
    }

    #[test]
    fn a_type_it_cannot_encode_is_an_error_not_a_guess() {
        let mut copy = BinaryCopy::new();
        assert!(matches!(
            copy.row([Value::Double(Some(1.5))].iter()),
            Err(CopyError::Unsupported(_))
        ));
    }
}
