//! Constant tensors. A [`Tensor`] wraps the ONNX `TensorProto` it came from, so a tensor
//! that no pass touched is written back exactly as it was read (same storage field, same
//! bytes); `raw_data` is a `Bytes` slice of the memory-mapped file, never a copy.

use crate::error::{Error, Result};
use crate::proto::tensor_proto::DataType;
use crate::proto::TensorProto;
use bytes::Bytes;
use std::borrow::Cow;

#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub proto: TensorProto,
}

/// Bytes per element for fixed-size types; `None` for strings and sub-byte types.
pub fn dtype_size(dt: i32) -> Option<usize> {
    use DataType as D;
    Some(match DataType::try_from(dt).ok()? {
        D::Float | D::Int32 | D::Uint32 => 4,
        D::Uint8 | D::Int8 | D::Bool => 1,
        D::Float8e4m3fn | D::Float8e4m3fnuz | D::Float8e5m2 | D::Float8e5m2fnuz | D::Float8e8m0 => 1,
        D::Uint16 | D::Int16 | D::Float16 | D::Bfloat16 => 2,
        D::Int64 | D::Uint64 | D::Double | D::Complex64 => 8,
        D::Complex128 => 16,
        _ => return None,
    })
}

/// ONNX's lower-case type name as used in the text form (`float`, `int64`, ...).
pub fn dtype_name(dt: i32) -> &'static str {
    use DataType as D;
    match DataType::try_from(dt).unwrap_or(D::Undefined) {
        D::Undefined => "undefined",
        D::Float => "float",
        D::Uint8 => "uint8",
        D::Int8 => "int8",
        D::Uint16 => "uint16",
        D::Int16 => "int16",
        D::Int32 => "int32",
        D::Int64 => "int64",
        D::String => "string",
        D::Bool => "bool",
        D::Float16 => "float16",
        D::Double => "double",
        D::Uint32 => "uint32",
        D::Uint64 => "uint64",
        D::Complex64 => "complex64",
        D::Complex128 => "complex128",
        D::Bfloat16 => "bfloat16",
        D::Float8e4m3fn => "float8e4m3fn",
        D::Float8e4m3fnuz => "float8e4m3fnuz",
        D::Float8e5m2 => "float8e5m2",
        D::Float8e5m2fnuz => "float8e5m2fnuz",
        D::Uint4 => "uint4",
        D::Int4 => "int4",
        D::Float4e2m1 => "float4e2m1",
        D::Float8e8m0 => "float8e8m0",
        D::Uint2 => "uint2",
        D::Int2 => "int2",
        D::Float6e2m3 => "float6e2m3",
        D::Float6e3m2 => "float6e3m2",
    }
}

/// Inverse of [`dtype_name`].
pub fn dtype_from_name(s: &str) -> Option<i32> {
    (0..=28).find(|&d| dtype_name(d) == s && (d != 0 || s == "undefined"))
}

impl Tensor {
    pub fn new(proto: TensorProto) -> Self {
        Tensor { proto }
    }
    pub fn dtype(&self) -> i32 {
        self.proto.data_type()
    }
    pub fn dims(&self) -> &[i64] {
        &self.proto.dims
    }
    pub fn shape(&self) -> Vec<usize> {
        self.proto.dims.iter().map(|&d| d.max(0) as usize).collect()
    }
    /// Element count, or an error for negative or overflowing dims.
    pub fn numel(&self) -> Result<usize> {
        let mut n: usize = 1;
        for &d in &self.proto.dims {
            if d < 0 {
                return Err(Error::user(format!("tensor '{}' has a negative dimension {d}", self.proto.name())));
            }
            n = n.checked_mul(d as usize).ok_or_else(|| {
                Error::user(format!("tensor '{}' has absurd dims {:?} (element count overflows)", self.proto.name(), self.proto.dims))
            })?;
        }
        Ok(n)
    }

    /// True when the tensor has no data at all (a placeholder parsed from a text summary).
    pub fn is_placeholder(&self) -> bool {
        let p = &self.proto;
        p.raw_data.is_none()
            && p.float_data.is_empty()
            && p.int32_data.is_empty()
            && p.int64_data.is_empty()
            && p.double_data.is_empty()
            && p.uint64_data.is_empty()
            && p.string_data.is_empty()
            && p.data_location.unwrap_or(0) == 0
            && self.numel().map(|n| n > 0).unwrap_or(false)
            && p.metadata_props.iter().any(|m| m.key() == PLACEHOLDER_KEY)
    }

    /// Checks that dims are sane and the stored data has exactly the size dims and
    /// dtype call for, without decoding it.
    pub fn check(&self) -> Result<()> {
        let p = &self.proto;
        let n = self.numel()?;
        if self.is_placeholder() {
            return Ok(());
        }
        let name = p.name();
        if let Some(es) = dtype_size(self.dtype()) {
            if n.checked_mul(es).is_none() || (n as u128) * (es as u128) > (1u128 << 48) {
                return Err(Error::user(format!("tensor '{name}' has absurd dims {:?}", p.dims)));
            }
        }
        if let Some(raw) = &p.raw_data {
            if let Some(es) = dtype_size(self.dtype()) {
                if raw.len() != n * es {
                    return Err(Error::user(format!(
                        "tensor '{name}': raw_data holds {} bytes but dims {:?} of {} need {}",
                        raw.len(),
                        p.dims,
                        dtype_name(self.dtype()),
                        n * es
                    )));
                }
            }
            return Ok(());
        }
        let have = p.float_data.len() + p.int32_data.len() + p.int64_data.len() + p.double_data.len() + p.uint64_data.len() + p.string_data.len();
        let complex = matches!(self.dtype(), 14 | 15);
        if have != n && !(complex && have == 2 * n) && p.data_location.unwrap_or(0) == 0 {
            return Err(Error::user(format!("tensor '{name}': holds {have} values but dims {:?} need {n}", p.dims)));
        }
        Ok(())
    }

    /// The tensor's bytes in ONNX's little-endian raw layout, decoding typed storage
    /// fields when needed. Checks the length against dims and dtype.
    pub fn raw_bytes(&self) -> Result<Cow<'_, [u8]>> {
        let p = &self.proto;
        let name = p.name();
        let n = self.numel()?;
        let dt = self.dtype();
        let esize = dtype_size(dt)
            .ok_or_else(|| Error::user(format!("tensor '{name}': data type {} has no fixed-size raw layout", dtype_name(dt))))?;
        let want = n
            .checked_mul(esize)
            .ok_or_else(|| Error::user(format!("tensor '{name}' has absurd dims {:?}", p.dims)))?;
        if self.is_placeholder() {
            return Err(Error::user(format!(
                "tensor '{name}' has no data: it was parsed from a text-form summary; write it inline or with a generator"
            )));
        }
        if let Some(raw) = &p.raw_data {
            if raw.len() != want {
                return Err(Error::user(format!(
                    "tensor '{name}': raw_data holds {} bytes but dims {:?} of {} need {want}",
                    raw.len(),
                    p.dims,
                    dtype_name(dt)
                )));
            }
            return Ok(Cow::Borrowed(raw.as_ref()));
        }
        use DataType as D;
        let mut out = Vec::with_capacity(want);
        let bad = |have: usize| {
            Error::user(format!(
                "tensor '{name}': holds {have} values but dims {:?} need {n}",
                p.dims
            ))
        };
        match DataType::try_from(dt).unwrap_or(D::Undefined) {
            D::Float => {
                if p.float_data.len() != n {
                    return Err(bad(p.float_data.len()));
                }
                p.float_data.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
            }
            D::Double => {
                if p.double_data.len() != n {
                    return Err(bad(p.double_data.len()));
                }
                p.double_data.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
            }
            D::Int64 => {
                if p.int64_data.len() != n {
                    return Err(bad(p.int64_data.len()));
                }
                p.int64_data.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
            }
            D::Uint64 | D::Uint32 => {
                if p.uint64_data.len() != n {
                    return Err(bad(p.uint64_data.len()));
                }
                for v in &p.uint64_data {
                    if esize == 8 {
                        out.extend_from_slice(&v.to_le_bytes())
                    } else {
                        out.extend_from_slice(&(*v as u32).to_le_bytes())
                    }
                }
            }
            D::Int32 | D::Int16 | D::Int8 | D::Uint16 | D::Uint8 | D::Bool | D::Float16 | D::Bfloat16 => {
                if p.int32_data.len() != n {
                    return Err(bad(p.int32_data.len()));
                }
                for v in &p.int32_data {
                    match esize {
                        4 => out.extend_from_slice(&v.to_le_bytes()),
                        2 => out.extend_from_slice(&(*v as u16).to_le_bytes()),
                        _ => out.push(*v as u8),
                    }
                }
            }
            _ => {
                return Err(Error::user(format!("tensor '{name}': cannot read data of type {}", dtype_name(dt))));
            }
        }
        Ok(Cow::Owned(out))
    }

    /// Values as f32 (float, double, float16, int types are converted).
    pub fn to_f32(&self) -> Result<Vec<f32>> {
        let raw = self.raw_bytes()?;
        use DataType as D;
        Ok(match DataType::try_from(self.dtype()).unwrap_or(D::Undefined) {
            D::Float => raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
            D::Double => raw.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32).collect(),
            D::Float16 => raw.chunks_exact(2).map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]]))).collect(),
            D::Bfloat16 => raw.chunks_exact(2).map(|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16)).collect(),
            D::Int8 => raw.iter().map(|&b| b as i8 as f32).collect(),
            D::Uint8 | D::Bool => raw.iter().map(|&b| b as f32).collect(),
            D::Int32 => raw.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32).collect(),
            D::Int64 => raw.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32).collect(),
            _ => {
                return Err(Error::user(format!(
                    "tensor '{}': cannot read {} as float",
                    self.proto.name(),
                    dtype_name(self.dtype())
                )))
            }
        })
    }

    /// Values as i64 (integer types only).
    pub fn to_i64(&self) -> Result<Vec<i64>> {
        let raw = self.raw_bytes()?;
        use DataType as D;
        Ok(match DataType::try_from(self.dtype()).unwrap_or(D::Undefined) {
            D::Int64 => raw.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect(),
            D::Int32 => raw.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64).collect(),
            D::Int8 => raw.iter().map(|&b| b as i8 as i64).collect(),
            D::Uint8 | D::Bool => raw.iter().map(|&b| b as i64).collect(),
            D::Uint64 => raw.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as i64).collect(),
            _ => {
                return Err(Error::user(format!(
                    "tensor '{}': expected integer data, found {}",
                    self.proto.name(),
                    dtype_name(self.dtype())
                )))
            }
        })
    }

    fn from_raw(name: &str, dims: &[i64], dt: DataType, raw: Vec<u8>) -> Self {
        Tensor {
            proto: TensorProto {
                name: Some(name.to_string()),
                dims: dims.to_vec(),
                data_type: Some(dt as i32),
                raw_data: Some(Bytes::from(raw)),
                ..Default::default()
            },
        }
    }
    pub fn from_f32(name: &str, dims: &[i64], data: &[f32]) -> Self {
        let mut raw = Vec::with_capacity(data.len() * 4);
        data.iter().for_each(|v| raw.extend_from_slice(&v.to_le_bytes()));
        Self::from_raw(name, dims, DataType::Float, raw)
    }
    pub fn from_i64(name: &str, dims: &[i64], data: &[i64]) -> Self {
        let mut raw = Vec::with_capacity(data.len() * 8);
        data.iter().for_each(|v| raw.extend_from_slice(&v.to_le_bytes()));
        Self::from_raw(name, dims, DataType::Int64, raw)
    }
    pub fn from_i8(name: &str, dims: &[i64], data: &[i8]) -> Self {
        Self::from_raw(name, dims, DataType::Int8, data.iter().map(|&v| v as u8).collect())
    }
    pub fn from_i32(name: &str, dims: &[i64], data: &[i32]) -> Self {
        let mut raw = Vec::with_capacity(data.len() * 4);
        data.iter().for_each(|v| raw.extend_from_slice(&v.to_le_bytes()));
        Self::from_raw(name, dims, DataType::Int32, raw)
    }

    /// A 64-bit content hash over dtype, dims and the raw bytes (xxh3).
    pub fn content_hash(&self) -> Result<u64> {
        if self.is_placeholder() {
            if let Some(h) = self.proto.metadata_props.iter().find(|m| m.key() == PLACEHOLDER_KEY) {
                return u64::from_str_radix(h.value(), 16)
                    .map_err(|_| Error::user(format!("tensor '{}': bad placeholder hash", self.proto.name())));
            }
        }
        let raw = self.raw_bytes()?;
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        h.update(&self.dtype().to_le_bytes());
        for d in self.dims() {
            h.update(&d.to_le_bytes());
        }
        h.update(&raw);
        Ok(h.digest())
    }

    /// Fraction of elements equal to zero.
    pub fn zero_fraction(&self) -> Result<f64> {
        let n = self.numel()?;
        if n == 0 {
            return Ok(0.0);
        }
        if self.is_placeholder() {
            if let Some(z) = self.proto.metadata_props.iter().find(|m| m.key() == PLACEHOLDER_ZEROS_KEY) {
                return z.value().parse::<f64>().map_err(|_| Error::user("bad placeholder zero fraction"));
            }
        }
        let dt = self.dtype();
        let zeros = if dt == DataType::Float as i32 || dt == DataType::Double as i32 || dt == DataType::Float16 as i32 {
            self.to_f32()?.iter().filter(|v| **v == 0.0).count()
        } else {
            let raw = self.raw_bytes()?;
            let es = dtype_size(dt).unwrap_or(1);
            raw.chunks_exact(es).filter(|c| c.iter().all(|b| *b == 0)).count()
        };
        Ok(zeros as f64 / n as f64)
    }
}

/// Metadata key marking a placeholder tensor (parsed from a summary); its value is the hash.
pub const PLACEHOLDER_KEY: &str = "sparseqc.placeholder.hash";
/// Metadata key holding a placeholder's zero fraction.
pub const PLACEHOLDER_ZEROS_KEY: &str = "sparseqc.placeholder.zeros";

/// IEEE half to single precision.
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) & 1) as u32;
    let exp = ((h >> 10) & 0x1f) as u32;
    let frac = (h & 0x3ff) as u32;
    let bits = if exp == 0 {
        if frac == 0 {
            sign << 31
        } else {
            // subnormal
            let mut e = 127 - 15 + 1;
            let mut f = frac;
            while f & 0x400 == 0 {
                f <<= 1;
                e -= 1;
            }
            (sign << 31) | ((e as u32) << 23) | ((f & 0x3ff) << 13)
        }
    } else if exp == 0x1f {
        (sign << 31) | 0x7f80_0000 | (frac << 13)
    } else {
        (sign << 31) | ((exp + 127 - 15) << 23) | (frac << 13)
    };
    f32::from_bits(bits)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn typed_and_raw_storage_agree() {
        let a = Tensor::from_f32("a", &[2, 2], &[1.0, 0.0, -2.5, 0.0]);
        let b = Tensor::new(TensorProto {
            name: Some("a".into()),
            dims: vec![2, 2],
            data_type: Some(1),
            float_data: vec![1.0, 0.0, -2.5, 0.0],
            ..Default::default()
        });
        assert_eq!(a.to_f32().unwrap(), b.to_f32().unwrap());
        assert_eq!(a.content_hash().unwrap(), b.content_hash().unwrap());
        assert_eq!(a.zero_fraction().unwrap(), 0.5);
    }
    #[test]
    fn length_mismatch_is_an_error() {
        let mut t = Tensor::from_f32("w", &[3], &[1.0, 2.0, 3.0]);
        t.proto.dims = vec![4];
        let e = t.to_f32().unwrap_err().to_string();
        assert!(e.contains("'w'") && e.contains("need 16"), "{e}");
        t.proto.dims = vec![i64::MAX, i64::MAX];
        assert!(t.to_f32().unwrap_err().to_string().contains("absurd"));
    }
    #[test]
    fn half_precision() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x0001), 5.960_464_5e-8);
    }
}
