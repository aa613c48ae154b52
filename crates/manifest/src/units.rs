//! Human-readable sizes (`64MiB`) and durations (`250ms`) as the manifest writes them.

use std::time::Duration;

/// A size or duration that could not be read; the message says how to write it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UnitError(pub String);

/// Parses a byte size: a plain number of bytes, or one with a unit (`KiB`, `MiB`, `GiB`,
/// also written `Ki`, `Mi`, `Gi`; or decimal `KB`, `MB`, `GB`).
pub fn parse_size(text: &str) -> Result<u64, UnitError> {
    let text = text.trim();
    let (number, unit) = split_number(text).ok_or_else(|| {
        UnitError(format!(
            "`{text}` is not a size; write it like 64MiB or 1GiB"
        ))
    })?;
    let scale: u64 = match unit {
        "" | "B" => 1,
        "Ki" | "KiB" => 1 << 10,
        "Mi" | "MiB" => 1 << 20,
        "Gi" | "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(UnitError(format!(
                "`{other}` is not a size unit; use KiB, MiB or GiB (or KB, MB, GB)"
            )))
        }
    };
    number
        .checked_mul(scale)
        .ok_or_else(|| UnitError(format!("`{text}` is too large")))
}

/// Parses a duration with a unit: `ms`, `s`, `m` (minutes) or `h`.
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    let text = text.trim();
    let (number, unit) = split_number(text).ok_or_else(|| {
        UnitError(format!(
            "`{text}` is not a duration; write it like 500ms or 10s"
        ))
    })?;
    let duration = match unit {
        "ms" => Duration::from_millis(number),
        "s" => Duration::from_secs(number),
        "m" => Duration::from_secs(number.saturating_mul(60)),
        "h" => Duration::from_secs(number.saturating_mul(3600)),
        "" => return Err(UnitError(format!("`{text}` needs a unit: ms, s, m or h"))),
        other => {
            return Err(UnitError(format!(
                "`{other}` is not a duration unit; use ms, s, m or h"
            )))
        }
    };
    if duration.is_zero() {
        return Err(UnitError(
            "a timeout of zero would refuse every request".to_string(),
        ));
    }
    Ok(duration)
}

/// Splits `64MiB` into 64 and `MiB`; None when there is no leading number.
fn split_number(text: &str) -> Option<(u64, &str)> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    Some((number.parse().ok()?, unit.trim()))
}
