//! Deterministic fixed-point numbers for prices and energy.
//!
//! Floats are not allowed in market rules: every validator must compute the same bits, and
//! rounding must be a stated rule rather than an accident. [`Fixed`] is an `i128` counting
//! billionths (9 decimal places). Multiplication and division round toward zero; every
//! operation is checked and reports overflow or division by zero as an [`Error`].

use crate::types::{Error, Result};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fixed(i128);

impl Fixed {
    pub const DECIMALS: u32 = 9;
    pub const SCALE: i128 = 1_000_000_000;
    pub const ZERO: Fixed = Fixed(0);
    pub const ONE: Fixed = Fixed(Self::SCALE);

    /// From the raw count of billionths.
    pub const fn from_raw(raw: i128) -> Fixed {
        Fixed(raw)
    }

    pub const fn raw(self) -> i128 {
        self.0
    }

    pub const fn from_int(n: i64) -> Fixed {
        Fixed(n as i128 * Self::SCALE)
    }

    /// `num / den`, rounded toward zero.
    pub fn ratio(num: i128, den: i128) -> Result<Fixed> {
        Fixed(num.checked_mul(Self::SCALE).ok_or_else(overflow)?).checked_div_int(den)
    }

    pub fn checked_add(self, o: Fixed) -> Result<Fixed> {
        self.0.checked_add(o.0).map(Fixed).ok_or_else(overflow)
    }

    pub fn checked_sub(self, o: Fixed) -> Result<Fixed> {
        self.0.checked_sub(o.0).map(Fixed).ok_or_else(overflow)
    }

    pub fn checked_mul(self, o: Fixed) -> Result<Fixed> {
        self.0
            .checked_mul(o.0)
            .map(|p| Fixed(p / Self::SCALE))
            .ok_or_else(overflow)
    }

    pub fn checked_div(self, o: Fixed) -> Result<Fixed> {
        if o.0 == 0 {
            return Err(Error::new("division by zero"));
        }
        self.0
            .checked_mul(Self::SCALE)
            .map(|n| Fixed(n / o.0))
            .ok_or_else(overflow)
    }

    pub fn checked_mul_int(self, n: i128) -> Result<Fixed> {
        self.0.checked_mul(n).map(Fixed).ok_or_else(overflow)
    }

    pub fn checked_div_int(self, n: i128) -> Result<Fixed> {
        if n == 0 {
            return Err(Error::new("division by zero"));
        }
        self.0.checked_div(n).map(Fixed).ok_or_else(overflow)
    }

    pub fn min(self, o: Fixed) -> Fixed {
        if self <= o { self } else { o }
    }

    pub fn max(self, o: Fixed) -> Fixed {
        if self >= o { self } else { o }
    }

    pub fn abs(self) -> Fixed {
        Fixed(self.0.abs())
    }

    pub fn is_negative(self) -> bool {
        self.0 < 0
    }

    /// The integer part, rounded toward zero.
    pub fn trunc_int(self) -> i128 {
        self.0 / Self::SCALE
    }
}

fn overflow() -> Error {
    Error::new("fixed-point overflow")
}

impl fmt::Display for Fixed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let int = abs / Self::SCALE as u128;
        let frac = abs % Self::SCALE as u128;
        if frac == 0 {
            return write!(f, "{sign}{int}");
        }
        let digits = format!("{frac:09}");
        write!(f, "{sign}{int}.{}", digits.trim_end_matches('0'))
    }
}

impl FromStr for Fixed {
    type Err = Error;

    /// Parses `-12.5`, `0.000000001`, `7`. More than 9 decimals is an error, not a rounding.
    fn from_str(s: &str) -> Result<Fixed> {
        let bad = || {
            Error::new(format!(
                "not a decimal number with at most 9 decimals: {s:?}"
            ))
        };
        let (neg, body) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let (int, frac) = body.split_once('.').unwrap_or((body, ""));
        if int.is_empty() || frac.len() > Self::DECIMALS as usize {
            return Err(bad());
        }
        if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let int: i128 = int.parse().map_err(|_| bad())?;
        let frac_val: i128 = if frac.is_empty() {
            0
        } else {
            frac.parse::<i128>().map_err(|_| bad())?
                * 10i128.pow(Self::DECIMALS - frac.len() as u32)
        };
        let raw = int
            .checked_mul(Self::SCALE)
            .and_then(|v| v.checked_add(frac_val))
            .ok_or_else(bad)?;
        Ok(Fixed(if neg { -raw } else { raw }))
    }
}

/// JSON: a decimal string ("0.25"), so no precision is lost in JavaScript clients.
/// Storage: the raw integer.
impl Serialize for Fixed {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(self)
        } else {
            self.0.serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for Fixed {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Fixed, D::Error> {
        if d.is_human_readable() {
            #[derive(Deserialize)]
            #[serde(untagged)]
            enum Repr {
                Text(String),
                Int(i64),
            }
            match Repr::deserialize(d)? {
                Repr::Text(s) => s.parse().map_err(serde::de::Error::custom),
                Repr::Int(n) => Ok(Fixed::from_int(n)),
            }
        } else {
            i128::deserialize(d).map(Fixed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_print_round_trip() {
        for s in [
            "0",
            "1",
            "-1",
            "0.5",
            "12.345",
            "-0.000000001",
            "123456789.987654321",
        ] {
            let f: Fixed = s.parse().unwrap();
            assert_eq!(f.to_string(), s);
        }
        assert!("1.0000000001".parse::<Fixed>().is_err());
        assert!("abc".parse::<Fixed>().is_err());
        assert!(".5".parse::<Fixed>().is_err());
        assert!("1e3".parse::<Fixed>().is_err());
    }

    #[test]
    fn arithmetic_rounds_toward_zero_and_reports_errors() {
        let third = Fixed::ONE.checked_div(Fixed::from_int(3)).unwrap();
        assert_eq!(third.raw(), 333_333_333);
        let neg = Fixed::from_int(-1).checked_div(Fixed::from_int(3)).unwrap();
        assert_eq!(neg.raw(), -333_333_333);
        assert_eq!(
            "1.5"
                .parse::<Fixed>()
                .unwrap()
                .checked_mul("2.5".parse().unwrap())
                .unwrap(),
            "3.75".parse().unwrap()
        );
        assert!(Fixed::ONE.checked_div(Fixed::ZERO).is_err());
        assert!(Fixed::from_raw(i128::MAX).checked_add(Fixed::ONE).is_err());
        assert!(
            Fixed::from_raw(i128::MAX)
                .checked_mul(Fixed::from_int(2))
                .is_err()
        );
    }

    #[test]
    fn json_is_a_decimal_string() {
        let f: Fixed = "0.25".parse().unwrap();
        assert_eq!(serde_json::to_string(&f).unwrap(), "\"0.25\"");
        assert_eq!(
            serde_json::from_str::<Fixed>("3").unwrap(),
            Fixed::from_int(3)
        );
        let stored = postcard::to_allocvec(&f).unwrap();
        assert_eq!(postcard::from_bytes::<Fixed>(&stored).unwrap(), f);
    }
}
