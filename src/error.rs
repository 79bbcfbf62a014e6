//! The one error type of sparseqc.
//!
//! Every failure caused by the user's input (a malformed file, an unsupported op, a
//! wrong shape, a missing calibration file) is an [`Error`] with kind
//! [`ErrorKind::User`]: the CLI prints it on one line and exits with status 1. Errors
//! carry context frames (file, node, tensor) pushed by callers with [`Error::context`]
//! or [`ResultExt::ctx`], printed outermost first: `model.onnx: node 'conv1' (Conv): input 'w': ...`.

use std::fmt;

/// What kind of failure this is; decides the exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Bad input: file, model, data or option value. Exit status 1.
    User,
    /// Bad command line. Exit status 2.
    Usage,
    /// A bug in sparseqc or a plugin (an invariant broke). Exit status 1, reported as such.
    Internal,
}

#[derive(Debug, Clone)]
pub struct Error {
    pub kind: ErrorKind,
    /// The innermost message.
    pub message: String,
    /// Context frames, innermost first.
    pub context: Vec<String>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn user(msg: impl Into<String>) -> Self {
        Error { kind: ErrorKind::User, message: msg.into(), context: Vec::new() }
    }
    pub fn usage(msg: impl Into<String>) -> Self {
        Error { kind: ErrorKind::Usage, message: msg.into(), context: Vec::new() }
    }
    pub fn internal(msg: impl Into<String>) -> Self {
        Error { kind: ErrorKind::Internal, message: msg.into(), context: Vec::new() }
    }
    /// Adds an outer context frame (e.g. the file or node being processed).
    pub fn context(mut self, frame: impl Into<String>) -> Self {
        self.context.push(frame.into());
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.kind == ErrorKind::Internal {
            write!(f, "internal error: ")?;
        }
        for frame in self.context.iter().rev() {
            write!(f, "{frame}: ")?;
        }
        write!(f, "{}", self.message)
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::user(e.to_string())
    }
}

/// Adds context to any `Result` whose error converts into [`Error`].
pub trait ResultExt<T> {
    fn ctx(self, frame: impl Into<String>) -> Result<T>;
    fn with_ctx<F: FnOnce() -> String>(self, f: F) -> Result<T>;
}

impl<T, E: Into<Error>> ResultExt<T> for std::result::Result<T, E> {
    fn ctx(self, frame: impl Into<String>) -> Result<T> {
        self.map_err(|e| e.into().context(frame))
    }
    fn with_ctx<F: FnOnce() -> String>(self, f: F) -> Result<T> {
        self.map_err(|e| e.into().context(f()))
    }
}

/// `bail!(...)`: return a user error with a formatted message.
#[macro_export]
macro_rules! bail {
    ($($arg:tt)*) => { return Err($crate::error::Error::user(format!($($arg)*))) };
}
