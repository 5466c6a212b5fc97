//! Writing a file completely or not at all, for the library's `run_file` and
//! the command line alike.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `bytes` to a fresh file beside `path` and renames it over `path`.
///
/// The rename is atomic because both are in one directory, so a failed write
/// leaves no partial file and an existing `path` as it was. The new file gets
/// the mode of the file it replaces (else what the umask gives a new file),
/// so an output module looks like any other file the user creates.
pub fn write_file_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out.wasm".into());
    // Unique enough within one process and one directory; `create_new`
    // refuses to reuse a leftover instead of writing into it.
    let mut attempt = 0u32;
    let (tmp, mut file) = loop {
        let tmp = dir.join(format!(".{name}.{}.{attempt}.tmp", std::process::id()));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
        {
            Ok(f) => break (tmp, f),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 100 => {
                attempt += 1
            }
            Err(e) => return Err(e),
        }
    };
    let written = file
        .write_all(bytes)
        .and_then(|()| keep_mode(&file, path))
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Gives `file` the permissions of the existing `dest`, if there is one.
fn keep_mode(file: &std::fs::File, dest: &Path) -> std::io::Result<()> {
    match std::fs::metadata(dest) {
        Ok(m) => file.set_permissions(m.permissions()),
        Err(_) => Ok(()),
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::write_file_atomically;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn replaces_whole_and_keeps_the_mode() {
        let dir = std::env::temp_dir().join(format!("wr-atomic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("out.wasm");
        std::fs::write(&path, b"old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o751)).unwrap();
        write_file_atomically(&path, b"new bytes").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new bytes");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o751);
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n != "out.wasm")
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        // A directory that does not exist: an error, and nothing written.
        let missing = dir.join("no/such/dir/out.wasm");
        assert!(write_file_atomically(&missing, b"x").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
