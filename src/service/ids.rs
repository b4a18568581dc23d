//! Ids that cannot be guessed: 128 random bits, written as 32 hex digits,
//! for jobs and stored tensors — one client cannot read, cancel or delete
//! another's work by counting.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A job's or a stored tensor's id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Id(u128);

impl Id {
    /// A fresh id from the system's random source (via `rand`).
    pub fn random() -> Id {
        Id(rand::random())
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl FromStr for Id {
    type Err = String;

    /// Exactly 32 hex digits.
    fn from_str(text: &str) -> Result<Id, String> {
        if text.len() != 32 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("'{text}' is not an id (ids are 32 hex digits)"));
        }
        u128::from_str_radix(text, 16)
            .map(Id)
            .map_err(|e| format!("'{text}' is not an id ({e})"))
    }
}

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Id, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_only_32_hex_digits_parse() {
        let id = Id::random();
        assert_eq!(id.to_string().len(), 32);
        assert_eq!(id.to_string().parse::<Id>(), Ok(id));
        assert_ne!(Id::random(), Id::random());
        for bad in [
            "",
            "7",
            "0x0000000000000000000000000000001",
            &"g".repeat(32),
            &"0".repeat(33),
        ] {
            assert!(bad.parse::<Id>().is_err(), "{bad}");
        }
    }
}
