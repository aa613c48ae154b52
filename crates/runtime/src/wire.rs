//! Component-model values as bytes, for calls that cross hosts. The encoding is wRPC's: values
//! concatenated in order, integers as (signed) LEB128 except 8-bit ones, floats little-endian,
//! `char` as UTF-8, strings and lists prefixed by their length, variants and enums by their
//! case index, options and results by one byte, flags as a little-endian bit vector. Resources,
//! futures and streams cannot cross hosts and are refused with a message naming them.

use wasmtime::component::{Type, Val};

/// Why a value could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct WireError(String);

fn err(message: impl Into<String>) -> WireError {
    WireError(message.into())
}

fn put_uleb(out: &mut Vec<u8>, mut n: u64) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn put_sleb(out: &mut Vec<u8>, mut n: i64) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        let done = (n == 0 && byte & 0x40 == 0) || (n == -1 && byte & 0x40 != 0);
        if done {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn take<'a>(input: &mut &'a [u8], n: usize) -> Result<&'a [u8], WireError> {
    if input.len() < n {
        return Err(err("the value ends early"));
    }
    let (head, rest) = input.split_at(n);
    *input = rest;
    Ok(head)
}

fn get_uleb(input: &mut &[u8]) -> Result<u64, WireError> {
    let mut value = 0u64;
    for shift in (0..70).step_by(7) {
        let byte = take(input, 1)?[0];
        value |= u64::from(byte & 0x7f).checked_shl(shift).unwrap_or(0);
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(err("an integer longer than 10 bytes"))
}

fn get_sleb(input: &mut &[u8]) -> Result<i64, WireError> {
    let mut value = 0i64;
    let mut shift = 0u32;
    loop {
        let byte = take(input, 1)?[0];
        if shift < 64 {
            value |= i64::from(byte & 0x7f) << shift;
        }
        shift += 7;
        if byte & 0x80 == 0 {
            if shift < 64 && byte & 0x40 != 0 {
                value |= -1i64 << shift;
            }
            return Ok(value);
        }
        if shift >= 70 {
            return Err(err("an integer longer than 10 bytes"));
        }
    }
}

fn get_len(input: &mut &[u8]) -> Result<usize, WireError> {
    let n = get_uleb(input)?;
    // Every element takes at least... nothing for unit-like types, so bound by a sane maximum
    // instead of trusting the peer with an allocation.
    if n > (input.len() as u64).max(1 << 20) {
        return Err(err(format!("a length of {n} that the message cannot hold")));
    }
    Ok(n as usize)
}

fn index_of<'a>(mut names: impl Iterator<Item = &'a str>, name: &str) -> Result<u64, WireError> {
    names
        .position(|n| n == name)
        .map(|i| i as u64)
        .ok_or_else(|| err(format!("no case `{name}`")))
}

/// Appends `value` (of type `ty`) to `out`.
pub fn encode(value: &Val, ty: &Type, out: &mut Vec<u8>) -> Result<(), WireError> {
    match (value, ty) {
        (Val::Bool(b), Type::Bool) => out.push(u8::from(*b)),
        (Val::S8(n), Type::S8) => out.push(*n as u8),
        (Val::U8(n), Type::U8) => out.push(*n),
        (Val::S16(n), Type::S16) => put_sleb(out, i64::from(*n)),
        (Val::U16(n), Type::U16) => put_uleb(out, u64::from(*n)),
        (Val::S32(n), Type::S32) => put_sleb(out, i64::from(*n)),
        (Val::U32(n), Type::U32) => put_uleb(out, u64::from(*n)),
        (Val::S64(n), Type::S64) => put_sleb(out, *n),
        (Val::U64(n), Type::U64) => put_uleb(out, *n),
        (Val::Float32(f), Type::Float32) => out.extend_from_slice(&f.to_le_bytes()),
        (Val::Float64(f), Type::Float64) => out.extend_from_slice(&f.to_le_bytes()),
        (Val::Char(c), Type::Char) => {
            let mut buf = [0; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
        (Val::String(s), Type::String) => {
            put_uleb(out, s.len() as u64);
            out.extend_from_slice(s.as_bytes());
        }
        (Val::List(items), Type::List(list)) => {
            put_uleb(out, items.len() as u64);
            let item_type = list.ty();
            for item in items {
                encode(item, &item_type, out)?;
            }
        }
        (Val::Record(fields), Type::Record(record)) => {
            for (field, ty) in fields.iter().zip(record.fields()) {
                encode(&field.1, &ty.ty, out)?;
            }
        }
        (Val::Tuple(items), Type::Tuple(tuple)) => {
            for (item, ty) in items.iter().zip(tuple.types()) {
                encode(item, &ty, out)?;
            }
        }
        (Val::Variant(name, payload), Type::Variant(variant)) => {
            let case = variant
                .cases()
                .position(|c| c.name == name)
                .ok_or_else(|| err(format!("no case `{name}`")))?;
            put_uleb(out, case as u64);
            let ty = variant.cases().nth(case).and_then(|c| c.ty);
            if let (Some(payload), Some(ty)) = (payload, ty) {
                encode(payload, &ty, out)?;
            }
        }
        (Val::Enum(name), Type::Enum(e)) => put_uleb(out, index_of(e.names(), name)?),
        (Val::Option(value), Type::Option(option)) => match value {
            None => out.push(0),
            Some(value) => {
                out.push(1);
                encode(value, &option.ty(), out)?;
            }
        },
        (Val::Result(result), Type::Result(ty)) => {
            let (tag, payload, ty) = match result {
                Ok(v) => (0, v, ty.ok()),
                Err(v) => (1, v, ty.err()),
            };
            out.push(tag);
            if let (Some(payload), Some(ty)) = (payload, ty) {
                encode(payload, &ty, out)?;
            }
        }
        (Val::Flags(set), Type::Flags(flags)) => {
            let names: Vec<&str> = flags.names().collect();
            let mut bits = vec![0u8; names.len().div_ceil(8)];
            for name in set {
                let i = index_of(names.iter().copied(), name)? as usize;
                bits[i / 8] |= 1 << (i % 8);
            }
            out.extend_from_slice(&bits);
        }
        (_, ty) => return Err(unsupported(ty)),
    }
    Ok(())
}

fn unsupported(ty: &Type) -> WireError {
    let what = match ty {
        Type::Own(_) | Type::Borrow(_) => "a resource",
        Type::Future(_) => "a future",
        Type::Stream(_) => "a stream",
        Type::ErrorContext => "an error-context",
        Type::Map(_) | Type::FixedLengthList(_) => "a map or fixed-length list",
        _ => "a value of another type than its function declares",
    };
    err(format!(
        "{what} cannot cross hosts; calls between hosts carry plain values"
    ))
}

/// Reads one value of type `ty` from the front of `input`.
pub fn decode(ty: &Type, input: &mut &[u8]) -> Result<Val, WireError> {
    Ok(match ty {
        Type::Bool => Val::Bool(take(input, 1)?[0] != 0),
        Type::S8 => Val::S8(take(input, 1)?[0] as i8),
        Type::U8 => Val::U8(take(input, 1)?[0]),
        Type::S16 => Val::S16(i16::try_from(get_sleb(input)?).map_err(|e| err(e.to_string()))?),
        Type::U16 => Val::U16(u16::try_from(get_uleb(input)?).map_err(|e| err(e.to_string()))?),
        Type::S32 => Val::S32(i32::try_from(get_sleb(input)?).map_err(|e| err(e.to_string()))?),
        Type::U32 => Val::U32(u32::try_from(get_uleb(input)?).map_err(|e| err(e.to_string()))?),
        Type::S64 => Val::S64(get_sleb(input)?),
        Type::U64 => Val::U64(get_uleb(input)?),
        Type::Float32 => {
            let b = take(input, 4)?;
            Val::Float32(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        }
        Type::Float64 => {
            let b = take(input, 8)?;
            let mut a = [0; 8];
            a.copy_from_slice(b);
            Val::Float64(f64::from_le_bytes(a))
        }
        Type::Char => {
            let first = *input.first().ok_or_else(|| err("the value ends early"))?;
            let len = match first {
                0x00..=0x7f => 1,
                0xc0..=0xdf => 2,
                0xe0..=0xef => 3,
                _ => 4,
            };
            let bytes = take(input, len)?;
            let s = std::str::from_utf8(bytes).map_err(|e| err(e.to_string()))?;
            Val::Char(s.chars().next().ok_or_else(|| err("an empty char"))?)
        }
        Type::String => {
            let len = get_len(input)?;
            let bytes = take(input, len)?;
            Val::String(
                String::from_utf8(bytes.to_vec()).map_err(|e| err(format!("a string: {e}")))?,
            )
        }
        Type::List(list) => {
            let len = get_len(input)?;
            let item = list.ty();
            let mut items = Vec::with_capacity(len.min(4096));
            for _ in 0..len {
                items.push(decode(&item, input)?);
            }
            Val::List(items)
        }
        Type::Record(record) => {
            let mut fields = Vec::new();
            for field in record.fields() {
                fields.push((field.name.to_string(), decode(&field.ty, input)?));
            }
            Val::Record(fields)
        }
        Type::Tuple(tuple) => {
            let mut items = Vec::new();
            for ty in tuple.types() {
                items.push(decode(&ty, input)?);
            }
            Val::Tuple(items)
        }
        Type::Variant(variant) => {
            let index = get_uleb(input)? as usize;
            let case = variant
                .cases()
                .nth(index)
                .ok_or_else(|| err(format!("no case {index}")))?;
            let payload = match &case.ty {
                Some(ty) => Some(Box::new(decode(ty, input)?)),
                None => None,
            };
            Val::Variant(case.name.to_string(), payload)
        }
        Type::Enum(e) => {
            let index = get_uleb(input)? as usize;
            let name = e
                .names()
                .nth(index)
                .ok_or_else(|| err(format!("no case {index}")))?;
            Val::Enum(name.to_string())
        }
        Type::Option(option) => match take(input, 1)?[0] {
            0 => Val::Option(None),
            1 => Val::Option(Some(Box::new(decode(&option.ty(), input)?))),
            tag => return Err(err(format!("an option tagged {tag}"))),
        },
        Type::Result(result) => {
            let tag = take(input, 1)?[0];
            let ty = match tag {
                0 => result.ok(),
                1 => result.err(),
                _ => return Err(err(format!("a result tagged {tag}"))),
            };
            let payload = match ty {
                Some(ty) => Some(Box::new(decode(&ty, input)?)),
                None => None,
            };
            Val::Result(if tag == 0 { Ok(payload) } else { Err(payload) })
        }
        Type::Flags(flags) => {
            let names: Vec<&str> = flags.names().collect();
            let bits = take(input, names.len().div_ceil(8))?;
            Val::Flags(
                names
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| bits[i / 8] & (1 << (i % 8)) != 0)
                    .map(|(_, n)| n.to_string())
                    .collect(),
            )
        }
        ty => return Err(unsupported(ty)),
    })
}

/// Encodes a function's arguments (or results): each value in order.
pub fn encode_all<'a>(
    values: &[Val],
    types: impl Iterator<Item = Type> + 'a,
) -> Result<Vec<u8>, WireError> {
    let mut out = Vec::new();
    for (value, ty) in values.iter().zip(types) {
        encode(value, &ty, &mut out)?;
    }
    Ok(out)
}

/// Decodes a function's arguments (or results), insisting every byte is used.
pub fn decode_all(
    types: impl Iterator<Item = Type>,
    mut input: &[u8],
) -> Result<Vec<Val>, WireError> {
    let mut values = Vec::new();
    for ty in types {
        values.push(decode(&ty, &mut input)?);
    }
    if !input.is_empty() {
        return Err(err(format!("{} bytes left after the values", input.len())));
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leb128_round_trips_at_the_edges() {
        for n in [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut out = Vec::new();
            put_uleb(&mut out, n);
            assert_eq!(get_uleb(&mut out.as_slice()).unwrap(), n);
        }
        for n in [
            0i64,
            -1,
            63,
            -64,
            64,
            -65,
            i32::MIN as i64,
            i64::MAX,
            i64::MIN,
        ] {
            let mut out = Vec::new();
            put_sleb(&mut out, n);
            assert_eq!(get_sleb(&mut out.as_slice()).unwrap(), n, "{n}");
        }
        let mut out = Vec::new();
        put_uleb(&mut out, 300);
        assert_eq!(out, [0xac, 0x02]);
    }

    #[test]
    fn scalars_and_strings_match_wrpc_and_refuse_short_input() {
        let mut out = Vec::new();
        encode(&Val::String("héllo".into()), &Type::String, &mut out).unwrap();
        assert_eq!(out[0], 6);
        assert_eq!(&out[1..], "héllo".as_bytes());
        let back = decode(&Type::String, &mut out.as_slice()).unwrap();
        assert_eq!(back, Val::String("héllo".into()));
        assert!(decode(&Type::String, &mut &out[..3]).is_err());
        let mut out = Vec::new();
        encode(&Val::Char('€'), &Type::Char, &mut out).unwrap();
        encode(&Val::S32(-2), &Type::S32, &mut out).unwrap();
        encode(&Val::Float64(1.5), &Type::Float64, &mut out).unwrap();
        let mut input = out.as_slice();
        assert_eq!(decode(&Type::Char, &mut input).unwrap(), Val::Char('€'));
        assert_eq!(decode(&Type::S32, &mut input).unwrap(), Val::S32(-2));
        assert_eq!(
            decode(&Type::Float64, &mut input).unwrap(),
            Val::Float64(1.5)
        );
        assert!(input.is_empty());
        assert!(encode(&Val::U32(1), &Type::String, &mut Vec::new()).is_err());
    }
}
