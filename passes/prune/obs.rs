//! `prune-2of4{method=obs}`: one-shot layer-wise reconstruction from calibration data, in
//! the spirit of OBC / SparseGPT, with bias correction.
//!
//! Layers are processed in topological order. For each prunable layer the calibration
//! samples are run through the network **as already pruned** up to the layer's input, the
//! Hessian H = XᵀX/n of its input patches is accumulated in f64 (im2col with columns in
//! (R, S, C) order, so the 2:4 groups are four consecutive input channels at one kernel
//! position, TensorRT's rule), and `sparsity::obs_prune_2of4_layout` picks, per group and
//! row, the two weights with the smallest OBS saliency and updates the rest of the row to
//! compensate (never worse than magnitude pruning on the same H, by construction).
//!
//! Bias correction (on by default, `bias-correct=false` to disable): the original
//! network's per-channel mean of every pruned layer's output is measured once; after a
//! layer is pruned, its new output mean (W'·mean(patch) + b, exact since the layer is
//! linear) is compared with it and the difference folded into the bias. This removes the
//! mean shift accumulated from this and all upstream layers.

use super::{candidates, speed_class, Candidate, Prune};
use crate::error::{Error, Result};
use crate::measure::{forward, load_sample_window, Resume, Sample};
use crate::ir::{Model, Tensor, ValueId};
use crate::util::AutoPad;
use crate::pass::{PassContext, PassReport, ReportItem};
use crate::sparsity::{im2col, obs_prune_2of4_layout, ConvGeometry, GroupLayout, HessianAccumulator};


/// `A·B` (`m×n`, f32, row-major) for `A` (`m×k`) and `B` (`k×n`) read through the row and
/// column strides given, so transposed views cost nothing: `Pᵀ·O` is `(p, 1, cols)·(o, n, 1)`.
fn matmul_strided(m: usize, k: usize, n: usize, a: &[f32], (rsa, csa): (usize, usize), b: &[f32], (rsb, csb): (usize, usize)) -> Vec<f32> {
    let mut c = vec![0f32; m * n];
    if m == 0 || k == 0 || n == 0 {
        return c;
    }
    // a caller bug, not bad input: every size here comes from the layer's own shapes
    assert!((m - 1) * rsa + (k - 1) * csa < a.len() && (k - 1) * rsb + (n - 1) * csb < b.len(), "matmul_strided: view too small");
    // SAFETY: the last element each view reaches is inside its slice (asserted above), and
    // c holds m*n elements with row stride n; matrixmultiply reads and writes only there.
    unsafe {
        matrixmultiply::sgemm(
            m, k, n, 1.0,
            a.as_ptr(), rsa as isize, csa as isize,
            b.as_ptr(), rsb as isize, csb as isize,
            0.0, c.as_mut_ptr(), n as isize, 1,
        );
    }
    c
}

/// `C·W₀ᵀ` (`cols×k`, f64) from the summed cross product `C` (`cols×cols`) and the
/// original weights as rows (`k×cols`): one GEMM per fixed tile of rows of `C`, in parallel.
fn cross_times_weights(c: &[f64], w0: &[f32], cols: usize, k: usize) -> Vec<f64> {
    use rayon::prelude::*;
    const TILE: usize = 64;
    let w: Vec<f64> = w0.iter().map(|v| *v as f64).collect();
    let mut t = vec![0f64; cols * k];
    if cols == 0 || k == 0 {
        return t;
    }
    // a caller bug, not bad input: every size here comes from the layer's own shapes
    assert!(c.len() == cols * cols && w.len() == k * cols, "cross_times_weights: sizes");
    t.par_chunks_mut(TILE * k).zip(c.par_chunks(TILE * cols)).for_each(|(o, cr)| {
        let m = cr.len() / cols;
        // SAFETY: A = cr (m×cols, row stride cols), B = W₀ᵀ (cols×k: element (i, r) at
        // r*cols + i < k*cols), C = o (m×k, row stride k): all inside their slices.
        unsafe {
            matrixmultiply::dgemm(m, cols, k, 1.0, cr.as_ptr(), cols as isize, 1, w.as_ptr(), 1, cols as isize, 0.0, o.as_mut_ptr(), k as isize, 1);
        }
    });
    t
}

/// Conv geometry from ONNX attributes (explicit pads; SAME_* resolved from the input).
fn conv_geometry(n: &crate::ir::Node, kernel: &[usize], in_sp: &[usize]) -> Result<ConvGeometry> {
    let sp = kernel.len();
    let strides: Vec<usize> = n.attr_ints("strides").map(|s| s.iter().map(|&v| v as usize).collect()).unwrap_or(vec![1; sp]);
    let dil: Vec<usize> = n.attr_ints("dilations").map(|s| s.iter().map(|&v| v as usize).collect()).unwrap_or(vec![1; sp]);
    let auto = n.attr_s("auto_pad").unwrap_or_else(|| "NOTSET".into());
    let pads: Vec<usize> = match AutoPad::parse(&auto) {
        Some(AutoPad::NotSet) => n.attr_ints("pads").map(|s| s.iter().map(|&v| v as usize).collect()).unwrap_or(vec![0; 2 * sp]),
        Some(AutoPad::Valid) => vec![0; 2 * sp],
        Some(mode) => {
            let mut p = vec![0; 2 * sp];
            for i in 0..sp {
                let eff = dil[i] * (kernel[i] - 1) + 1;
                let (a, b, _) = mode.same_pads(in_sp[i] as i64, eff as i64, strides[i] as i64);
                p[i] = a as usize;
                p[sp + i] = b as usize;
            }
            p
        }
        None => return Err(Error::user(format!("unsupported auto_pad '{auto}'"))),
    };
    ConvGeometry::new(kernel, &strides, &pads, &dil)
}

pub fn run_obs(p: &Prune, m: &mut Model, ctx: &mut PassContext) -> Result<PassReport> {
    let mut rep = PassReport::new(super::NAME);
    let bias_correct = p.bias_correct;
    let samples = load_sample_window(m, ctx, p.sample_window.unwrap_or((0, p.obs_samples)))?;
    let orig = m.clone();
    let t0 = std::time::Instant::now();
    let cands = candidates(&m.graph, p)?;
    let mut layers = Vec::new();
    for c in cands {
        match c {
            Ok(c) if c.op != "Conv" && m.graph.n(c.node)?.attr_i("transA").unwrap_or(0) != 0 => {
                rep.item(ReportItem::new(&c.label, &c.op, "skipped", "Gemm with transA: reconstruction not supported"))
            }
            Ok(c) => layers.push(c),
            Err((_, label, op, why)) => rep.item(ReportItem::new(&label, &op, "skipped", why)),
        }
    }
    // the original network's per-channel output means, for bias correction
    let outs: Vec<ValueId> = layers.iter().map(|c| m.graph.n(c.node).map(|n| n.outputs[0].expect("output"))).collect::<Result<_>>()?;
    let mut orig_means: Vec<Vec<f64>> = layers.iter().map(|c| vec![0.0; c.k]).collect();
    let mut n_seen = 0usize;
    if bias_correct && !layers.is_empty() {
        forward(m, &samples, &outs, &mut |ts| {
            for (i, t) in ts.iter().enumerate() {
                let v = t.as_f32()?;
                let k = orig_means[i].len();
                let shape = t.shape();
                // channel axis: 1 for conv outputs, last for Gemm/MatMul
                let (ch_axis_last, inner) = if layers[i].op == "Conv" { (false, shape[2..].iter().product::<usize>()) } else { (true, 1) };
                if ch_axis_last {
                    for row in v.chunks(k) {
                        for (j, x) in row.iter().enumerate() {
                            orig_means[i][j] += *x as f64 / (v.len() / k) as f64;
                        }
                    }
                } else {
                    for (j, chunk) in v.chunks(inner).enumerate() {
                        orig_means[i][j % k] += chunk.iter().map(|x| *x as f64).sum::<f64>() / (v.len() / k) as f64;
                    }
                }
            }
            n_seen += 1;
            Ok(())
        })?;
        for mm in orig_means.iter_mut() {
            mm.iter_mut().for_each(|x| *x /= n_seen.max(1) as f64);
        }
    }
    let pb = if ctx.show_progress() {
        let pb = indicatif::ProgressBar::new(layers.len() as u64);
        pb.set_style(
            indicatif::ProgressStyle::with_template("{msg:>30} [{bar:30}] {pos}/{len} layers ETA {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        pb
    } else {
        indicatif::ProgressBar::hidden()
    };
    let (mut zeroed, mut total) = (0usize, 0usize);
    let (mut err_mag, mut err_obs) = (0f64, 0f64);
    let layer_inputs: Vec<ValueId> = layers
        .iter()
        .map(|c| m.graph.n(c.node)?.inputs[0].ok_or_else(|| Error::user(format!("{}: no input", c.label))))
        .collect::<Result<_>>()?;
    let mut resume = Resume::new(m, &layer_inputs, samples.len(), p.keep_bytes)?;
    for (li, cand) in layers.iter().enumerate() {
        pb.set_message(cand.label.clone());
        let lt = std::time::Instant::now();
        let node = m.graph.n(cand.node)?.clone();
        let wt = m.graph.constant(cand.weight).expect("candidate").clone();
        let w_orig = wt.to_f32()?;
        let layout = GroupLayout::new(&cand.shape, cand.axis)?;
        let is_conv = cand.op == "Conv";
        let cols = if is_conv { cand.c * cand.rs } else { cand.c };
        // With damp=auto every fifth sample is held out to choose the dampening.
        let cv = p.damp_auto && (p.obs_correct || p.obs_reconstruct) && samples.len() >= 5;
        let mut acc = HessianAccumulator::new(cols);
        let mut acc_val = HessianAccumulator::new(cols);
        let mut mean_patch = vec![0f64; cols];
        let (mut rows_fit, mut rows_val) = (0u64, 0u64);
        let mut geom: Option<ConvGeometry> = None;
        // What reconstruction needs of the two networks' patches is T = Pₚᵀ·(Pₒ·W₀ᵀ) (cols×k):
        // the pruned input against the original layer's output. Computed directly when
        // that is cheaper (2·k < cols: rows·cols·2k against rows·cols² multiply-adds, e.g.
        // every 3×3 conv with k < 4.5·C), else from the cross product C = PₚᵀPₒ as C·W₀ᵀ.
        let rows_w = weight_rows(&w_orig, cand)?;
        let direct = 2 * cand.k < cols;
        let acc_len = if direct { cols * cand.k } else { cols * cols };
        let mut target = vec![0f64; acc_len];
        let mut target_val = if cv { vec![0f64; acc_len] } else { Vec::new() };
        let mut sample_idx = 0usize;
        resume.step(li, &orig, m, &samples, &mut |pairs| {
            use rayon::prelude::*;
            if is_conv && geom.is_none() {
                if let Some((_, tp)) = pairs.first() {
                    geom = Some(conv_geometry(&node, &cand.shape[2..], &tp.shape()[2..])?);
                }
            }
            let gm = geom.as_ref();
            // per sample, in parallel: both networks' patches and T (or C) of the sample (each
            // sample's exactly as one at a time); summed below in sample order. One sample per
            // worker at a time: each T of BERT-base's FFN output layer is 9.4 MB, a whole
            // chunk's 150 MB more at the pass's peak.
            let workers = rayon::current_num_threads().max(1);
            for group in pairs.chunks(workers) {
                let per: Vec<(Vec<f32>, usize, Vec<f32>)> = group
                    .par_iter()
                    .map(|(to, tp)| {
                        let (vo, vp) = (to.as_f32()?, tp.as_f32()?);
                        let (po, pp, n_rows) = match gm {
                            Some(gm) => {
                                let a = im2col(vo, tp.shape(), gm)?;
                                let b = im2col(vp, tp.shape(), gm)?;
                                let rows = b.rows;
                                (a.data, b.data, rows)
                            }
                            None => (vo.to_vec(), vp.to_vec(), vp.len() / cols),
                        };
                        // Pₚᵀ·(Pₒ·W₀ᵀ), or Pₚᵀ·Pₒ; Pₚᵀ and W₀ᵀ are strided views
                        let n_out = if direct { cand.k } else { cols };
                        let rhs = if direct { matmul_strided(n_rows, cols, cand.k, &po, (cols, 1), &rows_w, (1, cols)) } else { po };
                        let c = matmul_strided(cols, n_rows, n_out, &pp, (1, cols), &rhs, (n_out, 1));
                        Ok((pp, n_rows, c))
                    })
                    .collect::<Result<_>>()?;
                for (pp, n_rows, c) in per {
                    let (h, g, rows) = if cv && sample_idx % 5 == 4 {
                        (&mut acc_val, &mut target_val, &mut rows_val)
                    } else {
                        (&mut acc, &mut target, &mut rows_fit)
                    };
                    h.add_rows(&pp, n_rows)?;
                    for (x, y) in g.iter_mut().zip(&c) {
                        *x += *y as f64;
                    }
                    *rows += n_rows as u64;
                    sample_idx += 1;
                    for r in pp.chunks(cols) {
                        for (j, x) in r.iter().enumerate() {
                            mean_patch[j] += *x as f64;
                        }
                    }
                }
            }
            Ok(())
        })?;
        let rows_seen = rows_fit + rows_val;
        mean_patch.iter_mut().for_each(|x| *x /= rows_seen.max(1) as f64);
        // Fewer than 2 rows per column (a Gemm sees one row per sample): the Hessian is
        // (near) rank-deficient and the reconstruction would fit the calibration samples, not
        // the data (MobileNetV2's 1280-input classifier on 250 images: FP32 top-1 of the
        // pruned model 50.27 % with OBS there, 52.80 % with magnitude). Magnitude masks then.
        let underdetermined = rows_seen < 2 * cols as u64;
        if !direct {
            target = cross_times_weights(&target, &rows_w, cols, cand.k);
            if cv {
                target_val = cross_times_weights(&target_val, &rows_w, cols, cand.k);
            }
        }
        // damp=auto: reconstruct from the fitting rows with each dampening of the grid and
        // keep the one whose layer output is closest to the original network's on the
        // held-out rows; then reconstruct from all rows with it.
        let mut damp = p.obs_damp;
        let mut damp_scores = Vec::new();
        // each accumulator becomes its Hessian in place (neither is held twice)
        let h_fit = if rows_fit > 0 || rows_val == 0 { Some(acc.into_hessian()?) } else { None };
        let h_val = if rows_val > 0 { Some(acc_val.into_hessian()?) } else { None };
        if let (Some(h_fit), Some(h_val)) = (&h_fit, &h_val) {
            if cv && !underdetermined && rows_fit >= 2 * cols as u64 {
                use rayon::prelude::*;
                let scored: Vec<(f64, f64)> = DAMP_GRID
                    .par_iter()
                    .map(|&d| {
                        let (w, ..) = reconstruct(p, d, cand, &layout, &w_orig, h_fit, &target, rows_fit as f64, false)?;
                        Ok((d, held_out_error(&weight_rows(&w, cand)?, h_val, &target_val, rows_val as f64, cand.k, cols)))
                    })
                    .collect::<Result<_>>()?;
                if let Some(best) = scored.iter().filter(|x| x.1.is_finite()).min_by(|a, b| a.1.partial_cmp(&b.1).unwrap_or(std::cmp::Ordering::Equal)) {
                    damp = best.0;
                }
                damp_scores = scored;
            }
        }
        let h = match (h_fit, h_val) {
            (Some(hf), Some(mut hv)) => {
                let (a, b) = (rows_fit as f64 / rows_seen as f64, rows_val as f64 / rows_seen as f64);
                hv.iter_mut().zip(&hf).for_each(|(v, f)| *v = *v * b + *f * a);
                for (c, v) in target.iter_mut().zip(&target_val) {
                    *c += *v;
                }
                hv
            }
            (Some(hf), None) => hf,
            // held-out rows only (no fitting rows): as before, forming the fitting Hessian fails
            (None, Some(_)) => return Err(Error::user("no calibration rows reached this layer: cannot form its Hessian")),
            (None, None) => unreachable!("one of the two is always formed"),
        };
        let (w, e_mag, e_obs, fallback) = reconstruct(p, damp, cand, &layout, &w_orig, &h, &target, rows_seen as f64, underdetermined)?;
        m.graph.set_constant(cand.weight, Tensor::from_f32("", wt.dims(), &w))?;
        zeroed += w.iter().filter(|v| **v == 0.0).count();
        total += w.len();
        err_mag += e_mag;
        err_obs += e_obs;
        let (class, why) = speed_class(cand.k, cand.c, cand.rs);
        let method = if underdetermined {
            format!("magnitude masks: {rows_seen} calibration rows for {cols} inputs, too few to reconstruct without overfitting (give more samples)")
        } else if p.obs_reconstruct {
            "OBS reconstruction".to_string()
        } else {
            "magnitude masks (reconstruct=false)".to_string()
        };
        let mut item = ReportItem::new(&cand.label, &cand.op, "pruned", format!("{method} on {} samples; {why}", samples.len()))
            .with("underdetermined", underdetermined)
            .with("damp", damp)
            .with("damp_heldout_error", serde_json::json!(damp_scores.iter().map(|(d, e)| serde_json::json!([d, e])).collect::<Vec<_>>()))
            .with("weight", m.graph.name_of(cand.weight).to_string())
            .with("axis", cand.axis)
            .with("speed_class", class)
            .with("error_magnitude", e_mag)
            .with("error_obs", e_obs)
            .with("rows_fallback", fallback)
            .with("seconds", lt.elapsed().as_secs_f64());
        if let Some(e) = &cand.evidence {
            item = item.with("evidence", e.clone());
        }
        if bias_correct {
            // new output mean per channel = W'·mean_patch + b; target = original network's mean
            let b_slot = 2;
            if let Some((old_b, alpha, beta)) = bias_terms(&m.graph, &node, cand)? {
                // weights as rows (k, cols) in the same column order as mean_patch
                let rows = weight_rows(&w, cand)?;
                let mut new_b = old_b.clone();
                let mut shift_abs = 0f64;
                for k in 0..cand.k {
                    let y: f64 = rows[k * cols..(k + 1) * cols].iter().zip(&mean_patch).map(|(a, b)| *a as f64 * b).sum::<f64>() * alpha
                        + old_b[k] as f64 * beta;
                    let shift = orig_means[li][k] - y;
                    new_b[k] = (old_b[k] as f64 + shift / beta) as f32;
                    shift_abs += shift.abs();
                }
                if cand.op == "MatMul" {
                    // MatMul has no bias input (old_b is zero): the shift goes into the bias
                    // Add after it, or a new one
                    let add = crate::ir::edit::shift_matmul_output(&mut m.graph, cand.node, &new_b)?;
                    item = item.with("bias_add", add);
                } else {
                    crate::ir::edit::set_const_input(&mut m.graph, cand.node, b_slot, &format!("{}.bias_corrected", cand.label), Tensor::from_f32("", &[cand.k as i64], &new_b))?;
                }
                item = item.with("bias_shift_mean_abs", shift_abs / cand.k as f64);
            }
        }
        rep.item(item);
        pb.inc(1);
    }
    pb.finish_and_clear();
    let secs = t0.elapsed().as_secs_f64();
    rep.changed = !layers.is_empty();
    rep.summary = format!(
        "{} layers 2:4-pruned with OBS reconstruction ({zeroed} of {total} weights zero; layer output error {:.3}x of magnitude pruning), {} skipped, {:.1} s",
        layers.len(),
        if err_mag > 0.0 { err_obs / err_mag } else { 1.0 },
        rep.count("skipped"),
        secs
    );
    rep.stat("pruned_layers", layers.len());
    ctx.notes.insert("pruned_layers".into(), serde_json::json!(layers.iter().map(|c| c.label.clone()).collect::<Vec<_>>()));
    rep.stat("error_ratio", if err_mag > 0.0 { err_obs / err_mag } else { 1.0 });
    rep.stat("seconds", secs);
    rep.stat("resume_peak_bytes", resume.peak_bytes);
    rep.stat("resume_restarts", resume.restarts);
    Ok(rep)
}

/// Relative dampenings `damp=auto` chooses from, by held-out layer output error.
pub const DAMP_GRID: [f64; 5] = [0.003, 0.01, 0.03, 0.1, 0.3];

/// Target correction (ridge toward W) and 2:4 pruning of one layer from its statistics:
/// `h` = PₚᵀPₚ/n, `target` = T = Σ Pₚᵀ·(Pₒ·W₀ᵀ) (`cols×k`, raw sum over `nrm` rows). Returns the pruned weight in
/// the constant's layout and the layer output errors of magnitude and of the result.
#[allow(clippy::too_many_arguments)]
fn reconstruct(
    p: &Prune,
    damp: f64,
    cand: &Candidate,
    layout: &GroupLayout,
    w_orig: &[f32],
    h: &[f64],
    target: &[f64],
    nrm: f64,
    underdetermined: bool,
) -> Result<(Vec<f32>, f64, f64, usize)> {
    let cols = h.len().isqrt();
    let mut w = w_orig.to_vec();
    if p.obs_correct && nrm > 0.0 && !underdetermined {
        let rows_w = weight_rows(w_orig, cand)?;
        let mean_diag = (0..cols).map(|i| h[i * cols + i]).sum::<f64>() / cols as f64;
        let mut hd = h.to_vec();
        for i in 0..cols {
            hd[i * cols + i] += damp * mean_diag.max(1e-12);
            if h[i * cols + i] == 0.0 {
                hd[i * cols + i] = mean_diag.max(1e-12);
            }
        }
        // Ridge toward the original weights, not toward zero:
        //   W' = argmin ‖W'Xp − W·Xo‖²/n + ‖(W' − W)·Λ^½‖²  ⇒  W'(H + Λ) = W·Gᵀ + W·Λ
        // (G = PpᵀPo/n), so input directions the calibration data never excites keep their
        // weights; with Λ alone on the left, W·Gᵀ·(H+Λ)⁻¹ would shrink them to zero.
        // B[r][j] = Σ_i W[r][i]·G[j][i] = target[j][r]/n
        let mut bmat = vec![0f64; cand.k * cols];
        for r in 0..cand.k {
            let wr = &rows_w[r * cols..(r + 1) * cols];
            let br = &mut bmat[r * cols..(r + 1) * cols];
            for (j, wj) in wr.iter().enumerate() {
                br[j] += (hd[j * cols + j] - h[j * cols + j]) * *wj as f64;
            }
            for (j, b) in br.iter_mut().enumerate() {
                *b += target[j * cand.k + r] / nrm;
            }
        }
        if let Ok(wc) = crate::sparsity::obs::solve_right_spd(&hd, &bmat, cols, cand.k) {
            let wc32: Vec<f32> = wc.iter().map(|v| *v as f32).collect();
            if wc32.iter().all(|v| v.is_finite()) {
                w = if cand.op == "Conv" {
                    crate::sparsity::rows_to_conv_weight(&wc32, &cand.shape)?
                } else if cand.axis == 1 {
                    wc32
                } else {
                    crate::sparsity::transpose(&wc32, cand.k, cand.c)?
                };
            }
        }
    }
    if p.obs_reconstruct && !underdetermined {
        let st = obs_prune_2of4_layout(&mut w, layout, h, damp, 128)?;
        Ok((w, st.error_magnitude, st.error_obs, st.rows_fallback))
    } else {
        // magnitude masks on the (possibly target-corrected) weights, no OBS update
        let before = w.clone();
        crate::sparsity::prune_2of4_magnitude(&mut w, layout)?;
        let e = crate::sparsity::layer_output_error(&weight_rows(&before, cand)?, &weight_rows(&w, cand)?, cand.k, cols, h)?;
        Ok((w, e, e, 0))
    }
}

/// Mean squared distance, on held-out rows, between the layer output with weights `w`
/// (rows `k×cols`) on the pruned network's patches and the original layer (`w0`) on the
/// original network's patches, up to a constant: Σᵣ wᵣ·H·wᵣᵀ − 2·wᵣ·Tᵣ/n with
/// H = PₚᵀPₚ/n and T = Pₚᵀ·(Pₒ·W₀ᵀ) (`target`, `cols×k`, the raw sum over `n` rows).
fn held_out_error(w: &[f32], h: &[f64], target: &[f64], n: f64, k: usize, cols: usize) -> f64 {
    let mut e = 0f64;
    let mut hw = vec![0f64; cols];
    let mut cw = vec![0f64; cols];
    for r in 0..k {
        let wr = &w[r * cols..(r + 1) * cols];
        for i in 0..cols {
            hw[i] = h[i * cols..(i + 1) * cols].iter().zip(wr).map(|(a, b)| a * *b as f64).sum();
            cw[i] = target[i * k + r] / n;
        }
        e += wr.iter().zip(hw.iter().zip(&cw)).map(|(a, (x, y))| *a as f64 * (x - 2.0 * y)).sum::<f64>();
    }
    e
}

/// One layer pruned on its own (the rest of the network dense), as the budget's
/// sensitivity analysis needs it.
pub(crate) struct AloneResult {
    /// The pruned weight, in the constant's layout.
    pub weight: Vec<f32>,
    /// The bias after bias correction (`None`: leave the bias as it is).
    pub bias: Option<Vec<f32>>,
    /// Layer output error of magnitude pruning and of the chosen method, on the Hessian.
    pub error_magnitude: f64,
    pub error_method: f64,
}

/// The layer's bias (zeros when it has none) with Gemm's `alpha` and `beta` (1 for Conv),
/// or `None` when the bias cannot absorb a shift (wrong length, `beta = 0`).
fn bias_terms(g: &crate::ir::Graph, n: &crate::ir::Node, c: &Candidate) -> Result<Option<(Vec<f32>, f64, f64)>> {
    // A MatMul has no bias input: its bias is zero here and the corrected bias goes into an
    // Add after it (never a third MatMul input, which broke every MatMul model: issue 18)
    if !matches!(c.op.as_str(), "Conv" | "Gemm" | "MatMul") {
        return Ok(None);
    }
    let attr = |name: &str| if c.op == "Gemm" { n.attr_f(name).unwrap_or(1.0) as f64 } else { 1.0 };
    let (alpha, beta) = (attr("alpha"), attr("beta"));
    let old_b: Vec<f32> = match n.inputs.get(2).copied().flatten() {
        Some(b) => g.constant_value(b).map(|t| t.to_f32()).transpose()?.unwrap_or_else(|| vec![0.0; c.k]),
        None => vec![0.0; c.k],
    };
    Ok((old_b.len() == c.k && beta != 0.0).then_some((old_b, alpha, beta)))
}

/// Weights as rows `(k, cols)` in the Hessian's column order.
fn weight_rows(w: &[f32], cand: &Candidate) -> Result<Vec<f32>> {
    if cand.op == "Conv" {
        crate::sparsity::conv_weight_to_rows(w, &cand.shape)
    } else if cand.axis == 1 {
        Ok(w.to_vec())
    } else {
        crate::sparsity::transpose(w, cand.c, cand.k)
    }
}

/// Prunes every layer in `cands` **on its own**, each from the dense network's input
/// statistics: one forward pass over `samples` accumulates all the input Hessians at once,
/// then each layer is pruned (OBS when `p.method == "obs"` and `p.obs_reconstruct`, else
/// magnitude masks) and, with `p.bias_correct`, its output mean shift folded into the bias
/// (Conv and Gemm). Layers are solved in parallel. The model is not modified.
pub(crate) fn prune_each_alone(
    p: &Prune,
    m: &Model,
    cands: &[Candidate],
    samples: &[Sample],
) -> Result<Vec<AloneResult>> {
    use rayon::prelude::*;
    let g = &m.graph;
    let mut inputs: Vec<ValueId> = Vec::new();
    let mut nodes = Vec::new();
    for c in cands {
        let n = g.n(c.node)?.clone();
        let x = n.inputs[0].ok_or_else(|| Error::user(format!("{}: no input", c.label)))?;
        if !inputs.contains(&x) {
            inputs.push(x);
        }
        nodes.push(n);
    }
    let cols_of = |c: &Candidate| if c.op == "Conv" { c.c * c.rs } else { c.c };
    let mut accs: Vec<HessianAccumulator> = cands.iter().map(|c| HessianAccumulator::new(cols_of(c))).collect();
    let mut means: Vec<Vec<f64>> = cands.iter().map(|c| vec![0f64; cols_of(c)]).collect();
    let mut rows_seen = vec![0u64; cands.len()];
    let mut geoms: Vec<Option<ConvGeometry>> = vec![None; cands.len()];
    forward(m, samples, &inputs, &mut |ts| {
        for (li, c) in cands.iter().enumerate() {
            let x = nodes[li].inputs[0].expect("checked");
            let t = &ts[inputs.iter().position(|v| *v == x).expect("collected")];
            let v = t.as_f32()?;
            let cols = cols_of(c);
            let patches;
            let (rows, n_rows): (&[f32], usize) = if c.op == "Conv" {
                let shape = t.shape().to_vec();
                if geoms[li].is_none() {
                    geoms[li] = Some(conv_geometry(&nodes[li], &c.shape[2..], &shape[2..])?);
                }
                patches = im2col(v, &shape, geoms[li].as_ref().expect("set"))?;
                (&patches.data, patches.rows)
            } else {
                (v, v.len() / cols)
            };
            accs[li].add_rows(rows, n_rows)?;
            for r in rows.chunks(cols) {
                for (j, x) in r.iter().enumerate() {
                    means[li][j] += *x as f64;
                }
            }
            rows_seen[li] += n_rows as u64;
        }
        Ok(())
    })?;
    let hs: Vec<Vec<f64>> = accs.iter().map(|a| a.hessian()).collect::<Result<_>>()?;
    cands
        .par_iter()
        .enumerate()
        .map(|(li, c)| {
            let n = &nodes[li];
            let w0 = g.constant(c.weight).expect("candidate").to_f32()?;
            let layout = GroupLayout::new(&c.shape, c.axis)?;
            let mut w = w0.clone();
            let underdetermined = rows_seen[li] < 2 * cols_of(c) as u64;
            let obs = p.method == "obs" && p.obs_reconstruct && !underdetermined && !(c.op != "Conv" && n.attr_i("transA").unwrap_or(0) != 0);
            let (e_mag, e_m) = if obs {
                let st = obs_prune_2of4_layout(&mut w, &layout, &hs[li], p.obs_damp, 128)?;
                (st.error_magnitude, st.error_obs)
            } else {
                crate::sparsity::prune_2of4_magnitude(&mut w, &layout)?;
                let e = crate::sparsity::layer_output_error(&weight_rows(&w0, c)?, &weight_rows(&w, c)?, c.k, cols_of(c), &hs[li])?;
                (e, e)
            };
            let mut bias = None;
            if p.bias_correct && matches!(c.op.as_str(), "Conv" | "Gemm") && rows_seen[li] > 0 {
                if let Some((old_b, alpha, beta)) = bias_terms(g, n, c)? {
                    let (r0, r1) = (weight_rows(&w0, c)?, weight_rows(&w, c)?);
                    let cols = cols_of(c);
                    let nr = rows_seen[li] as f64;
                    let mut nb = old_b.clone();
                    for k in 0..c.k {
                        // dense mean − pruned mean of output channel k (the layer is linear)
                        let shift: f64 = (0..cols).map(|j| (r0[k * cols + j] - r1[k * cols + j]) as f64 * means[li][j] / nr).sum::<f64>() * alpha;
                        nb[k] = (old_b[k] as f64 + shift / beta) as f32;
                    }
                    bias = Some(nb);
                }
            }
            Ok(AloneResult { weight: w, bias, error_magnitude: e_mag, error_method: e_m })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u64) -> Vec<f32> {
        crate::text::random_values(seed, n)
    }

    #[test]
    fn target_term_is_the_same_computed_directly_or_from_the_cross_product() {
        // rows x cols patches of the pruned (p) and original (o) network, k x cols weights;
        // cols not a multiple of the kernels' blocks, k both below and above cols / 2
        for &(rows, cols, k) in &[(37usize, 45usize, 7usize), (50, 20, 30), (1, 9, 3), (40, 130, 70)] {
            let p = values(rows * cols, 1);
            let o = values(rows * cols, 2);
            let w = values(k * cols, 3);
            let y = matmul_strided(rows, cols, k, &o, (cols, 1), &w, (1, cols));
            let direct = matmul_strided(cols, rows, k, &p, (1, cols), &y, (k, 1));
            let cross: Vec<f64> = matmul_strided(cols, rows, cols, &p, (1, cols), &o, (cols, 1)).iter().map(|v| *v as f64).collect();
            let via_cross = cross_times_weights(&cross, &w, cols, k);
            // both against the definition, T[j][r] = Σ_n p[n][j] · Σ_i o[n][i] · w[r][i], in f64
            for j in 0..cols {
                for r in 0..k {
                    let exact: f64 = (0..rows)
                        .map(|n| p[n * cols + j] as f64 * (0..cols).map(|i| o[n * cols + i] as f64 * w[r * cols + i] as f64).sum::<f64>())
                        .sum();
                    let tol = 1e-4 * (1.0 + exact.abs()) * rows as f64;
                    assert!((direct[j * k + r] as f64 - exact).abs() < tol, "direct T[{j}][{r}] = {} vs {exact}", direct[j * k + r]);
                    assert!((via_cross[j * k + r] - exact).abs() < tol, "C·Wᵀ [{j}][{r}] = {} vs {exact}", via_cross[j * k + r]);
                }
            }
        }
    }
}
