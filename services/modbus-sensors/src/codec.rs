//! Registers to values and back: data types, byte orders, scale and offset. Pure functions.
//!
//! Byte order, for a value whose bytes from most to least significant are A B C D (E F G H):
//!
//! | order | 16-bit | 32-bit (reg0 reg1) | 64-bit (reg0..reg3) |
//! | --- | --- | --- | --- |
//! | `ABCD` | AB | AB CD | AB CD EF GH |
//! | `CDAB` | AB | CD AB | GH EF CD AB |
//! | `BADC` | BA | BA DC | BA DC FE HG |
//! | `DCBA` | BA | DC BA | HG FE DC BA |
//!
//! `CDAB` reverses the order of the registers, `BADC` swaps the two bytes inside each register,
//! `DCBA` does both. Strings are two characters per register, first character in the high byte
//! (`ABCD`) or the low byte (`BADC`); trailing NUL and space characters are trimmed.

/// What the registers hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    U16,
    I16,
    U32,
    I32,
    U64,
    I64,
    F32,
    F64,
    /// A coil, a discrete input, or one bit of a register.
    Bool,
    /// Characters, two per register.
    String,
}

impl DataType {
    /// Parse a name: ours (`u16`, `f32`, ...) or Telegraf's (`UINT16`, `FLOAT32-IEEE`, ...).
    pub fn parse(s: &str) -> Option<DataType> {
        Some(match s.to_ascii_lowercase().as_str() {
            "u16" | "uint16" => DataType::U16,
            "i16" | "int16" => DataType::I16,
            "u32" | "uint32" => DataType::U32,
            "i32" | "int32" => DataType::I32,
            "u64" | "uint64" => DataType::U64,
            "i64" | "int64" => DataType::I64,
            "f32" | "float32" | "float32-ieee" => DataType::F32,
            "f64" | "float64" | "float64-ieee" => DataType::F64,
            "bool" | "bit" => DataType::Bool,
            "string" => DataType::String,
            _ => return None,
        })
    }

    /// Registers taken by a numeric type (1 for `bool`; strings have their own length).
    pub fn words(self) -> u16 {
        match self {
            DataType::U16 | DataType::I16 | DataType::Bool | DataType::String => 1,
            DataType::U32 | DataType::I32 | DataType::F32 => 2,
            DataType::U64 | DataType::I64 | DataType::F64 => 4,
        }
    }

    /// Our spelling.
    pub fn name(self) -> &'static str {
        match self {
            DataType::U16 => "u16",
            DataType::I16 => "i16",
            DataType::U32 => "u32",
            DataType::I32 => "i32",
            DataType::U64 => "u64",
            DataType::I64 => "i64",
            DataType::F32 => "f32",
            DataType::F64 => "f64",
            DataType::Bool => "bool",
            DataType::String => "string",
        }
    }
}

/// How the bytes of a value are spread over registers; see the module table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteOrder {
    Abcd,
    Cdab,
    Badc,
    Dcba,
}

impl ByteOrder {
    /// `ABCD`, `CDAB`, `BADC` or `DCBA` (any case).
    pub fn parse(s: &str) -> Option<ByteOrder> {
        Some(match s.to_ascii_uppercase().as_str() {
            "ABCD" => ByteOrder::Abcd,
            "CDAB" => ByteOrder::Cdab,
            "BADC" => ByteOrder::Badc,
            "DCBA" => ByteOrder::Dcba,
            _ => return None,
        })
    }
    fn word_swap(self) -> bool {
        matches!(self, ByteOrder::Cdab | ByteOrder::Dcba)
    }
    fn byte_swap(self) -> bool {
        matches!(self, ByteOrder::Badc | ByteOrder::Dcba)
    }
}

/// A decoded raw value, before scale and offset.
#[derive(Debug, Clone, PartialEq)]
pub enum Raw {
    Int(i128),
    Float(f64),
    Bool(bool),
    Text(String),
}

/// Big-endian bytes (A first) of a value held in `words`.
fn to_be_bytes(words: &[u16], order: ByteOrder) -> Vec<u8> {
    let mut out = Vec::with_capacity(words.len() * 2);
    let mut push = |w: u16| {
        let [hi, lo] = w.to_be_bytes();
        if order.byte_swap() {
            out.extend([lo, hi]);
        } else {
            out.extend([hi, lo]);
        }
    };
    if order.word_swap() {
        words.iter().rev().for_each(|&w| push(w));
    } else {
        words.iter().for_each(|&w| push(w));
    }
    out
}

/// Registers holding big-endian `bytes` (A first) in `order`.
fn from_be_bytes(bytes: &[u8], order: ByteOrder) -> Vec<u16> {
    let mut words: Vec<u16> = bytes
        .chunks(2)
        .map(|c| {
            let hi = c.first().copied().unwrap_or(0);
            let lo = c.get(1).copied().unwrap_or(0);
            if order.byte_swap() {
                u16::from_be_bytes([lo, hi])
            } else {
                u16::from_be_bytes([hi, lo])
            }
        })
        .collect();
    if order.word_swap() {
        words.reverse();
    }
    words
}

/// Decode `words` (exactly as many as the type takes; for `bool` on a register, `bit` is the bit).
pub fn decode(words: &[u16], dt: DataType, order: ByteOrder, bit: Option<u8>) -> Option<Raw> {
    let b = |n: usize| -> Option<Vec<u8>> { (words.len() == n).then(|| to_be_bytes(words, order)) };
    Some(match dt {
        DataType::U16 => Raw::Int(u16::from_be_bytes(b(1)?.try_into().ok()?).into()),
        DataType::I16 => Raw::Int(i16::from_be_bytes(b(1)?.try_into().ok()?).into()),
        DataType::U32 => Raw::Int(u32::from_be_bytes(b(2)?.try_into().ok()?).into()),
        DataType::I32 => Raw::Int(i32::from_be_bytes(b(2)?.try_into().ok()?).into()),
        DataType::U64 => Raw::Int(u64::from_be_bytes(b(4)?.try_into().ok()?).into()),
        DataType::I64 => Raw::Int(i64::from_be_bytes(b(4)?.try_into().ok()?).into()),
        DataType::F32 => Raw::Float(f32_as_f64(f32::from_be_bytes(b(2)?.try_into().ok()?))),
        DataType::F64 => Raw::Float(f64::from_be_bytes(b(4)?.try_into().ok()?)),
        DataType::Bool => Raw::Bool(words.first()? >> bit.unwrap_or(0) & 1 == 1),
        DataType::String => {
            let order = if order.byte_swap() {
                ByteOrder::Badc
            } else {
                ByteOrder::Abcd
            };
            let bytes = to_be_bytes(words, order);
            let text = String::from_utf8_lossy(&bytes);
            Raw::Text(text.trim_end_matches(['\0', ' ']).to_string())
        }
    })
}

/// Why a value cannot be written.
pub type EncodeError = String;

/// The registers that hold `raw` (an integer or float already unscaled) for `dt` in `order`.
/// Refuses values the type cannot hold. `length` is the string length in registers.
pub fn encode(raw: &Raw, dt: DataType, order: ByteOrder, length: u16) -> Result<Vec<u16>, EncodeError> {
    fn int<T: TryFrom<i128>>(v: &Raw, dt: DataType) -> Result<T, EncodeError> {
        let i = match v {
            Raw::Int(i) => *i,
            Raw::Float(f) if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e20 => *f as i128,
            other => return Err(format!("{other:?} is not an integer, expected one for {}", dt.name())),
        };
        T::try_from(i).map_err(|_| format!("{i} does not fit in {}", dt.name()))
    }
    let bytes: Vec<u8> = match dt {
        DataType::U16 => int::<u16>(raw, dt)?.to_be_bytes().into(),
        DataType::I16 => int::<i16>(raw, dt)?.to_be_bytes().into(),
        DataType::U32 => int::<u32>(raw, dt)?.to_be_bytes().into(),
        DataType::I32 => int::<i32>(raw, dt)?.to_be_bytes().into(),
        DataType::U64 => int::<u64>(raw, dt)?.to_be_bytes().into(),
        DataType::I64 => int::<i64>(raw, dt)?.to_be_bytes().into(),
        DataType::F32 | DataType::F64 => {
            let f = match raw {
                Raw::Int(i) => *i as f64,
                Raw::Float(f) => *f,
                other => return Err(format!("{other:?} is not a number")),
            };
            if !f.is_finite() {
                return Err(format!("{f} is not a finite number"));
            }
            if dt == DataType::F32 {
                if f.abs() > f32::MAX as f64 {
                    return Err(format!("{f} is beyond the range of f32 (±{:e})", f32::MAX));
                }
                (f as f32).to_be_bytes().into()
            } else {
                f.to_be_bytes().into()
            }
        }
        DataType::Bool => return Err("a bool is written as a coil or one bit, not as registers".into()),
        DataType::String => {
            let Raw::Text(s) = raw else {
                return Err("expected a string".into());
            };
            let max = usize::from(length) * 2;
            if s.len() > max {
                return Err(format!(
                    "{} bytes do not fit in {length} registers (at most {max})",
                    s.len()
                ));
            }
            let mut b = s.as_bytes().to_vec();
            b.resize(max, 0);
            let order = if order.byte_swap() {
                ByteOrder::Badc
            } else {
                ByteOrder::Abcd
            };
            return Ok(from_be_bytes(&b, order));
        }
    };
    Ok(from_be_bytes(&bytes, order))
}

/// The published number: raw × scale + offset.
pub fn scaled(raw: &Raw, scale: f64, offset: f64) -> Option<f64> {
    match raw {
        Raw::Int(i) => Some(*i as f64 * scale + offset),
        Raw::Float(f) => Some(f * scale + offset),
        _ => None,
    }
}

/// The raw value that publishes as `value`: (value − offset) / scale, rounded to the nearest
/// integer for integer types.
pub fn unscaled(value: f64, dt: DataType, scale: f64, offset: f64) -> Result<Raw, EncodeError> {
    if !value.is_finite() {
        return Err(format!("{value} is not a finite number"));
    }
    let raw = (value - offset) / scale;
    match dt {
        DataType::F32 | DataType::F64 => Ok(Raw::Float(raw)),
        _ => {
            let r = raw.round();
            if r.abs() > 1.8e19 {
                return Err(format!(
                    "{value} gives raw value {raw}, which does not fit in {}",
                    dt.name()
                ));
            }
            Ok(Raw::Int(r as i128))
        }
    }
}

/// An f32 as the f64 of its shortest decimal form: 21.5f32 stays 21.5, and 69.63188f32 is
/// published as 69.63188, not as 69.63188171386719 (the f32's exact binary value, whose extra
/// digits are noise the device never measured).
pub fn f32_as_f64(x: f32) -> f64 {
    if !x.is_finite() {
        return f64::from(x);
    }
    format!("{x}").parse().unwrap_or(f64::from(x))
}

#[cfg(test)]
mod tests {

    #[test]
    fn f32_values_keep_their_shortest_decimal_form() {
        // 0x428B4386 is the f32 nearest 69.63188; widened bit for bit it would read 69.63188171386719.
        assert_eq!(f32_as_f64(f32::from_bits(0x428B_4386)), 69.63188);
        assert_eq!(f32_as_f64(0.1), 0.1);
        assert_eq!(f32_as_f64(-2.5), -2.5);
        assert!(f32_as_f64(f32::NAN).is_nan());
    }
    use super::*;

    const ORDERS: [ByteOrder; 4] = [ByteOrder::Abcd, ByteOrder::Cdab, ByteOrder::Badc, ByteOrder::Dcba];

    #[test]
    fn layouts_follow_the_table() {
        // 0x0102_0304 written out by hand for each order.
        let expect = [[0x0102, 0x0304], [0x0304, 0x0102], [0x0201, 0x0403], [0x0403, 0x0201]];
        for (order, words) in ORDERS.iter().zip(expect) {
            assert_eq!(decode(&words, DataType::U32, *order, None), Some(Raw::Int(0x0102_0304)));
            assert_eq!(encode(&Raw::Int(0x0102_0304), DataType::U32, *order, 0).unwrap(), words);
        }
        let w64 = [0x0102, 0x0304, 0x0506, 0x0708];
        let v = Some(Raw::Int(0x0102_0304_0506_0708));
        assert_eq!(decode(&w64, DataType::U64, ByteOrder::Abcd, None), v);
        assert_eq!(
            decode(&[0x0708, 0x0506, 0x0304, 0x0102], DataType::U64, ByteOrder::Cdab, None),
            v
        );
        assert_eq!(
            decode(&[0x0201, 0x0403, 0x0605, 0x0807], DataType::U64, ByteOrder::Badc, None),
            v
        );
        assert_eq!(
            decode(&[0x0807, 0x0605, 0x0403, 0x0201], DataType::U64, ByteOrder::Dcba, None),
            v
        );
        assert_eq!(
            decode(&[0x0102], DataType::U16, ByteOrder::Cdab, None),
            Some(Raw::Int(0x0102))
        );
        assert_eq!(
            decode(&[0x0102], DataType::U16, ByteOrder::Dcba, None),
            Some(Raw::Int(0x0201))
        );
    }

    #[test]
    fn floats_signs_bits_and_strings() {
        // 1.5f32 = 0x3FC00000; -2 as i16 = 0xFFFE.
        assert_eq!(
            decode(&[0x3FC0, 0], DataType::F32, ByteOrder::Abcd, None),
            Some(Raw::Float(1.5))
        );
        assert_eq!(
            decode(&[0xFFFE], DataType::I16, ByteOrder::Abcd, None),
            Some(Raw::Int(-2))
        );
        assert_eq!(
            decode(&[0b100], DataType::Bool, ByteOrder::Abcd, Some(2)),
            Some(Raw::Bool(true))
        );
        assert_eq!(
            decode(&[0b100], DataType::Bool, ByteOrder::Abcd, Some(1)),
            Some(Raw::Bool(false))
        );
        let hi = [0x4849, 0x2100];
        assert_eq!(
            decode(&hi, DataType::String, ByteOrder::Abcd, None),
            Some(Raw::Text("HI!".into()))
        );
        assert_eq!(
            encode(&Raw::Text("HI!".into()), DataType::String, ByteOrder::Abcd, 2).unwrap(),
            hi
        );
        assert_eq!(
            encode(&Raw::Text("HI!".into()), DataType::String, ByteOrder::Badc, 2).unwrap(),
            [0x4948, 0x0021]
        );
        assert!(encode(&Raw::Text("HELLO".into()), DataType::String, ByteOrder::Abcd, 2).is_err());
        assert_eq!(decode(&[1, 2], DataType::U16, ByteOrder::Abcd, None), None);
    }

    #[test]
    fn out_of_range_values_are_refused() {
        assert!(encode(&Raw::Int(65536), DataType::U16, ByteOrder::Abcd, 0).is_err());
        assert!(encode(&Raw::Int(-1), DataType::U32, ByteOrder::Abcd, 0).is_err());
        assert!(encode(&Raw::Int(-32769), DataType::I16, ByteOrder::Abcd, 0).is_err());
        assert!(encode(&Raw::Float(1e39), DataType::F32, ByteOrder::Abcd, 0).is_err());
        assert_eq!(
            encode(&Raw::Int(-1), DataType::I16, ByteOrder::Abcd, 0).unwrap(),
            [0xFFFF]
        );
    }

    #[test]
    fn scale_and_offset_round_trip() {
        assert_eq!(scaled(&Raw::Int(215), 0.1, -5.0), Some(215.0 * 0.1 - 5.0));
        assert_eq!(unscaled(16.5, DataType::U16, 0.1, -5.0).unwrap(), Raw::Int(215));
        assert!(unscaled(f64::NAN, DataType::U16, 1.0, 0.0).is_err());
    }
}
