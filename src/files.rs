//! Input and output of modules, shared by the subcommands.
//!
//! Input is a `.wasm` or `.wat` file, or `-` for stdin (text or binary either
//! way: the bytes decide, not the name). Output goes through a temporary file
//! in the destination's directory that is renamed over the destination only
//! once everything succeeded, so a failed run never leaves a partial or
//! truncated module behind (and never clobbers the previous good one).

use anyhow::{bail, Context, Result};
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;

/// Where a module comes from: a file, or stdin when the path is `-`.
#[derive(Clone, Debug)]
pub struct Input(pub PathBuf);

impl Input {
    /// How the input is named in messages.
    pub fn display(&self) -> String {
        if self.is_stdin() {
            "<stdin>".to_string()
        } else {
            self.0.display().to_string()
        }
    }

    fn is_stdin(&self) -> bool {
        self.0.as_os_str() == "-"
    }

    /// Reads the input and returns the module in binary form, translating
    /// WebAssembly text when the bytes are not a binary module.
    pub fn read_module(&self) -> Result<Vec<u8>> {
        let bytes = if self.is_stdin() {
            let mut bytes = Vec::new();
            std::io::stdin()
                .lock()
                .read_to_end(&mut bytes)
                .context("failed to read the input module from stdin")?;
            bytes
        } else {
            std::fs::read(&self.0)
                .with_context(|| format!("failed to read input file `{}`", self.display()))?
        };
        // The path lets wat's messages point at `file.wat:3:5`.
        let path = (!self.is_stdin()).then_some(self.0.as_path());
        let wasm = wat::Parser::new()
            .parse_bytes(path, &bytes)
            .with_context(|| format!("failed to parse `{}` as WebAssembly text", self.display()))?;
        Ok(wasm.into_owned())
    }
}

/// Where a module goes: a file, or stdout when absent or `-`.
#[derive(Clone, Debug)]
pub struct Output(pub Option<PathBuf>);

impl Output {
    /// Whether the module is written to stdout (which then cannot carry
    /// anything else).
    pub fn is_stdout(&self) -> bool {
        match &self.0 {
            None => true,
            Some(p) => p.as_os_str() == "-",
        }
    }

    /// Fails early, before any work, when the module would be printed to a
    /// terminal: binary garbage on screen helps nobody.
    pub fn check(&self) -> Result<()> {
        if self.is_stdout() && std::io::stdout().is_terminal() {
            bail!(
                "refusing to write a binary module to a terminal; \
                 give an output file (OUT or -o OUT) or redirect stdout"
            );
        }
        Ok(())
    }

    /// Writes `bytes` completely or not at all.
    pub fn write(&self, bytes: &[u8]) -> Result<()> {
        let path = match &self.0 {
            Some(p) if p.as_os_str() != "-" => p,
            _ => {
                let mut out = std::io::stdout().lock();
                out.write_all(bytes)
                    .and_then(|()| out.flush())
                    .context("failed to write the module to stdout")?;
                return Ok(());
            }
        };
        wasm_rewind_transform::write_file_atomically(path, bytes)
            .with_context(|| format!("failed to write output file `{}`", path.display()))
    }
}
