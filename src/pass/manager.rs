//! Runs a pipeline: each pass in order, the verifier between passes, IR printing and
//! timing on request, and the merged report.

use super::{Pass, PassContext, PassReport};
use crate::error::{Error, Result};
use crate::ir::Model;
use std::io::Write;
use std::time::Instant;

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Run the IR verifier after every pass (always on in debug builds and tests).
    pub verify_each: bool,
    /// Print the text form after every pass (to stderr).
    pub print_ir_after_all: bool,
    /// Print the text form after the named passes.
    pub print_ir_after: Vec<String>,
    /// Print a timing table at the end.
    pub time_passes: bool,
}

pub struct PassManager {
    passes: Vec<Box<dyn Pass>>,
    opts: RunOptions,
}

impl PassManager {
    pub fn new(passes: Vec<Box<dyn Pass>>, opts: RunOptions) -> Self {
        PassManager { passes, opts }
    }
    pub fn names(&self) -> Vec<String> {
        self.passes.iter().map(|p| p.name().to_string()).collect()
    }

    /// Runs every pass. Stops at the first failure, naming the pass.
    pub fn run(&mut self, model: &mut Model, ctx: &mut PassContext) -> Result<Vec<PassReport>> {
        let verify = self.opts.verify_each || cfg!(debug_assertions);
        if verify {
            crate::ir::verify::verify(&model.graph).map_err(|e| e.context("verifying the input model"))?;
        }
        let mut reports = Vec::new();
        // stderr not a terminal (CI logs): a line as each pass starts and ends, heartbeats between
        let lines = crate::progress::lines_enabled(ctx.quiet);
        let (since, total) = (Instant::now(), self.passes.len());
        for (i, p) in self.passes.iter_mut().enumerate() {
            let name = p.name().to_string();
            let line = lines.then(|| crate::progress::PassLine::start(&name, i + 1, total, since));
            let t0 = Instant::now();
            let res = p.run(model, ctx);
            if let Some(l) = line {
                l.done(since, res.as_ref().map(|r| r.summary.as_str()).unwrap_or(""), res.is_ok());
            }
            let mut report = res.map_err(|e| e.context(format!("pass '{name}'")))?;
            report.seconds = t0.elapsed().as_secs_f64();
            if report.pass.is_empty() {
                report.pass = name.clone();
            }
            if verify {
                crate::ir::verify::verify(&model.graph).map_err(|e| {
                    Error::internal(format!("the IR is invalid after pass '{name}': {e}"))
                })?;
            }
            if self.opts.print_ir_after_all || self.opts.print_ir_after.contains(&name) {
                let text = crate::text::print(model, &Default::default())?;
                let mut err = std::io::stderr().lock();
                let _ = writeln!(err, "// ----- IR after {name} -----\n{text}");
            }
            reports.push(report);
        }
        if self.opts.time_passes {
            let mut err = std::io::stderr().lock();
            let total: f64 = reports.iter().map(|r| r.seconds).sum();
            let _ = writeln!(err, "===-------------------------------------------===");
            let _ = writeln!(err, "  pass timing (wall clock)");
            let _ = writeln!(err, "===-------------------------------------------===");
            for r in &reports {
                let pct = if total > 0.0 { 100.0 * r.seconds / total } else { 0.0 };
                let _ = writeln!(err, "  {:>10.4} s {:>6.1}%  {}", r.seconds, pct, r.pass);
            }
            let _ = writeln!(err, "  {:>10.4} s 100.0%  total", total);
        }
        Ok(reports)
    }
}
