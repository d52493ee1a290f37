//! Human-readable byte sizes for flags and settings such as `--memory 4GiB`.

use std::fmt;
use std::str::FromStr;

/// A number of bytes, parsed from `1024`, `512MB`, `4GiB`, `1.5g` and the like.
/// Decimal units (`KB`, `MB`, `GB`, `TB`) and binary units (`KiB`, `MiB`,
/// `GiB`, `TiB`, or a bare `K`/`M`/`G`/`T`) are accepted, case-insensitively.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(u64);

impl ByteSize {
    /// A size of `bytes` bytes.
    pub const fn new(bytes: u64) -> Self {
        Self(bytes)
    }

    /// The size in bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }
}

/// Why a size could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not a size (try 512MiB, 4GiB or 2000000000)")]
pub struct ParseByteSizeError {
    input: String,
}

impl FromStr for ByteSize {
    type Err = ParseByteSizeError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = || ParseByteSizeError {
            input: input.to_string(),
        };
        let trimmed = input.trim();
        let split = trimmed
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(trimmed.len());
        let (number, unit) = trimmed.split_at(split);
        let number: f64 = number.parse().map_err(|_| err())?;
        let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "kb" => 1_000,
            "mb" => 1_000_000,
            "gb" => 1_000_000_000,
            "tb" => 1_000_000_000_000,
            "k" | "kib" => 1 << 10,
            "m" | "mib" => 1 << 20,
            "g" | "gib" => 1 << 30,
            "t" | "tib" => 1 << 40,
            _ => return Err(err()),
        };
        let bytes = number * multiplier as f64;
        if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
            return Err(err());
        }
        Ok(ByteSize(bytes.round() as u64))
    }
}

/// Shown in the largest binary unit that keeps one decimal: `256.0 MiB`,
/// `1.5 GiB`, `512 B`.
impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
        let mut value = self.0 as f64;
        if value < 1024.0 {
            return write!(f, "{} B", self.0);
        }
        let mut unit = "B";
        for next in UNITS {
            if value < 1024.0 {
                break;
            }
            value /= 1024.0;
            unit = next;
        }
        write!(f, "{value:.1} {unit}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        let cases = [
            ("1024", 1024),
            ("512MB", 512_000_000),
            ("512MiB", 512 << 20),
            ("4GiB", 4 << 30),
            ("4g", 4 << 30),
            ("1.5k", 1536),
            (" 2 TB ", 2_000_000_000_000),
        ];
        for (input, bytes) in cases {
            assert_eq!(input.parse::<ByteSize>().unwrap().bytes(), bytes, "{input}");
        }
    }

    #[test]
    fn rejects_garbage() {
        for input in ["", "GiB", "12XB", "-1G", "1..2M"] {
            assert!(input.parse::<ByteSize>().is_err(), "{input}");
        }
    }

    #[test]
    fn displays_in_binary_units() {
        assert_eq!(ByteSize::new(512).to_string(), "512 B");
        assert_eq!(ByteSize::new(256 << 20).to_string(), "256.0 MiB");
        assert_eq!(ByteSize::new(3 << 29).to_string(), "1.5 GiB");
    }
}
