//! Forward runs of a model on calibration samples through the interpreter: whole-model
//! runs ([`forward`]) and the layer-by-layer schedule that resumes from kept values
//! ([`Resume`]).

use super::samples::Sample;
use crate::engine::{f32_tensor, ModelSession};
use crate::error::{Error, Result};
use crate::ir::{Model, ValueId};

/// Samples per batch of a [`Resume`] run, and the most that [`forward`] runs at once (see
/// [`chunk_for`]).
const CHUNK: usize = 16;

/// One calibration sample as the session's fed values (its graph inputs by name).
pub fn feed(ms: &ModelSession, sample: &[crate::calib::InputTensor]) -> Result<Vec<(usize, crate::exec::Tensor)>> {
    sample
        .iter()
        .map(|crate::calib::InputTensor { name, shape, data }| {
            let id = ms.inputs.iter().find(|(n, _)| n == name).map(|(_, id)| *id).ok_or_else(|| {
                Error::user(format!("calibration data names input '{name}', which the model does not have"))
            })?;
            Ok((id, f32_tensor(shape, data.clone())?))
        })
        .collect()
}

/// Runs the model on all samples, returning `targets` per sample (in batches sized by [`chunk_for`],
/// handed to `f` in sample order).
pub fn forward(
    m: &Model,
    samples: &[Sample],
    targets: &[ValueId],
    f: &mut dyn FnMut(Vec<crate::exec::Tensor>) -> Result<()>,
) -> Result<()> {
    let ms = ModelSession::new(m)?;
    let tids: Vec<usize> = targets.iter().map(|v| ms.id(*v)).collect::<Result<_>>()?;
    // a chunk's targets are all held until the chunk ends: the first chunk has one sample
    // per worker (the least any chunk has) and its largest sample's targets set the
    // chunks after it (BERT-base's 72 layer outputs: 37 MiB per sample, 600 MiB for 16 samples)
    let mut chunk = chunk_for(usize::MAX);
    let mut next = 0;
    while next < samples.len() {
        let end = (next + chunk).min(samples.len());
        let batch = samples[next..end].iter().map(|s| feed(&ms, s)).collect::<Result<Vec<_>>>()?;
        let mut largest = 0;
        for outs in ms.session.run_batch(batch, &tids)? {
            largest = largest.max(outs.iter().map(|t| t.len() * t.dtype().size()).sum::<usize>());
            f(outs)?;
        }
        if next == 0 {
            chunk = chunk_for(largest);
        }
        next = end;
    }
    Ok(())
}

/// Bytes of targets that a chunk of [`forward`] may hold.
const FORWARD_HOLD_BYTES: usize = 64 << 20;

/// Samples per chunk when each sample's targets take `bytes`: as many as fit
/// [`FORWARD_HOLD_BYTES`], at least one per worker thread, at most [`CHUNK`].
fn chunk_for(bytes: usize) -> usize {
    let fit = FORWARD_HOLD_BYTES / bytes.max(1);
    fit.max(rayon::current_num_threads()).clamp(1, CHUNK)
}

/// One layer's run in a [`Resume`] schedule.
#[derive(Debug)]
struct ResumeStep {
    /// The layer's input.
    target: ValueId,
    /// Values computed by earlier steps that this step's nodes read.
    feed: Vec<ValueId>,
    /// Values later steps read that this run returns (computed or fed here).
    keep_run: Vec<ValueId>,
    /// Values later steps read that this step neither computes nor reads: stay in the store.
    keep_carry: Vec<ValueId>,
    /// Whether this step's nodes read a graph input.
    needs_inputs: bool,
}

/// The layer-by-layer forward of the original and the current network. The run that
/// computes layer i's input keeps, per sample, the values later runs read, so the run for
/// layer i+1 resumes from them instead of from the graph inputs: each node runs once per
/// network over the whole pass instead of once per later layer (MobileNetV2: 33 layers).
/// Exact, because layers are pruned in topological order: a run computes only values
/// upstream of the layer about to be pruned, which no later change touches. When the kept
/// values would exceed the budget the store is dropped and the next run starts from the
/// graph inputs, as every run did before. Outputs are bit-identical either way (each sample
/// is its own run of the same nodes on the same values).
pub struct Resume {
    steps: Vec<ResumeStep>,
    /// Per sample: the original network's and the current network's kept values.
    store: Vec<[std::collections::HashMap<ValueId, crate::exec::Tensor>; 2]>,
    valid: bool,
    /// Budget for the store, bytes.
    budget: usize,
    /// Largest store held, bytes.
    pub peak_bytes: usize,
    /// Runs that started from the graph inputs because the store was over budget.
    pub restarts: usize,
}

impl Resume {
    /// The schedule for computing `targets` (layer inputs, in pruning order) of `m` one after another.
    pub fn new(m: &Model, targets: &[ValueId], n_samples: usize, budget: usize) -> Result<Resume> {
        use crate::ir::Producer;
        use std::collections::{BTreeSet, HashMap, HashSet};
        let g = &m.graph;
        let folded = ModelSession::folded_values(m)?;
        let mut computed = HashSet::new();
        let mut made_at: HashMap<ValueId, usize> = HashMap::new();
        let mut feeds: Vec<BTreeSet<ValueId>> = Vec::new();
        let mut inputs_read = Vec::new();
        for (i, &t) in targets.iter().enumerate() {
            let (mut feed, mut out, mut run) = (BTreeSet::new(), HashSet::new(), HashSet::new());
            let mut reads_input = false;
            let mut seen = HashSet::new();
            let mut stack = vec![t];
            while let Some(v) = stack.pop() {
                if !seen.insert(v) || folded.contains(&v) {
                    continue;
                }
                let val = g.v(v)?;
                match val.producer {
                    Producer::Initializer => continue,
                    Producer::GraphInput => reads_input |= val.constant.is_none(),
                    Producer::Node(n, _) if computed.contains(&n) => {
                        feed.insert(v);
                    }
                    Producer::Node(n, _) => {
                        if run.insert(n) {
                            let node = g.n(n)?;
                            stack.extend(node.inputs.iter().flatten().copied());
                            out.extend(node.outputs.iter().flatten().copied());
                        }
                    }
                    Producer::None => return Err(Error::internal(format!("'{}' has no producer", g.name_of(v)))),
                }
            }
            made_at.extend(out.into_iter().map(|v| (v, i)));
            computed.extend(run);
            feeds.push(feed);
            inputs_read.push(reads_input);
        }
        let mut steps = Vec::with_capacity(targets.len());
        let mut later: BTreeSet<ValueId> = BTreeSet::new();
        for i in (0..targets.len()).rev() {
            let keep: Vec<ValueId> = later.iter().copied().filter(|v| made_at.get(v).is_some_and(|&s| s <= i)).collect();
            let (keep_run, keep_carry) = keep.into_iter().partition(|v| made_at.get(v) == Some(&i) || feeds[i].contains(v));
            steps.push(ResumeStep { target: targets[i], feed: feeds[i].iter().copied().collect(), keep_run, keep_carry, needs_inputs: inputs_read[i] });
            later.extend(feeds[i].iter().copied());
        }
        steps.reverse();
        Ok(Resume { steps, store: (0..n_samples).map(|_| Default::default()).collect(), valid: true, budget, peak_bytes: 0, restarts: 0 })
    }

    /// Runs step `i` on both networks over all samples and hands the layer input of the
    /// original and of the current network to `f`, chunk by chunk, in sample order.
    pub fn step(
        &mut self,
        i: usize,
        orig: &Model,
        cur: &Model,
        samples: &[Sample],
        f: &mut dyn FnMut(&[(crate::exec::Tensor, crate::exec::Tensor)]) -> Result<()>,
    ) -> Result<()> {
        let st = &self.steps[i];
        let resume = self.valid;
        if !resume {
            self.restarts += 1;
        }
        // from the store: the target and the kept values that pass through this run;
        // from the graph inputs: all of them
        let carried: &[ValueId] = if resume { &[] } else { &st.keep_carry };
        let wanted: Vec<ValueId> = std::iter::once(st.target).chain(st.keep_run.iter().copied()).chain(carried.iter().copied()).collect();
        // each network's session holds only this stretch's nodes and weights
        let mut known: Vec<ValueId> = if !resume || st.needs_inputs { orig.graph.inputs.clone() } else { Vec::new() };
        if resume {
            known.extend(st.feed.iter().copied());
        }
        let sessions = [ModelSession::for_values(orig, &known, &wanted)?, ModelSession::for_values(cur, &known, &wanted)?];
        let tids: [Vec<usize>; 2] = [
            wanted.iter().map(|v| sessions[0].id(*v)).collect::<Result<_>>()?,
            wanted.iter().map(|v| sessions[1].id(*v)).collect::<Result<_>>()?,
        ];
        let mut keeping = true;
        for (c, chunk) in samples.chunks(CHUNK).enumerate() {
            // each network's layer input per sample of the chunk
            let mut inputs: [Vec<crate::exec::Tensor>; 2] = Default::default();
            for net in 0..2 {
                let ms = &sessions[net];
                let mut batch = Vec::with_capacity(chunk.len());
                for (j, s) in chunk.iter().enumerate() {
                    let mut known = if !resume || st.needs_inputs { feed(ms, s)? } else { Vec::new() };
                    let kept = &mut self.store[c * CHUNK + j][net];
                    if resume {
                        for v in &st.feed {
                            let t = kept.remove(v).ok_or_else(|| Error::internal(format!("resume: '{}' not kept", orig.graph.name_of(*v))))?;
                            known.push((ms.id(*v)?, t));
                        }
                    }
                    if !keeping {
                        kept.clear(); // the next step starts from the graph inputs
                    }
                    batch.push(known);
                }
                for (j, outs) in ms.session.run_batch(batch, &tids[net])?.into_iter().enumerate() {
                    let mut it = outs.into_iter();
                    let t = it.next().ok_or_else(|| Error::internal("resume: no target"))?;
                    if keeping {
                        let kept = &mut self.store[c * CHUNK + j][net];
                        for (v, t) in wanted[1..].iter().zip(it) {
                            // the interpreter's buffer pool may have handed out a much larger
                            // buffer (an early 112×112 activation's): keep an exact copy, or
                            // 250 samples' kept values pin gigabytes
                            let t = match t.dtype() {
                                crate::exec::DType::F32 => crate::exec::Tensor::new(t.shape().to_vec(), t.as_f32()?.to_vec())?,
                                _ => t,
                            };
                            kept.insert(*v, t);
                        }
                    }
                    inputs[net].push(t);
                }
            }
            let [o, p] = inputs;
            f(&o.into_iter().zip(p).collect::<Vec<_>>())?;
            if c == 0 && keeping {
                // every sample keeps values of the same sizes: project the store from the first
                let per_sample: usize = self.store[0].iter().flat_map(|m| m.values()).map(|t| t.len() * t.dtype().size()).sum();
                let projected = per_sample * samples.len();
                if projected > self.budget {
                    keeping = false;
                    self.store[..chunk.len()].iter_mut().flat_map(|s| s.iter_mut()).for_each(|m| m.clear());
                } else {
                    self.peak_bytes = self.peak_bytes.max(projected);
                }
            }
        }
        self.valid = keeping;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_holds_at_most_the_budget_but_keeps_every_worker_busy() {
        let workers = rayon::current_num_threads();
        // small targets: the largest chunk
        assert_eq!(chunk_for(0), CHUNK);
        assert_eq!(chunk_for(4 << 20), CHUNK);
        // 37 MiB per sample (BERT-base's 72 layer outputs): one sample per worker
        assert_eq!(chunk_for(37 << 20), workers.clamp(1, CHUNK));
        // in between: as many as fit the budget
        assert_eq!(chunk_for(8 << 20), 8usize.max(workers).min(CHUNK));
        assert_eq!(chunk_for(usize::MAX), workers.clamp(1, CHUNK));
    }
}
