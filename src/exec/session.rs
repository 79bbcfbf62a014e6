//! Execution: validation and topological ordering up front ([`Session::new`]), then runs
//! that compute only what the requested values need, starting from whatever values the
//! caller already has, and free each intermediate right after its last consumer.

use std::collections::HashMap;

use rayon::prelude::*;

use crate::error::{Error, Result};

use super::ops::{self, Kernel, NodeCtx};
use super::program::Program;
use super::tensor::{pool, Tensor};

/// A validated, ready-to-run program. Cheap to share across threads (`&Session` is `Sync`).
pub struct Session {
    program: Program,
    kernels: Vec<Box<dyn Kernel>>,
    /// All nodes in a topological order.
    order: Vec<usize>,
    /// The node producing each value, if any.
    producer: Vec<Option<usize>>,
    /// The constant tensor of each value, if it is a constant the session holds.
    consts: Vec<Option<Tensor>>,
    /// Constants that live only inside their consumers' kernels, in a layout of their own
    /// (`Kernel::packed_inputs`: a MatMul's prepacked weight): the session holds no copy
    /// and hands those slots `None`.
    packed: Vec<bool>,
    /// The plan computing the graph outputs from the graph inputs.
    full: Plan,
}

/// A dropped packed constant at least this large returns its pages to the kernel at once.
const TRIM_AFTER_BYTES: usize = 256 << 10;

/// Wall time of each executed node: (node index into `Program::nodes`, seconds).
pub type NodeTimes = Vec<(usize, f64)>;

/// A precomputed execution schedule for one set of fed values and one set of targets
/// (see [`Session::plan`]). Reusing a plan skips the dependency analysis of each run.
#[derive(Debug, Clone)]
pub struct Plan {
    known: Vec<usize>,
    targets: Vec<usize>,
    steps: Vec<Step>,
    /// Fed values that no step reads and no target names (dropped at once).
    unused_known: Vec<usize>,
    /// Observed values that are fed or constant: (value, index into the observed list),
    /// reported before the first step.
    observed_at_start: Vec<(usize, usize)>,
}

#[derive(Debug, Clone)]
struct Step {
    node: usize,
    /// Per input slot: move the value out of the table (this is its last use).
    take: Vec<bool>,
    /// Outputs nobody reads: dropped right after the step.
    drop_outputs: Vec<usize>,
    /// Outputs that are observed: (value, index into the observed list), reported right
    /// after the step, before they are dropped.
    observe: Vec<(usize, usize)>,
}

impl Plan {
    /// The fed values this plan expects, sorted by id.
    pub fn known(&self) -> &[usize] {
        &self.known
    }
    /// The values this plan returns, in order.
    pub fn targets(&self) -> &[usize] {
        &self.targets
    }
    /// Number of nodes this plan executes.
    pub fn num_steps(&self) -> usize {
        self.steps.len()
    }
}

impl Session {
    /// Validates every node (op support, attributes, arity) and orders the graph.
    /// Errors name the node, its op type and what is unsupported or wrong.
    ///
    /// The program's constants move into the session (`program().constants` is then
    /// empty; [`Session::constants`] lists them). A constant that every consumer's kernel
    /// copied into a layout of its own is dropped as soon as its last consumer is built, so
    /// the weights are held once.
    pub fn new(mut program: Program) -> Result<Session> {
        let nv = program.values.len();
        let check_id = |v: usize, what: &str| -> Result<()> {
            if v >= nv {
                return Err(Error::user(format!("{what} refers to value id {v}, but the program has {nv} values")));
            }
            Ok(())
        };
        let mut consts: Vec<Option<Tensor>> = vec![None; nv];
        for (v, t) in std::mem::take(&mut program.constants) {
            check_id(v, "a constant")?;
            consts[v] = Some(t);
        }
        for &v in program.inputs.iter().chain(&program.outputs) {
            check_id(v, "a graph input or output")?;
        }
        let mut producer: Vec<Option<usize>> = vec![None; nv];
        for (ni, node) in program.nodes.iter().enumerate() {
            for &v in node.inputs.iter().chain(&node.outputs).flatten() {
                check_id(v, &node.describe())?;
            }
            for &v in node.outputs.iter().flatten() {
                if consts[v].is_some() {
                    return Err(Error::user(format!(
                        "{}: output '{}' is also a constant",
                        node.describe(),
                        program.values[v].name
                    )));
                }
                if let Some(other) = producer[v] {
                    return Err(Error::user(format!(
                        "value '{}' is produced by both {} and {}",
                        program.values[v].name,
                        program.nodes[other].describe(),
                        node.describe()
                    )));
                }
                producer[v] = Some(ni);
            }
        }
        // Kahn's algorithm, stable in node order.
        let mut consumers: Vec<Vec<usize>> = vec![Vec::new(); nv];
        let mut pending = vec![0usize; program.nodes.len()];
        for (ni, node) in program.nodes.iter().enumerate() {
            let mut seen = Vec::new();
            for &v in node.inputs.iter().flatten() {
                if producer[v].is_some() && !seen.contains(&v) {
                    seen.push(v);
                    consumers[v].push(ni);
                    pending[ni] += 1;
                }
            }
        }
        let mut ready: std::collections::VecDeque<usize> = (0..program.nodes.len()).filter(|&n| pending[n] == 0).collect();
        let mut order = Vec::with_capacity(program.nodes.len());
        while let Some(ni) = ready.pop_front() {
            order.push(ni);
            for &v in program.nodes[ni].outputs.iter().flatten() {
                for &c in &consumers[v] {
                    pending[c] -= 1;
                    if pending[c] == 0 {
                        ready.push_back(c);
                    }
                }
            }
        }
        if order.len() != program.nodes.len() {
            let stuck = (0..program.nodes.len()).find(|&n| pending[n] > 0).unwrap_or(0);
            return Err(Error::user(format!(
                "the graph has a cycle through {}",
                program.nodes.get(stuck).map(|n| n.describe()).unwrap_or_default()
            )));
        }
        // per constant: consumer slots whose kernel is not built yet, and whether every
        // built one packed it
        let mut pending_uses = vec![0usize; nv];
        for node in &program.nodes {
            for &v in node.inputs.iter().flatten() {
                pending_uses[v] += usize::from(consts[v].is_some());
            }
        }
        let mut all_packed = vec![true; nv];
        for &v in &program.outputs {
            all_packed[v] = false;
        }
        let mut packed = vec![false; nv];
        let mut kernels = Vec::with_capacity(program.nodes.len());
        for node in &program.nodes {
            let cx = NodeCtx {
                node,
                opset: program.opset,
                consts: node.inputs.iter().map(|i| i.and_then(|v| consts[v].as_ref())).collect(),
            };
            let kernel = ops::build(&cx).map_err(|e| e.context(node.describe()))?;
            for (j, inp) in node.inputs.iter().enumerate() {
                let Some(v) = *inp else { continue };
                if consts[v].is_none() {
                    continue;
                }
                all_packed[v] &= kernel.packed_inputs().contains(&j);
                pending_uses[v] -= 1;
                if pending_uses[v] == 0 && all_packed[v] {
                    let bytes = consts[v].take().map_or(0, |t| t.len() * t.dtype().size());
                    packed[v] = true;
                    // a folded weight was allocated by the worker thread that folded it: its
                    // freed pages go back to the kernel now, or every weight would be resident
                    // twice until the session is built (the raised trim threshold keeps them)
                    if bytes >= TRIM_AFTER_BYTES {
                        crate::util::trim_heap();
                    }
                }
            }
            kernels.push(kernel);
        }
        let mut s = Session {
            full: Plan { known: Vec::new(), targets: Vec::new(), steps: Vec::new(), unused_known: Vec::new(), observed_at_start: Vec::new() },
            program,
            kernels,
            order,
            producer,
            consts,
            packed,
        };
        let inputs = s.program.inputs.clone();
        let outputs = s.program.outputs.clone();
        s.full = s.plan(&inputs, &outputs)?;
        Ok(s)
    }

    /// The program this session runs (its constants moved into the session: see
    /// [`Session::constants`]).
    pub fn program(&self) -> &Program {
        &self.program
    }

    /// The constant values, held by the session or packed into their consumers' kernels,
    /// by id.
    pub fn constants(&self) -> Vec<usize> {
        (0..self.consts.len()).filter(|&v| self.consts[v].is_some() || self.packed[v]).collect()
    }

    /// The id of the value named `name`.
    pub fn value_id(&self, name: &str) -> Option<usize> {
        self.program.value_id(name)
    }

    /// The ids of the named values; errors on an unknown name.
    pub fn value_ids(&self, names: &[&str]) -> Result<Vec<usize>> {
        names
            .iter()
            .map(|n| self.value_id(n).ok_or_else(|| Error::user(format!("the model has no tensor named '{n}'"))))
            .collect()
    }

    /// The name of value `id`.
    pub fn value_name(&self, id: usize) -> &str {
        self.program.values.get(id).map(|v| v.name.as_str()).unwrap_or("?")
    }

    /// Computes the schedule that derives `targets` from the values in `known` (plus the
    /// constants): only the nodes the targets depend on run, and nodes producing known
    /// values do not run at all. Errors if a target needs a value that is neither known,
    /// constant, nor computable.
    pub fn plan(&self, known: &[usize], targets: &[usize]) -> Result<Plan> {
        self.plan_observing(known, targets, &[])
    }

    /// Like [`Session::plan`], and the values in `observed` are computed too and handed to
    /// the callback of [`Session::run_plan_observed`] as soon as each exists, but not kept
    /// to the end of the run: statistics over many intermediate values (calibration) then
    /// hold a few of them at a time, not all of them (BERT-base: 192 tensors, 120 MB per
    /// sample).
    pub fn plan_observing(&self, known: &[usize], targets: &[usize], observed: &[usize]) -> Result<Plan> {
        let nv = self.program.values.len();
        let mut is_known = vec![false; nv];
        for &v in known {
            if v >= nv {
                return Err(Error::user(format!("value id {v} is out of range")));
            }
            if self.consts[v].is_some() || self.packed[v] {
                return Err(Error::user(format!(
                    "value '{}' is a constant of the program and cannot be fed",
                    self.value_name(v)
                )));
            }
            is_known[v] = true;
        }
        let mut needed_node = vec![false; self.program.nodes.len()];
        let mut visited = vec![false; nv];
        let mut stack: Vec<usize> = Vec::new();
        for &t in targets.iter().chain(observed) {
            if t >= nv {
                return Err(Error::user(format!("value id {t} is out of range")));
            }
            if self.packed[t] {
                return Err(Error::user(format!(
                    "'{}' is a constant that only its consumers' kernels hold (packed): it cannot be a target",
                    self.value_name(t)
                )));
            }
            stack.push(t);
        }
        while let Some(v) = stack.pop() {
            if std::mem::replace(&mut visited[v], true) || is_known[v] || self.consts[v].is_some() || self.packed[v] {
                continue;
            }
            match self.producer[v] {
                Some(n) => {
                    if !needed_node[n] {
                        needed_node[n] = true;
                        stack.extend(self.program.nodes[n].inputs.iter().flatten().copied());
                    }
                }
                None => {
                    let name = self.value_name(v);
                    return Err(if self.program.inputs.contains(&v) {
                        Error::user(format!("graph input '{name}' is needed but was not given"))
                    } else {
                        Error::user(format!("tensor '{name}' is needed but is neither given nor computed by any node"))
                    });
                }
            }
        }
        let is_target = {
            let mut t = vec![false; nv];
            for &v in targets {
                t[v] = true;
            }
            t
        };
        let order: Vec<usize> = self.order.iter().copied().filter(|&n| needed_node[n]).collect();
        // Last step reading each value.
        let mut last_use: Vec<Option<usize>> = vec![None; nv];
        for (si, &n) in order.iter().enumerate() {
            for &v in self.program.nodes[n].inputs.iter().flatten() {
                last_use[v] = Some(si);
            }
        }
        let steps = order
            .iter()
            .enumerate()
            .map(|(si, &n)| {
                let node = &self.program.nodes[n];
                let take = node
                    .inputs
                    .iter()
                    .enumerate()
                    .map(|(j, inp)| match inp {
                        Some(v) => {
                            let v = *v;
                            self.consts[v].is_none()
                                && !self.packed[v]
                                && !is_target[v]
                                && last_use[v] == Some(si)
                                && !node.inputs[j + 1..].contains(&Some(v))
                        }
                        None => false,
                    })
                    .collect();
                let drop_outputs =
                    node.outputs.iter().flatten().copied().filter(|&v| !is_target[v] && last_use[v].is_none()).collect();
                let observe = node
                    .outputs
                    .iter()
                    .flatten()
                    .flat_map(|&v| observed.iter().enumerate().filter(move |(_, o)| **o == v).map(move |(i, _)| (v, i)))
                    .collect();
                Step { node: n, take, drop_outputs, observe }
            })
            .collect();
        let mut known_sorted = known.to_vec();
        known_sorted.sort_unstable();
        known_sorted.dedup();
        let unused_known = known_sorted.iter().copied().filter(|&v| !is_target[v] && last_use[v].is_none()).collect();
        let produced: std::collections::HashSet<usize> = order.iter().flat_map(|&n| self.program.nodes[n].outputs.iter().flatten().copied()).collect();
        let observed_at_start = observed.iter().enumerate().filter(|(_, v)| !produced.contains(v)).map(|(i, &v)| (v, i)).collect();
        Ok(Plan { known: known_sorted, targets: targets.to_vec(), steps, unused_known, observed_at_start })
    }

    /// Runs a plan on the given fed values (which must be exactly the plan's known set) and
    /// returns the plan's targets in order.
    pub fn run_plan(&self, plan: &Plan, known: Vec<(usize, Tensor)>) -> Result<Vec<Tensor>> {
        self.run_plan_inner(plan, known, None, &mut |_, _| Ok(()))
    }

    /// Like [`Session::run_plan`] for a plan from [`Session::plan_observing`]: `observe(i,
    /// tensor)` is called once for each observed value (`i` its index in the observed list)
    /// as soon as it exists; an error from it stops the run.
    pub fn run_plan_observed(
        &self,
        plan: &Plan,
        known: Vec<(usize, Tensor)>,
        observe: &mut dyn FnMut(usize, &Tensor) -> Result<()>,
    ) -> Result<Vec<Tensor>> {
        self.run_plan_inner(plan, known, None, observe)
    }

    /// Like [`Session::run_plan`], and also returns the wall time of each executed node
    /// (node index into `program().nodes`, seconds), in execution order.
    pub fn run_plan_profiled(&self, plan: &Plan, known: Vec<(usize, Tensor)>) -> Result<(Vec<Tensor>, NodeTimes)> {
        let mut times = Vec::with_capacity(plan.steps.len());
        let out = self.run_plan_inner(plan, known, Some(&mut times), &mut |_, _| Ok(()))?;
        Ok((out, times))
    }

    fn run_plan_inner(
        &self,
        plan: &Plan,
        known: Vec<(usize, Tensor)>,
        mut times: Option<&mut Vec<(usize, f64)>>,
        observe: &mut dyn FnMut(usize, &Tensor) -> Result<()>,
    ) -> Result<Vec<Tensor>> {
        let nv = self.program.values.len();
        let mut slots: Vec<Option<Tensor>> = vec![None; nv];
        for (v, t) in known {
            if v >= nv || plan.known.binary_search(&v).is_err() {
                return Err(Error::user(format!(
                    "tensor '{}' was given but the plan was made without it",
                    self.value_name(v)
                )));
            }
            slots[v] = Some(t);
        }
        for &v in &plan.known {
            if slots[v].is_none() {
                return Err(Error::user(format!("tensor '{}' was not given", self.value_name(v))));
            }
        }
        for &(v, i) in &plan.observed_at_start {
            match self.consts[v].as_ref().or(slots[v].as_ref()) {
                Some(t) => observe(i, t)?,
                None => return Err(Error::internal(format!("observed tensor '{}' was not given", self.value_name(v)))),
            }
        }
        for &v in &plan.unused_known {
            slots[v] = None;
        }
        for step in &plan.steps {
            let node = &self.program.nodes[step.node];
            let mut ins: Vec<Option<Tensor>> = Vec::with_capacity(node.inputs.len());
            for (j, inp) in node.inputs.iter().enumerate() {
                ins.push(match inp {
                    None => None,
                    Some(v) => {
                        let v = *v;
                        if let Some(c) = &self.consts[v] {
                            Some(c.clone())
                        } else if self.packed[v] {
                            None
                        } else if step.take[j] {
                            slots[v].take()
                        } else {
                            slots[v].clone()
                        }
                    }
                });
                if let (Some(v), None) = (inp.as_ref().filter(|v| !self.packed[**v]), ins.last().and_then(|x| x.as_ref())) {
                    return Err(Error::internal(format!(
                        "{}: input '{}' was not computed",
                        node.describe(),
                        self.value_name(*v)
                    )));
                }
            }
            let shapes: Vec<ShapeNote> = ins.iter().map(ShapeNote::of).collect();
            let t0 = times.as_ref().map(|_| std::time::Instant::now());
            let outs = self.kernels[step.node]
                .run(&mut ins)
                .map_err(|e| e.context(format!("{} with inputs {}", node.describe(), describe_inputs(&shapes))))?;
            if let (Some(t), Some(t0)) = (times.as_deref_mut(), t0) {
                t.push((step.node, t0.elapsed().as_secs_f64()));
            }
            for (j, t) in ins.into_iter().enumerate() {
                if let Some(t) = t {
                    if step.take[j] {
                        pool::recycle(t);
                    }
                }
            }
            let mut it = outs.into_iter();
            for out in &node.outputs {
                let t = it.next();
                if let Some(v) = out {
                    match t {
                        Some(t) => slots[*v] = Some(t),
                        None => {
                            return Err(Error::user(format!(
                                "{}: output '{}' is not produced by the reference interpreter",
                                node.describe(),
                                self.value_name(*v)
                            )))
                        }
                    }
                }
            }
            for &(v, i) in &step.observe {
                if let Some(t) = &slots[v] {
                    observe(i, t)?;
                }
            }
            for &v in &step.drop_outputs {
                if let Some(t) = slots[v].take() {
                    pool::recycle(t);
                }
            }
        }
        plan.targets
            .iter()
            .map(|&v| {
                if let Some(c) = &self.consts[v] {
                    return Ok(c.clone());
                }
                slots[v].clone().ok_or_else(|| Error::internal(format!("tensor '{}' was not computed", self.value_name(v))))
            })
            .collect()
    }

    /// Computes `targets` (value ids) from the fed values `known`, running only the nodes
    /// needed; `known` may hold graph inputs or any intermediate values (to resume from a
    /// cut). Returns the targets in order.
    pub fn run_from(&self, known: Vec<(usize, Tensor)>, targets: &[usize]) -> Result<Vec<Tensor>> {
        let ids: Vec<usize> = known.iter().map(|(v, _)| *v).collect();
        let plan = self.plan(&ids, targets)?;
        self.run_plan(&plan, known)
    }

    /// Runs the graph on named inputs and returns the graph outputs plus the `capture`d
    /// tensors (any value name: inputs, intermediates, constants), keyed by name.
    pub fn run(&self, inputs: &[(&str, Tensor)], capture: &[&str]) -> Result<HashMap<String, Tensor>> {
        let mut known = Vec::with_capacity(inputs.len());
        for (name, t) in inputs {
            let v = self.value_id(name).ok_or_else(|| Error::user(format!("the model has no tensor named '{name}'")))?;
            known.push((v, t.clone()));
        }
        let mut targets = self.program.outputs.clone();
        targets.extend(self.value_ids(capture)?);
        let ids: Vec<usize> = known.iter().map(|(v, _)| *v).collect();
        let res = if capture.is_empty() && sorted_eq(&ids, &self.full.known) {
            self.run_plan(&self.full, known)?
        } else {
            self.run_from(known, &targets)?
        };
        Ok(targets.iter().map(|&v| self.value_name(v).to_string()).zip(res).collect())
    }

    /// Runs the graph outputs for graph inputs given in the order of `program.inputs`.
    pub fn run_outputs(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        if inputs.len() != self.program.inputs.len() {
            return Err(Error::user(format!(
                "the model has {} inputs, {} were given",
                self.program.inputs.len(),
                inputs.len()
            )));
        }
        let known = self.program.inputs.iter().copied().zip(inputs).collect();
        self.run_plan(&self.full, known)
    }

    /// Runs many independent samples in parallel on rayon's pool (each sample is its own
    /// run) and returns each sample's `targets`, in sample order. Results are bit-identical
    /// whatever the number of threads.
    pub fn run_batch(&self, samples: Vec<Vec<(usize, Tensor)>>, targets: &[usize]) -> Result<Vec<Vec<Tensor>>> {
        let mut plans: Vec<Plan> = Vec::new();
        let mut which = Vec::with_capacity(samples.len());
        for s in &samples {
            let mut ids: Vec<usize> = s.iter().map(|(v, _)| *v).collect();
            ids.sort_unstable();
            ids.dedup();
            match plans.iter().position(|p| p.known == ids) {
                Some(i) => which.push(i),
                None => {
                    plans.push(self.plan(&ids, targets)?);
                    which.push(plans.len() - 1);
                }
            }
        }
        samples
            .into_par_iter()
            .zip(which.into_par_iter())
            .enumerate()
            .map(|(i, (s, w))| self.run_plan(&plans[w], s).map_err(|e| e.context(format!("sample {i}"))))
            .collect()
    }
}

fn sorted_eq(a: &[usize], sorted: &[usize]) -> bool {
    let mut a = a.to_vec();
    a.sort_unstable();
    a.dedup();
    a == sorted
}

/// An input's type and shape, kept without allocating for error messages.
struct ShapeNote {
    dtype: Option<super::tensor::DType>,
    rank: usize,
    dims: [usize; 6],
}

impl ShapeNote {
    fn of(t: &Option<Tensor>) -> ShapeNote {
        let mut dims = [0; 6];
        match t {
            None => ShapeNote { dtype: None, rank: 0, dims },
            Some(t) => {
                for (d, &s) in dims.iter_mut().zip(t.shape()) {
                    *d = s;
                }
                ShapeNote { dtype: Some(t.dtype()), rank: t.rank(), dims }
            }
        }
    }
}

fn describe_inputs(notes: &[ShapeNote]) -> String {
    let parts: Vec<String> = notes
        .iter()
        .map(|n| match n.dtype {
            None => "-".to_string(),
            Some(dt) if n.rank <= 6 => format!("{dt}{:?}", &n.dims[..n.rank]),
            Some(dt) => format!("{dt}{:?}...", n.dims),
        })
        .collect();
    format!("({})", parts.join(", "))
}
