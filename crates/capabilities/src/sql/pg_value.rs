//! `wasmcloud:postgres`'s `pg-value` to and from PostgreSQL's types: the scalar types apps use
//! (integers, floats, booleans, text, bytea, json and jsonb, uuid, date, time and timestamps) both
//! ways; anything else refused naming the case or column, never guessed.

use bytes::BytesMut;
use chrono::{Datelike as _, NaiveDate, NaiveDateTime, NaiveTime, Timelike as _};
use tokio_postgres::types::{to_sql_checked, IsNull, ToSql, Type};

use crate::bindings::postgres::types::{
    Date, Offset, PgValue, ResultRowEntry, Time, Timestamp, TimestampTz,
};

type BoxError = Box<dyn std::error::Error + Sync + Send>;

/// An `f64` as `hashable-f64`: mantissa, exponent and sign, value = sign × mantissa × 2^exponent.
pub(crate) fn hashable(value: f64) -> (u64, i16, i8) {
    let bits = value.to_bits();
    let sign = if bits >> 63 == 0 { 1 } else { -1 };
    let exponent = ((bits >> 52) & 0x7ff) as i16;
    let fraction = bits & 0x000f_ffff_ffff_ffff;
    let mantissa = if exponent == 0 {
        fraction << 1
    } else {
        fraction | 0x0010_0000_0000_0000
    };
    (mantissa, exponent - 1075, sign)
}

/// A `hashable-f64` as an `f64`.
pub(crate) fn from_hashable((mantissa, exponent, sign): (u64, i16, i8)) -> f64 {
    // In two steps: 2^exponent alone underflows for the smallest numbers.
    let exponent = i32::from(exponent);
    let half = exponent / 2;
    f64::from(sign) * (mantissa as f64) * 2f64.powi(half) * 2f64.powi(exponent - half)
}

fn date_of(date: &Date) -> Result<NaiveDate, BoxError> {
    match date {
        Date::Ymd((y, m, d)) => NaiveDate::from_ymd_opt(*y, *m, *d)
            .ok_or_else(|| format!("{y}-{m}-{d} is no date").into()),
        _ => Err("infinite dates are not carried".into()),
    }
}

fn time_of(time: &Time) -> Result<NaiveTime, BoxError> {
    NaiveTime::from_hms_micro_opt(time.hour, time.min, time.sec, time.micro).ok_or_else(|| {
        format!(
            "{}:{}:{}.{} is no time",
            time.hour, time.min, time.sec, time.micro
        )
        .into()
    })
}

fn wit_date(date: NaiveDate) -> Date {
    Date::Ymd((date.year(), date.month(), date.day()))
}

fn wit_time(time: NaiveTime) -> Time {
    Time {
        hour: time.hour(),
        min: time.minute(),
        sec: time.second(),
        micro: time.nanosecond() / 1000,
    }
}

fn wit_timestamp(at: NaiveDateTime) -> Timestamp {
    Timestamp {
        date: wit_date(at.date()),
        time: wit_time(at.time()),
    }
}

/// A parameter, bound to whatever type PostgreSQL inferred for it when the two agree.
#[derive(Debug)]
pub(crate) struct PgParam<'a>(pub(crate) &'a PgValue);

impl ToSql for PgParam<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        use PgValue as V;
        let int = |i: i64, out: &mut BytesMut| -> Result<IsNull, BoxError> {
            match *ty {
                Type::INT8 => i.to_sql(ty, out),
                Type::INT4 => i32::try_from(i)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(i)?.to_sql(ty, out),
                Type::FLOAT8 => (i as f64).to_sql(ty, out),
                Type::FLOAT4 => (i as f32).to_sql(ty, out),
                _ => Err(format!("an integer cannot be bound to a parameter of type {ty}").into()),
            }
        };
        let float = |f: f64, out: &mut BytesMut| -> Result<IsNull, BoxError> {
            match *ty {
                Type::FLOAT8 => f.to_sql(ty, out),
                Type::FLOAT4 => (f as f32).to_sql(ty, out),
                _ => Err(format!("a float cannot be bound to a parameter of type {ty}").into()),
            }
        };
        let text = |t: &str, out: &mut BytesMut| -> Result<IsNull, BoxError> {
            match *ty {
                Type::JSON | Type::JSONB => {
                    serde_json::from_str::<serde_json::Value>(t)?.to_sql(ty, out)
                }
                Type::UUID => uuid::Uuid::parse_str(t)?.to_sql(ty, out),
                _ => t.to_sql(ty, out),
            }
        };
        match self.0 {
            V::Null => Ok(IsNull::Yes),
            V::BigInt(i) | V::Int8(i) | V::BigSerial(i) | V::Serial8(i) => int(*i, out),
            V::Integer(i) | V::Int(i) | V::Int4(i) => int((*i).into(), out),
            V::Serial(i) | V::Serial4(i) => int((*i).into(), out),
            V::SmallInt(i) | V::Int2(i) | V::SmallSerial(i) | V::Serial2(i) => {
                int((*i).into(), out)
            }
            V::Bool(b) | V::Boolean(b) => b.to_sql(ty, out),
            V::Double(f) | V::Float8(f) | V::Real(f) | V::Float4(f) => {
                float(from_hashable(*f), out)
            }
            V::Text(t) | V::Name(t) | V::Xml(t) | V::Json(t) | V::Jsonb(t) | V::Uuid(t) => {
                text(t, out)
            }
            V::Varchar((_, bytes)) | V::Char((_, bytes)) => text(std::str::from_utf8(bytes)?, out),
            V::Bytea(bytes) => bytes.as_slice().to_sql(ty, out),
            V::Date(date) => date_of(date)?.to_sql(ty, out),
            V::Time(time) => time_of(time)?.to_sql(ty, out),
            V::Timestamp(at) => {
                NaiveDateTime::new(date_of(&at.date)?, time_of(&at.time)?).to_sql(ty, out)
            }
            V::TimestampTz(at) => {
                let local =
                    NaiveDateTime::new(date_of(&at.timestamp.date)?, time_of(&at.timestamp.time)?);
                let east = match at.offset {
                    Offset::EasternHemisphereSecs(s) => s,
                    Offset::WesternHemisphereSecs(s) => -s,
                };
                let utc = local - chrono::Duration::seconds(east.into());
                chrono::DateTime::<chrono::Utc>::from_naive_utc_and_offset(utc, chrono::Utc)
                    .to_sql(ty, out)
            }
            other => Err(format!("{} parameters are not carried yet", case_name(other)).into()),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// The WIT case of a value, for messages.
fn case_name(value: &PgValue) -> String {
    let debug = format!("{value:?}");
    debug
        .split(['(', ' ', '{'])
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Whether a column of type `ty` can be read into a `pg-value`.
pub(crate) fn carried(ty: &Type) -> bool {
    [
        Type::BOOL,
        Type::INT2,
        Type::INT4,
        Type::INT8,
        Type::FLOAT4,
        Type::FLOAT8,
        Type::TEXT,
        Type::VARCHAR,
        Type::BPCHAR,
        Type::NAME,
        Type::BYTEA,
        Type::JSON,
        Type::JSONB,
        Type::UUID,
        Type::DATE,
        Type::TIME,
        Type::TIMESTAMP,
        Type::TIMESTAMPTZ,
        Type::XML,
    ]
    .contains(ty)
}

/// One row as `result-row` entries.
pub(crate) fn row_of(
    row: &tokio_postgres::Row,
) -> Result<Vec<ResultRowEntry>, tokio_postgres::Error> {
    row.columns()
        .iter()
        .enumerate()
        .map(|(i, column)| {
            Ok(ResultRowEntry {
                column_name: column.name().to_string(),
                value: value_of(row, i, column.type_())?,
            })
        })
        .collect()
}

fn value_of(
    row: &tokio_postgres::Row,
    i: usize,
    ty: &Type,
) -> Result<PgValue, tokio_postgres::Error> {
    fn or_null<T>(value: Option<T>, f: impl FnOnce(T) -> PgValue) -> PgValue {
        value.map_or(PgValue::Null, f)
    }
    Ok(match *ty {
        Type::BOOL => or_null(row.try_get(i)?, PgValue::Bool),
        Type::INT2 => or_null(row.try_get(i)?, PgValue::Int2),
        Type::INT4 => or_null(row.try_get(i)?, PgValue::Int4),
        Type::INT8 => or_null(row.try_get(i)?, PgValue::Int8),
        Type::FLOAT4 => or_null(row.try_get::<_, Option<f32>>(i)?, |f| {
            PgValue::Float4(hashable(f.into()))
        }),
        Type::FLOAT8 => or_null(row.try_get::<_, Option<f64>>(i)?, |f| {
            PgValue::Float8(hashable(f))
        }),
        Type::VARCHAR => or_null(row.try_get::<_, Option<String>>(i)?, |t| {
            PgValue::Varchar((None, t.into_bytes()))
        }),
        Type::BPCHAR => or_null(row.try_get::<_, Option<String>>(i)?, |t| {
            PgValue::Char((
                u32::try_from(t.chars().count()).unwrap_or(u32::MAX),
                t.into_bytes(),
            ))
        }),
        Type::NAME => or_null(row.try_get(i)?, PgValue::Name),
        Type::XML => or_null(row.try_get(i)?, PgValue::Xml),
        Type::BYTEA => or_null(row.try_get(i)?, PgValue::Bytea),
        Type::JSON => or_null(row.try_get::<_, Option<serde_json::Value>>(i)?, |j| {
            PgValue::Json(j.to_string())
        }),
        Type::JSONB => or_null(row.try_get::<_, Option<serde_json::Value>>(i)?, |j| {
            PgValue::Jsonb(j.to_string())
        }),
        Type::UUID => or_null(row.try_get::<_, Option<uuid::Uuid>>(i)?, |u| {
            PgValue::Uuid(u.to_string())
        }),
        Type::DATE => or_null(row.try_get(i)?, |d| PgValue::Date(wit_date(d))),
        Type::TIME => or_null(row.try_get(i)?, |t| PgValue::Time(wit_time(t))),
        Type::TIMESTAMP => or_null(row.try_get(i)?, |t| PgValue::Timestamp(wit_timestamp(t))),
        Type::TIMESTAMPTZ => or_null(
            row.try_get::<_, Option<chrono::DateTime<chrono::Utc>>>(i)?,
            |t| {
                PgValue::TimestampTz(TimestampTz {
                    timestamp: wit_timestamp(t.naive_utc()),
                    offset: Offset::EasternHemisphereSecs(0),
                })
            },
        ),
        _ => or_null(row.try_get(i)?, PgValue::Text),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_survive_their_hashable_form() {
        for f in [0.0, 1.0, -2.5, std::f64::consts::PI, 1e-300, 6.02e23] {
            assert_eq!(from_hashable(hashable(f)), f, "{f}");
        }
    }
}
