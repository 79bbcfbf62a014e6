//! Element-wise ops: numpy-broadcasting binary arithmetic and comparisons, variadic
//! Sum/Mean/Max/Min, unary activations, Clip, Cast and Where.

use crate::error::{Error, Result};

use super::super::tensor::{numel, pool, DType, Data, Elem, Tensor};
use super::{input, opt_input, take, Kernel, NodeCtx};

/// Numpy broadcast of two shapes.
pub(crate) fn broadcast_shapes(a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let r = a.len().max(b.len());
    let mut out = vec![0; r];
    for i in 0..r {
        let da = if i + a.len() >= r { a[i + a.len() - r] } else { 1 };
        let db = if i + b.len() >= r { b[i + b.len() - r] } else { 1 };
        out[i] = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return Err(Error::user(format!("shapes {a:?} and {b:?} cannot be broadcast together")));
        };
    }
    Ok(out)
}

/// Strides (in elements) of `shape` broadcast to `out` (0 along broadcast dimensions).
pub(crate) fn broadcast_strides(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let r = out.len();
    let mut st = vec![0; r];
    let mut acc = 1;
    for i in (0..shape.len()).rev() {
        let oi = i + r - shape.len();
        st[oi] = if shape[i] == 1 { 0 } else { acc };
        acc *= shape[i];
    }
    st
}

/// A broadcast iteration plan over collapsed dimensions: the last dimension is iterated
/// by the inner loops with strides `sa_in`/`sb_in` (each 0 or 1).
struct Bcast {
    dims: Vec<usize>,
    sa: Vec<usize>,
    sb: Vec<usize>,
}

impl Bcast {
    fn new(a: &[usize], b: &[usize], out: &[usize]) -> Bcast {
        let sa0 = broadcast_strides(a, out);
        let sb0 = broadcast_strides(b, out);
        let mut dims: Vec<usize> = Vec::new();
        let mut sa: Vec<usize> = Vec::new();
        let mut sb: Vec<usize> = Vec::new();
        for i in 0..out.len() {
            if out[i] == 1 {
                continue;
            }
            if let (Some(&ld), Some(&la), Some(&lb)) = (dims.last(), sa.last(), sb.last()) {
                if la == sa0[i] * out[i] && lb == sb0[i] * out[i] {
                    let n = dims.len();
                    dims[n - 1] = ld * out[i];
                    sa[n - 1] = sa0[i];
                    sb[n - 1] = sb0[i];
                    continue;
                }
            }
            dims.push(out[i]);
            sa.push(sa0[i]);
            sb.push(sb0[i]);
        }
        if dims.is_empty() {
            dims.push(1);
            sa.push(0);
            sb.push(0);
        }
        Bcast { dims, sa, sb }
    }

    /// Calls `f(out_offset, a_offset, b_offset, len, sa_inner, sb_inner)` for every inner row.
    fn rows(&self, mut f: impl FnMut(usize, usize, usize, usize, usize, usize)) {
        let r = self.dims.len();
        let inner = self.dims[r - 1];
        let (sai, sbi) = (self.sa[r - 1], self.sb[r - 1]);
        let outer: usize = self.dims[..r - 1].iter().product();
        let mut idx = vec![0usize; r.saturating_sub(1)];
        let (mut oa, mut ob) = (0usize, 0usize);
        for row in 0..outer {
            f(row * inner, oa, ob, inner, sai, sbi);
            // increment the multi-index
            let mut d = r - 1;
            while d > 0 {
                d -= 1;
                idx[d] += 1;
                oa += self.sa[d];
                ob += self.sb[d];
                if idx[d] < self.dims[d] {
                    break;
                }
                oa -= self.sa[d] * self.dims[d];
                ob -= self.sb[d] * self.dims[d];
                idx[d] = 0;
            }
        }
    }
}

#[inline(always)]
fn row_apply<A: Copy, B: Copy, O: Copy>(
    out: &mut [O],
    a: &[A],
    b: &[B],
    sa: usize,
    sb: usize,
    f: &impl Fn(A, B) -> O,
) {
    match (sa, sb) {
        (1, 1) => {
            for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
                *o = f(x, y);
            }
        }
        (1, 0) => {
            let y = b[0];
            for (o, &x) in out.iter_mut().zip(a) {
                *o = f(x, y);
            }
        }
        (0, 1) => {
            let x = a[0];
            for (o, &y) in out.iter_mut().zip(b) {
                *o = f(x, y);
            }
        }
        _ => {
            let v = f(a[0], b[0]);
            for o in out.iter_mut() {
                *o = v;
            }
        }
    }
}

/// `out = f(a, b)` with broadcasting, for any element types.
pub(crate) fn broadcast_map<A: Elem, B: Elem, O: Elem + Default>(
    a: &Tensor,
    b: &Tensor,
    f: impl Fn(A, B) -> O,
) -> Result<Tensor> {
    let out_shape = broadcast_shapes(a.shape(), b.shape())?;
    let n = numel(&out_shape);
    let av = a.as_slice::<A>()?;
    let bv = b.as_slice::<B>()?;
    let mut out = vec![O::default(); n];
    if n > 0 {
        let plan = Bcast::new(a.shape(), b.shape(), &out_shape);
        plan.rows(|o, ia, ib, len, sa, sb| {
            let a_end = if sa == 1 { ia + len } else { ia + 1 };
            let b_end = if sb == 1 { ib + len } else { ib + 1 };
            row_apply(&mut out[o..o + len], &av[ia..a_end], &bv[ib..b_end], sa, sb, &f);
        });
    }
    Ok(Tensor::from_vec(out_shape, out))
}

#[inline(always)]
fn zip_slice_impl<T: Copy, F: Fn(T, T) -> T>(dst: &mut [T], src: &[T], f: &F) {
    for (x, &y) in dst.iter_mut().zip(src) {
        *x = f(*x, y);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn zip_slice_avx2<T: Copy, F: Fn(T, T) -> T>(dst: &mut [T], src: &[T], f: &F) {
    zip_slice_impl(dst, src, f)
}

/// `dst[i] = f(dst[i], src[i])`, compiled for AVX2 when the CPU has it.
fn zip_slice<T: Copy, F: Fn(T, T) -> T>(dst: &mut [T], src: &[T], f: &F) {
    #[cfg(target_arch = "x86_64")]
    {
        if super::super::gemm::has_avx2_fma() {
            // SAFETY: the CPU supports AVX2 and FMA.
            return unsafe { zip_slice_avx2(dst, src, f) };
        }
    }
    zip_slice_impl(dst, src, f)
}

/// `f(a, b)` for same-typed arithmetic; writes into `a`'s or `b`'s buffer when it is
/// uniquely owned and already has the output shape.
pub(crate) fn arith<T: Elem + Default>(mut a: Tensor, mut b: Tensor, f: impl Fn(T, T) -> T) -> Result<Tensor> {
    let out_shape = broadcast_shapes(a.shape(), b.shape())?;
    if a.dtype() != T::DTYPE || b.dtype() != T::DTYPE {
        return Err(Error::user(format!("expected two {} inputs, got {} and {}", T::DTYPE, a.dtype(), b.dtype())));
    }
    let n = numel(&out_shape);
    if n > 0 && a.shape() == out_shape.as_slice() {
        let plan = Bcast::new(a.shape(), b.shape(), &out_shape);
        if let Some(buf) = a.unique_mut::<T>() {
            let bv = b.as_slice::<T>()?;
            plan.rows(|o, _ia, ib, len, _sa, sb| {
                let row = &mut buf[o..o + len];
                if sb == 1 {
                    zip_slice(row, &bv[ib..ib + len], &f);
                } else {
                    let y = bv[ib];
                    map_slice(row, &|x| f(x, y));
                }
            });
            pool::recycle(b);
            return Ok(a);
        }
    }
    if n > 0 && b.shape() == out_shape.as_slice() {
        let plan = Bcast::new(a.shape(), b.shape(), &out_shape);
        if let Some(buf) = b.unique_mut::<T>() {
            let av = a.as_slice::<T>()?;
            plan.rows(|o, ia, _ib, len, sa, _sb| {
                let row = &mut buf[o..o + len];
                if sa == 1 {
                    for (y, &x) in row.iter_mut().zip(&av[ia..ia + len]) {
                        *y = f(x, *y);
                    }
                } else {
                    let x = av[ia];
                    for y in row.iter_mut() {
                        *y = f(x, *y);
                    }
                }
            });
            pool::recycle(a);
            return Ok(b);
        }
    }
    let out = broadcast_map::<T, T, T>(&a, &b, f);
    pool::recycle(a);
    pool::recycle(b);
    out
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    Max,
    Min,
    Equal,
    Less,
    Greater,
    LessOrEqual,
    GreaterOrEqual,
    And,
    Or,
    /// fmod = 1: the remainder has the dividend's sign (C fmod); 0: the divisor's (Python).
    Mod(bool),
    PRelu,
}

struct BinaryKernel {
    op: BinOp,
    /// Variadic mean: divide by the input count at the end.
    mean: bool,
}

pub(crate) fn build_binary(cx: &NodeCtx) -> Result<Box<dyn Kernel>> {
    let op_type = cx.node.op_type.as_str();
    let (op, variadic, mean) = match op_type {
        "Add" => (BinOp::Add, false, false),
        "Sub" => (BinOp::Sub, false, false),
        "Mul" => (BinOp::Mul, false, false),
        "Div" => (BinOp::Div, false, false),
        "Pow" => (BinOp::Pow, false, false),
        "Equal" => (BinOp::Equal, false, false),
        "Less" => (BinOp::Less, false, false),
        "Greater" => (BinOp::Greater, false, false),
        "LessOrEqual" => (BinOp::LessOrEqual, false, false),
        "GreaterOrEqual" => (BinOp::GreaterOrEqual, false, false),
        "And" => (BinOp::And, false, false),
        "Or" => (BinOp::Or, false, false),
        "Max" => (BinOp::Max, true, false),
        "Min" => (BinOp::Min, true, false),
        "Sum" => (BinOp::Add, true, false),
        "Mean" => (BinOp::Add, true, true),
        "Mod" => {
            let f = cx.attrs().int("fmod", 0)?;
            if !matches!(f, 0 | 1) {
                return Err(Error::user(format!("Mod attribute 'fmod' must be 0 or 1, got {f}")));
            }
            (BinOp::Mod(f == 1), false, false)
        }
        "PRelu" => (BinOp::PRelu, false, false),
        _ => return Err(Error::internal(format!("build_binary called for {op_type}"))),
    };
    if variadic {
        cx.require_inputs(1, usize::MAX)?;
        for i in 0..cx.node.inputs.len() {
            if !cx.has_input(i) {
                return Err(Error::user(format!("input {i} is required")));
            }
        }
    } else {
        cx.require_inputs(2, 2)?;
        if cx.opset < 7 && cx.attrs().int("broadcast", 0)? != 0 && cx.attrs().has("axis") {
            return Err(Error::user("legacy (opset < 7) broadcast with 'axis' is not supported"));
        }
    }
    Ok(Box::new(BinaryKernel { op, mean }))
}

fn apply_binary(op: BinOp, a: Tensor, b: Tensor) -> Result<Tensor> {
    use BinOp::*;
    let dt = a.dtype();
    if op == Pow {
        let float = |d: DType| matches!(d, DType::F32 | DType::F64);
        if !float(dt) && float(b.dtype()) {
            // integer base, float exponent: computed in f64, truncated to the base's type
            let y = apply_binary(Pow, cast(&a, DType::F64)?, cast(&b, DType::F64)?)?;
            return cast(&y, dt);
        }
        // exponent may be of another numeric type
        let bf = if b.dtype() == dt { b } else { cast(&b, dt)? };
        return match dt {
            DType::F32 => arith::<f32>(a, bf, |x, y| x.powf(y)),
            DType::F64 => arith::<f64>(a, bf, |x, y| x.powf(y)),
            DType::I64 => arith::<i64>(a, bf, |x, y| if y < 0 { 0 } else { x.wrapping_pow(y.min(u32::MAX as i64) as u32) }),
            DType::I32 => arith::<i32>(a, bf, |x, y| if y < 0 { 0 } else { x.wrapping_pow(y as u32) }),
            _ => Err(Error::user(format!("Pow does not support {dt}"))),
        };
    }
    if b.dtype() != dt {
        return Err(Error::user(format!("input types differ: {} and {}", dt, b.dtype())));
    }
    // integer Add/Sub/Mul wrap in two's complement, as numpy and onnxruntime do ($wrap)
    macro_rules! num {
        ($t:ty, $div:expr, $mod:expr) => {
            num!($t, $div, $mod, |x: $t, y: $t| x + y, |x: $t, y: $t| x - y, |x: $t, y: $t| x * y)
        };
        ($t:ty, $div:expr, $mod:expr, wrap) => {
            num!($t, $div, $mod, |x: $t, y: $t| x.wrapping_add(y), |x: $t, y: $t| x.wrapping_sub(y), |x: $t, y: $t| x.wrapping_mul(y))
        };
        ($t:ty, $div:expr, $mod:expr, $add:expr, $sub:expr, $mul:expr) => {
            match op {
                Add => arith::<$t>(a, b, $add),
                Sub => arith::<$t>(a, b, $sub),
                Mul => arith::<$t>(a, b, $mul),
                Div => $div,
                Max => arith::<$t>(a, b, |x, y| if x >= y || x != x { x } else { y }),
                Min => arith::<$t>(a, b, |x, y| if x <= y || x != x { x } else { y }),
                Equal => broadcast_map::<$t, $t, bool>(&a, &b, |x, y| x == y),
                Less => broadcast_map::<$t, $t, bool>(&a, &b, |x, y| x < y),
                Greater => broadcast_map::<$t, $t, bool>(&a, &b, |x, y| x > y),
                LessOrEqual => broadcast_map::<$t, $t, bool>(&a, &b, |x, y| x <= y),
                GreaterOrEqual => broadcast_map::<$t, $t, bool>(&a, &b, |x, y| x >= y),
                And | Or => Err(Error::user(format!("{op:?} needs bool inputs, got {dt}"))),
                Mod(fmod) => $mod(fmod),
                PRelu => arith::<$t>(a, b, move |x, y| if x < <$t>::default() { ($mul)(x, y) } else { x }),
                Pow => unreachable!("handled above"),
            }
        };
    }
    macro_rules! int_div {
        ($t:ty) => {{
            if b.as_slice::<$t>()?.iter().any(|&y| y == 0) {
                return Err(Error::user("integer division by zero"));
            }
            arith::<$t>(a, b, |x, y| x.wrapping_div(y))
        }};
    }
    macro_rules! float_mod {
        ($t:ty) => {
            |fmod: bool| {
                if !fmod {
                    return Err(Error::user("Mod attribute 'fmod' must be 1 for float inputs"));
                }
                arith::<$t>(a, b, |x, y| x % y)
            }
        };
    }
    macro_rules! int_mod {
        ($t:ty) => {
            |fmod: bool| {
                if b.as_slice::<$t>()?.iter().any(|&y| y == 0) {
                    return Err(Error::user("integer modulo by zero"));
                }
                if fmod {
                    arith::<$t>(a, b, |x, y| x.wrapping_rem(y))
                } else {
                    let z = <$t>::default();
                    arith::<$t>(a, b, move |x, y| {
                        let r = x.wrapping_rem(y);
                        if r != z && ((r < z) != (y < z)) {
                            r.wrapping_add(y)
                        } else {
                            r
                        }
                    })
                }
            }
        };
    }
    match dt {
        DType::F32 => num!(f32, arith::<f32>(a, b, |x, y| x / y), float_mod!(f32)),
        DType::F64 => num!(f64, arith::<f64>(a, b, |x, y| x / y), float_mod!(f64)),
        DType::I64 => num!(i64, int_div!(i64), int_mod!(i64), wrap),
        DType::I32 => num!(i32, int_div!(i32), int_mod!(i32), wrap),
        DType::I8 => num!(i8, int_div!(i8), int_mod!(i8), wrap),
        DType::U8 => num!(u8, int_div!(u8), int_mod!(u8), wrap),
        DType::I16 => num!(i16, int_div!(i16), int_mod!(i16), wrap),
        DType::U16 => num!(u16, int_div!(u16), int_mod!(u16), wrap),
        DType::U32 => num!(u32, int_div!(u32), int_mod!(u32), wrap),
        DType::U64 => num!(u64, int_div!(u64), int_mod!(u64), wrap),
        DType::Bool => match op {
            And => broadcast_map::<bool, bool, bool>(&a, &b, |x, y| x && y),
            Or => broadcast_map::<bool, bool, bool>(&a, &b, |x, y| x || y),
            Equal => broadcast_map::<bool, bool, bool>(&a, &b, |x, y| x == y),
            _ => Err(Error::user(format!("{op:?} does not support bool"))),
        },
    }
}

impl Kernel for BinaryKernel {
    fn run(&self, inputs: &mut [Option<Tensor>]) -> Result<Vec<Tensor>> {
        let n = inputs.len();
        let mut acc = take(inputs, 0)?;
        for i in 1..n {
            let b = take(inputs, i)?;
            acc = apply_binary(self.op, acc, b)?;
        }
        if self.mean && n > 1 {
            acc = match acc.dtype() {
                DType::F32 => arith::<f32>(acc, Tensor::scalar(n as f32), |x, y| x / y)?,
                DType::F64 => arith::<f64>(acc, Tensor::scalar(n as f64), |x, y| x / y)?,
                dt => return Err(Error::user(format!("Mean does not support {dt}"))),
            };
        }
        Ok(vec![acc])
    }
}

// ---------------------------------------------------------------------------------------
// Unary

#[derive(Clone, Copy, Debug)]
enum UnOp {
    Relu,
    Sigmoid,
    Tanh,
    Exp,
    Log,
    Sqrt,
    Neg,
    Abs,
    Reciprocal,
    Floor,
    Ceil,
    LeakyRelu(f32),
    HardSigmoid(f32, f32),
    HardSwish,
    Not,
    Erf,
    Elu(f32),
    Softplus,
    Sin,
    Cos,
    Tan,
    Sign,
    Round,
    Softsign,
    /// approximate = "tanh"
    Gelu(bool),
    /// alpha, gamma
    Selu(f32, f32),
    /// lambd, bias
    Shrink(f32, f32),
}

struct UnaryKernel {
    op: UnOp,
}

pub(crate) fn build_unary(cx: &NodeCtx) -> Result<Box<dyn Kernel>> {
    cx.require_inputs(1, 1)?;
    let a = cx.attrs();
    let op = match cx.node.op_type.as_str() {
        "Relu" => UnOp::Relu,
        "Sigmoid" => UnOp::Sigmoid,
        "Tanh" => UnOp::Tanh,
        "Exp" => UnOp::Exp,
        "Log" => UnOp::Log,
        "Sqrt" => UnOp::Sqrt,
        "Neg" => UnOp::Neg,
        "Abs" => UnOp::Abs,
        "Reciprocal" => UnOp::Reciprocal,
        "Floor" => UnOp::Floor,
        "Ceil" => UnOp::Ceil,
        "LeakyRelu" => UnOp::LeakyRelu(a.float("alpha", 0.01)?),
        "HardSigmoid" => UnOp::HardSigmoid(a.float("alpha", 0.2)?, a.float("beta", 0.5)?),
        "HardSwish" => UnOp::HardSwish,
        "Not" => UnOp::Not,
        "Erf" => UnOp::Erf,
        "Elu" => UnOp::Elu(a.float("alpha", 1.0)?),
        "Softplus" => UnOp::Softplus,
        "Sin" => UnOp::Sin,
        "Cos" => UnOp::Cos,
        "Tan" => UnOp::Tan,
        "Sign" => UnOp::Sign,
        "Round" => UnOp::Round,
        "Softsign" => UnOp::Softsign,
        "Gelu" => match a.string("approximate", "none")?.as_str() {
            "none" => UnOp::Gelu(false),
            "tanh" => UnOp::Gelu(true),
            other => {
                return Err(Error::user(format!("Gelu attribute 'approximate' = '{other}' is not supported (none, tanh are)")))
            }
        },
        "Selu" => UnOp::Selu(a.float("alpha", 1.673_263_2)?, a.float("gamma", 1.050_701)?),
        "Shrink" => UnOp::Shrink(a.float("lambd", 0.5)?, a.float("bias", 0.0)?),
        other => return Err(Error::internal(format!("build_unary called for {other}"))),
    };
    Ok(Box::new(UnaryKernel { op }))
}

#[inline(always)]
fn map_slice_impl<T: Copy, F: Fn(T) -> T>(buf: &mut [T], f: &F) {
    for x in buf.iter_mut() {
        *x = f(*x);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn map_slice_avx2<T: Copy, F: Fn(T) -> T>(buf: &mut [T], f: &F) {
    map_slice_impl(buf, f)
}

/// `x = f(x)` over a slice, compiled for AVX2 when the CPU has it.
pub(crate) fn map_slice<T: Copy, F: Fn(T) -> T>(buf: &mut [T], f: &F) {
    #[cfg(target_arch = "x86_64")]
    {
        if super::super::gemm::has_avx2_fma() {
            // SAFETY: the CPU supports AVX2 and FMA.
            return unsafe { map_slice_avx2(buf, f) };
        }
    }
    map_slice_impl(buf, f)
}

/// Applies `f` element-wise, in place when the buffer is uniquely owned.
pub(crate) fn map_inplace<T: Elem + Default>(mut t: Tensor, f: impl Fn(T) -> T) -> Result<Tensor> {
    if let Some(buf) = t.unique_mut::<T>() {
        map_slice(buf, &f);
        return Ok(t);
    }
    let v: Vec<T> = t.as_slice::<T>()?.iter().map(|&x| f(x)).collect();
    Ok(Tensor::from_vec(t.shape().to_vec(), v))
}

/// erf(x) with max error about 1.2e-7 (Numerical Recipes' erfc Chebyshev fit), in f64.
fn erf64(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t * (-z * z - 1.26551223
        + t * (1.00002368
            + t * (0.37409196
                + t * (0.09678418
                    + t * (-0.18628806
                        + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))))
        .exp();
    if x >= 0.0 {
        1.0 - r
    } else {
        r - 1.0
    }
}

/// Applies a float unary op, monomorphized per op so each loop vectorizes.
macro_rules! float_unary {
    ($t:ty, $x:expr, $op:expr) => {
        match $op {
            UnOp::Relu => map_inplace::<$t>($x, |v| if v < 0.0 { 0.0 } else { v }),
            UnOp::Sigmoid => map_inplace::<$t>($x, |v| {
                if v >= 0.0 {
                    1.0 / (1.0 + (-v).exp())
                } else {
                    let e = v.exp();
                    e / (1.0 + e)
                }
            }),
            UnOp::Tanh => map_inplace::<$t>($x, |v| v.tanh()),
            UnOp::Exp => map_inplace::<$t>($x, |v| v.exp()),
            UnOp::Log => map_inplace::<$t>($x, |v| v.ln()),
            UnOp::Sqrt => map_inplace::<$t>($x, |v| v.sqrt()),
            UnOp::Neg => map_inplace::<$t>($x, |v| -v),
            UnOp::Abs => map_inplace::<$t>($x, |v| v.abs()),
            UnOp::Reciprocal => map_inplace::<$t>($x, |v| 1.0 / v),
            UnOp::Floor => map_inplace::<$t>($x, |v| v.floor()),
            UnOp::Ceil => map_inplace::<$t>($x, |v| v.ceil()),
            UnOp::LeakyRelu(alpha) => {
                let alpha = alpha as $t;
                map_inplace::<$t>($x, move |v| if v >= 0.0 { v } else { v * alpha })
            }
            UnOp::HardSigmoid(alpha, beta) => {
                let (alpha, beta) = (alpha as $t, beta as $t);
                map_inplace::<$t>($x, move |v| (v * alpha + beta).clamp(0.0, 1.0))
            }
            UnOp::HardSwish => map_inplace::<$t>($x, |v| v * (v / 6.0 + 0.5).clamp(0.0, 1.0)),
            UnOp::Erf => map_inplace::<$t>($x, |v| erf64(v as f64) as $t),
            UnOp::Elu(alpha) => {
                let alpha = alpha as $t;
                map_inplace::<$t>($x, move |v| if v >= 0.0 { v } else { alpha * (v.exp() - 1.0) })
            }
            UnOp::Softplus => map_inplace::<$t>($x, |v| if v > 20.0 { v } else { v.exp().ln_1p() }),
            UnOp::Sin => map_inplace::<$t>($x, |v| v.sin()),
            UnOp::Cos => map_inplace::<$t>($x, |v| v.cos()),
            UnOp::Tan => map_inplace::<$t>($x, |v| v.tan()),
            UnOp::Sign => map_inplace::<$t>($x, |v| if v > 0.0 { 1.0 } else if v < 0.0 { -1.0 } else { v }),
            UnOp::Round => map_inplace::<$t>($x, |v| v.round_ties_even()),
            UnOp::Softsign => map_inplace::<$t>($x, |v| v / (1.0 + v.abs())),
            UnOp::Gelu(false) => map_inplace::<$t>($x, |v| {
                let w = v as f64;
                (0.5 * w * (1.0 + erf64(w * std::f64::consts::FRAC_1_SQRT_2))) as $t
            }),
            UnOp::Gelu(true) => map_inplace::<$t>($x, |v| {
                let w = v as f64;
                let k = (2.0 / std::f64::consts::PI).sqrt();
                (0.5 * w * (1.0 + (k * (w + 0.044715 * w * w * w)).tanh())) as $t
            }),
            UnOp::Selu(alpha, gamma) => {
                let (alpha, gamma) = (alpha as $t, gamma as $t);
                map_inplace::<$t>($x, move |v| if v > 0.0 { gamma * v } else { gamma * (alpha * v.exp() - alpha) })
            }
            UnOp::Shrink(lambd, bias) => {
                let (lambd, bias) = (lambd as $t, bias as $t);
                map_inplace::<$t>($x, move |v| if v < -lambd { v + bias } else if v > lambd { v - bias } else { 0.0 })
            }
            UnOp::Not => Err(Error::user("Not needs a bool input")),
        }
    };
}

impl Kernel for UnaryKernel {
    fn run(&self, inputs: &mut [Option<Tensor>]) -> Result<Vec<Tensor>> {
        let x = take(inputs, 0)?;
        let op = self.op;
        let out = match (x.dtype(), op) {
            (DType::Bool, UnOp::Not) => map_inplace::<bool>(x, |v| !v)?,
            (_, UnOp::Not) => return Err(Error::user(format!("Not needs a bool input, got {}", x.dtype()))),
            (DType::F32, _) => float_unary!(f32, x, op)?,
            (DType::F64, _) => float_unary!(f64, x, op)?,
            (DType::I64, UnOp::Relu) => map_inplace::<i64>(x, |v| v.max(0))?,
            (DType::I64, UnOp::Neg) => map_inplace::<i64>(x, |v| v.wrapping_neg())?,
            (DType::I64, UnOp::Abs) => map_inplace::<i64>(x, |v| v.wrapping_abs())?,
            (DType::I32, UnOp::Relu) => map_inplace::<i32>(x, |v| v.max(0))?,
            (DType::I32, UnOp::Neg) => map_inplace::<i32>(x, |v| v.wrapping_neg())?,
            (DType::I32, UnOp::Abs) => map_inplace::<i32>(x, |v| v.wrapping_abs())?,
            (dt, op) => return Err(Error::user(format!("{op:?} does not support {dt}"))),
        };
        Ok(vec![out])
    }
}

// ---------------------------------------------------------------------------------------
// Clip

struct ClipKernel {
    /// Attribute bounds (opset < 11).
    min: Option<f32>,
    max: Option<f32>,
}

pub(crate) fn build_clip(cx: &NodeCtx) -> Result<Box<dyn Kernel>> {
    cx.require_inputs(1, 3)?;
    let a = cx.attrs();
    let min = if a.has("min") { Some(a.float("min", f32::MIN)?) } else { None };
    let max = if a.has("max") { Some(a.float("max", f32::MAX)?) } else { None };
    Ok(Box::new(ClipKernel { min, max }))
}

fn scalar_bound(t: Option<&Tensor>, what: &str) -> Result<Option<f64>> {
    match t {
        None => Ok(None),
        Some(t) => {
            if t.len() != 1 {
                return Err(Error::user(format!("Clip {what} must be a scalar, got shape {:?}", t.shape())));
            }
            Ok(Some(t.to_f64_vec()[0]))
        }
    }
}

impl Kernel for ClipKernel {
    fn run(&self, inputs: &mut [Option<Tensor>]) -> Result<Vec<Tensor>> {
        let lo = scalar_bound(opt_input(inputs, 1), "min")?.or(self.min.map(|v| v as f64));
        let hi = scalar_bound(opt_input(inputs, 2), "max")?.or(self.max.map(|v| v as f64));
        let x = take(inputs, 0)?;
        let out = match x.dtype() {
            DType::F32 => {
                let lo = lo.map(|v| v as f32).unwrap_or(f32::NEG_INFINITY);
                let hi = hi.map(|v| v as f32).unwrap_or(f32::INFINITY);
                map_inplace::<f32>(x, move |v| v.max(lo).min(hi))?
            }
            DType::F64 => {
                let lo = lo.unwrap_or(f64::NEG_INFINITY);
                let hi = hi.unwrap_or(f64::INFINITY);
                map_inplace::<f64>(x, move |v| v.max(lo).min(hi))?
            }
            DType::I64 => {
                let lo = lo.map(|v| v as i64).unwrap_or(i64::MIN);
                let hi = hi.map(|v| v as i64).unwrap_or(i64::MAX);
                map_inplace::<i64>(x, move |v| v.max(lo).min(hi))?
            }
            DType::I32 => {
                let lo = lo.map(|v| v as i32).unwrap_or(i32::MIN);
                let hi = hi.map(|v| v as i32).unwrap_or(i32::MAX);
                map_inplace::<i32>(x, move |v| v.max(lo).min(hi))?
            }
            dt => return Err(Error::user(format!("Clip does not support {dt}"))),
        };
        Ok(vec![out])
    }
}

// ---------------------------------------------------------------------------------------
// Cast

struct CastKernel {
    to: DType,
}

pub(crate) fn build_cast(cx: &NodeCtx) -> Result<Box<dyn Kernel>> {
    cx.require_inputs(1, 1)?;
    let a = cx.attrs();
    if !a.has("to") {
        return Err(Error::user("attribute 'to' is required"));
    }
    let to = DType::from_onnx(a.int("to", 0)? as i32)?;
    Ok(Box::new(CastKernel { to }))
}

/// Converts a tensor to another element type (float to int truncates toward zero and
/// saturates; to bool is `x != 0`).
pub(crate) fn cast(t: &Tensor, to: DType) -> Result<Tensor> {
    if t.dtype() == to {
        return Ok(t.clone());
    }
    let shape = t.shape().to_vec();
    macro_rules! conv_from {
        ($src:expr) => {{
            let s = $src;
            match to {
                DType::F32 => Tensor::from_vec(shape, s.iter().map(|&x| x as f32).collect::<Vec<f32>>()),
                DType::F64 => Tensor::from_vec(shape, s.iter().map(|&x| x as f64).collect::<Vec<f64>>()),
                DType::I64 => Tensor::from_vec(shape, s.iter().map(|&x| x as i64).collect::<Vec<i64>>()),
                DType::I32 => Tensor::from_vec(shape, s.iter().map(|&x| x as i32).collect::<Vec<i32>>()),
                DType::I8 => Tensor::from_vec(shape, s.iter().map(|&x| x as i8).collect::<Vec<i8>>()),
                DType::U8 => Tensor::from_vec(shape, s.iter().map(|&x| x as u8).collect::<Vec<u8>>()),
                DType::I16 => Tensor::from_vec(shape, s.iter().map(|&x| x as i16).collect::<Vec<i16>>()),
                DType::U16 => Tensor::from_vec(shape, s.iter().map(|&x| x as u16).collect::<Vec<u16>>()),
                DType::U32 => Tensor::from_vec(shape, s.iter().map(|&x| x as u32).collect::<Vec<u32>>()),
                DType::U64 => Tensor::from_vec(shape, s.iter().map(|&x| x as u64).collect::<Vec<u64>>()),
                DType::Bool => Tensor::from_vec(shape, s.iter().map(|&x| (x as f64) != 0.0).collect::<Vec<bool>>()),
            }
        }};
    }
    Ok(match t.data() {
        Data::F32(v) => conv_from!(v.as_slice()),
        Data::F64(v) => conv_from!(v.as_slice()),
        Data::I64(v) => conv_from!(v.as_slice()),
        Data::I32(v) => conv_from!(v.as_slice()),
        Data::I8(v) => conv_from!(v.as_slice()),
        Data::U8(v) => conv_from!(v.as_slice()),
        Data::I16(v) => conv_from!(v.as_slice()),
        Data::U16(v) => conv_from!(v.as_slice()),
        Data::U32(v) => conv_from!(v.as_slice()),
        Data::U64(v) => conv_from!(v.as_slice()),
        Data::Bool(v) => {
            let u: Vec<u8> = v.iter().map(|&b| b as u8).collect();
            conv_from!(u.as_slice())
        }
    })
}

impl Kernel for CastKernel {
    fn run(&self, inputs: &mut [Option<Tensor>]) -> Result<Vec<Tensor>> {
        Ok(vec![cast(input(inputs, 0)?, self.to)?])
    }
}

// ---------------------------------------------------------------------------------------
// Where

struct WhereKernel;

pub(crate) fn build_where(cx: &NodeCtx) -> Result<Box<dyn Kernel>> {
    cx.require_inputs(3, 3)?;
    Ok(Box::new(WhereKernel))
}

fn where_typed<T: Elem + Default>(c: &Tensor, x: &Tensor, y: &Tensor) -> Result<Tensor> {
    let s1 = broadcast_shapes(c.shape(), x.shape())?;
    let out_shape = broadcast_shapes(&s1, y.shape())?;
    let n = numel(&out_shape);
    let (sc, sx, sy) =
        (broadcast_strides(c.shape(), &out_shape), broadcast_strides(x.shape(), &out_shape), broadcast_strides(y.shape(), &out_shape));
    let (cv, xv, yv) = (c.as_slice::<bool>()?, x.as_slice::<T>()?, y.as_slice::<T>()?);
    let mut out = Vec::with_capacity(n);
    let r = out_shape.len();
    let mut idx = vec![0usize; r];
    for _ in 0..n {
        let (mut ic, mut ix, mut iy) = (0, 0, 0);
        for d in 0..r {
            ic += idx[d] * sc[d];
            ix += idx[d] * sx[d];
            iy += idx[d] * sy[d];
        }
        out.push(if cv[ic] { xv[ix] } else { yv[iy] });
        for d in (0..r).rev() {
            idx[d] += 1;
            if idx[d] < out_shape[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    Ok(Tensor::from_vec(out_shape, out))
}

impl Kernel for WhereKernel {
    fn run(&self, inputs: &mut [Option<Tensor>]) -> Result<Vec<Tensor>> {
        let (c, x, y) = (input(inputs, 0)?, input(inputs, 1)?, input(inputs, 2)?);
        if x.dtype() != y.dtype() {
            return Err(Error::user(format!("Where branches differ in type: {} and {}", x.dtype(), y.dtype())));
        }
        let out = with_dtype!(x.dtype(), T, where_typed::<T>(c, x, y))?;
        Ok(vec![out])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(shape: &[usize], v: &[f32]) -> Tensor {
        Tensor::new(shape.to_vec(), v.to_vec()).unwrap()
    }

    #[test]
    fn broadcast_add_and_inplace() {
        let a = t(&[2, 3], &[1., 2., 3., 4., 5., 6.]);
        let b = t(&[3], &[10., 20., 30.]);
        let c = apply_binary(BinOp::Add, a.clone(), b.clone()).unwrap();
        assert_eq!(c.shape(), &[2, 3]);
        assert_eq!(c.as_f32().unwrap(), &[11., 22., 33., 14., 25., 36.]);
        // b broadcast on the left, a column vector
        let col = t(&[2, 1], &[1., 2.]);
        let d = apply_binary(BinOp::Sub, col, b).unwrap();
        assert_eq!(d.shape(), &[2, 3]);
        assert_eq!(d.as_f32().unwrap(), &[-9., -19., -29., -8., -18., -28.]);
        // a still intact after a non-unique add
        assert_eq!(a.as_f32().unwrap()[0], 1.);
        let e = apply_binary(BinOp::Div, t(&[1], &[1.]), t(&[2, 1, 2], &[1., 2., 4., 8.])).unwrap();
        assert_eq!(e.shape(), &[2, 1, 2]);
        assert_eq!(e.as_f32().unwrap(), &[1., 0.5, 0.25, 0.125]);
        assert!(apply_binary(BinOp::Add, t(&[2], &[1., 2.]), t(&[3], &[1., 2., 3.])).is_err());
    }

    #[test]
    fn middle_broadcast() {
        // [2,3,2] * [3,1]
        let a = t(&[2, 3, 2], &(0..12).map(|x| x as f32).collect::<Vec<_>>());
        let b = t(&[3, 1], &[1., 10., 100.]);
        let c = apply_binary(BinOp::Mul, a, b).unwrap();
        assert_eq!(c.as_f32().unwrap(), &[0., 1., 20., 30., 400., 500., 6., 7., 80., 90., 1000., 1100.]);
    }

    #[test]
    fn int_ops() {
        let a = Tensor::new(vec![3], vec![7i64, -7, 9]).unwrap();
        let b = Tensor::scalar(2i64);
        assert_eq!(apply_binary(BinOp::Div, a.clone(), b.clone()).unwrap().as_i64().unwrap(), &[3, -3, 4]);
        assert_eq!(apply_binary(BinOp::Mul, a.clone(), b).unwrap().as_i64().unwrap(), &[14, -14, 18]);
        assert!(apply_binary(BinOp::Div, a.clone(), Tensor::scalar(0i64)).is_err());
        let eq = apply_binary(BinOp::Equal, a, Tensor::scalar(9i64)).unwrap();
        assert_eq!(eq.as_slice::<bool>().unwrap(), &[false, false, true]);
    }

    #[test]
    fn cast_rules() {
        let x = t(&[4], &[1.7, -1.7, 0.0, 300.0]);
        assert_eq!(cast(&x, DType::I64).unwrap().as_i64().unwrap(), &[1, -1, 0, 300]);
        assert_eq!(cast(&x, DType::Bool).unwrap().as_slice::<bool>().unwrap(), &[true, true, false, true]);
        let b = Tensor::new(vec![2], vec![true, false]).unwrap();
        assert_eq!(cast(&b, DType::F32).unwrap().as_f32().unwrap(), &[1.0, 0.0]);
    }

    #[test]
    fn int_and_bool_casts_and_mod() {
        // token ids -> attention mask -> additive float mask, and back
        let ids = Tensor::new(vec![4], vec![101i64, 0, 7, -3]).unwrap();
        let mask = cast(&ids, DType::Bool).unwrap();
        assert_eq!(mask.as_slice::<bool>().unwrap(), &[true, false, true, true]);
        assert_eq!(cast(&mask, DType::I64).unwrap().as_i64().unwrap(), &[1, 0, 1, 1]);
        assert_eq!(cast(&mask, DType::F32).unwrap().as_f32().unwrap(), &[1., 0., 1., 1.]);
        assert_eq!(cast(&ids, DType::I32).unwrap().as_slice::<i32>().unwrap(), &[101, 0, 7, -3]);
        // Mod: fmod 0 takes the divisor's sign, fmod 1 the dividend's
        let a = Tensor::new(vec![4], vec![-7i64, 7, -7, 7]).unwrap();
        let b = Tensor::new(vec![4], vec![3i64, -3, -3, 3]).unwrap();
        assert_eq!(apply_binary(BinOp::Mod(false), a.clone(), b.clone()).unwrap().as_i64().unwrap(), &[2, -2, -1, 1]);
        assert_eq!(apply_binary(BinOp::Mod(true), a.clone(), b).unwrap().as_i64().unwrap(), &[-1, 1, -1, 1]);
        assert!(apply_binary(BinOp::Mod(false), a, Tensor::scalar(0i64)).is_err());
        assert!(apply_binary(BinOp::Mod(false), t(&[1], &[1.]), t(&[1], &[2.])).is_err());
        // PRelu with a per-channel slope
        let y = apply_binary(BinOp::PRelu, t(&[2, 2], &[-1., 1., -2., 2.]), t(&[2], &[0.5, 3.])).unwrap();
        assert_eq!(y.as_f32().unwrap(), &[-0.5, 1., -1., 2.]);
    }

    #[test]
    fn integer_arithmetic_wraps_like_numpy() {
        let i = |v: &[i64]| Tensor::from_vec(vec![v.len()], v.to_vec());
        let run = |op, a: &[i64], b: &[i64]| apply_binary(op, i(a), i(b)).unwrap().as_i64().unwrap().to_vec();
        assert_eq!(run(BinOp::Add, &[i64::MAX, 1], &[1, 2]), [i64::MIN, 3]);
        assert_eq!(run(BinOp::Sub, &[i64::MIN, 5], &[1, 2]), [i64::MAX, 3]);
        assert_eq!(run(BinOp::Mul, &[i64::MAX, -3], &[2, 2]), [-2, -6]);
        assert_eq!(run(BinOp::PRelu, &[i64::MIN, 4], &[2, 2]), [0, 4]);
    }

    #[test]
    fn erf_accuracy() {
        for (x, e) in [(0.0, 0.0), (0.5, 0.520_499_877_8), (1.0, 0.842_700_792_9), (-2.0, -0.995_322_265_0)] {
            assert!((erf64(x) - e).abs() < 2e-7, "{x}");
        }
    }
}
