//! The one error type of the pass.
//!
//! Like `wasmparser::Error` the data is boxed so `Result<_, Error>` stays one
//! pointer wide, constructors are `#[cold]`, and `Display` says what, in which
//! function, and at which byte offset of the input.

use std::fmt;

/// Why a module could not be instrumented.
#[derive(Debug)]
pub struct Error {
    inner: Box<ErrorInner>,
}

#[derive(Debug)]
struct ErrorInner {
    kind: ErrorKind,
    message: String,
    function: Option<String>,
    offset: Option<usize>,
}

/// The broad class of an [`Error`], for callers that react differently to each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The input is not a valid WebAssembly module (truncated, corrupt, invalid).
    InvalidInput,
    /// The input is valid but uses something the pass cannot instrument.
    Unsupported,
    /// The input already carries an Asyncify runtime (ours or Binaryen's).
    AlreadyInstrumented,
    /// The options contradict each other or name something that is not there.
    BadOptions,
    /// The pass produced an invalid module: a bug in wasm-rewind.
    Internal,
}

impl Error {
    #[cold]
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            inner: Box::new(ErrorInner {
                kind,
                message: message.into(),
                function: None,
                offset: None,
            }),
        }
    }

    #[cold]
    pub(crate) fn invalid(message: impl Into<String>, offset: usize) -> Error {
        Error::new(ErrorKind::InvalidInput, message).at(offset)
    }

    #[cold]
    pub(crate) fn unsupported(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Unsupported, message)
    }

    /// Attaches the byte offset in the input the error refers to.
    pub(crate) fn at(mut self, offset: usize) -> Error {
        self.inner.offset = Some(offset);
        self
    }

    /// Attaches the (display) name of the function the error occurred in.
    pub(crate) fn in_function(mut self, name: impl Into<String>) -> Error {
        if self.inner.function.is_none() {
            self.inner.function = Some(name.into());
        }
        self
    }

    /// The class of this error.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// The message without function or offset.
    pub fn message(&self) -> &str {
        &self.inner.message
    }

    /// The byte offset in the input this error refers to, when there is one.
    pub fn offset(&self) -> Option<usize> {
        self.inner.offset
    }

    /// The function this error occurred in, when there is one.
    pub fn function(&self) -> Option<&str> {
        self.inner.function.as_deref()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.inner.message)?;
        if let Some(func) = &self.inner.function {
            write!(f, " in function `{func}`")?;
        }
        if let Some(offset) = self.inner.offset {
            write!(f, " (at offset {offset:#x})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

impl From<wasmparser::BinaryReaderError> for Error {
    #[cold]
    fn from(e: wasmparser::BinaryReaderError) -> Error {
        Error::invalid(format!("invalid input: {}", e.message()), e.offset())
    }
}

/// Shorthand for results of the pass.
pub type Result<T, E = Error> = std::result::Result<T, E>;
