//! Progress for logs: when stderr is not a terminal (CI logs, `nohup`, `--log-file`) and
//! not `-q`, the pass manager prints one line as each pass starts and one as it ends, and a
//! heartbeat line at most every 10 s while a pass runs. On a terminal the passes' indicatif
//! bars are drawn instead (see `PassContext::show_progress`) and nothing here prints.
//!
//! `SPARSEQC_HEARTBEAT_SECS` sets the heartbeat interval (a positive number of seconds;
//! default 10), for tests and for logs that want it denser.

use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Whether progress goes to stderr as lines.
pub fn lines_enabled(quiet: bool) -> bool {
    use std::io::IsTerminal;
    !quiet && !std::io::stderr().is_terminal()
}

fn heartbeat_interval() -> Duration {
    std::env::var("SPARSEQC_HEARTBEAT_SECS")
        .ok()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(Duration::from_secs_f64)
        .unwrap_or(Duration::from_secs(10))
}

/// One running pass: prints its start line now, heartbeats from a thread, and its end
/// line in [`PassLine::done`].
pub struct PassLine {
    label: String,
    t0: Instant,
    stop: Option<(Sender<()>, JoinHandle<()>)>,
}

impl PassLine {
    /// `index` counts from 1 of `total`; `since` is the start of the pipeline.
    pub fn start(name: &str, index: usize, total: usize, since: Instant) -> PassLine {
        let label = format!("pass {index}/{total} {name}");
        eprintln!("[sparseqc {:>7.1} s] {label} started", since.elapsed().as_secs_f64());
        let t0 = Instant::now();
        let (tx, rx) = channel::<()>();
        let every = heartbeat_interval();
        let hb_label = label.clone();
        let handle = std::thread::spawn(move || loop {
            match rx.recv_timeout(every) {
                Err(RecvTimeoutError::Timeout) => {
                    eprintln!("[sparseqc {:>7.1} s] {hb_label} running, {:.0} s so far", since.elapsed().as_secs_f64(), t0.elapsed().as_secs_f64())
                }
                _ => break,
            }
        });
        PassLine { label, t0, stop: Some((tx, handle)) }
    }

    fn stop(&mut self) {
        if let Some((tx, h)) = self.stop.take() {
            let _ = tx.send(());
            let _ = h.join();
        }
    }

    /// Stops the heartbeat and prints the end line (with the pass's summary, if any).
    pub fn done(mut self, since: Instant, summary: &str, ok: bool) {
        self.stop();
        let what = if ok { "done" } else { "failed" };
        let sep = if summary.is_empty() { "" } else { ": " };
        eprintln!(
            "[sparseqc {:>7.1} s] {} {what} in {:.2} s{sep}{summary}",
            since.elapsed().as_secs_f64(),
            self.label,
            self.t0.elapsed().as_secs_f64()
        );
    }
}

impl Drop for PassLine {
    fn drop(&mut self) {
        self.stop();
    }
}
