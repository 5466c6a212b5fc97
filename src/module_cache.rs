//! Compiled modules kept between runs of `wasm-rewind run`.
//!
//! Compiling Lua with Cranelift takes about 0.3 s, most of a short run. The
//! cache keeps the machine code wasmtime produced (`Module::serialize`) in a
//! file named after what it depends on: the SHA-256 of the module's bytes
//! and the engine's compatibility hash (target, CPU features, the settings
//! that change the code, and wasmtime's version). A later run with the same
//! module and the same engine loads that file instead of compiling.
//!
//! The directory is `$WASM_REWIND_CACHE_DIR`, else `$XDG_CACHE_HOME/wasm-rewind`,
//! else `~/.cache/wasm-rewind`. Files are written to a temporary name and
//! renamed, so a run that is killed leaves no half-written entry, and two
//! runs at once both get a whole file. A file that fails to load (from an
//! older engine, or damaged) is compiled again and replaced.
//!
//! Loading a serialized module is `unsafe` in wasmtime because the bytes are
//! trusted to be machine code it wrote: the cache lives in the user's own
//! directory, the same trust wasmtime's own cache asks for.

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::{Engine, Module};

/// Where compiled modules are kept, or nowhere.
pub enum ModuleCache {
    /// Compile every time.
    Off,
    /// Keep compiled modules in this directory.
    Dir(PathBuf),
}

impl ModuleCache {
    /// The cache in its default directory (see the module documentation), or
    /// [`ModuleCache::Off`] when no directory can be named.
    pub fn default_dir() -> ModuleCache {
        let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
        let dir = var("WASM_REWIND_CACHE_DIR")
            .map(PathBuf::from)
            .or_else(|| var("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("wasm-rewind")))
            .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".cache/wasm-rewind")));
        match dir {
            Some(d) => ModuleCache::Dir(d),
            None => ModuleCache::Off,
        }
    }

    /// The compiled form of `wasm` for `engine`: from the cache when it has
    /// it, else compiled (and then stored, best effort: a cache that cannot
    /// be written only costs the next run a compile).
    pub fn load(&self, engine: &Engine, wasm: &[u8]) -> Result<Module> {
        let ModuleCache::Dir(dir) = self else {
            return Module::new(engine, wasm).map_err(anyhow::Error::from);
        };
        let path = dir.join(entry_name(engine, wasm));
        if path.is_file() {
            // SAFETY: the file was written by `Module::serialize` of this
            // engine's version and settings (its name says so), into the
            // user's own cache directory; wasmtime checks the header again.
            if let Ok(module) = unsafe { Module::deserialize_file(engine, &path) } {
                return Ok(module);
            }
        }
        let module = Module::new(engine, wasm).map_err(anyhow::Error::from)?;
        let _ = store(&path, &module);
        Ok(module)
    }
}

/// `<sha256 of the module>-<engine hash>.cwasm`. The engine hash covers the
/// target, the compiler's settings and wasmtime's version.
fn entry_name(engine: &Engine, wasm: &[u8]) -> String {
    let digest = Sha256::digest(wasm);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    // SipHash with fixed keys: the same from run to run.
    #[allow(deprecated)]
    let mut h = std::hash::SipHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    format!("{hex}-{:016x}.cwasm", h.finish())
}

/// Writes the compiled module to `path` through a temporary file.
fn store(path: &Path, module: &Module) -> Result<()> {
    let dir = path.parent().context("cache path has a directory")?;
    std::fs::create_dir_all(dir)?;
    let bytes = module.serialize().map_err(anyhow::Error::from)?;
    Ok(wasm_rewind_transform::write_file_atomically(path, &bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAT: &str = r#"(module (func (export "f") (result i32) i32.const 7))"#;

    #[test]
    fn a_second_load_comes_from_the_file_and_behaves_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ModuleCache::Dir(dir.path().to_path_buf());
        let engine = Engine::default();
        let wasm = wat::parse_str(WAT).unwrap();
        cache.load(&engine, &wasm).unwrap();
        let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(files.len(), 1, "one entry written");
        let name = files[0].as_ref().unwrap().file_name();
        assert!(name.to_string_lossy().ends_with(".cwasm"));

        let module = cache.load(&engine, &wasm).unwrap();
        let mut store = wasmtime::Store::new(&engine, ());
        let instance = wasmtime::Instance::new(&mut store, &module, &[]).unwrap();
        let f = instance.get_typed_func::<(), i32>(&mut store, "f").unwrap();
        assert_eq!(f.call(&mut store, ()).unwrap(), 7);
    }

    #[test]
    fn a_damaged_entry_is_compiled_again_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ModuleCache::Dir(dir.path().to_path_buf());
        let engine = Engine::default();
        let wasm = wat::parse_str(WAT).unwrap();
        let path = dir.path().join(entry_name(&engine, &wasm));
        std::fs::write(&path, b"not machine code").unwrap();
        let module = cache.load(&engine, &wasm).unwrap();
        assert!(module.get_export("f").is_some());
        assert_ne!(std::fs::read(&path).unwrap(), b"not machine code");
    }

    #[test]
    fn different_modules_get_different_entries() {
        let engine = Engine::default();
        let a = wat::parse_str(WAT).unwrap();
        let b = wat::parse_str(r#"(module (func (export "g")))"#).unwrap();
        assert_ne!(entry_name(&engine, &a), entry_name(&engine, &b));
        assert_eq!(entry_name(&engine, &a), entry_name(&engine, &a));
    }
}
