//! SenML (RFC 8428), JSON representation: the one place that owns the wire format.
//!
//! The rest of the framework converts its own types at this edge, so no other code can
//! produce an invalid message.
//!
//! * Receiving: [`decode_pack`] turns bytes into wire [`Record`]s. It fails with a
//!   [`DecodeError`] only when the bytes are not a SenML JSON pack at all. [`resolve`] then
//!   applies the base fields (RFC 8428 section 4.6) and validates the pack. It returns
//!   [`Resolved`] records, or every [`Problem`] it found.
//! * Sending: [`encode_packs`] writes borrowed [`OutRecord`]s into one or more packs within
//!   [`PackLimits`]. [`encode_string_record`] and [`encode_response`] write the small
//!   fixed-shape packs. [`is_valid_name`] and [`check_name`] check names.
//!
//! This module does no transport and no I/O, and has no CBOR, XML or EXI representation.
//!
//! ```
//! use tolomeo_proto::senml::{OutRecord, PackLimits, ResolvedValue, Value};
//! use tolomeo_proto::senml::{decode_pack, encode_packs, resolve};
//!
//! let v = Value::from(12.5);
//! let out = [OutRecord { name: "cpu:total", unit: Some("%"), value: &v, time: 1.7e9 }];
//! let packs = encode_packs("urn:dev:sn:SN1:", false, &out, PackLimits::default());
//! let expected = r#"[{"bn":"urn:dev:sn:SN1:","n":"cpu:total","u":"%","v":12.5,"t":1700000000}]"#;
//! assert_eq!(packs[0].bytes, expected.as_bytes());
//!
//! let records = decode_pack(&packs[0].bytes)?;
//! match resolve(&records, 1_700_000_001.0) {
//!     Ok(resolved) => {
//!         assert_eq!(resolved[0].name, "urn:dev:sn:SN1:cpu:total");
//!         assert_eq!(resolved[0].value, Some(ResolvedValue::Number(12.5)));
//!     }
//!     // Each problem displays as "record 2, field `n`: ...".
//!     Err(problems) => panic!("invalid pack: {problems:?}"),
//! }
//! # Ok::<(), tolomeo_proto::senml::DecodeError>(())
//! ```

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::ser::{CompactFormatter, Formatter};

/// The SenML version that RFC 8428 defines, which is also the default `bver`. It is the only
/// version accepted.
pub const SENML_VERSION: i64 = 10;

/// Resolved times below 2^28 seconds are relative to "now" (RFC 8428 section 4.5.3).
pub const RELATIVE_TIME_LIMIT: f64 = 268_435_456.0;

/// One SenML record as it appears on the wire, with every RFC 8428 field under its JSON label.
///
/// Decoding refuses a known label whose JSON type is wrong, `null` included. For `bver` it
/// also accepts a float with no fractional part, such as `10.0`. Serializing skips `None`
/// fields and an empty `extra`. If `extra` repeats a known label, that label is written twice.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, expecting = "a SenML record (a JSON object)")]
pub struct Record {
    /// Base name. It is put in front of `n` in this record and in the ones that follow.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub bn: Option<String>,
    /// Base time. It is added to `t` in this record and in the ones that follow.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub bt: Option<f64>,
    /// Base unit, used when a record has no `u`.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub bu: Option<String>,
    /// Base value, added to `v`.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub bv: Option<f64>,
    /// Base sum, added to `s`.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub bs: Option<f64>,
    /// Base version. It defaults to [`SENML_VERSION`].
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "version")]
    pub bver: Option<i64>,
    /// Name, added after the base name.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub n: Option<String>,
    /// Unit.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub u: Option<String>,
    /// Numeric value.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub v: Option<f64>,
    /// String value.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub vs: Option<String>,
    /// Boolean value.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub vb: Option<bool>,
    /// Data value, in base64url (RFC 4648 section 5) without padding.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub vd: Option<String>,
    /// Value sum, the integral of the value over time.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub s: Option<f64>,
    /// Time, in seconds. Once `bt` is added, a result of 2^28 or more is absolute Unix time.
    /// A smaller result is relative to "now".
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub t: Option<f64>,
    /// Update time: the longest time, in seconds, before the sensor gives a new reading.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub ut: Option<f64>,
    /// Labels this implementation does not know. They are kept so that validation can refuse
    /// must-understand labels, those ending in `_` (RFC 8428 section 4.4).
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// A label that is present must have a value of its type. `null` does not count as absent.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// `bver` is a JSON number holding an integer. Both `10` and `10.0` are accepted.
fn version<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    struct IntVisitor;
    impl Visitor<'_> for IntVisitor {
        type Value = i64;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an integer SenML version number")
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
            Ok(v)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
            i64::try_from(v).map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<i64, E> {
            if v.fract() == 0.0 && v.abs() < 9e15 {
                Ok(v as i64)
            } else {
                Err(E::invalid_value(de::Unexpected::Float(v), &self))
            }
        }
    }
    d.deserialize_any(IntVisitor).map(Some)
}

/// A reading's value: one of the three SenML value kinds this platform sends.
///
/// It converts `From` `f64`, `f32`, `i64`, `u64`, `i32`, `u32`, `bool`, `String` and `&str`.
/// An `f32` keeps its shortest decimal form, so `0.1f32` becomes `0.1`, not
/// `0.10000000149011612`. An `i64` or `u64` is exact up to ±2^53. Beyond that, it rounds to
/// the nearest `f64`.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A number, sent as `v`. It must be finite when encoded.
    Number(f64),
    /// A string, sent as `vs`.
    String(String),
    /// A boolean, sent as `vb`.
    Bool(bool),
}

macro_rules! value_from {
    ($($t:ty => |$x:ident| $e:expr),* $(,)?) => {$(
        impl From<$t> for Value {
            fn from($x: $t) -> Self {
                $e
            }
        }
    )*};
}
value_from! {
    f64 => |x| Value::Number(x),
    f32 => |x| Value::Number(f32_shortest(x).unwrap_or(f64::from(x))),
    i64 => |x| Value::Number(x as f64),
    u64 => |x| Value::Number(x as f64),
    i32 => |x| Value::Number(f64::from(x)),
    u32 => |x| Value::Number(f64::from(x)),
    bool => |x| Value::Bool(x),
    String => |x| Value::String(x),
    &str => |x| Value::String(x.to_owned()),
}

/// Reads the shortest round-trip decimal of an `f32` (its `Display`) as an `f64`. It does
/// not allocate.
fn f32_shortest(x: f32) -> Option<f64> {
    struct Stack([u8; 64], usize);
    impl fmt::Write for Stack {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            let end = self.1 + s.len();
            let dst = self.0.get_mut(self.1..end).ok_or(fmt::Error)?;
            dst.copy_from_slice(s.as_bytes());
            self.1 = end;
            Ok(())
        }
    }
    let mut out = Stack([0; 64], 0);
    fmt::Write::write_fmt(&mut out, format_args!("{x}")).ok()?;
    std::str::from_utf8(out.0.get(..out.1)?).ok()?.parse().ok()
}

/// A fully resolved record (RFC 8428 section 4.6): base fields applied and time absolute.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// `bn` + `n`, a valid name (see [`check_name`]).
    pub name: String,
    /// `u`, or else the base unit in effect.
    pub unit: Option<String>,
    /// The value. It is `None` only for a record that carries just a sum.
    pub value: Option<ResolvedValue>,
    /// `bs` + `s`, when either of them is present.
    pub sum: Option<f64>,
    /// Absolute Unix time in seconds: `bt` + `t`, with relative times resolved against `now`.
    pub time: f64,
    /// `ut`, in seconds.
    pub update_time: Option<f64>,
}

/// The value of a resolved record.
#[derive(Debug, Clone, PartialEq)]
pub enum ResolvedValue {
    /// `bv` + `v`, finite.
    Number(f64),
    /// `vs`.
    String(String),
    /// `vb`.
    Bool(bool),
    /// `vd`, still base64url-encoded. It has been checked to use that alphabet, without padding.
    Data(String),
}

/// One problem found in a pack. It says which record (0-based index) and which field (its JSON
/// label, or "" for the whole record or pack), what is wrong, and what was expected.
///
/// It displays as "record 2, field `n`: ...", or as "record 2: ..." when `field` is "".
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("record {index}{}: {message}", FieldSuffix(.field))]
pub struct Problem {
    /// 0-based index of the record in the pack.
    pub index: usize,
    /// JSON label of the field at fault, or "" for the whole record or pack.
    pub field: &'static str,
    /// What is wrong and what was expected.
    pub message: String,
}

impl Problem {
    fn new(index: usize, field: &'static str, message: String) -> Self {
        Problem { index, field, message }
    }
}

struct FieldSuffix<'a>(&'a str);
impl fmt::Display for FieldSuffix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            "" => Ok(()),
            field => write!(f, ", field `{field}`"),
        }
    }
}

/// Error for bytes that are not a SenML JSON pack at all. That covers bytes that are not JSON
/// or not an array, a record that is not an object, and a known field of the wrong JSON type.
/// The message says what was expected, and where (serde_json's line and column).
#[derive(Debug, thiserror::Error)]
#[error("not a SenML JSON pack: {}{inner}", RecordPrefix(.record))]
pub struct DecodeError {
    record: Option<usize>,
    inner: serde_json::Error,
}

struct RecordPrefix<'a>(&'a Option<usize>);
impl fmt::Display for RecordPrefix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(i) => write!(f, "record {i}: "),
            None => Ok(()),
        }
    }
}

impl DecodeError {
    /// The 0-based index of the record being read when decoding failed, if the failure was
    /// inside the array.
    pub fn record(&self) -> Option<usize> {
        self.record
    }
    /// 1-based line of the error in the input, or 0 if unknown.
    pub fn line(&self) -> usize {
        self.inner.line()
    }
    /// 1-based column of the error in the input, or 0 if unknown.
    pub fn column(&self) -> usize {
        self.inner.column()
    }
}

/// Reads the top-level array and notes which record failed.
struct PackSeed<'a>(&'a Cell<Option<usize>>);

impl<'de> DeserializeSeed<'de> for PackSeed<'_> {
    type Value = Vec<Record>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<Record>, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for PackSeed<'_> {
    type Value = Vec<Record>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a SenML pack (a JSON array of record objects)")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Record>, A::Error> {
        let mut records = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        loop {
            match seq.next_element::<Record>() {
                Ok(Some(r)) => records.push(r),
                Ok(None) => return Ok(records),
                Err(e) => {
                    self.0.set(Some(records.len()));
                    return Err(e);
                }
            }
        }
    }
}

/// Decode a SenML JSON pack into wire records, without resolving or validating it (see
/// [`resolve`]). An empty array decodes to an empty `Vec`. It never panics.
///
/// Numbers are read exactly only when serde_json's `float_roundtrip` feature is on. Without
/// it, serde_json's faster parser can be off by one unit in the last place.
pub fn decode_pack(bytes: &[u8]) -> Result<Vec<Record>, DecodeError> {
    let failed_at = Cell::new(None);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let result = PackSeed(&failed_at).deserialize(&mut de);
    let result = result.and_then(|records| de.end().map(|()| records));
    let record = failed_at.get();
    result.map_err(|inner| DecodeError { record, inner })
}

/// Base fields in effect at a point in the pack.
#[derive(Default)]
struct Base<'a> {
    bn: &'a str,
    bt: f64,
    bu: Option<&'a str>,
    bv: Option<f64>,
    bs: Option<f64>,
}

/// Resolve a pack: apply the base fields and validate every record. It collects ALL the
/// problems, not just the first. `now` is the current Unix time in seconds, used for relative
/// times.
///
/// Records keep their order in the pack: index `i` of the result is record `i`. An empty pack
/// is a problem, since a pack holds one or more records. `bver` must be [`SENML_VERSION`].
/// Earlier draft versions are refused, and newer versions MUST NOT be used (RFC 8428
/// section 4.4).
pub fn resolve(pack: &[Record], now: f64) -> Result<Vec<Resolved>, Vec<Problem>> {
    let mut problems = Vec::new();
    let mut fail = |index, field, message| problems.push(Problem::new(index, field, message));
    if pack.is_empty() {
        let msg = "the pack has no records: expected one or more";
        fail(0, "", msg.into());
    }
    let mut out = Vec::with_capacity(pack.len());
    let mut base = Base::default();
    for (index, r) in pack.iter().enumerate() {
        let mut ok = true;
        let resolved = resolve_record(r, &mut base, now, &mut |field, message| {
            ok = false;
            fail(index, field, message);
        });
        if ok {
            out.push(resolved);
        }
    }
    if problems.is_empty() { Ok(out) } else { Err(problems) }
}

/// Resolves one record. The base fields in it update `base` for the records that follow.
fn resolve_record<'a>(
    r: &'a Record,
    base: &mut Base<'a>,
    now: f64,
    fail: &mut impl FnMut(&'static str, String),
) -> Resolved {
    // Base fields apply to the record they are in and to all the ones that follow.
    base.bn = r.bn.as_deref().unwrap_or(base.bn);
    base.bt = r.bt.unwrap_or(base.bt);
    base.bu = r.bu.as_deref().or(base.bu);
    base.bv = r.bv.or(base.bv);
    base.bs = r.bs.or(base.bs);
    if let Some(v) = r.bver.filter(|v| *v != SENML_VERSION) {
        let why = match v < SENML_VERSION {
            true => "earlier draft versions are refused",
            false => "a newer version must not be used",
        };
        let msg = format!("version {v} is not supported: expected {SENML_VERSION} ({why})");
        fail("bver", msg);
    }
    for label in r.extra.keys().filter(|l| l.ends_with('_')) {
        let msg = format!("must-understand label `{label}` is not supported");
        fail("", msg);
    }

    let name = [base.bn, r.n.as_deref().unwrap_or("")].concat();
    if name.is_empty() {
        fail("n", "no name: expected a non-empty `bn` + `n`".to_owned());
    } else if let Err(msg) = check_name(&name) {
        let in_bn = first_bad_char(&name).is_some_and(|(_, at, _)| at < base.bn.len());
        let msg = format!("invalid name {name:?}: {msg}");
        fail(if in_bn { "bn" } else { "n" }, msg);
    }

    let t = base.bt + r.t.unwrap_or(0.0);
    let time = if t < RELATIVE_TIME_LIMIT { now + t } else { t };
    if !time.is_finite() {
        fail("t", format!("time is {t}: expected a finite number"));
    }

    let given = [r.v.is_some(), r.vs.is_some(), r.vb.is_some(), r.vd.is_some()];
    let labels = ["v", "vs", "vb", "vd"].into_iter().zip(given);
    let mut labels = labels.filter_map(|(label, given)| given.then_some(label));
    if let (Some(a), Some(b)) = (labels.next(), labels.next()) {
        let msg = format!("two value fields `{a}` and `{b}`: expected one of v, vs, vb, vd");
        fail(b, msg);
    }
    let sum = match (base.bs, r.s) {
        (None, None) => None,
        (b, s) => Some(b.unwrap_or(0.0) + s.unwrap_or(0.0)),
    };
    if sum.is_some_and(|s| !s.is_finite()) {
        fail("s", "sum `bs` + `s` is not a finite number".to_owned());
    }
    let value = if let Some(v) = r.v {
        let x = base.bv.map_or(v, |b| b + v);
        if !x.is_finite() {
            fail("v", format!("value is {x}: expected a finite number"));
        }
        Some(ResolvedValue::Number(x))
    } else if let Some(s) = &r.vs {
        Some(ResolvedValue::String(s.clone()))
    } else if let Some(b) = r.vb {
        Some(ResolvedValue::Bool(b))
    } else if let Some(d) = &r.vd {
        if let Err(msg) = check_base64url(d) {
            fail("vd", msg);
        }
        Some(ResolvedValue::Data(d.clone()))
    } else {
        if sum.is_none() {
            let msg = "no value: expected one of v, vs, vb, vd (or only a sum, `s` or `bs`)";
            fail("", msg.to_owned());
        }
        None
    };
    if r.ut.is_some_and(|ut| !ut.is_finite()) {
        fail("ut", "update time is not a finite number".to_owned());
    }
    let unit = r.u.as_deref().or(base.bu).map(str::to_owned);
    let update_time = r.ut;
    Resolved {
        name,
        unit,
        value,
        sum,
        time,
        update_time,
    }
}

/// Checks the RFC 4648 section 5 alphabet, without padding. A length of 4k+1 characters can
/// never be valid base64.
fn check_base64url(s: &str) -> Result<(), String> {
    let ok = |c: &char| c.is_ascii_alphanumeric() || *c == '-' || *c == '_';
    let len = s.len();
    match s.char_indices().find(|(_, c)| !ok(c)) {
        Some((at, c)) => Err(format!(
            "character {c:?} at byte {at} is not allowed: expected base64url (A-Z a-z 0-9 - _) \
             without padding"
        )),
        None if len % 4 == 1 => Err(format!("length {len} is impossible for base64url")),
        None => Ok(()),
    }
}

/// Finds the first character that is not allowed, as (0-based character position, byte
/// offset, character).
fn first_bad_char(name: &str) -> Option<(usize, usize, char)> {
    let mut chars = name.char_indices().enumerate();
    chars.find_map(|(pos, (at, c))| {
        let ok = c.is_ascii_alphanumeric() || (pos > 0 && matches!(c, '-' | ':' | '.' | '/' | '_'));
        (!ok).then_some((pos, at, c))
    })
}

fn name_byte_ok(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b':' | b'.' | b'/' | b'_')
}

/// Is this a valid SenML name (after bn + n concatenation)? RFC 8428 section 4.5.1 allows only
/// the characters A-Z a-z 0-9 - : . / _, the first being a letter or digit, and no empty name.
pub fn is_valid_name(name: &str) -> bool {
    let first = name.as_bytes().first();
    first.is_some_and(u8::is_ascii_alphanumeric) && name.bytes().all(name_byte_ok)
}

/// Does the same as `is_valid_name(base + name)`, without concatenating.
fn is_valid_split(base: &str, name: &str) -> bool {
    let first = base.as_bytes().first().or(name.as_bytes().first());
    let mut all = base.bytes().chain(name.bytes());
    first.is_some_and(u8::is_ascii_alphanumeric) && all.all(name_byte_ok)
}

/// The same check as [`is_valid_name`]. The error says which character is not allowed, and
/// at which position (0-based, counted in characters).
pub fn check_name(name: &str) -> Result<(), String> {
    let (pos, c) = match first_bad_char(name) {
        _ if name.is_empty() => return Err("the name is empty: expected a character".into()),
        None => return Ok(()),
        Some((pos, _, c)) => (pos, c),
    };
    let expected = match pos {
        0 => "A-Z a-z 0-9 as the first character",
        _ => "only A-Z a-z 0-9 - : . / _",
    };
    Err(format!(
        "character {c:?} at position {pos} is not allowed: expected {expected}"
    ))
}

/// A record to send on events.data: borrowed, and cheap to build.
#[derive(Debug, Clone, Copy)]
pub struct OutRecord<'a> {
    /// Name added after the base name; together they must make a valid name. It is left out
    /// when empty.
    pub name: &'a str,
    /// Unit, written as `u` when present.
    pub unit: Option<&'a str>,
    /// The value, written as `v`, `vs` or `vb`. A number must be finite.
    pub value: &'a Value,
    /// Absolute Unix time in seconds, or a relative time below 2^28. It must be finite.
    pub time: f64,
}

/// Limits of one encoded pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackLimits {
    /// The most records in one pack. 0 is treated as 1.
    pub max_records: usize,
    /// The most bytes in one pack, unless a single record is larger on its own.
    pub max_bytes: usize,
}

impl Default for PackLimits {
    /// 1000 records, 512 KiB.
    fn default() -> Self {
        let (max_records, max_bytes) = (1000, 512 * 1024);
        PackLimits { max_records, max_bytes }
    }
}

/// One encoded pack (a JSON array), and how many records it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedPack {
    /// The JSON bytes.
    pub bytes: Vec<u8>,
    /// Number of records in `bytes`.
    pub records: usize,
}

/// A borrowed value, for the writers.
#[derive(Clone, Copy)]
enum Val<'a> {
    Num(f64),
    Str(&'a str),
    Bool(bool),
}

impl<'a> From<&'a Value> for Val<'a> {
    fn from(v: &'a Value) -> Self {
        match v {
            Value::Number(x) => Val::Num(*x),
            Value::String(s) => Val::Str(s),
            Value::Bool(b) => Val::Bool(*b),
        }
    }
}

/// For each byte: 0 means it is written as is, `u` means `\u00XX`, and any other entry is the
/// character that follows a backslash.
const ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        table[i] = b'u';
        i += 1;
    }
    (table[0x08], table[0x09], table[0x0a]) = (b'b', b't', b'n');
    (table[0x0c], table[0x0d]) = (b'f', b'r');
    (table[b'"' as usize], table[b'\\' as usize]) = (b'"', b'\\');
    table
};

fn write_str(buf: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    buf.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc = ESCAPE[usize::from(b)];
        if esc != 0 {
            buf.extend_from_slice(&bytes[start..i]);
            match esc {
                b'u' => {
                    let (hi, lo) = (HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]);
                    buf.extend_from_slice(&[b'\\', b'u', b'0', b'0', hi, lo]);
                }
                _ => buf.extend_from_slice(&[b'\\', esc]),
            }
            start = i + 1;
        }
    }
    buf.extend_from_slice(&bytes[start..]);
    buf.push(b'"');
}

/// `s` as a JSON string, quotes included: the base name is escaped once per call.
fn json_string(s: &str) -> Vec<u8> {
    let mut buf = Vec::with_capacity(s.len() + 2);
    write_str(&mut buf, s);
    buf
}

/// Writes an integer below 2^53 without a fractional part, and any other number in shortest
/// round-trip form (serde_json's own formatter). A non-finite number breaks the precondition
/// and is written as `null`.
fn write_num(buf: &mut Vec<u8>, x: f64) {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    // Writing into a Vec cannot fail.
    let _ = match x {
        // A cast rather than `fract`, which is a library call where SSE4.1 is not assumed.
        _ if x.abs() < EXACT && (x as i64) as f64 == x => CompactFormatter.write_i64(buf, x as i64),
        _ if write_decimal(buf, x) => Ok(()),
        _ if x.is_finite() => CompactFormatter.write_f64(buf, x),
        _ => CompactFormatter.write_null(buf),
    };
}

/// The fast path of [`write_num`] for the numbers telemetry is mostly made of: timestamps with
/// milli- or microseconds, readings with a few decimals. Writes `x` and returns true when it
/// has at most 6 decimal places and 1e-3 <= |x| < 2^32; otherwise writes nothing and returns
/// false. The text is the same as the shortest round-trip form (ryu's) for such numbers:
///
/// * `m / 1e6 == |x|`, with `m` an integer below 2^53, holds exactly when the decimal
///   `m * 10^-6` parses back to `|x|`: both operands are exact, and IEEE division rounds the
///   exact quotient to nearest, as a correct parser does.
/// * Below 2^32 two neighbouring doubles are less than 1e-6 apart, so no decimal with fewer
///   digits lies close enough to `x` to parse back to it: the digits left after dropping
///   trailing zeros are the shortest.
/// * From 1e-3 up, ryu writes plain decimals (`0.001`, `1700000000.25`), no exponent.
fn write_decimal(buf: &mut Vec<u8>, x: f64) -> bool {
    const SCALE: f64 = 1e6;
    let a = x.abs();
    if !(1e-3..4_294_967_296.0).contains(&a) {
        return false;
    }
    // m < 2^32 * 10^6 + 1 < 2^53: exact as a double. (Rounding by cast, not `round`, a library
    // call on x86-64; whichever m this gives, the check below decides.)
    let m = (a * SCALE + 0.5) as u64;
    if m as f64 / SCALE != a {
        return false;
    }
    let (int, mut frac) = (m / 1_000_000, m % 1_000_000);
    if x < 0.0 {
        buf.push(b'-');
    }
    let mut digits = itoa::Buffer::new();
    buf.extend_from_slice(digits.format(int).as_bytes());
    if frac != 0 {
        let mut places = 6;
        while frac % 10 == 0 {
            frac /= 10;
            places -= 1;
        }
        let text = digits.format(frac).as_bytes();
        buf.push(b'.');
        buf.extend(std::iter::repeat_n(b'0', places - text.len()));
        buf.extend_from_slice(text);
    }
    true
}

/// Writes the fields in the order bn, n, u, v|vs|vb, t. `n` is left out when empty, except
/// with `keep_empty_name` (a command response names the command, `""` when there was none).
fn write_record(
    buf: &mut Vec<u8>,
    bn: Option<&[u8]>,
    keep_empty_name: bool,
    name: &str,
    unit: Option<&str>,
    value: Val<'_>,
    t: Option<f64>,
) {
    let mut sep = b'{';
    let mut key = |buf: &mut Vec<u8>, k: &[u8]| {
        buf.push(std::mem::replace(&mut sep, b','));
        buf.extend_from_slice(k);
    };
    if let Some(bn) = bn {
        key(buf, b"\"bn\":");
        buf.extend_from_slice(bn);
    }
    if !name.is_empty() || keep_empty_name {
        key(buf, b"\"n\":");
        write_str(buf, name);
    }
    if let Some(u) = unit {
        key(buf, b"\"u\":");
        write_str(buf, u);
    }
    match value {
        Val::Num(x) => {
            key(buf, b"\"v\":");
            write_num(buf, x);
        }
        Val::Str(s) => {
            key(buf, b"\"vs\":");
            write_str(buf, s);
        }
        Val::Bool(b) => key(buf, if b { b"\"vb\":true" } else { b"\"vb\":false" }),
    }
    if let Some(t) = t {
        key(buf, b"\"t\":");
        write_num(buf, t);
    }
    buf.push(b'}');
}

/// Checks the encoders' preconditions, in debug builds only.
fn debug_check(base_name: &str, name: &str, value: Val<'_>, time: Option<f64>) {
    if cfg!(debug_assertions) {
        let valid = is_valid_split(base_name, name);
        debug_assert!(valid, "bad SenML name {base_name:?} + {name:?}");
        let finite = !matches!(value, Val::Num(x) if !x.is_finite());
        debug_assert!(
            finite && time.is_none_or(f64::is_finite),
            "non-finite number in {name:?}"
        );
    }
}

/// Estimates the size of the next pack, so that its buffer is reserved once.
fn estimate(bn_len: usize, compact: bool, records: &[OutRecord<'_>], limits: PackLimits) -> usize {
    let mut total = 2;
    for (k, r) in records.iter().take(limits.max_records.max(1)).enumerate() {
        let bn = if k == 0 || !compact { bn_len + 8 } else { 0 };
        let vs = if let Value::String(s) = r.value { s.len() } else { 0 };
        total += bn + r.name.len() + r.unit.map_or(0, str::len) + vs + 64;
        if total >= limits.max_bytes {
            return limits.max_bytes.saturating_add(256);
        }
    }
    total
}

/// Encode records into one or more packs, in the given order. Each pack holds at most
/// `limits.max_records` records and `limits.max_bytes` bytes. The records must already be
/// valid: names valid and numbers finite (checked by debug assertions).
///
/// Every record carries `bn` (= `base_name`), unless `compact`. In that case only the first
/// record of EACH pack carries it, so that each pack resolves on its own.
///
/// The fields of each record are written in the order bn, n, u, v|vs|vb, t:
/// * `n` is left out when the name is empty.
/// * `u` is written only when the unit is `Some`.
/// * An integer below 2^53 is written without a fractional part (`523190272`). Any other
///   number is written in shortest round-trip form (`12.5`, `1e+21`), as serde_json writes it.
///
/// A single record larger than `max_bytes` goes alone in its own pack. No records give no
/// packs.
#[must_use]
pub fn encode_packs(base_name: &str, compact: bool, records: &[OutRecord<'_>], limits: PackLimits) -> Vec<EncodedPack> {
    let max_records = limits.max_records.max(1);
    let mut packs = Vec::with_capacity(records.len().div_ceil(max_records));
    let mut rest = records;
    let bn_json = json_string(base_name);
    while !rest.is_empty() {
        let mut buf = Vec::with_capacity(estimate(base_name.len(), compact, rest, limits));
        buf.push(b'[');
        let mut count = 0;
        while let (true, Some((r, tail))) = (count < max_records, rest.split_first()) {
            let value = Val::from(r.value);
            debug_check(base_name, r.name, value, Some(r.time));
            let mark = buf.len();
            if count > 0 {
                buf.push(b',');
            }
            let bn = (count == 0 || !compact).then_some(&bn_json[..]);
            write_record(&mut buf, bn, false, r.name, r.unit, value, Some(r.time));
            if count > 0 && buf.len() + 1 > limits.max_bytes {
                buf.truncate(mark); // This record starts the next pack instead.
                break;
            }
            (count, rest) = (count + 1, tail);
            if buf.len() + 1 >= limits.max_bytes {
                break;
            }
        }
        buf.push(b']');
        packs.push(EncodedPack {
            records: count,
            bytes: buf,
        });
    }
    packs
}

/// A pack of one record `{bn, n, vs}`, with no `t`. It is used for the metric announcement and
/// similar messages.
#[must_use]
pub fn encode_string_record(base_name: &str, name: &str, vs: &str) -> Vec<u8> {
    encode_strings(base_name, [(name, None, vs)])
}

/// A command response pack: one record `{bn, n, vs, t}` per `(name, time, vs)`, with `bn` on
/// each. No records give `[]`, which is not a valid pack, so send at least one.
#[must_use]
pub fn encode_response(base_name: &str, records: &[(&str, f64, &str)]) -> Vec<u8> {
    let records = records.iter().map(|&(n, t, vs)| (n, Some(t), vs));
    encode_strings(base_name, records)
}

fn encode_strings<'a, I>(base_name: &str, records: I) -> Vec<u8>
where
    I: IntoIterator<Item = (&'a str, Option<f64>, &'a str)>,
    I::IntoIter: Clone,
{
    let records = records.into_iter();
    let size = records
        .clone()
        .map(|(n, _, vs)| base_name.len() + n.len() + vs.len() + 48);
    let mut buf = Vec::with_capacity(size.sum::<usize>() + 2);
    let bn_json = json_string(base_name);
    for (i, (name, t, vs)) in records.enumerate() {
        debug_check(base_name, name, Val::Str(vs), t);
        buf.push(if i == 0 { b'[' } else { b',' });
        write_record(&mut buf, Some(&bn_json), true, name, None, Val::Str(vs), t);
    }
    if buf.is_empty() {
        buf.push(b'[');
    }
    buf.push(b']');
    buf
}
#[cfg(test)]
mod tests {
    use super::*;

    const NOW: f64 = 1_700_000_000.0;

    fn ok(json: &str) -> Vec<Resolved> {
        let pack = decode_pack(json.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        resolve(&pack, NOW).unwrap_or_else(|p| panic!("{p:?}"))
    }

    fn problems(json: &str) -> Vec<Problem> {
        let pack = decode_pack(json.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        resolve(&pack, NOW).expect_err("pack should be refused")
    }

    /// (index, field) of each problem.
    fn at(json: &str) -> Vec<(usize, &'static str)> {
        problems(json).iter().map(|p| (p.index, p.field)).collect()
    }

    /// A resolved record; `unit` "" means none.
    fn res(name: &str, unit: &str, value: ResolvedValue, time: f64) -> Resolved {
        let unit = (!unit.is_empty()).then(|| unit.to_owned());
        let (name, value) = (name.to_owned(), Some(value));
        let (sum, update_time) = (None, None);
        Resolved {
            name,
            unit,
            value,
            sum,
            time,
            update_time,
        }
    }

    fn num(name: &str, unit: &str, v: f64, time: f64) -> Resolved {
        res(name, unit, ResolvedValue::Number(v), time)
    }

    // RFC 8428 section 5.1.1: a reading taken "now".
    #[test]
    fn rfc_5_1_1_single_datapoint() {
        let json = r#"[
     {"n":"urn:dev:ow:10e2073a01080063","u":"Cel","v":23.1}
   ]"#;
        assert_eq!(ok(json), [num("urn:dev:ow:10e2073a01080063", "Cel", 23.1, NOW)]);
    }

    // RFC 8428 section 5.1.2, first example: voltage and current "now".
    #[test]
    fn rfc_5_1_2_multiple_datapoints_now() {
        let json = r#"[
  {"bn":"urn:dev:ow:10e2073a01080063:","n":"voltage","u":"V","v":120.1},
  {"n":"current","u":"A","v":1.2}
]"#;
        let expected = [
            num("urn:dev:ow:10e2073a01080063:voltage", "V", 120.1, NOW),
            num("urn:dev:ow:10e2073a01080063:current", "A", 1.2, NOW),
        ];
        assert_eq!(ok(json), expected);
    }

    // RFC 8428 section 5.1.2, second example: current at Tue Jun 8 18:01:16.001 UTC 2010 and at
    // each second for the previous 5 seconds. It carries "bver":5, a pre-RFC draft version that
    // is refused. Without it, the pack resolves as the RFC describes.
    #[test]
    fn rfc_5_1_2_multiple_datapoints_timed() {
        let json = r#"[
     {"bn":"urn:dev:ow:10e2073a0108006:","bt":1.276020076001e+09,
      "bu":"A","bver":5,
      "n":"voltage","u":"V","v":120.1},
     {"n":"current","t":-5,"v":1.2},
     {"n":"current","t":-4,"v":1.3},
     {"n":"current","t":-3,"v":1.4},
     {"n":"current","t":-2,"v":1.5},
     {"n":"current","t":-1,"v":1.6},
     {"n":"current","v":1.7}
   ]"#;
        assert_eq!(at(json), [(0, "bver")]);
        let mut pack = decode_pack(json.as_bytes()).unwrap();
        pack[0].bver = None;
        let (v, c) = (
            "urn:dev:ow:10e2073a0108006:voltage",
            "urn:dev:ow:10e2073a0108006:current",
        );
        let expected = [
            num(v, "V", 120.1, 1276020076.001),
            num(c, "A", 1.2, 1276020071.001),
            num(c, "A", 1.3, 1276020072.001),
            num(c, "A", 1.4, 1276020073.001),
            num(c, "A", 1.5, 1276020074.001),
            num(c, "A", 1.6, 1276020075.001),
            num(c, "A", 1.7, 1276020076.001),
        ];
        assert_eq!(resolve(&pack, NOW).unwrap(), expected);
    }

    // RFC 8428 section 5.1.3 input, compared with its resolved form printed in section 5.1.4.
    #[test]
    fn rfc_5_1_3_multiple_measurements_resolve_to_5_1_4() {
        let json = r#"[
     {"bn":"urn:dev:ow:10e2073a01080063","bt":1.320067464e+09,
      "bu":"%RH","v":20},
     {"u":"lon","v":24.30621},
     {"u":"lat","v":60.07965},
     {"t":60,"v":20.3},
     {"u":"lon","t":60,"v":24.30622},
     {"u":"lat","t":60,"v":60.07965},
     {"t":120,"v":20.7},
     {"u":"lon","t":120,"v":24.30623},
     {"u":"lat","t":120,"v":60.07966},
     {"u":"%EL","t":150,"v":98},
     {"t":180,"v":21.2},
     {"u":"lon","t":180,"v":24.30628},
     {"u":"lat","t":180,"v":60.07967}
   ]"#;
        let n = "urn:dev:ow:10e2073a01080063";
        let expected = [
            num(n, "%RH", 20.0, 1.320067464e+09),
            num(n, "lon", 24.30621, 1.320067464e+09),
            num(n, "lat", 60.07965, 1.320067464e+09),
            num(n, "%RH", 20.3, 1.320067524e+09),
            num(n, "lon", 24.30622, 1.320067524e+09),
            num(n, "lat", 60.07965, 1.320067524e+09),
            num(n, "%RH", 20.7, 1.320067584e+09),
            num(n, "lon", 24.30623, 1.320067584e+09),
            num(n, "lat", 60.07966, 1.320067584e+09),
            num(n, "%EL", 98.0, 1.320067614e+09),
            num(n, "%RH", 21.2, 1.320067644e+09),
            num(n, "lon", 24.30628, 1.320067644e+09),
            num(n, "lat", 60.07967, 1.320067644e+09),
        ];
        assert_eq!(ok(json), expected);
    }

    // RFC 8428 section 5.1.5.
    #[test]
    fn rfc_5_1_5_multiple_data_types() {
        let json = r#"[
    {"bn":"urn:dev:ow:10e2073a01080063:","n":"temp","u":"Cel","v":23.1},
    {"n":"label","vs":"Machine Room"},
    {"n":"open","vb":false},
    {"n":"nfv-reader","vd":"aGkgCg"}
  ]"#;
        let s = ResolvedValue::String("Machine Room".into());
        let b = ResolvedValue::Bool(false);
        let d = ResolvedValue::Data("aGkgCg".into());
        let expected = [
            num("urn:dev:ow:10e2073a01080063:temp", "Cel", 23.1, NOW),
            res("urn:dev:ow:10e2073a01080063:label", "", s, NOW),
            res("urn:dev:ow:10e2073a01080063:open", "", b, NOW),
            res("urn:dev:ow:10e2073a01080063:nfv-reader", "", d, NOW),
        ];
        assert_eq!(ok(json), expected);
    }

    // RFC 8428 section 5.1.6: the last record uses the 3rd record's bn and the 1st record's bt.
    #[test]
    fn rfc_5_1_6_collection_of_resources() {
        let json = r#"[
     {"bn":"2001:db8::2/","bt":1.320078429e+09,
      "n":"temperature","u":"Cel","v":25.2},
     {"n":"humidity","u":"%RH","v":30},
     {"bn":"2001:db8::1/","n":"temperature","u":"Cel","v":12.3},
     {"n":"humidity","u":"%RH","v":67}
   ]"#;
        let expected = [
            num("2001:db8::2/temperature", "Cel", 25.2, 1.320078429e+09),
            num("2001:db8::2/humidity", "%RH", 30.0, 1.320078429e+09),
            num("2001:db8::1/temperature", "Cel", 12.3, 1.320078429e+09),
            num("2001:db8::1/humidity", "%RH", 67.0, 1.320078429e+09),
        ];
        assert_eq!(ok(json), expected);
    }

    #[test]
    fn names() {
        for good in ["a", "0", "urn:dev:ow:10e2073a01080063", "2001:db8::2/t", "a-_.:/"] {
            assert!(is_valid_name(good) && check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "-abc", ":a", "_a", "a b", "a#b", "é", "ab\u{e9}", "a\n"] {
            assert!(!is_valid_name(bad) && check_name(bad).is_err(), "{bad:?}");
        }
        let err = |name| check_name(name).unwrap_err();
        assert!(err("").starts_with("the name is empty"));
        let expected = "character '-' at position 0 is not allowed: expected A-Z a-z 0-9 as the first";
        assert!(err("-abc").starts_with(expected));
        assert!(err("cpu temp").contains("' ' at position 3 is not allowed"));
        assert!(err("ab#c").contains("'#' at position 2"));
        assert!(err("éa#").contains("'é' at position 0"));
        assert!(err("aé#").contains("'é' at position 1")); // characters, not bytes
        assert!(is_valid_split("urn:x:", "a") && is_valid_split("", "a"));
        assert!(!is_valid_split("", "") && !is_valid_split("-", "a"));
        assert!(!is_valid_split("a", "b c") && !is_valid_split("a", "\""));
    }

    #[test]
    fn invalid_names_in_a_pack() {
        let json = r#"[{"n":"-abc","v":1},{"n":"a b","v":1},{"bn":"d#:","n":"x","v":1},{"v":1}]"#;
        // The bad base name stays in effect for record 3, so it is reported there too.
        assert_eq!(at(json), [(0, "n"), (1, "n"), (2, "bn"), (3, "bn")]);
        let p = problems(r#"[{"v":1}]"#);
        let expected = "record 0, field `n`: no name: expected a non-empty `bn` + `n`";
        assert_eq!(p[0].to_string(), expected);
    }

    #[test]
    fn value_fields() {
        let p = problems(r#"[{"n":"a","v":1,"vs":"x"}]"#);
        assert_eq!((p.len(), p[0].index, p[0].field), (1, 0, "vs"));
        assert!(p[0].message.starts_with("two value fields `v` and `vs`"));
        let p = problems(r#"[{"n":"a"}]"#);
        assert_eq!((p.len(), p[0].field), (1, ""));
        assert!(p[0].message.starts_with("no value"));
        // A sum alone is fine, from `s` or from a `bs` in effect: bs + s.
        let r = ok(r#"[{"n":"a","s":5},{"n":"b","bs":100,"s":1.5},{"n":"c"}]"#);
        let sums: Vec<_> = r.iter().map(|r| (r.value.clone(), r.sum)).collect();
        let expected = [Some(5.0), Some(101.5), Some(100.0)].map(|s| (None, s));
        assert_eq!(sums, expected);
        let r = &ok(r#"[{"n":"a","v":2,"s":3,"ut":60}]"#)[0];
        assert_eq!((r.sum, r.update_time), (Some(3.0), Some(60.0)));
    }

    #[test]
    fn base_value_and_unit() {
        let json = r#"[{"bn":"d:","bv":1000,"bu":"W","n":"a","v":1},
            {"n":"b","v":-2.5,"u":"kW"},{"n":"c","vs":"s"}]"#;
        let s = ResolvedValue::String("s".into());
        let expected = [
            num("d:a", "W", 1001.0, NOW),
            num("d:b", "kW", 997.5, NOW),
            res("d:c", "W", s, NOW),
        ];
        assert_eq!(ok(json), expected);
        assert_eq!(at(r#"[{"n":"a","bv":1e308,"v":1e308}]"#), [(0, "v")]);
        assert_eq!(at(r#"[{"n":"a","bs":1e308,"s":1e308}]"#), [(0, "s")]);
    }

    #[test]
    fn relative_times() {
        let json = r#"[{"n":"a","v":1,"t":-5},{"n":"b","v":1,"t":30},{"bt":-10,"n":"c","v":1,"t":4},
            {"n":"d","v":1,"t":16},{"bt":0,"n":"e","v":1,"t":268435456},{"n":"f","v":1,"t":268435455}]"#;
        let times: Vec<f64> = ok(json).iter().map(|r| r.time).collect();
        // bt stays in effect for record d. 2^28 itself is absolute, and 2^28 - 1 is relative.
        let (n, limit) = (NOW, 268_435_456.0);
        assert_eq!(times, [n - 5.0, n + 30.0, n - 6.0, n + 6.0, limit, n + limit - 1.0]);
    }

    #[test]
    fn versions_and_extensions() {
        let r = ok(r#"[{"bver":10,"n":"a","v":1},{"bver":10.0,"n":"b","v":1}]"#);
        assert_eq!(r.len(), 2);
        assert_eq!(at(r#"[{"bver":9,"n":"a","v":1}]"#), [(0, "bver")]);
        let bad = at(r#"[{"n":"a","v":1},{"bver":11,"n":"b","v":1}]"#);
        assert_eq!(bad, [(1, "bver")]);
        assert!(decode_pack(br#"[{"bver":10.5,"n":"a","v":1}]"#).is_err());
        // Unknown labels are ignored, and must-understand ones (ending in `_`) are refused.
        assert_eq!(ok(r#"[{"n":"a","v":1,"foo":{"x":[1]}}]"#).len(), 1);
        let p = problems(r#"[{"n":"a","v":1,"foo_":true}]"#);
        assert_eq!(
            p[0].to_string(),
            "record 0: must-understand label `foo_` is not supported"
        );
    }

    #[test]
    fn data_values() {
        let r = ok(r#"[{"n":"a","vd":""},{"n":"b","vd":"-_09Az"}]"#);
        assert_eq!(r.len(), 2);
        for vd in ["aGk=", "a+b/", "aGkgC", "a b"] {
            let json = format!(r#"[{{"n":"a","vd":"{vd}"}}]"#);
            assert_eq!(at(&json), [(0, "vd")], "{vd}");
        }
    }

    #[test]
    fn all_problems_are_collected() {
        let json = r#"[{"n":"ok","v":1},{"n":"x y","v":1,"vb":true},{"bver":3,"n":"z"},
            {"n":"w","vd":"*","bad_":0}]"#;
        let fields = ["n", "vb", "bver", "", "", "vd"];
        assert_eq!(at(json), [1, 1, 2, 2, 3, 3].into_iter().zip(fields).collect::<Vec<_>>());
        let p = Problem::new(2, "n", "bad".into());
        assert_eq!(p.to_string(), "record 2, field `n`: bad");
        assert_eq!(resolve(&[], NOW).unwrap_err()[0].field, "");
    }

    #[test]
    fn decode_errors_say_what_and_where() {
        let cases: [(&str, Option<usize>, &str); 8] = [
            ("", None, "EOF while parsing"),
            ("nope", None, "expected"),
            (
                r#"{"n":"a"}"#,
                None,
                "expected a SenML pack (a JSON array of record objects)",
            ),
            (
                "[{\"n\":\"a\",\"v\":1},\n 42]",
                Some(1),
                "expected a SenML record (a JSON object)",
            ),
            (r#"[{"n":"a","v":"1"}]"#, Some(0), "expected f64"),
            (r#"[{"n":null,"v":1}]"#, Some(0), "invalid type: null"),
            (r#"[{"v":1,"v":2}]"#, Some(0), "duplicate field `v`"),
            (r#"[{"n":"a","v":1}] x"#, None, "trailing characters"),
        ];
        for (input, record, text) in cases {
            let e = decode_pack(input.as_bytes()).expect_err(input);
            let msg = e.to_string();
            assert_eq!(e.record(), record, "{msg}");
            assert!(
                msg.starts_with("not a SenML JSON pack: ") && msg.contains(text),
                "{msg}"
            );
            assert!(msg.contains(" at line ") && msg.contains(" column ") && e.line() >= 1);
        }
        let e = decode_pack(b"[{\"n\":\"a\",\"v\":1},\n 42]").unwrap_err();
        assert_eq!((e.line(), e.column()), (2, 3));
        assert!(e.to_string().contains("record 1: invalid type: integer `42`"));
        assert_eq!(decode_pack(b"[]").unwrap(), []);
    }

    #[test]
    fn decode_never_panics() {
        let seeds: [&[u8]; 3] = [
            br#"[{"bn":"d:","bt":1.3e9,"bu":"A","bver":10,"n":"v","u":"V","v":1.5,"s":1,"t":-5}]"#,
            br#"[{"n":"a","vs":"x\u00e9\"","vb":true,"vd":"aGk","foo_":[1,{"a":null}]},{"bs":1}]"#,
            b"[{\"n\":\"\xc3\xa9\",\"v\":-0.0e-400,\"ut\":1e308}]",
        ];
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for seed in seeds {
            for cut in 0..=seed.len() {
                assert!(decode_pack(&seed[..cut]).is_err() || cut == seed.len());
            }
            for _ in 0..3000 {
                let mut input = seed.to_vec();
                for _ in 0..=(next() % 4) {
                    let at = (next() as usize) % input.len();
                    match next() % 3 {
                        0 => input[at] = next() as u8,
                        1 => input.insert(at, b"[]{}\":,-e0_"[(next() % 11) as usize]),
                        _ => _ = input.remove(at),
                    }
                }
                if let Ok(pack) = decode_pack(&input) {
                    let _ = resolve(&pack, NOW);
                }
            }
        }
        let deep = format!("[{{\"x\":{}{}}}]", "[".repeat(100_000), "]".repeat(100_000));
        assert!(decode_pack(deep.as_bytes()).is_err());
    }

    #[test]
    fn record_serialization_skips_absent_fields() {
        let (n, v) = (Some("a".into()), Some(1.5));
        let r = Record {
            n,
            v,
            ..Record::default()
        };
        assert_eq!(serde_json::to_string(&r).unwrap(), r#"{"n":"a","v":1.5}"#);
        let vb = Some(true);
        let mut r = Record {
            vb,
            ..Record::default()
        };
        r.extra.insert("foo".into(), serde_json::Value::from(1));
        assert_eq!(serde_json::to_string(&r).unwrap(), r#"{"vb":true,"foo":1}"#);
        assert_eq!(decode_pack(br#"[{"vb":true,"foo":1}]"#).unwrap(), [r]);
    }

    #[test]
    fn value_conversions() {
        let n = Value::Number;
        assert_eq!(
            [0.1f32, f32::MAX, 1e-45f32].map(Value::from),
            [n(0.1), n(3.4028235e38), n(1e-45)]
        );
        assert!(matches!(Value::from(f32::NAN), Value::Number(x) if x.is_nan()));
        assert_eq!(
            [Value::from(-3i32), Value::from(7u32), Value::from(2.5f64)],
            [n(-3.0), n(7.0), n(2.5)]
        );
        assert_eq!(Value::from(523_190_272i64), n(523_190_272.0));
        assert_eq!(Value::from(1u64 << 53), n(9_007_199_254_740_992.0));
        assert_eq!(Value::from(true), Value::Bool(true));
        assert_eq!(Value::from("x"), Value::from(String::from("x")));
    }

    const BN: &str = "urn:cpt:device:sn:SN123456:";

    fn rec<'a>(name: &'a str, unit: Option<&'a str>, value: &'a Value, time: f64) -> OutRecord<'a> {
        OutRecord {
            name,
            unit,
            value,
            time,
        }
    }

    fn text(bytes: &[u8]) -> &str {
        std::str::from_utf8(bytes).unwrap()
    }

    #[test]
    fn encode_protocol_example() {
        let (a, b) = (Value::from(12.5), Value::from(523_190_272u64));
        let (c, d) = (Value::from("up"), Value::from(false));
        let out = [
            rec("cpu:total", Some("%"), &a, 1_700_000_000.25),
            rec("mem:used", Some("By"), &b, 1_700_000_000.0),
            rec("state", None, &c, 1_700_000_000.5),
            rec("", None, &d, -5.0),
        ];
        let packs = encode_packs(BN, false, &out, PackLimits::default());
        assert_eq!((packs.len(), packs[0].records), (1, 4));
        let expected = concat!(
            r#"[{"bn":"urn:cpt:device:sn:SN123456:","n":"cpu:total","u":"%","v":12.5,"#,
            r#""t":1700000000.25},"#,
            r#"{"bn":"urn:cpt:device:sn:SN123456:","n":"mem:used","u":"By","v":523190272,"#,
            r#""t":1700000000},"#,
            r#"{"bn":"urn:cpt:device:sn:SN123456:","n":"state","vs":"up","t":1700000000.5},"#,
            r#"{"bn":"urn:cpt:device:sn:SN123456:","vb":false,"t":-5}]"#
        );
        assert_eq!(text(&packs[0].bytes), expected);
        let compact = encode_packs(BN, true, &out[..2], PackLimits::default());
        let expected = concat!(
            r#"[{"bn":"urn:cpt:device:sn:SN123456:","n":"cpu:total","u":"%","v":12.5,"#,
            r#""t":1700000000.25},{"n":"mem:used","u":"By","v":523190272,"t":1700000000}]"#
        );
        assert_eq!(text(&compact[0].bytes), expected);
        assert!(encode_packs(BN, false, &[], PackLimits::default()).is_empty());
    }

    #[test]
    fn encode_numbers() {
        let cases = [
            (0.0, "0"),
            (-0.0, "0"),
            (-17.0, "-17"),
            (9_007_199_254_740_991.0, "9007199254740991"),
            (9_007_199_254_740_992.0, "9007199254740992.0"),
            (0.1, "0.1"),
            (-2.5e-7, "-2.5e-7"),
            (1e300, "1e+300"),
            (123456.789, "123456.789"),
            (1_700_000_000.123_456_7, "1700000000.1234567"),
        ];
        for (x, expected) in cases {
            let mut buf = Vec::new();
            write_num(&mut buf, x);
            assert_eq!(text(&buf), expected, "{x:e}");
            assert_eq!(serde_json::from_slice::<f64>(&buf).unwrap(), x);
        }
    }

    /// The fast decimal path against ryu (serde_json's float formatter, an independent
    /// implementation of the shortest round-trip form), on a million numbers made the ways
    /// telemetry makes them and on the edges of the fast path's range.
    #[test]
    fn fast_decimals_match_ryu() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut numbers = vec![
            0.001,
            -0.001,
            0.000_999_999_9,
            0.999_999,
            1.000_001,
            0.1 + 0.2,
            4_294_967_295.999_999,
            4_294_967_295.5,
            4_294_967_296.5,
            2_147_483_648.000_001,
            1_700_000_000.000_001,
            f64::from_bits(0.001f64.to_bits() - 1),
            f64::from_bits(4_294_967_296f64.to_bits() - 1),
        ];
        for _ in 0..250_000 {
            let r = next();
            let places = 10f64.powi((r % 7) as i32);
            // A Unix time plus a fraction, computed the way a clock reading is.
            let secs = (1_500_000_000 + (r >> 8) % 2_800_000_000) as f64;
            numbers.push(secs + ((r >> 40) % 1_000_000) as f64 / 1e6);
            // A reading with a few decimals, of either sign and any size.
            let int = ((next() % 2_000_000_000_000) as i64 - 1_000_000_000_000) as f64;
            numbers.push(int / places);
            numbers.push((int % 100_000.0) / places);
            // Any double between 2^-12 and 2^34.
            let bits = (1011u64 + next() % 23) << 52 | next() >> 12;
            numbers.push(f64::from_bits(bits));
        }
        let mut fast = 0;
        for x in numbers {
            if x.fract() == 0.0 {
                continue;
            }
            let mut buf = Vec::new();
            write_num(&mut buf, x);
            assert_eq!(text(&buf), serde_json::to_string(&x).unwrap(), "{x:e}");
            fast += usize::from(write_decimal(&mut Vec::new(), x));
        }
        // Most of the clock readings and readings take the fast path.
        assert!(fast > 400_000, "only {fast} numbers took the fast path");
    }

    /// The framework's own clock readings are whole microseconds: they take the fast path,
    /// and their text is the clock's microseconds.
    #[test]
    fn clock_readings_take_the_fast_path() {
        for _ in 0..1000 {
            let t = crate::unix_now();
            let mut buf = Vec::new();
            assert!(write_decimal(&mut buf, t), "{t:?}");
            let text = text(&buf);
            let (secs, frac) = text.split_once('.').unwrap_or((text, ""));
            assert!(frac.len() <= 6, "{text}");
            let since = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap();
            assert!(since.as_secs() - secs.parse::<u64>().unwrap() <= 1, "{text}");
        }
    }

    #[test]
    fn decode_is_exact() {
        // serde_json's default float parser can be 1 ulp off; `float_roundtrip` makes it exact.
        let x = 132.0 * 0.37;
        let pack = decode_pack(format!(r#"[{{"v":{x}}}]"#).as_bytes()).unwrap();
        assert_eq!(pack[0].v, Some(x), "enable serde_json's `float_roundtrip` feature");
    }

    #[test]
    fn encode_escapes_strings() {
        let vs = "q\"b\\s/ n\nt\tc\u{1}\u{1f}d\u{7f} é😀";
        let p = encode_string_record(BN, "label", vs);
        let expected = r#"[{"bn":"urn:cpt:device:sn:SN123456:","n":"label","vs":"#;
        let escaped = r#""q\"b\\s/ n\nt\tc\u0001\u001fd"#;
        assert_eq!(text(&p), format!("{expected}{escaped}\u{7f} é😀\"}}]"));
        assert_eq!(decode_pack(&p).unwrap()[0].vs.as_deref(), Some(vs));
        let all: String = (0u8..0x20).map(char::from).collect();
        let p = encode_string_record(BN, "x", &all);
        assert_eq!(decode_pack(&p).unwrap()[0].vs, Some(all));
    }

    #[test]
    fn encode_response_pack() {
        let out = [
            ("cmd:reboot", 1_700_000_000.5, "ok"),
            ("cmd:x", 1_700_000_001.0, "a \"b\""),
        ];
        let p = encode_response("urn:dev:sn:SN1:", &out);
        let expected = concat!(
            r#"[{"bn":"urn:dev:sn:SN1:","n":"cmd:reboot","vs":"ok","t":1700000000.5},"#,
            r#"{"bn":"urn:dev:sn:SN1:","n":"cmd:x","vs":"a \"b\"","t":1700000001}]"#
        );
        assert_eq!(text(&p), expected);
        let r = ok(text(&p));
        assert_eq!(r[1].value, Some(ResolvedValue::String("a \"b\"".into())));
        assert_eq!(encode_response("d:", &[]), b"[]");
        let announce = encode_string_record("d:", "metrics", "{}");
        assert_eq!(text(&announce), r#"[{"bn":"d:","n":"metrics","vs":"{}"}]"#);
    }

    #[test]
    fn response_to_an_unparseable_request_names_no_command() {
        // PROTOCOL.md section 4: "one record with `n` = `""` and `invalid_request`".
        let p = encode_response("urn:cpt:device:sn:SN1:", &[("", 5.0, "{}")]);
        assert_eq!(text(&p), r#"[{"bn":"urn:cpt:device:sn:SN1:","n":"","vs":"{}","t":5}]"#);
    }

    fn limits(max_records: usize, max_bytes: usize) -> PackLimits {
        PackLimits { max_records, max_bytes }
    }

    /// Encodes `n` varied records, checks every pack, and resolves each pack on its own.
    fn check_split(compact: bool, limits: PackLimits, n: usize) -> Vec<EncodedPack> {
        let names: Vec<_> = (0..n).map(|i| format!("m{i}:{}", "y".repeat(i % 37))).collect();
        let values: Vec<_> = (0..n)
            .map(|i| match i % 4 {
                0 => Value::from(i as f64 * 0.37),
                1 => Value::from(i as u64),
                2 => Value::from(format!("s\"{}\\", "z".repeat(i % 90))),
                _ => Value::from(i % 3 == 0),
            })
            .collect();
        let units = [None, Some("Cel"), Some("%")];
        let time = |i: usize| 1.7e9 + i as f64 * 0.25;
        let out: Vec<_> = (0..n)
            .map(|i| rec(&names[i], units[i % 3], &values[i], time(i)))
            .collect();
        let packs = encode_packs(BN, compact, &out, limits);
        let mut resolved = Vec::new();
        for p in &packs {
            assert!(p.records >= 1 && p.records <= limits.max_records.max(1));
            assert!(p.records == 1 || p.bytes.len() <= limits.max_bytes);
            let json: serde_json::Value = serde_json::from_slice(&p.bytes).unwrap();
            assert_eq!(json.as_array().map(Vec::len), Some(p.records));
            let pack = decode_pack(&p.bytes).unwrap();
            let with_bn = pack.iter().filter(|r| r.bn.is_some()).count();
            assert_eq!(with_bn, if compact { 1 } else { p.records });
            assert_eq!(pack[0].bn.as_deref(), Some(BN));
            resolved.extend(resolve(&pack, NOW).unwrap());
        }
        assert_eq!(resolved.len(), n);
        for (i, r) in resolved.iter().enumerate() {
            assert_eq!(
                (&r.name, r.unit.as_deref(), r.time),
                (&format!("{BN}{}", names[i]), units[i % 3], time(i))
            );
            let expected = match &values[i] {
                Value::Number(x) => ResolvedValue::Number(*x),
                Value::String(s) => ResolvedValue::String(s.clone()),
                Value::Bool(b) => ResolvedValue::Bool(*b),
            };
            assert_eq!(r.value.as_ref(), Some(&expected));
        }
        packs
    }

    #[test]
    fn split_by_count() {
        let packs = check_split(false, PackLimits::default(), 2500);
        assert_eq!(packs.iter().map(|p| p.records).collect::<Vec<_>>(), [1000, 1000, 500]);
        check_split(true, PackLimits::default(), 2500);
        check_split(true, limits(0, 1000), 5);
    }

    #[test]
    fn split_by_bytes() {
        for compact in [false, true] {
            for max_bytes in [250, 400, 1000, 4096] {
                assert!(check_split(compact, limits(1000, max_bytes), 300).len() > 1);
            }
        }
        // A record larger than max_bytes goes alone in its own pack.
        let (small, big) = (Value::from(1), Value::from("x".repeat(500)));
        let out = [
            rec("a", None, &small, 0.0),
            rec("b", None, &big, 0.0),
            rec("c", None, &small, 0.0),
        ];
        let packs = encode_packs(BN, true, &out, limits(10, 200));
        let sizes: Vec<_> = packs.iter().map(|p| (p.records, p.bytes.len() <= 200)).collect();
        assert_eq!(sizes, [(1, true), (1, false), (1, true)]);
    }

    /// Run with `cargo test --release -- --ignored --nocapture`.
    #[test]
    #[ignore = "benchmark"]
    fn encode_throughput() {
        let names: Vec<String> = (0..64).map(|i| format!("cpu:core{i:02}:usr")).collect();
        let values: Vec<Value> = (0..100_000u32)
            .map(|i| match i % 3 {
                0 => Value::from(523_190_272 + i),
                1 => Value::from(f64::from(i % 10_000) * 0.25),
                _ => Value::from(f64::from(i) / 7.0),
            })
            .collect();
        let time = |i: usize| 1_700_000_000.0 + i as f64 * 0.25;
        let out: Vec<_> = values
            .iter()
            .enumerate()
            .map(|(i, v)| rec(&names[i % 64], Some("%"), v, time(i)))
            .collect();
        for compact in [false, true] {
            let packs = encode_packs(BN, compact, &out, PackLimits::default());
            let per_record = packs.iter().map(|p| p.bytes.len()).sum::<usize>() / out.len();
            let start = std::time::Instant::now();
            let mut rounds = 0;
            while start.elapsed().as_secs_f64() < 2.0 {
                let out = std::hint::black_box(&out[..]);
                std::hint::black_box(encode_packs(BN, compact, out, PackLimits::default()));
                rounds += 1;
            }
            let rate = (rounds * out.len()) as f64 / start.elapsed().as_secs_f64();
            println!(
                "compact={compact}: {:.1} M records/s, {per_record} B/record",
                rate / 1e6
            );
            assert!(cfg!(debug_assertions) || rate >= 2e6, "{rate} records/s");
        }
    }
}
