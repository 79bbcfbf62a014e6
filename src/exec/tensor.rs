//! The interpreter's tensor: a dense, row-major array with a shape and one element type.
//!
//! Data lives behind an `Arc<Vec<T>>`, so cloning a tensor is cheap (constants are shared by
//! every run) and an op that holds the only reference to an input may reuse its buffer.

use std::fmt;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::proto::TensorProto;

/// Element type of a [`Tensor`]. The discriminants are ONNX's `TensorProto.DataType` codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit float (ONNX FLOAT = 1).
    F32 = 1,
    /// Unsigned byte (ONNX UINT8 = 2).
    U8 = 2,
    /// Signed byte (ONNX INT8 = 3).
    I8 = 3,
    /// 16-bit unsigned integer (ONNX UINT16 = 4).
    U16 = 4,
    /// 16-bit signed integer (ONNX INT16 = 5).
    I16 = 5,
    /// 32-bit signed integer (ONNX INT32 = 6).
    I32 = 6,
    /// 64-bit signed integer (ONNX INT64 = 7).
    I64 = 7,
    /// Boolean (ONNX BOOL = 9).
    Bool = 9,
    /// 64-bit float (ONNX DOUBLE = 11).
    F64 = 11,
    /// 32-bit unsigned integer (ONNX UINT32 = 12).
    U32 = 12,
    /// 64-bit unsigned integer (ONNX UINT64 = 13).
    U64 = 13,
}

impl DType {
    /// Maps an ONNX `TensorProto.DataType` code to a supported type.
    pub fn from_onnx(code: i32) -> Result<DType> {
        Ok(match code {
            1 => DType::F32,
            2 => DType::U8,
            3 => DType::I8,
            4 => DType::U16,
            5 => DType::I16,
            12 => DType::U32,
            13 => DType::U64,
            6 => DType::I32,
            7 => DType::I64,
            9 => DType::Bool,
            11 => DType::F64,
            other => {
                return Err(Error::user(format!(
                    "tensor element type {} ({other}) is not supported by the reference interpreter \
                     (supported: float, double, int64, int32, int16, int8, uint64, uint32, uint16, uint8, bool)",
                    onnx_type_name(other)
                )))
            }
        })
    }

    /// The ONNX `TensorProto.DataType` code.
    pub fn onnx_code(self) -> i32 {
        self as i32
    }

    /// Size of one element in bytes.
    pub fn size(self) -> usize {
        match self {
            DType::F32 | DType::I32 | DType::U32 => 4,
            DType::F64 | DType::I64 | DType::U64 => 8,
            DType::U16 | DType::I16 => 2,
            DType::U8 | DType::I8 | DType::Bool => 1,
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            DType::F32 => "float32",
            DType::F64 => "float64",
            DType::I64 => "int64",
            DType::I32 => "int32",
            DType::I8 => "int8",
            DType::U8 => "uint8",
            DType::I16 => "int16",
            DType::U16 => "uint16",
            DType::U32 => "uint32",
            DType::U64 => "uint64",
            DType::Bool => "bool",
        };
        f.write_str(s)
    }
}

fn onnx_type_name(code: i32) -> &'static str {
    crate::proto::tensor_proto::DataType::try_from(code).map(|d| d.as_str_name()).unwrap_or("UNKNOWN")
}

/// Typed storage of a [`Tensor`].
#[derive(Clone, Debug)]
pub enum Data {
    /// float32 elements.
    F32(Arc<Vec<f32>>),
    /// float64 elements.
    F64(Arc<Vec<f64>>),
    /// int64 elements.
    I64(Arc<Vec<i64>>),
    /// int32 elements.
    I32(Arc<Vec<i32>>),
    /// int8 elements.
    I8(Arc<Vec<i8>>),
    /// uint8 elements.
    U8(Arc<Vec<u8>>),
    /// int16 elements.
    I16(Arc<Vec<i16>>),
    /// uint16 elements.
    U16(Arc<Vec<u16>>),
    /// uint32 elements.
    U32(Arc<Vec<u32>>),
    /// uint64 elements.
    U64(Arc<Vec<u64>>),
    /// bool elements.
    Bool(Arc<Vec<bool>>),
}

/// A Rust element type that a [`Tensor`] can hold.
pub trait Elem: Copy + Send + Sync + PartialEq + fmt::Debug + 'static {
    /// The matching [`DType`].
    const DTYPE: DType;
    /// Wraps a buffer as [`Data`].
    fn wrap(v: Arc<Vec<Self>>) -> Data;
    /// The buffer if `d` holds this type.
    fn unwrap_ref(d: &Data) -> Option<&Arc<Vec<Self>>>;
    /// The buffer if `d` holds this type (mutable access to the `Arc`).
    fn unwrap_mut(d: &mut Data) -> Option<&mut Arc<Vec<Self>>>;
}

macro_rules! impl_elem {
    ($t:ty, $variant:ident) => {
        impl Elem for $t {
            const DTYPE: DType = DType::$variant;
            fn wrap(v: Arc<Vec<Self>>) -> Data {
                Data::$variant(v)
            }
            fn unwrap_ref(d: &Data) -> Option<&Arc<Vec<Self>>> {
                match d {
                    Data::$variant(v) => Some(v),
                    _ => None,
                }
            }
            fn unwrap_mut(d: &mut Data) -> Option<&mut Arc<Vec<Self>>> {
                match d {
                    Data::$variant(v) => Some(v),
                    _ => None,
                }
            }
        }
    };
}
impl_elem!(f32, F32);
impl_elem!(f64, F64);
impl_elem!(i64, I64);
impl_elem!(i32, I32);
impl_elem!(i8, I8);
impl_elem!(u8, U8);
impl_elem!(i16, I16);
impl_elem!(u16, U16);
impl_elem!(u32, U32);
impl_elem!(u64, U64);
impl_elem!(bool, Bool);

/// A dense row-major tensor.
#[derive(Clone, Debug)]
pub struct Tensor {
    shape: Vec<usize>,
    data: Data,
}

/// Number of elements of a shape (1 for a scalar).
pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

impl Tensor {
    /// Builds a tensor; errors if `data.len()` is not the product of `shape`.
    pub fn new<T: Elem>(shape: Vec<usize>, data: Vec<T>) -> Result<Tensor> {
        if numel(&shape) != data.len() {
            return Err(Error::user(format!(
                "tensor of shape {shape:?} needs {} elements, got {}",
                numel(&shape),
                data.len()
            )));
        }
        Ok(Tensor { shape, data: T::wrap(Arc::new(data)) })
    }

    /// Builds a tensor from a shared buffer; errors on a length mismatch.
    pub fn from_arc<T: Elem>(shape: Vec<usize>, data: Arc<Vec<T>>) -> Result<Tensor> {
        if numel(&shape) != data.len() {
            return Err(Error::user(format!(
                "tensor of shape {shape:?} needs {} elements, got {}",
                numel(&shape),
                data.len()
            )));
        }
        Ok(Tensor { shape, data: T::wrap(data) })
    }

    /// Internal constructor where the length is known to match.
    pub(crate) fn from_vec<T: Elem>(shape: Vec<usize>, data: Vec<T>) -> Tensor {
        debug_assert_eq!(numel(&shape), data.len());
        Tensor { shape, data: T::wrap(Arc::new(data)) }
    }

    /// A 0-d tensor.
    pub fn scalar<T: Elem>(v: T) -> Tensor {
        Tensor::from_vec(Vec::new(), vec![v])
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Rank (number of dimensions).
    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        numel(&self.shape)
    }

    /// True when the tensor has no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        match &self.data {
            Data::F32(_) => DType::F32,
            Data::F64(_) => DType::F64,
            Data::I64(_) => DType::I64,
            Data::I32(_) => DType::I32,
            Data::I8(_) => DType::I8,
            Data::U8(_) => DType::U8,
            Data::I16(_) => DType::I16,
            Data::U16(_) => DType::U16,
            Data::U32(_) => DType::U32,
            Data::U64(_) => DType::U64,
            Data::Bool(_) => DType::Bool,
        }
    }

    /// The typed storage.
    pub fn data(&self) -> &Data {
        &self.data
    }

    /// The elements as `&[T]`, or an error naming both types.
    pub fn as_slice<T: Elem>(&self) -> Result<&[T]> {
        match T::unwrap_ref(&self.data) {
            Some(v) => Ok(v.as_slice()),
            None => Err(Error::user(format!("expected a {} tensor, got {}", T::DTYPE, self.dtype()))),
        }
    }

    /// The elements as `&[f32]` (errors if the tensor is not float32).
    pub fn as_f32(&self) -> Result<&[f32]> {
        self.as_slice::<f32>()
    }

    /// The elements as `&[i64]` (errors if the tensor is not int64).
    pub fn as_i64(&self) -> Result<&[i64]> {
        self.as_slice::<i64>()
    }

    /// The shared buffer (cheap clone of the `Arc`).
    pub fn arc<T: Elem>(&self) -> Result<Arc<Vec<T>>> {
        match T::unwrap_ref(&self.data) {
            Some(v) => Ok(v.clone()),
            None => Err(Error::user(format!("expected a {} tensor, got {}", T::DTYPE, self.dtype()))),
        }
    }

    /// Takes the elements out, copying only if the buffer is shared.
    pub fn into_vec<T: Elem>(self) -> Result<Vec<T>> {
        let dt = self.dtype();
        let mut data = self.data;
        match T::unwrap_mut(&mut data) {
            Some(v) => {
                let a = std::mem::take(v);
                Ok(Arc::try_unwrap(a).unwrap_or_else(|a| (*a).clone()))
            }
            None => Err(Error::user(format!("expected a {} tensor, got {dt}", T::DTYPE))),
        }
    }

    /// The float32 buffer if this tensor is float32 and holds the only reference to it.
    pub(crate) fn into_unique_f32(self) -> Option<Vec<f32>> {
        match self.data {
            Data::F32(a) => Arc::try_unwrap(a).ok(),
            _ => None,
        }
    }

    /// Mutable elements if this tensor holds the only reference to its buffer.
    pub(crate) fn unique_mut<T: Elem>(&mut self) -> Option<&mut [T]> {
        T::unwrap_mut(&mut self.data).and_then(|a| Arc::get_mut(a)).map(|v| v.as_mut_slice())
    }

    /// Same data, another shape with the same element count.
    pub fn reshaped(&self, shape: Vec<usize>) -> Result<Tensor> {
        if numel(&shape) != self.len() {
            return Err(Error::user(format!(
                "cannot reshape a tensor of shape {:?} ({} elements) to {shape:?}",
                self.shape,
                self.len()
            )));
        }
        Ok(Tensor { shape, data: self.data.clone() })
    }

    /// Changes the shape in place; the caller guarantees the element count matches.
    pub(crate) fn set_shape(&mut self, shape: Vec<usize>) {
        debug_assert_eq!(numel(&shape), self.len());
        self.shape = shape;
    }

    /// Elements converted to f64 (for index/shape inputs and tests).
    pub fn to_f64_vec(&self) -> Vec<f64> {
        match &self.data {
            Data::F32(v) => v.iter().map(|&x| x as f64).collect(),
            Data::F64(v) => v.to_vec(),
            Data::I64(v) => v.iter().map(|&x| x as f64).collect(),
            Data::I32(v) => v.iter().map(|&x| x as f64).collect(),
            Data::I8(v) => v.iter().map(|&x| x as f64).collect(),
            Data::U8(v) => v.iter().map(|&x| x as f64).collect(),
            Data::I16(v) => v.iter().map(|&x| x as f64).collect(),
            Data::U16(v) => v.iter().map(|&x| x as f64).collect(),
            Data::U32(v) => v.iter().map(|&x| x as f64).collect(),
            Data::U64(v) => v.iter().map(|&x| x as f64).collect(),
            Data::Bool(v) => v.iter().map(|&x| x as u8 as f64).collect(),
        }
    }

    /// Integer elements as i64 (int64/int32/int8/uint8/bool); errors for floats.
    pub fn to_i64_vec(&self) -> Result<Vec<i64>> {
        Ok(match &self.data {
            Data::I64(v) => v.to_vec(),
            Data::I32(v) => v.iter().map(|&x| x as i64).collect(),
            Data::I8(v) => v.iter().map(|&x| x as i64).collect(),
            Data::U8(v) => v.iter().map(|&x| x as i64).collect(),
            Data::I16(v) => v.iter().map(|&x| x as i64).collect(),
            Data::U16(v) => v.iter().map(|&x| x as i64).collect(),
            Data::U32(v) => v.iter().map(|&x| x as i64).collect(),
            // values above i64::MAX wrap (they are never valid shapes or indices)
            Data::U64(v) => v.iter().map(|&x| x as i64).collect(),
            Data::Bool(v) => v.iter().map(|&x| x as i64).collect(),
            Data::F32(_) | Data::F64(_) => {
                return Err(Error::user(format!("expected an integer tensor, got {}", self.dtype())))
            }
        })
    }

    /// True when shapes, types and every element are equal (bitwise for floats).
    pub fn bit_eq(&self, other: &Tensor) -> bool {
        if self.shape != other.shape {
            return false;
        }
        match (&self.data, &other.data) {
            (Data::F32(a), Data::F32(b)) => a.iter().zip(b.iter()).all(|(x, y)| x.to_bits() == y.to_bits()),
            (Data::F64(a), Data::F64(b)) => a.iter().zip(b.iter()).all(|(x, y)| x.to_bits() == y.to_bits()),
            (Data::I64(a), Data::I64(b)) => a == b,
            (Data::I32(a), Data::I32(b)) => a == b,
            (Data::I8(a), Data::I8(b)) => a == b,
            (Data::U8(a), Data::U8(b)) => a == b,
            (Data::I16(a), Data::I16(b)) => a == b,
            (Data::U16(a), Data::U16(b)) => a == b,
            (Data::U32(a), Data::U32(b)) => a == b,
            (Data::U64(a), Data::U64(b)) => a == b,
            (Data::Bool(a), Data::Bool(b)) => a == b,
            _ => false,
        }
    }

    /// Decodes an ONNX `TensorProto` (raw little-endian data or the typed repeated fields).
    /// External data is not supported.
    pub fn from_proto(t: &TensorProto) -> Result<Tensor> {
        let name = t.name.as_deref().unwrap_or("");
        decode_proto(t).map_err(|e| e.context(format!("tensor '{name}'")))
    }
}

/// A per-thread pool of float buffers released by finished ops, so that large activations
/// reuse warm memory instead of mapping fresh pages (page faults serialize threads).
pub(crate) mod pool {
    use std::cell::RefCell;

    use super::Tensor;

    /// At most this many buffers and bytes are kept per thread.
    const MAX_BUFS: usize = 16;
    const MAX_BYTES: usize = 256 << 20;
    /// Buffers smaller than this are left to the allocator.
    const MIN_LEN: usize = 4096;

    thread_local! {
        static POOL: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
    }

    /// A zero-filled buffer of `len` floats, reusing a pooled one when possible.
    pub(crate) fn zeros(len: usize) -> Vec<f32> {
        if len >= MIN_LEN {
            let got = POOL.with(|p| {
                let mut p = p.borrow_mut();
                // best fit: the smallest buffer that is large enough
                let i = p.iter().enumerate().filter(|(_, v)| v.capacity() >= len).min_by_key(|(_, v)| v.capacity()).map(|(i, _)| i);
                i.map(|i| p.swap_remove(i))
            });
            if let Some(mut v) = got {
                v.clear();
                v.resize(len, 0.0);
                return v;
            }
        }
        vec![0.0; len]
    }

    /// A buffer of `len` floats with unspecified (stale but initialized) contents, for
    /// outputs that the caller overwrites entirely.
    pub(crate) fn scratch(len: usize) -> Vec<f32> {
        if len >= MIN_LEN {
            let got = POOL.with(|p| {
                let mut p = p.borrow_mut();
                let i = p.iter().enumerate().filter(|(_, v)| v.len() >= len).min_by_key(|(_, v)| v.len()).map(|(i, _)| i);
                i.map(|i| p.swap_remove(i))
            });
            if let Some(mut v) = got {
                v.truncate(len);
                return v;
            }
        }
        zeros(len)
    }

    /// Returns a buffer to the pool.
    pub(crate) fn give(v: Vec<f32>) {
        if v.capacity() < MIN_LEN {
            return;
        }
        POOL.with(|p| {
            let mut p = p.borrow_mut();
            p.push(v);
            // keep the largest buffers within the limits
            while p.len() > MAX_BUFS || p.iter().map(|v| v.capacity() * 4).sum::<usize>() > MAX_BYTES {
                let i = p.iter().enumerate().min_by_key(|(_, v)| v.capacity()).map(|(i, _)| i).unwrap_or(0);
                p.swap_remove(i);
            }
        });
    }

    /// Recycles a tensor's buffer if it is float32 and unshared (otherwise just drops it).
    pub(crate) fn recycle(t: Tensor) {
        if let Some(v) = t.into_unique_f32() {
            give(v);
        }
    }
}

fn decode_proto(t: &TensorProto) -> Result<Tensor> {
    if t.data_location == Some(1) || !t.external_data.is_empty() {
        return Err(Error::user("external tensor data is not supported by the reference interpreter"));
    }
    if t.segment.is_some() {
        return Err(Error::user("segmented tensors are not supported"));
    }
    let mut shape = Vec::with_capacity(t.dims.len());
    for &d in &t.dims {
        if d < 0 {
            return Err(Error::user(format!("negative dimension {d}")));
        }
        shape.push(d as usize);
    }
    let n = numel(&shape);
    let dtype = DType::from_onnx(t.data_type.unwrap_or(0))?;
    if let Some(raw) = t.raw_data.as_ref().filter(|r| !r.is_empty() || n == 0) {
        if raw.len() != n * dtype.size() {
            return Err(Error::user(format!(
                "raw_data has {} bytes, shape {shape:?} of {dtype} needs {}",
                raw.len(),
                n * dtype.size()
            )));
        }
        let r: &[u8] = raw;
        return Ok(match dtype {
            DType::F32 => Tensor::from_vec(shape, r.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()),
            DType::I32 => Tensor::from_vec(shape, r.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()),
            DType::F64 => Tensor::from_vec(
                shape,
                r.chunks_exact(8).map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])).collect(),
            ),
            DType::I64 => Tensor::from_vec(
                shape,
                r.chunks_exact(8).map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])).collect(),
            ),
            DType::I8 => Tensor::from_vec(shape, r.iter().map(|&b| b as i8).collect()),
            DType::U8 => Tensor::from_vec(shape, r.to_vec()),
            DType::I16 => Tensor::from_vec(shape, r.chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]])).collect()),
            DType::U16 => Tensor::from_vec(shape, r.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect()),
            DType::U32 => Tensor::from_vec(shape, r.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()),
            DType::U64 => Tensor::from_vec(
                shape,
                r.chunks_exact(8).map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])).collect(),
            ),
            DType::Bool => Tensor::from_vec(shape, r.iter().map(|&b| b != 0).collect()),
        });
    }
    let check = |len: usize, field: &str| -> Result<()> {
        if len != n {
            return Err(Error::user(format!("{field} has {len} elements, shape {shape:?} needs {n}")));
        }
        Ok(())
    };
    Ok(match dtype {
        DType::F32 => {
            check(t.float_data.len(), "float_data")?;
            Tensor::from_vec(shape.clone(), t.float_data.clone())
        }
        DType::F64 => {
            check(t.double_data.len(), "double_data")?;
            Tensor::from_vec(shape.clone(), t.double_data.clone())
        }
        DType::I64 => {
            check(t.int64_data.len(), "int64_data")?;
            Tensor::from_vec(shape.clone(), t.int64_data.clone())
        }
        DType::I32 => {
            check(t.int32_data.len(), "int32_data")?;
            Tensor::from_vec(shape.clone(), t.int32_data.clone())
        }
        DType::I8 => {
            check(t.int32_data.len(), "int32_data")?;
            Tensor::from_vec(shape.clone(), t.int32_data.iter().map(|&x| x as i8).collect())
        }
        DType::U8 => {
            check(t.int32_data.len(), "int32_data")?;
            Tensor::from_vec(shape.clone(), t.int32_data.iter().map(|&x| x as u8).collect())
        }
        DType::Bool => {
            check(t.int32_data.len(), "int32_data")?;
            Tensor::from_vec(shape.clone(), t.int32_data.iter().map(|&x| x != 0).collect())
        }
        DType::I16 => {
            check(t.int32_data.len(), "int32_data")?;
            Tensor::from_vec(shape.clone(), t.int32_data.iter().map(|&x| x as i16).collect())
        }
        DType::U16 => {
            check(t.int32_data.len(), "int32_data")?;
            Tensor::from_vec(shape.clone(), t.int32_data.iter().map(|&x| x as u16).collect())
        }
        DType::U32 => {
            check(t.uint64_data.len(), "uint64_data")?;
            Tensor::from_vec(shape.clone(), t.uint64_data.iter().map(|&x| x as u32).collect())
        }
        DType::U64 => {
            check(t.uint64_data.len(), "uint64_data")?;
            Tensor::from_vec(shape.clone(), t.uint64_data.clone())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_checks_length() {
        assert!(Tensor::new(vec![2, 3], vec![0f32; 5]).is_err());
        let t = Tensor::new(vec![2, 3], vec![1f32; 6]).unwrap();
        assert_eq!(t.len(), 6);
        assert_eq!(t.dtype(), DType::F32);
        assert!(t.as_i64().is_err());
    }

    #[test]
    fn proto_raw_and_typed() {
        let mut p = TensorProto { dims: vec![2], data_type: Some(1), ..Default::default() };
        let mut raw = Vec::new();
        raw.extend_from_slice(&1.5f32.to_le_bytes());
        raw.extend_from_slice(&(-2.0f32).to_le_bytes());
        p.raw_data = Some(raw.into());
        assert_eq!(Tensor::from_proto(&p).unwrap().as_f32().unwrap(), &[1.5, -2.0]);
        let p = TensorProto { dims: vec![3], data_type: Some(7), int64_data: vec![1, -1, 5], ..Default::default() };
        assert_eq!(Tensor::from_proto(&p).unwrap().as_i64().unwrap(), &[1, -1, 5]);
        let p = TensorProto { dims: vec![2], data_type: Some(3), int32_data: vec![-3, 4], ..Default::default() };
        assert_eq!(Tensor::from_proto(&p).unwrap().as_slice::<i8>().unwrap(), &[-3, 4]);
        let bad = TensorProto { dims: vec![3], data_type: Some(1), float_data: vec![1.0], ..Default::default() };
        assert!(Tensor::from_proto(&bad).is_err());
        let bad = TensorProto { dims: vec![1], data_type: Some(8), ..Default::default() };
        assert!(Tensor::from_proto(&bad).is_err());
    }

    #[test]
    fn into_vec_reuses_unique_buffer() {
        let t = Tensor::new(vec![2], vec![1i64, 2]).unwrap();
        let t2 = t.clone();
        assert_eq!(t.into_vec::<i64>().unwrap(), vec![1, 2]);
        assert_eq!(t2.as_i64().unwrap(), &[1, 2]);
    }
}
