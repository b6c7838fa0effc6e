//! The length guard: walks a request frame against a description of its structure before
//! kafka-protocol decodes it, and refuses any array count, string, bytes or tagged-field length
//! that the bytes actually present cannot back.
//!
//! Why: kafka-protocol 0.18 reserves `Vec::with_capacity(count)` from an array count read off the
//! wire before decoding a single element, so a 14-byte request announcing `i32::MAX` elements
//! aborts the process (an allocation failure cannot be caught). The guard checks, without
//! allocating anything from a count, that an array of N elements has at least N times the
//! smallest encoding of one element left in the frame, and that every length fits in what is
//! left. Every element is walked, so whatever the decoder later reserves is backed by bytes that
//! are really there.
//!
//! The descriptions (`guard/schema.rs`) are written from Kafka's message schemas (the request
//! JSON files of the Kafka protocol) for the versions in [`crate::versions`]; a version outside
//! a description's checked range is refused (fail closed). The walker reads exactly as
//! kafka-protocol's decoder does: fixed-width integers, int16-prefixed strings and int32-prefixed
//! bytes/arrays in non-flexible versions, unsigned-varint (length + 1) prefixes in flexible ones,
//! and a tagged-field section (count, then tag, size and value for each) at the end of every
//! structure of a flexible version. A tagged field the description knows is walked inside its
//! declared size and must fill it exactly; an unknown one is skipped by its size. Trailing bytes
//! after the body are left alone, as the decoder leaves them.

use std::fmt;

use kafka_protocol::messages::ApiKey;

mod schema;
#[cfg(test)]
mod tests;

pub(crate) use schema::describe;

/// A range of message versions, inclusive; empty when `min > max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Versions {
    min: i16,
    max: i16,
}

impl Versions {
    const NONE: Self = Self { min: 1, max: 0 };

    /// Parses the schemas' notation at compile time: `"3"`, `"3+"`, `"3-7"` or `"none"`.
    const fn parse(s: &str) -> Self {
        let b = s.as_bytes();
        if b.len() == 4 && b[0] == b'n' {
            return Self::NONE;
        }
        let (min, mut i) = Self::number(b, 0);
        if i == b.len() {
            return Self { min, max: min };
        }
        let max = match b[i] {
            b'+' => i16::MAX,
            b'-' => {
                let (max, end) = Self::number(b, i + 1);
                i = end - 1;
                max
            }
            _ => panic!("versions are N, N+ or N-M"),
        };
        assert!(i + 1 == b.len(), "versions are N, N+ or N-M");
        Self { min, max }
    }

    /// The decimal number at `b[i..]` and the index after it.
    const fn number(b: &[u8], mut i: usize) -> (i16, usize) {
        let start = i;
        let mut n: i16 = 0;
        while i < b.len() && b[i].is_ascii_digit() {
            n = n * 10 + (b[i] - b'0') as i16;
            i += 1;
        }
        assert!(i > start, "a version is a decimal number");
        (n, i)
    }

    pub(crate) const fn contains(self, version: i16) -> bool {
        self.min <= version && version <= self.max
    }
}

/// The field types of Kafka's message schemas, as far as requests use them.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Type {
    Int8,
    Int16,
    Int32,
    Int64,
    Uuid,
    #[allow(dead_code)] // no request in the version table has one; kept for new tables
    Float64,
    Bool,
    /// int16 length (-1: null) or, in flexible versions, unsigned varint length + 1 (0: null).
    String,
    /// int32 length (-1: null) or, in flexible versions, unsigned varint length + 1 (0: null).
    Bytes,
    /// A record batch: encoded as (nullable) bytes.
    Records,
    /// int32 count (-1: null) or, in flexible versions, unsigned varint count + 1 (0: null).
    Array(&'static Type),
    /// The fields in order, then (flexible versions) the tagged-field section.
    Struct(&'static [Field]),
}

/// One field of a structure.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Field {
    name: &'static str,
    ty: Type,
    /// Versions in which the field is on the wire.
    versions: Versions,
    /// Versions in which the field may be null.
    nullable: Versions,
    /// A tagged field: sent in the tagged-field section under this tag, if at all.
    tag: Option<u32>,
}

/// A field of type `ty` present in `versions` (schema notation), not nullable, not tagged.
pub(crate) const fn field(name: &'static str, ty: Type, versions: &str) -> Field {
    Field {
        name,
        ty,
        versions: Versions::parse(versions),
        nullable: Versions::NONE,
        tag: None,
    }
}

impl Field {
    /// The field may be null in `versions`.
    pub(crate) const fn nullable(self, versions: &str) -> Self {
        Self {
            nullable: Versions::parse(versions),
            ..self
        }
    }

    /// The field is a tagged field with this tag.
    pub(crate) const fn tagged(self, tag: u32) -> Self {
        Self {
            tag: Some(tag),
            ..self
        }
    }
}

/// The description of one API's request body.
#[derive(Debug)]
pub(crate) struct Message {
    /// Versions this description was written and tested for; any other is refused.
    checked: Versions,
    /// Versions using compact lengths and tagged fields.
    flexible: Versions,
    fields: &'static [Field],
}

impl Message {
    pub(crate) const fn new(checked: &str, flexible: &str, fields: &'static [Field]) -> Self {
        Self {
            checked: Versions::parse(checked),
            flexible: Versions::parse(flexible),
            fields,
        }
    }
}

/// The versions the guard's description of `api_key` was checked for, if it has one.
#[cfg(test)]
pub(crate) fn schema_versions(api_key: ApiKey) -> Option<(i16, i16)> {
    describe(api_key).map(|m| (m.checked.min, m.checked.max))
}

/// Why the guard refused a request, with where in the request it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardError {
    /// Field names and array indexes, innermost last.
    path: Vec<Step>,
    /// Offset in the frame (request header included).
    offset: usize,
    problem: Problem,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Field(&'static str),
    Index(u64),
}

/// What is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Problem {
    /// A value or length runs past the end of the frame (or of its tagged field).
    Short {
        what: &'static str,
        need: u64,
        left: usize,
    },
    /// An array announces more elements than the bytes left can hold.
    Count {
        count: u64,
        min_each: usize,
        left: usize,
    },
    Negative {
        what: &'static str,
        value: i32,
    },
    Null,
    Varint,
    TaggedSize {
        tag: u32,
        size: usize,
        used: usize,
    },
    Undescribed {
        api_key: i16,
        version: i16,
    },
}

impl fmt::Display for GuardError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "at byte {}: ", self.offset)?;
        } else {
            for (i, step) in self.path.iter().enumerate() {
                match step {
                    Step::Field(name) if i == 0 => write!(f, "{name}")?,
                    Step::Field(name) => write!(f, ".{name}")?,
                    Step::Index(n) => write!(f, "[{n}]")?,
                }
            }
            write!(f, " at byte {}: ", self.offset)?;
        }
        match &self.problem {
            Problem::Short { what, need, left } => {
                write!(f, "{what} needs {need} bytes, {left} left")
            }
            Problem::Count {
                count,
                min_each,
                left,
            } => write!(
                f,
                "array of {count} elements needs at least {count} x {min_each} bytes, {left} left"
            ),
            Problem::Negative { what, value } => write!(f, "{what} is negative ({value})"),
            Problem::Null => write!(f, "null in a field that is not nullable in this version"),
            Problem::Varint => write!(f, "unsigned varint longer than 32 bits"),
            Problem::TaggedSize { tag, size, used } => {
                write!(
                    f,
                    "tagged field {tag} declares {size} bytes, its value uses {used}"
                )
            }
            Problem::Undescribed { api_key, version } => {
                write!(f, "no structure for api key {api_key} version {version}")
            }
        }
    }
}

impl std::error::Error for GuardError {}

/// Checks a whole request frame (size prefix removed): the request header of `api_key`'s
/// `version`, then the body. Returns the number of bytes the header and body take.
pub fn check_request(frame: &[u8], api_key: ApiKey, version: i16) -> Result<usize, GuardError> {
    let header_version = api_key.request_header_version(version);
    let mut w = Walker::new(frame);
    w.header(header_version)?;
    let Some(message) = describe(api_key).filter(|m| m.checked.contains(version)) else {
        return Err(w.fail(Problem::Undescribed {
            api_key: api_key as i16,
            version,
        }));
    };
    w.body(message, version)?;
    Ok(w.pos)
}

/// A length or count prefix as read, for tests that inflate each one.
#[cfg(test)]
#[derive(Debug, Clone, Copy)]
pub(crate) struct Prefix {
    pos: usize,
    /// Bytes of the prefix; 0 for an unsigned varint.
    width: usize,
}

/// A cursor over `buf[..end]`; `end` shrinks to a tagged field's size while its value is walked.
#[derive(Debug)]
struct Walker<'a> {
    buf: &'a [u8],
    pos: usize,
    end: usize,
    version: i16,
    flexible: bool,
    #[cfg(test)]
    prefixes: Vec<Prefix>,
}

impl<'a> Walker<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self {
            buf,
            pos: 0,
            end: buf.len(),
            version: 0,
            flexible: false,
            #[cfg(test)]
            prefixes: Vec::new(),
        }
    }

    fn left(&self) -> usize {
        self.end - self.pos
    }

    fn fail(&self, problem: Problem) -> GuardError {
        GuardError {
            path: Vec::new(),
            offset: self.pos,
            problem,
        }
    }

    /// The request header: api key, version, correlation id, client id (an int16-prefixed
    /// nullable string even in flexible headers: header field `ClientId` is "flexibleVersions":
    /// "none"), and in header version 2 a tagged-field section with no known tags.
    fn header(&mut self, header_version: i16) -> Result<(), GuardError> {
        self.skip(8, "request header")?;
        if header_version >= 1 {
            if let Some(n) = self.nullable_len(false, "ClientId length")? {
                self.skip(n, "ClientId")?;
            }
        }
        if header_version >= 2 {
            self.flexible = true;
            self.tagged(&[])?;
        }
        Ok(())
    }

    fn body(&mut self, message: &Message, version: i16) -> Result<(), GuardError> {
        self.version = version;
        self.flexible = message.flexible.contains(version);
        self.fields(message.fields)
    }

    /// A structure: its fields present in this version, then its tagged fields.
    fn fields(&mut self, fields: &[Field]) -> Result<(), GuardError> {
        let version = self.version;
        for f in fields
            .iter()
            .filter(|f| f.tag.is_none() && f.versions.contains(version))
        {
            self.value(f.ty, f.nullable.contains(version))
                .map_err(|e| e.within(Step::Field(f.name)))?;
        }
        if self.flexible {
            self.tagged(fields)?;
        }
        Ok(())
    }

    fn value(&mut self, ty: Type, nullable: bool) -> Result<(), GuardError> {
        let len = match ty {
            Type::Int8 | Type::Bool => return self.skip(1, ty.name()),
            Type::Int16 => return self.skip(2, ty.name()),
            Type::Int32 => return self.skip(4, ty.name()),
            Type::Int64 | Type::Float64 => return self.skip(8, ty.name()),
            Type::Uuid => return self.skip(16, ty.name()),
            Type::Struct(fields) => return self.fields(fields),
            Type::String => self.nullable_len(self.flexible, "string length")?,
            Type::Bytes | Type::Records => self.nullable_len_32("bytes length")?,
            Type::Array(element) => return self.array(element, nullable),
        };
        match len {
            None if nullable => Ok(()),
            None => Err(self.fail(Problem::Null)),
            Some(n) => self.skip(n, ty.name()),
        }
    }

    fn array(&mut self, element: &Type, nullable: bool) -> Result<(), GuardError> {
        let start = self.pos;
        let Some(count) = self.nullable_len_32("array count")? else {
            return match nullable {
                true => Ok(()),
                false => Err(self.fail(Problem::Null)),
            };
        };
        let min_each = element.min_size(self.version, self.flexible).max(1);
        let (count, left) = (count as u64, self.left());
        if count.saturating_mul(min_each as u64) > left as u64 {
            self.pos = start;
            return Err(self.fail(Problem::Count {
                count,
                min_each,
                left,
            }));
        }
        for i in 0..count {
            self.value(*element, false)
                .map_err(|e| e.within(Step::Index(i)))?;
        }
        Ok(())
    }

    /// The tagged-field section of a structure whose fields are `fields`.
    fn tagged(&mut self, fields: &[Field]) -> Result<(), GuardError> {
        let count = self.uvarint(true)?;
        // Each tagged field takes at least two bytes (tag and size).
        if u64::from(count) * 2 > self.left() as u64 {
            return Err(self.fail(Problem::Count {
                count: count.into(),
                min_each: 2,
                left: self.left(),
            }));
        }
        for _ in 0..count {
            let tag = self.uvarint(false)?;
            let size = self.uvarint(true)? as usize;
            if size > self.left() {
                return Err(self.fail(Problem::Short {
                    what: "tagged field",
                    need: size as u64,
                    left: self.left(),
                }));
            }
            match fields.iter().find(|f| f.tag == Some(tag)) {
                Some(f) => self
                    .tagged_value(f, tag, size)
                    .map_err(|e| e.within(Step::Field(f.name)))?,
                None => self.pos += size,
            }
        }
        Ok(())
    }

    /// A known tagged field: walked within its declared size, which it must fill exactly.
    fn tagged_value(&mut self, f: &Field, tag: u32, size: usize) -> Result<(), GuardError> {
        let (start, outer_end) = (self.pos, self.end);
        self.end = start + size;
        let walked = self.value(f.ty, f.nullable.contains(self.version));
        let used = self.pos - start;
        self.end = outer_end;
        walked?;
        if used != size {
            return Err(self.fail(Problem::TaggedSize { tag, size, used }));
        }
        Ok(())
    }

    fn skip(&mut self, n: usize, what: &'static str) -> Result<(), GuardError> {
        if n > self.left() {
            return Err(self.fail(Problem::Short {
                what,
                need: n as u64,
                left: self.left(),
            }));
        }
        self.pos += n;
        Ok(())
    }

    /// A string length: int16 (-1: null), or when `compact` an unsigned varint length + 1.
    fn nullable_len(
        &mut self,
        compact: bool,
        what: &'static str,
    ) -> Result<Option<usize>, GuardError> {
        match compact {
            true => self.compact_len(),
            false => self.fixed_len(2, what),
        }
    }

    /// A bytes length or array count: int32 (-1: null), or in flexible versions an unsigned
    /// varint count + 1 (0: null).
    fn nullable_len_32(&mut self, what: &'static str) -> Result<Option<usize>, GuardError> {
        match self.flexible {
            true => self.compact_len(),
            false => self.fixed_len(4, what),
        }
    }

    /// A big-endian int16 or int32 length; -1 is null, any other negative value is refused.
    fn fixed_len(&mut self, width: usize, what: &'static str) -> Result<Option<usize>, GuardError> {
        self.note_prefix(width);
        let Some(b) = self.buf[self.pos..self.end].get(..width) else {
            return Err(self.short(width as u64, what));
        };
        let n: i32 = match width {
            2 => i16::from_be_bytes([b[0], b[1]]).into(),
            _ => i32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        };
        if n < -1 {
            return Err(self.fail(Problem::Negative { what, value: n }));
        }
        self.pos += width;
        Ok(usize::try_from(n).ok())
    }

    fn compact_len(&mut self) -> Result<Option<usize>, GuardError> {
        Ok(match self.uvarint(true)? {
            0 => None,
            n => Some(n as usize - 1),
        })
    }

    /// An unsigned varint of at most 32 bits (five bytes), read as kafka-protocol reads it.
    fn uvarint(&mut self, is_prefix: bool) -> Result<u32, GuardError> {
        if is_prefix {
            self.note_prefix(0);
        }
        let mut value: u32 = 0;
        for i in 0..5 {
            let Some(&b) = self.buf[..self.end].get(self.pos) else {
                return Err(self.short(1, "unsigned varint"));
            };
            if i == 4 && b > 0x0f {
                return Err(self.fail(Problem::Varint));
            }
            self.pos += 1;
            value |= u32::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                break;
            }
        }
        Ok(value)
    }

    fn short(&self, need: u64, what: &'static str) -> GuardError {
        self.fail(Problem::Short {
            what,
            need,
            left: self.left(),
        })
    }

    #[cfg(test)]
    fn note_prefix(&mut self, width: usize) {
        self.prefixes.push(Prefix {
            pos: self.pos,
            width,
        });
    }

    #[cfg(not(test))]
    fn note_prefix(&mut self, _width: usize) {}
}

impl Type {
    fn name(self) -> &'static str {
        match self {
            Type::Int8 => "int8",
            Type::Int16 => "int16",
            Type::Int32 => "int32",
            Type::Int64 => "int64",
            Type::Uuid => "uuid",
            Type::Float64 => "float64",
            Type::Bool => "bool",
            Type::String => "string",
            Type::Bytes => "bytes",
            Type::Records => "records",
            Type::Array(_) => "array",
            Type::Struct(_) => "struct",
        }
    }

    /// The fewest bytes a value of this type takes in `version`: a null or empty length prefix,
    /// and for a structure the sum over its fields plus an empty tagged-field section.
    fn min_size(self, version: i16, flexible: bool) -> usize {
        match self {
            Type::Int8 | Type::Bool => 1,
            Type::Int16 => 2,
            Type::Int32 => 4,
            Type::Int64 | Type::Float64 => 8,
            Type::Uuid => 16,
            Type::String if !flexible => 2,
            Type::Bytes | Type::Records | Type::Array(_) if !flexible => 4,
            Type::String | Type::Bytes | Type::Records | Type::Array(_) => 1,
            Type::Struct(fields) => {
                let own: usize = fields
                    .iter()
                    .filter(|f| f.tag.is_none() && f.versions.contains(version))
                    .map(|f| f.ty.min_size(version, flexible))
                    .sum();
                own + usize::from(flexible)
            }
        }
    }
}

impl GuardError {
    /// Prepends a step of the path as the error leaves a field or element.
    fn within(mut self, step: Step) -> Self {
        self.path.insert(0, step);
        self
    }
}
