//! Rust side of the C ABI in shim/trt_shim.h (only with `--features tensorrt`): replays a
//! [`Network`] and [`BuildConfig`] as the flat call sequence the shim expects.

use std::ffi::{c_char, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::buildlog::{LogLine, Severity, SparsityReport};
use super::config::{BuildConfig, TrtVersion, MEMORY_POOL_WORKSPACE};
use super::engine::EngineBuild;
use super::network::{LayerKind, Network, Weights};
use crate::error::{Error, Result};

/// `createInferBuilder_INTERNAL(void* logger, int32_t version)`.
pub type CreateBuilderFn = unsafe extern "C" fn(logger: *mut c_void, version: i32) -> *mut c_void;
type LogFn = extern "C" fn(user: *mut c_void, severity: i32, msg: *const c_char);

#[repr(C)]
#[derive(Clone, Copy)]
struct SqcWeights {
    dtype: i32,
    values: *const c_void,
    count: i64,
}

#[repr(C)]
struct SqcBuild {
    _private: [u8; 0],
}

const ATTR_STRIDE: i32 = 1;
const ATTR_PRE_PADDING: i32 = 2;
const ATTR_POST_PADDING: i32 = 3;
const ATTR_DILATION: i32 = 4;
const ATTR_NB_GROUPS: i32 = 5;
const ATTR_AXIS: i32 = 6;
const ATTR_ALPHA: i32 = 7;
const ATTR_BETA: i32 = 8;
const ATTR_AVG_EXCLUDES_PADDING: i32 = 9;
const ATTR_FIRST_TRANSPOSE: i32 = 10;
const ATTR_RESHAPE: i32 = 11;
const ATTR_SECOND_TRANSPOSE: i32 = 12;
const ATTR_ZERO_IS_PLACEHOLDER: i32 = 13;
const ATTR_SOFTMAX_AXES: i32 = 14;
const ATTR_SLICE_MODE: i32 = 15;
const ATTR_SLICE_AXES: i32 = 16;

/// Must equal SQC_SHIM_ABI_VERSION in shim/trt_shim.h.
const SHIM_ABI_VERSION: i32 = 1;

extern "C" {
    fn sqc_shim_abi_version() -> i32;
    fn sqc_header_version() -> i32;
    fn sqc_new(log: LogFn, user: *mut c_void) -> *mut SqcBuild;
    fn sqc_free(ctx: *mut SqcBuild);
    fn sqc_error(ctx: *const SqcBuild) -> *const c_char;
    fn sqc_create_builder(ctx: *mut SqcBuild, entry: CreateBuilderFn) -> i32;
    fn sqc_create_network(ctx: *mut SqcBuild, flags: u32) -> i32;
    fn sqc_set_network_name(ctx: *mut SqcBuild, name: *const c_char) -> i32;
    fn sqc_add_input(
        ctx: *mut SqcBuild,
        name: *const c_char,
        dtype: i32,
        dims: *const i64,
        nb: i32,
        out: *mut i32,
    ) -> i32;
    fn sqc_add_convolution(
        ctx: *mut SqcBuild,
        input: i32,
        nb_output_maps: i64,
        kernel_size: *const i64,
        nb: i32,
        kernel: SqcWeights,
        bias: SqcWeights,
        out: *mut i32,
    ) -> i32;
    fn sqc_add_deconvolution(
        ctx: *mut SqcBuild,
        input: i32,
        nb_output_maps: i64,
        kernel_size: *const i64,
        nb: i32,
        kernel: SqcWeights,
        bias: SqcWeights,
        out: *mut i32,
    ) -> i32;
    fn sqc_add_matrix_multiply(
        ctx: *mut SqcBuild,
        a: i32,
        op_a: i32,
        b: i32,
        op_b: i32,
        out: *mut i32,
    ) -> i32;
    fn sqc_add_quantize(
        ctx: *mut SqcBuild,
        input: i32,
        scale: i32,
        to_type: i32,
        out: *mut i32,
    ) -> i32;
    fn sqc_add_dequantize(
        ctx: *mut SqcBuild,
        input: i32,
        scale: i32,
        to_type: i32,
        out: *mut i32,
    ) -> i32;
    fn sqc_add_constant(
        ctx: *mut SqcBuild,
        dims: *const i64,
        nb: i32,
        w: SqcWeights,
        out: *mut i32,
    ) -> i32;
    fn sqc_add_elementwise(ctx: *mut SqcBuild, a: i32, b: i32, op: i32, out: *mut i32) -> i32;
    fn sqc_add_activation(ctx: *mut SqcBuild, input: i32, ty: i32, out: *mut i32) -> i32;
    fn sqc_add_pooling(
        ctx: *mut SqcBuild,
        input: i32,
        ty: i32,
        window: *const i64,
        nb: i32,
        out: *mut i32,
    ) -> i32;
    fn sqc_add_shuffle(ctx: *mut SqcBuild, input: i32, out: *mut i32) -> i32;
    fn sqc_add_concatenation(ctx: *mut SqcBuild, inputs: *const i32, n: i32, out: *mut i32) -> i32;
    fn sqc_add_reduce(
        ctx: *mut SqcBuild,
        input: i32,
        op: i32,
        axes: u32,
        keep: i32,
        out: *mut i32,
    ) -> i32;
    fn sqc_add_softmax(ctx: *mut SqcBuild, input: i32, out: *mut i32) -> i32;
    fn sqc_add_slice(
        ctx: *mut SqcBuild,
        input: i32,
        start: *const i64,
        size: *const i64,
        stride: *const i64,
        nb: i32,
        out: *mut i32,
    ) -> i32;
    fn sqc_add_padding(
        ctx: *mut SqcBuild,
        input: i32,
        pre: *const i64,
        post: *const i64,
        nb: i32,
        out: *mut i32,
    ) -> i32;
    fn sqc_add_identity(ctx: *mut SqcBuild, input: i32, out: *mut i32) -> i32;
    fn sqc_add_cast(ctx: *mut SqcBuild, input: i32, to_type: i32, out: *mut i32) -> i32;
    fn sqc_layer_set_name(ctx: *mut SqcBuild, layer: i32, name: *const c_char) -> i32;
    fn sqc_layer_set_input(ctx: *mut SqcBuild, layer: i32, index: i32, tensor: i32) -> i32;
    fn sqc_layer_set_int(ctx: *mut SqcBuild, layer: i32, attr: i32, value: i64) -> i32;
    fn sqc_layer_set_float(ctx: *mut SqcBuild, layer: i32, attr: i32, value: f32) -> i32;
    fn sqc_layer_set_dims(ctx: *mut SqcBuild, layer: i32, attr: i32, v: *const i64, nb: i32)
        -> i32;
    fn sqc_layer_output(ctx: *mut SqcBuild, layer: i32, index: i32, out: *mut i32) -> i32;
    fn sqc_tensor_set_name(ctx: *mut SqcBuild, tensor: i32, name: *const c_char) -> i32;
    fn sqc_mark_output(ctx: *mut SqcBuild, tensor: i32) -> i32;
    fn sqc_create_config(ctx: *mut SqcBuild) -> i32;
    fn sqc_config_set_flag(ctx: *mut SqcBuild, flag: i32) -> i32;
    fn sqc_config_set_memory_pool_limit(ctx: *mut SqcBuild, pool: i32, bytes: u64) -> i32;
    fn sqc_add_profile(ctx: *mut SqcBuild, out: *mut i32) -> i32;
    fn sqc_profile_set_dims(
        ctx: *mut SqcBuild,
        profile: i32,
        input: *const c_char,
        selector: i32,
        dims: *const i64,
        nb: i32,
    ) -> i32;
    fn sqc_config_add_profile(ctx: *mut SqcBuild, profile: i32) -> i32;
    fn sqc_build(ctx: *mut SqcBuild, data: *mut *const u8, size: *mut u64) -> i32;
}

/// The TensorRT version of the headers the shim was compiled against.
pub fn header_version() -> TrtVersion {
    // SAFETY: pure function of the compiled shim.
    TrtVersion::from_header_version(unsafe { sqc_header_version() })
}

/// Collects log lines and forwards them; lives on the stack of [`drive`] for the whole build.
struct LogSink<'a> {
    lines: Vec<LogLine>,
    forward: &'a mut dyn FnMut(Severity, &str),
}

extern "C" fn log_callback(user: *mut c_void, severity: i32, msg: *const c_char) {
    if user.is_null() || msg.is_null() {
        return;
    }
    // Never unwind into C++.
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `user` is the `LogSink` passed to sqc_new, alive until sqc_free returns;
        // TensorRT calls the logger on the thread that runs the build.
        let sink = unsafe { &mut *(user as *mut LogSink<'_>) };
        // SAFETY: TensorRT passes a NUL-terminated string valid during the call.
        let text = unsafe { CStr::from_ptr(msg) }
            .to_string_lossy()
            .trim_end()
            .to_string();
        let sev = Severity::from_value(severity);
        (sink.forward)(sev, &text);
        sink.lines.push(LogLine {
            severity: sev,
            message: text,
        });
    }));
}

/// Owns the shim context; frees it (builder, network, config, plan) on drop.
struct Ctx(*mut SqcBuild);

impl Drop for Ctx {
    fn drop(&mut self) {
        // SAFETY: created by sqc_new, freed once.
        unsafe { sqc_free(self.0) }
    }
}

impl Ctx {
    fn check(&self, rc: i32, what: impl FnOnce() -> String) -> Result<()> {
        if rc == 0 {
            return Ok(());
        }
        // SAFETY: sqc_error never returns NULL and the string lives until the next call.
        let msg = unsafe { CStr::from_ptr(sqc_error(self.0)) }
            .to_string_lossy()
            .into_owned();
        Err(Error::user(msg).context(what()))
    }
}

fn cstr(s: &str) -> Result<CString> {
    CString::new(s)
        .map_err(|_| Error::user(format!("name '{}' contains a NUL byte", s.escape_debug())))
}

fn sqc_weights(w: Option<&Weights>) -> SqcWeights {
    match w {
        Some(w) => SqcWeights {
            dtype: w.dtype().value(),
            values: w.as_ptr(),
            count: w.count() as i64,
        },
        None => SqcWeights {
            dtype: 0,
            values: std::ptr::null(),
            count: 0,
        },
    }
}

fn nb(d: &[i64]) -> i32 {
    d.len() as i32
}

/// Replays `net`/`config` through the shim with the given builder entry point and builds
/// the plan. `net` and `config` must be valid (see [`super::engine::build_engine`]).
pub fn drive(
    net: &Network,
    config: &BuildConfig,
    create: CreateBuilderFn,
    on_log: &mut dyn FnMut(Severity, &str),
) -> Result<EngineBuild> {
    // SAFETY (whole function): every pointer handed to the shim points into `net`, `config`
    // or locals that outlive the call that uses them; weight pointers point into `net`,
    // which stays borrowed until `ctx` (and with it TensorRT's builder) is dropped below.
    unsafe {
        if sqc_shim_abi_version() != SHIM_ABI_VERSION {
            return Err(Error::internal(
                "the compiled TensorRT shim does not match this sparseqc",
            ));
        }
    }
    let header = header_version();
    if header.major != config.target.major {
        return Err(Error::user(format!(
            "this sparseqc was compiled against TensorRT {header} headers and cannot build for TensorRT {}",
            config.target
        )));
    }
    let mut sink = LogSink {
        lines: Vec::new(),
        forward: on_log,
    };
    // SAFETY: the sink outlives ctx (ctx is dropped at the end of this function, before sink).
    let raw = unsafe { sqc_new(log_callback, &mut sink as *mut LogSink<'_> as *mut c_void) };
    if raw.is_null() {
        return Err(Error::internal(
            "out of memory creating the TensorRT shim context",
        ));
    }
    let ctx = Ctx(raw);
    let plan = replay(&ctx, net, config, create);
    drop(ctx);
    let plan = plan?;
    let sparsity = SparsityReport::from_log(sink.lines.iter().map(|l| l.message.as_str()));
    Ok(EngineBuild {
        plan,
        log: sink.lines,
        sparsity,
    })
}

fn replay(
    ctx: &Ctx,
    net: &Network,
    config: &BuildConfig,
    create: CreateBuilderFn,
) -> Result<Vec<u8>> {
    let c = ctx.0;
    unsafe {
        ctx.check(sqc_create_builder(c, create), || {
            "creating the TensorRT builder".into()
        })?;
        let flags: u32 = config
            .creation_flags()
            .iter()
            .fold(0, |m, (_, v)| m | (1u32 << v));
        ctx.check(sqc_create_network(c, flags), || "createNetworkV2".into())?;
        let name = cstr(&net.name)?;
        ctx.check(sqc_set_network_name(c, name.as_ptr()), || {
            "network name".into()
        })?;

        // TensorId -> shim tensor handle
        let mut handle: Vec<Option<i32>> = vec![None; net.tensors().len()];
        let h =
            |handle: &Vec<Option<i32>>, t: super::network::TensorId| -> Result<i32> {
                handle.get(t.0 as usize).copied().flatten().ok_or_else(|| {
                    Error::internal(format!("tensor #{} used before definition", t.0))
                })
            };
        for &t in net.inputs() {
            let tensor = net.tensor(t)?;
            let name = cstr(&tensor.name)?;
            let dims = tensor.dims.clone().unwrap_or_default();
            let dtype = tensor.dtype.map(|d| d.value()).unwrap_or(0);
            let mut out = -1;
            ctx.check(
                sqc_add_input(c, name.as_ptr(), dtype, dims.as_ptr(), nb(&dims), &mut out),
                || format!("input '{}'", tensor.name),
            )?;
            handle[t.0 as usize] = Some(out);
        }

        for layer in net.layers() {
            let what = || format!("layer '{}' ({})", layer.name, layer.kind.type_name());
            let ins: Vec<i32> = layer
                .inputs
                .iter()
                .map(|&t| h(&handle, t))
                .collect::<Result<_>>()?;
            let in0 = ins.first().copied().unwrap_or(-1);
            let mut l = -1;
            // 1. add the layer
            let rc = match &layer.kind {
                LayerKind::Convolution(p) | LayerKind::Deconvolution(p) => {
                    let add = if matches!(layer.kind, LayerKind::Convolution(_)) {
                        sqc_add_convolution
                    } else {
                        sqc_add_deconvolution
                    };
                    add(
                        c,
                        in0,
                        p.nb_output_maps,
                        p.kernel_size.as_ptr(),
                        nb(&p.kernel_size),
                        sqc_weights(p.kernel.as_ref()),
                        sqc_weights(p.bias.as_ref()),
                        &mut l,
                    )
                }
                LayerKind::MatrixMultiply { op0, op1 } => {
                    sqc_add_matrix_multiply(c, in0, op0.value(), ins[1], op1.value(), &mut l)
                }
                LayerKind::Quantize { to_type, .. } => {
                    sqc_add_quantize(c, in0, ins[1], to_type.value(), &mut l)
                }
                LayerKind::Dequantize { to_type, .. } => {
                    sqc_add_dequantize(c, in0, ins[1], to_type.value(), &mut l)
                }
                LayerKind::Constant { dims, weights } => sqc_add_constant(
                    c,
                    dims.as_ptr(),
                    nb(dims),
                    sqc_weights(Some(weights)),
                    &mut l,
                ),
                LayerKind::ElementWise(op) => {
                    sqc_add_elementwise(c, in0, ins[1], op.value(), &mut l)
                }
                LayerKind::Activation { activation, .. } => {
                    sqc_add_activation(c, in0, activation.value(), &mut l)
                }
                LayerKind::Pooling(p) => sqc_add_pooling(
                    c,
                    in0,
                    p.pooling_type.value(),
                    p.window.as_ptr(),
                    nb(&p.window),
                    &mut l,
                ),
                LayerKind::Shuffle(_) => sqc_add_shuffle(c, in0, &mut l),
                LayerKind::Concatenation { .. } => {
                    sqc_add_concatenation(c, ins.as_ptr(), ins.len() as i32, &mut l)
                }
                LayerKind::Reduce {
                    op,
                    axes,
                    keep_dims,
                } => sqc_add_reduce(c, in0, op.value(), *axes, i32::from(*keep_dims), &mut l),
                LayerKind::SoftMax { .. } => sqc_add_softmax(c, in0, &mut l),
                LayerKind::Slice {
                    start,
                    size,
                    stride,
                    ..
                } => sqc_add_slice(
                    c,
                    in0,
                    start.as_ptr(),
                    size.as_ptr(),
                    stride.as_ptr(),
                    nb(start),
                    &mut l,
                ),
                LayerKind::Padding { pre, post } => {
                    sqc_add_padding(c, in0, pre.as_ptr(), post.as_ptr(), nb(pre), &mut l)
                }
                LayerKind::Identity => sqc_add_identity(c, in0, &mut l),
                LayerKind::Cast { to_type } => sqc_add_cast(c, in0, to_type.value(), &mut l),
            };
            ctx.check(rc, what)?;
            // 2. name it (TensorRT's build log uses this name)
            let lname = cstr(&layer.name)?;
            ctx.check(sqc_layer_set_name(c, l, lname.as_ptr()), what)?;
            // 3. attributes
            let set_dims = |attr: i32, v: &[i64]| {
                ctx.check(sqc_layer_set_dims(c, l, attr, v.as_ptr(), nb(v)), what)
            };
            let set_int = |attr: i32, v: i64| ctx.check(sqc_layer_set_int(c, l, attr, v), what);
            match &layer.kind {
                LayerKind::Convolution(p) | LayerKind::Deconvolution(p) => {
                    set_dims(ATTR_STRIDE, &p.stride)?;
                    set_dims(ATTR_PRE_PADDING, &p.pre_padding)?;
                    set_dims(ATTR_POST_PADDING, &p.post_padding)?;
                    if matches!(layer.kind, LayerKind::Convolution(_))
                        || p.dilation.iter().any(|&d| d != 1)
                    {
                        set_dims(ATTR_DILATION, &p.dilation)?;
                    }
                    set_int(ATTR_NB_GROUPS, p.nb_groups)?;
                    // kernel (and bias) given as tensors: inputs 1 and 2
                    for (i, &t) in ins.iter().enumerate().skip(1) {
                        ctx.check(sqc_layer_set_input(c, l, i as i32, t), what)?;
                    }
                }
                LayerKind::Quantize { axis: Some(a), .. }
                | LayerKind::Dequantize { axis: Some(a), .. } => {
                    set_int(ATTR_AXIS, i64::from(*a))?;
                }
                LayerKind::Activation {
                    activation,
                    alpha,
                    beta,
                } if activation.uses_alpha_beta() => {
                    ctx.check(sqc_layer_set_float(c, l, ATTR_ALPHA, *alpha), what)?;
                    ctx.check(sqc_layer_set_float(c, l, ATTR_BETA, *beta), what)?;
                }
                LayerKind::Pooling(p) => {
                    set_dims(ATTR_STRIDE, &p.stride)?;
                    set_dims(ATTR_PRE_PADDING, &p.pre_padding)?;
                    set_dims(ATTR_POST_PADDING, &p.post_padding)?;
                    set_int(
                        ATTR_AVG_EXCLUDES_PADDING,
                        i64::from(p.average_count_excludes_padding),
                    )?;
                }
                LayerKind::Shuffle(s) => {
                    if let Some(p) = &s.first_transpose {
                        let v: Vec<i64> = p.iter().map(|&x| i64::from(x)).collect();
                        set_dims(ATTR_FIRST_TRANSPOSE, &v)?;
                    }
                    if let Some(r) = &s.reshape {
                        set_dims(ATTR_RESHAPE, r)?;
                    }
                    if let Some(p) = &s.second_transpose {
                        let v: Vec<i64> = p.iter().map(|&x| i64::from(x)).collect();
                        set_dims(ATTR_SECOND_TRANSPOSE, &v)?;
                    }
                    set_int(ATTR_ZERO_IS_PLACEHOLDER, i64::from(s.zero_is_placeholder))?;
                }
                LayerKind::Concatenation { axis } => set_int(ATTR_AXIS, i64::from(*axis))?,
                LayerKind::SoftMax { axes } => set_int(ATTR_SOFTMAX_AXES, i64::from(*axes))?,
                LayerKind::Slice { mode, axes, .. } => {
                    if *mode != super::network::SampleMode::StrictBounds {
                        set_int(ATTR_SLICE_MODE, i64::from(mode.value()))?;
                    }
                    if let Some(a) = axes {
                        set_dims(ATTR_SLICE_AXES, a)?;
                    }
                }
                _ => {}
            }
            for (i, &t) in layer.outputs.iter().enumerate() {
                let mut th = -1;
                ctx.check(sqc_layer_output(c, l, i as i32, &mut th), what)?;
                let tname = cstr(&net.tensor(t)?.name)?;
                ctx.check(sqc_tensor_set_name(c, th, tname.as_ptr()), what)?;
                handle[t.0 as usize] = Some(th);
            }
        }

        for &t in net.outputs() {
            let th = h(&handle, t)?;
            ctx.check(sqc_mark_output(c, th), || {
                format!(
                    "output '{}'",
                    net.tensor(t).map(|x| x.name.as_str()).unwrap_or("?")
                )
            })?;
        }

        ctx.check(sqc_create_config(c), || "createBuilderConfig".into())?;
        for (flag, value) in config.effective_flags()? {
            ctx.check(sqc_config_set_flag(c, value), || {
                format!("builder flag {}", flag.name())
            })?;
        }
        if let Some(bytes) = config.workspace_bytes {
            ctx.check(
                sqc_config_set_memory_pool_limit(c, MEMORY_POOL_WORKSPACE, bytes),
                || "workspace limit".into(),
            )?;
        }
        for (pi, profile) in config.profiles.iter().enumerate() {
            let mut ph = -1;
            ctx.check(sqc_add_profile(c, &mut ph), || {
                format!("optimization profile {pi}")
            })?;
            for s in &profile.inputs {
                let name = cstr(&s.input)?;
                for (sel, dims) in [(0, &s.min), (1, &s.opt), (2, &s.max)] {
                    ctx.check(
                        sqc_profile_set_dims(c, ph, name.as_ptr(), sel, dims.as_ptr(), nb(dims)),
                        || format!("optimization profile {pi}"),
                    )?;
                }
            }
            ctx.check(sqc_config_add_profile(c, ph), || {
                format!("optimization profile {pi}")
            })?;
        }

        let mut data: *const u8 = std::ptr::null();
        let mut size: u64 = 0;
        ctx.check(sqc_build(c, &mut data, &mut size), || {
            "building the engine".into()
        })?;
        if data.is_null() {
            return Err(Error::internal("the shim returned no plan"));
        }
        // SAFETY: the plan (size bytes at data) is owned by ctx, alive until sqc_free.
        Ok(std::slice::from_raw_parts(data, size as usize).to_vec())
    }
}

#[cfg(test)]
mod tests {
    //! Drives the shim end to end against the recording fake TensorRT
    //! (shim/test/fake_trt.cpp) and checks the recorded call sequence.
    use super::*;
    use crate::trt::config::{BuilderFlag, OptimizationProfile, TrtVersion};
    use crate::trt::network::{
        ActivationType, ConvParams, DataType, ElementWiseOperation, PoolingParams, PoolingType,
        ReduceOperation, ShuffleParams,
    };

    extern "C" {
        fn sqc_fake_create_infer_builder(logger: *mut c_void, version: i32) -> *mut c_void;
    }

    fn fnv(w: &Weights) -> String {
        let mut h: u32 = 2166136261;
        for b in w.to_le_bytes() {
            h = (h ^ u32::from(b)).wrapping_mul(16777619);
        }
        format!("{h:08x}")
    }

    fn run(net: &Network, cfg: &BuildConfig) -> (Result<EngineBuild>, Vec<String>) {
        let mut calls = Vec::new();
        let r = drive(net, cfg, sqc_fake_create_infer_builder, &mut |_, m| {
            if let Some(c) = m.strip_prefix("[fake] ") {
                calls.push(c.to_string());
            }
        });
        (r, calls)
    }

    /// conv (kernel from DQ of an INT8 constant) -> relu6 -> residual add -> pool -> reduce -> shuffle -> fc.
    fn sample() -> (Network, Weights, Weights) {
        let mut n = Network::new("sample");
        let x = n.add_input("x", DataType::Float, &[-1, 8, 4, 4]).unwrap();
        let xs = n
            .add_layer(
                "x_scale",
                LayerKind::Constant {
                    dims: vec![],
                    weights: Weights::Float(vec![0.05]),
                },
                &[],
            )
            .unwrap();
        let xq = n
            .add_layer(
                "x_q",
                LayerKind::Quantize {
                    axis: None,
                    to_type: DataType::Int8,
                },
                &[x, xs],
            )
            .unwrap();
        let xdq = n
            .add_layer(
                "x_dq",
                LayerKind::Dequantize {
                    axis: None,
                    to_type: DataType::Float,
                },
                &[xq, xs],
            )
            .unwrap();
        let wq: Vec<i8> = (0..8 * 8 * 9)
            .map(|i| {
                if (i / 9) % 4 < 2 {
                    0
                } else {
                    (i % 7) as i8 - 3
                }
            })
            .collect();
        let wq = Weights::Int8(wq);
        let w = n
            .add_layer(
                "w_q",
                LayerKind::Constant {
                    dims: vec![8, 8, 3, 3],
                    weights: wq.clone(),
                },
                &[],
            )
            .unwrap();
        let ws = n
            .add_layer(
                "w_scale",
                LayerKind::Constant {
                    dims: vec![8],
                    weights: Weights::Float(vec![0.01; 8]),
                },
                &[],
            )
            .unwrap();
        let wdq = n
            .add_layer(
                "w_dq",
                LayerKind::Dequantize {
                    axis: Some(0),
                    to_type: DataType::Float,
                },
                &[w, ws],
            )
            .unwrap();
        let mut p = ConvParams::new(8, &[3, 3]);
        p.pre_padding = vec![1, 1];
        p.post_padding = vec![1, 1];
        let bias = Weights::Float((0..8).map(|i| i as f32 * 0.5).collect());
        p.bias = Some(bias.clone());
        let conv = n
            .add_layer("conv1", LayerKind::Convolution(p), &[xdq, wdq])
            .unwrap();
        let act = n
            .add_layer(
                "relu6",
                LayerKind::Activation {
                    activation: ActivationType::Clip,
                    alpha: 0.0,
                    beta: 6.0,
                },
                &[conv],
            )
            .unwrap();
        let add = n
            .add_layer(
                "add",
                LayerKind::ElementWise(ElementWiseOperation::Sum),
                &[act, x],
            )
            .unwrap();
        let mut pp = PoolingParams::new(PoolingType::Max, &[2, 2]);
        pp.average_count_excludes_padding = false;
        let pool = n.add_layer("pool", LayerKind::Pooling(pp), &[add]).unwrap();
        let gap = n
            .add_layer(
                "gap",
                LayerKind::Reduce {
                    op: ReduceOperation::Avg,
                    axes: 0b1100,
                    keep_dims: false,
                },
                &[pool],
            )
            .unwrap();
        let fcw = n
            .add_layer(
                "fc_w",
                LayerKind::Constant {
                    dims: vec![8, 4],
                    weights: Weights::Float(vec![0.5; 32]),
                },
                &[],
            )
            .unwrap();
        let fc = n
            .add_layer(
                "fc_dense",
                LayerKind::MatrixMultiply {
                    op0: super::super::network::MatrixOperation::None,
                    op1: super::super::network::MatrixOperation::None,
                },
                &[gap, fcw],
            )
            .unwrap();
        let sh = n
            .add_layer_with_output(
                "flatten",
                LayerKind::Shuffle(ShuffleParams {
                    first_transpose: Some(vec![1, 0]),
                    reshape: Some(vec![0, -1]),
                    second_transpose: None,
                    zero_is_placeholder: true,
                }),
                &[fc],
                "logits",
            )
            .unwrap();
        n.mark_output(sh).unwrap();
        (n, wq, bias)
    }

    fn config() -> BuildConfig {
        let mut c = BuildConfig::new(TrtVersion::V11);
        c.workspace_bytes = Some(1 << 30);
        c.profiles
            .push(OptimizationProfile::parse("x:1x8x4x4,8x8x4x4,32x8x4x4").unwrap());
        c
    }

    #[test]
    fn records_the_expected_call_sequence() {
        let (net, wq, bias) = sample();
        let (r, calls) = run(&net, &config());
        let b = r.unwrap();
        assert_eq!(
            String::from_utf8_lossy(&b.plan),
            format!("SQCFAKEPLAN layers={}", net.layers().len())
        );
        let pos = |needle: &str| {
            calls.iter().position(|c| c == needle).unwrap_or_else(|| {
                panic!("call `{needle}` not recorded; calls:\n{}", calls.join("\n"))
            })
        };
        let seq = [
            "builder.createInferBuilder(110400)".to_string(),
            "builder.createNetworkV2(0)".into(),
            "network.setName(\"sample\")".into(),
            "network.addInput(\"x\", 0, [-1,8,4,4])".into(),
            "network.addQuantize(x, x_scale, 2)".into(),
            format!("network.addConstant([8,8,3,3], INT8 x576 fnv={})", fnv(&wq)),
            "w_dq.setAxis(0)".into(),
            format!(
                "network.addConvolutionNd(x_dq, 8, [3,3], empty, FLOAT x8 fnv={})",
                fnv(&bias)
            ),
            "conv1.setStrideNd([1,1])".into(),
            "conv1.setPrePadding([1,1])".into(),
            "conv1.setPostPadding([1,1])".into(),
            "conv1.setDilationNd([1,1])".into(),
            "conv1.setNbGroups(1)".into(),
            "conv1.setInput(1, w_dq)".into(),
            "network.addActivation(conv1, 8)".into(),
            "relu6.setAlpha(0)".into(),
            "relu6.setBeta(6)".into(),
            "network.addElementWise(relu6, x, 0)".into(),
            "network.addPoolingNd(add, 0, [2,2])".into(),
            "pool.setAverageCountExcludesPadding(false)".into(),
            "network.addReduce(pool, 4, 12, false)".into(),
            "network.addMatrixMultiply(gap, 0, fc_w, 0)".into(),
            "flatten.setFirstTranspose([1,0,2,3,4,5,6,7])".into(),
            "flatten.setReshapeDimensions([0,-1])".into(),
            "flatten.setZeroIsPlaceholder(true)".into(),
            "tensor14.setName(\"logits\")".into(),
            "network.markOutput(logits)".into(),
            "builder.createBuilderConfig()".into(),
            "config.setFlag(7)".into(),
            "config.setMemoryPoolLimit(0, 1073741824)".into(),
            "builder.createOptimizationProfile()".into(),
            "profile0.setDimensions(\"x\", 0, [1,8,4,4])".into(),
            "profile0.setDimensions(\"x\", 1, [8,8,4,4])".into(),
            "profile0.setDimensions(\"x\", 2, [32,8,4,4])".into(),
            "config.addOptimizationProfile(ptr)".into(),
            "builder.buildSerializedNetwork()".into(),
        ];
        let mut last = 0;
        for s in &seq {
            let p = pos(s);
            assert!(
                p >= last,
                "`{s}` recorded out of order; calls:\n{}",
                calls.join("\n")
            );
            last = p;
        }
        // the whole sequence, for review when it changes
        insta::assert_snapshot!("fake_trt_call_sequence", calls.join("\n"));
        // nothing was called that the fake does not expect a shim to call
        assert!(
            !calls.iter().any(|c| c.contains(".get")),
            "{}",
            calls.join("\n")
        );
        // the sparsity log lines came back through the logger and were parsed
        assert_eq!(b.sparsity.eligible, vec!["conv1", "fc_dense"]);
        assert_eq!(b.sparsity.picked, vec!["conv1"]);
        assert_eq!(b.sparsity.not_picked(), vec!["fc_dense"]);
    }

    #[test]
    fn trt10_without_strong_typing_sets_int8_and_fails_on_header_mismatch() {
        let (net, _, _) = sample();
        let mut c = config();
        c.target = TrtVersion::V10;
        c.strongly_typed = false;
        // the shim here is compiled against 11.x headers: a 10.x target is refused clearly
        let (r, _) = run(&net, &c);
        let e = r.unwrap_err().to_string();
        assert!(e.contains("compiled against TensorRT 11"), "{e}");
        assert_eq!(
            c.effective_flags().unwrap().last(),
            Some(&(BuilderFlag::kINT8, 1))
        );
    }

    #[test]
    fn layer_rejected_by_tensorrt_is_a_user_error_with_context() {
        let mut n = Network::new("bad");
        let x = n.add_input("x_sqc_fail", DataType::Float, &[1, 4]).unwrap();
        let y = n.add_layer("ident", LayerKind::Identity, &[x]).unwrap();
        n.mark_output(y).unwrap();
        let (r, _) = run(&n, &BuildConfig::default());
        let e = r.unwrap_err();
        let s = e.to_string();
        assert!(
            s.contains("layer 'ident' (Identity)") && s.contains("TensorRT rejected addIdentity"),
            "{s}"
        );
        assert!(
            s.contains("poisoned input"),
            "last TensorRT error included: {s}"
        );
    }

    /// ResNet-20 after the default pipeline (scales from the committed calibration table),
    /// lowered and replayed against the fake: every layer reaches TensorRT, in order, with
    /// the slice axes of the option-A shortcut and the kernels as DQ outputs.
    #[test]
    fn lowered_resnet20_replays_through_the_shim() {
        use crate::pass::{
            parse_pipeline, CalibInput, PassContext, PassManager, Registry, RunOptions,
        };
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
        let (mut m, _) =
            crate::cli::load_model(&root.join("models/resnet20_bn.onnx"), &Default::default())
                .unwrap();
        let reg = Registry::with_builtins();
        let passes = parse_pipeline(crate::cli::DEFAULT_PIPELINE_CACHE)
            .unwrap()
            .iter()
            .map(|e| reg.create(e).unwrap())
            .collect();
        let mut ctx = PassContext {
            quiet: true,
            calib: CalibInput {
                cache: Some(root.join("calib/resnet20_bn.calib-mini.max.json")),
                ..Default::default()
            },
            ..Default::default()
        };
        PassManager::new(passes, RunOptions::default())
            .run(&mut m, &mut ctx)
            .unwrap();
        let opts = crate::trt::lower::LowerOptions {
            shapes: Some("input:1x3x32x32,8x3x32x32,32x3x32x32".into()),
            workspace_mib: Some(512),
            ..Default::default()
        };
        let (net, cfg) = crate::trt::lower::lower(&m, &opts).unwrap();
        let (r, calls) = run(&net, &cfg);
        let b = r.unwrap();
        assert_eq!(
            String::from_utf8_lossy(&b.plan),
            format!("SQCFAKEPLAN layers={}", net.layers().len())
        );
        let count = |p: &str| calls.iter().filter(|c| c.starts_with(p)).count();
        assert_eq!(count("network.addConvolutionNd("), 19);
        assert_eq!(count("network.addQuantize("), 42);
        assert_eq!(count("network.addDequantize("), 42);
        assert_eq!(count("network.addSlice("), 4);
        assert_eq!(count("network.addPaddingNd("), 2);
        assert_eq!(count("network.addMatrixMultiply("), 1);
        let named = |n: &str| {
            calls
                .iter()
                .filter(|c| c.starts_with(&format!("{n}.")))
                .cloned()
                .collect::<Vec<_>>()
        };
        assert!(
            named("/layer2/layer2.0/shortcut/Slice")
                .contains(&"/layer2/layer2.0/shortcut/Slice.setAxes([2])".to_string()),
            "{:?}",
            named("/layer2/layer2.0/shortcut/Slice")
        );
        assert!(named("/layer1/layer1.0/conv1/Conv").contains(
            &"/layer1/layer1.0/conv1/Conv.setInput(1, layer1.0.conv1.weight_dequantized)"
                .to_string()
        ));
        assert!(calls.contains(&"network.addInput(\"input\", 0, [-1,3,32,32])".to_string()));
        assert!(calls.contains(&"network.markOutput(logits)".to_string()));
        assert!(calls.contains(&"config.setMemoryPoolLimit(0, 536870912)".to_string()));
        // every layer was named, in definition order
        let names: Vec<&str> = calls
            .iter()
            .filter_map(|c| {
                c.strip_prefix("layer")
                    .and_then(|r| r.split_once(".setName(\""))
            })
            .map(|(_, n)| n.trim_end_matches("\")"))
            .collect();
        let expect: Vec<&str> = net.layers().iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, expect);
        // the fake reports every conv/matmul as eligible for sparse math
        assert_eq!(b.sparsity.eligible.len(), 20);
    }

    #[test]
    fn shim_reports_header_version() {
        assert_eq!(
            header_version(),
            TrtVersion {
                major: 11,
                minor: 4
            }
        );
    }
}
