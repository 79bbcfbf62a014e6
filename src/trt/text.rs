//! The deterministic, readable text form of a [`Network`] (for snapshots and
//! `sparseqc print --network`).
//!
//! ```text
//! network "tiny"
//! input x: FLOAT[-1,8,4,4]
//! [0] Constant "w" () -> w | dims=[4,8,3,3] weights=INT8[4,8,3,3] h=1f2e3d4c zeros=50.0%
//! [2] Dequantize "w_dq" (w, w_scale) -> w_dq | axis=0 toType=FLOAT
//! [3] Convolution "conv" (x, w_dq) -> conv: FLOAT[-1,4,4,4] | nbOutputMaps=4 kernelSize=[3,3] ... kernel=input1<-"w" INT8[4,8,3,3] h=... zeros=50.0% 2:4=yes
//! output conv
//! sparsity: kernels=1 sparse24=[conv] dense=[] n/a=[]
//! ```
//!
//! One line per layer: `[index] Type "name" (inputs) -> output[: TYPE[dims]] | parameters`
//! (type and dims of an output only when the lowering recorded them). Weights are
//! summarised as `DTYPE[shape] h=HASH zeros=Z%` where HASH is the first 8 hex digits of the
//! XXH3-64 of the little-endian values; kernels of Convolution / MatrixMultiply layers get
//! `2:4=yes|no|n/a(reason)` (see [`crate::trt::sparsity`]). Floats print in Rust's shortest
//! round-trip form.

use std::fmt::Write;

use super::config::BuildConfig;
use super::network::{fmt_dims, LayerId, LayerKind, Network, TensorId, Weights};
use super::sparsity::{kernel_info, KernelSource, Sparse24};

/// Short content hash of weights: first 8 hex digits of XXH3-64 over the little-endian bytes.
pub fn weights_hash(w: &Weights) -> String {
    let h = xxhash_rust::xxh3::xxh3_64(&w.to_le_bytes());
    format!("{:016x}", h)[..8].to_string()
}

/// `DTYPE[shape] h=HASH zeros=Z%` (shape = `[count]` when unknown).
pub fn weights_summary(w: &Weights, shape: Option<&[i64]>) -> String {
    let shape = match shape {
        Some(s) => fmt_dims(s),
        None => format!("[{}]", w.count()),
    };
    let zeros = if w.count() == 0 {
        0.0
    } else {
        100.0 * w.zero_count() as f64 / w.count() as f64
    };
    format!(
        "{}{} h={} zeros={:.1}%",
        w.dtype(),
        shape,
        weights_hash(w),
        zeros
    )
}

fn tensor_ref(net: &Network, t: TensorId) -> String {
    net.tensor(t)
        .map(|t| t.name.clone())
        .unwrap_or_else(|_| format!("#{}", t.0))
}

fn tensor_decl(net: &Network, t: TensorId) -> String {
    match net.tensor(t) {
        Ok(t) => {
            let mut s = t.name.clone();
            if t.dtype.is_some() || t.dims.is_some() {
                s.push(':');
                if let Some(d) = t.dtype {
                    let _ = write!(s, " {d}");
                }
                if let Some(d) = &t.dims {
                    s.push_str(&fmt_dims(d));
                }
            }
            s
        }
        Err(_) => format!("#{}", t.0),
    }
}

fn perm(p: &Option<Vec<i32>>) -> String {
    match p {
        Some(v) => format!("{v:?}").replace(' ', ""),
        None => "none".into(),
    }
}

/// Parameters of one layer, as `key=value` pairs joined by spaces.
fn params(net: &Network, id: LayerId, kind: &LayerKind) -> String {
    let mut s = String::new();
    match kind {
        LayerKind::Convolution(p) | LayerKind::Deconvolution(p) => {
            let _ = write!(
                s,
                "nbOutputMaps={} kernelSize={} stride={} prePadding={} postPadding={}",
                p.nb_output_maps,
                fmt_dims(&p.kernel_size),
                fmt_dims(&p.stride),
                fmt_dims(&p.pre_padding),
                fmt_dims(&p.post_padding)
            );
            if matches!(kind, LayerKind::Convolution(_)) {
                let _ = write!(s, " dilation={}", fmt_dims(&p.dilation));
            }
            let _ = write!(s, " nbGroups={}", p.nb_groups);
            if let Some(info) = kernel_info(net, id) {
                let w = match (&info.source, info.weights) {
                    (KernelSource::Inline, Some(w)) => weights_summary(w, info.shape.as_deref()),
                    (KernelSource::Constant(c), Some(w)) => format!(
                        "input1<-{:?} {}",
                        net.layer(*c).map(|l| l.name.as_str()).unwrap_or("?"),
                        weights_summary(w, info.shape.as_deref())
                    ),
                    _ => "input1<-(not constant)".into(),
                };
                let _ = write!(s, " kernel={w} 2:4={}", info.sparse);
            }
            match &p.bias {
                Some(b) => {
                    let _ = write!(s, " bias={}", weights_summary(b, None));
                }
                None if net.layer(id).map(|l| l.inputs.len() > 2).unwrap_or(false) => {
                    s.push_str(" bias=input2")
                }
                None => s.push_str(" bias=none"),
            }
        }
        LayerKind::MatrixMultiply { op0, op1 } => {
            let _ = write!(s, "op0={op0} op1={op1}");
            if let Some(info) = kernel_info(net, id) {
                if let (KernelSource::Constant(c), Some(w)) = (&info.source, info.weights) {
                    let _ = write!(
                        s,
                        " input1<-{:?} {} 2:4={}",
                        net.layer(*c).map(|l| l.name.as_str()).unwrap_or("?"),
                        weights_summary(w, info.shape.as_deref()),
                        info.sparse
                    );
                }
            }
        }
        LayerKind::Quantize { axis, to_type } | LayerKind::Dequantize { axis, to_type } => {
            match axis {
                Some(a) => {
                    let _ = write!(s, "axis={a}");
                }
                None => s.push_str("axis=none"),
            }
            let _ = write!(s, " toType={to_type}");
        }
        LayerKind::Constant { dims, weights } => {
            let _ = write!(
                s,
                "dims={} weights={}",
                fmt_dims(dims),
                weights_summary(weights, Some(dims))
            );
        }
        LayerKind::ElementWise(op) => {
            let _ = write!(s, "op={op}");
        }
        LayerKind::Activation {
            activation,
            alpha,
            beta,
        } => {
            let _ = write!(s, "type={activation}");
            if activation.uses_alpha_beta() {
                let _ = write!(s, " alpha={alpha} beta={beta}");
            }
        }
        LayerKind::Pooling(p) => {
            let _ = write!(
                s,
                "type={} window={} stride={} prePadding={} postPadding={} averageCountExcludesPadding={}",
                p.pooling_type,
                fmt_dims(&p.window),
                fmt_dims(&p.stride),
                fmt_dims(&p.pre_padding),
                fmt_dims(&p.post_padding),
                p.average_count_excludes_padding
            );
        }
        LayerKind::Shuffle(p) => {
            let _ = write!(
                s,
                "firstTranspose={} reshape={} secondTranspose={} zeroIsPlaceholder={}",
                perm(&p.first_transpose),
                p.reshape
                    .as_deref()
                    .map(fmt_dims)
                    .unwrap_or_else(|| "none".into()),
                perm(&p.second_transpose),
                p.zero_is_placeholder
            );
        }
        LayerKind::Concatenation { axis } => {
            let _ = write!(s, "axis={axis}");
        }
        LayerKind::Reduce {
            op,
            axes,
            keep_dims,
        } => {
            let _ = write!(s, "op={op} axes={axes:#b} keepDims={keep_dims}");
        }
        LayerKind::SoftMax { axes } => {
            let _ = write!(s, "axes={axes:#b}");
        }
        LayerKind::Slice {
            start,
            size,
            stride,
            mode,
            axes,
        } => {
            let _ = write!(
                s,
                "start={} size={} stride={} mode={mode}",
                fmt_dims(start),
                fmt_dims(size),
                fmt_dims(stride)
            );
            if let Some(a) = axes {
                let _ = write!(s, " axes={}", fmt_dims(a));
            }
        }
        LayerKind::Padding { pre, post } => {
            let _ = write!(
                s,
                "prePadding={} postPadding={}",
                fmt_dims(pre),
                fmt_dims(post)
            );
        }
        LayerKind::Identity => {}
        LayerKind::Cast { to_type } => {
            let _ = write!(s, "toType={to_type}");
        }
    }
    s
}

/// The text form of `net`, followed by the build configuration when given.
pub fn network_to_text(net: &Network, config: Option<&BuildConfig>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "network {:?}", net.name);
    for &t in net.inputs() {
        let _ = writeln!(out, "input {}", tensor_decl(net, t));
    }
    let (mut sparse, mut dense, mut na) = (Vec::new(), Vec::new(), Vec::new());
    for (i, l) in net.layers().iter().enumerate() {
        let id = LayerId(i as u32);
        let ins: Vec<String> = l.inputs.iter().map(|&t| tensor_ref(net, t)).collect();
        let outs: Vec<String> = l.outputs.iter().map(|&t| tensor_decl(net, t)).collect();
        let p = params(net, id, &l.kind);
        let _ = write!(
            out,
            "[{i}] {} {:?} ({}) -> {}",
            l.kind.type_name(),
            l.name,
            ins.join(", "),
            outs.join(", ")
        );
        if !p.is_empty() {
            let _ = write!(out, " | {p}");
        }
        out.push('\n');
        if let Some(info) = kernel_info(net, id) {
            match info.sparse {
                Sparse24::Yes => sparse.push(l.name.as_str()),
                Sparse24::No => dense.push(l.name.as_str()),
                Sparse24::NotApplicable(_) => na.push(l.name.as_str()),
            }
        }
    }
    for &t in net.outputs() {
        let _ = writeln!(out, "output {}", tensor_ref(net, t));
    }
    let _ = writeln!(
        out,
        "sparsity: kernels={} sparse24=[{}] dense=[{}] n/a=[{}]",
        sparse.len() + dense.len() + na.len(),
        sparse.join(", "),
        dense.join(", "),
        na.join(", ")
    );
    if let Some(c) = config {
        out.push_str(&config_to_text(c));
    }
    out
}

/// One-line text form of a build configuration (flags with their header values).
pub fn config_to_text(c: &BuildConfig) -> String {
    let flags = match c.effective_flags() {
        Ok(f) => f
            .iter()
            .map(|(f, v)| format!("{}={v}", f.name()))
            .collect::<Vec<_>>()
            .join(","),
        Err(e) => format!("invalid: {e}"),
    };
    let profiles: Vec<String> = c.profiles.iter().map(|p| p.to_string()).collect();
    format!(
        "config: target=TensorRT {} stronglyTyped={} flags=[{}] workspace={} profiles=[{}]\n",
        c.target,
        c.is_strongly_typed(),
        flags,
        c.workspace_bytes
            .map(|b| b.to_string())
            .unwrap_or_else(|| "default".into()),
        profiles.join(" | ")
    )
}
