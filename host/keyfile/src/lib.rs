//! Files holding secrets: validator and device keys, account keys, the admin token.
//!
//! A secret file is created readable by its owner only (0600) and refused when its mode lets
//! anyone else read or write it, with a message saying how to fix it (as `ssh` does for its
//! keys). On systems without Unix permissions the checks do nothing.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Why a secret file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{}: others can read or change this secret file (mode {mode:03o}); run `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    TooOpen { path: PathBuf, mode: u32 },
}

/// Mode bits a secret file may not have: any access by group or others.
#[cfg(unix)]
const OPEN_BITS: u32 = 0o077;

/// Reads a secret file, refusing one that group or others may access.
pub fn read(path: &Path) -> Result<String, KeyFileError> {
    let io = |source| KeyFileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = file.metadata().map_err(io)?.permissions().mode() & 0o777;
        if mode & OPEN_BITS != 0 {
            return Err(KeyFileError::TooOpen {
                path: path.to_path_buf(),
                mode,
            });
        }
    }
    std::io::read_to_string(file).map_err(io)
}

/// Writes a secret file readable by its owner only. An existing file is replaced, and its
/// mode tightened first, so the secret is never readable by others, not even for a moment.
pub fn write(path: &Path, contents: &str) -> Result<(), KeyFileError> {
    let io = |source| KeyFileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        if path.exists() {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        }
    }
    let mut file = options.open(path).map_err(io)?;
    file.write_all(contents.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)
}

/// Reads the secret file at `path`, or creates it with `make()` if there is none.
pub fn read_or_create(path: &Path, make: impl FnOnce() -> String) -> Result<String, KeyFileError> {
    if !path.exists() {
        write(path, &make())?;
    }
    read(path)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn written_files_are_owner_only_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        write(&p, "secret").unwrap();
        assert_eq!(mode(&p), 0o600);
        assert_eq!(read(&p).unwrap(), "secret");
        // Replacing a file that was open tightens it too.
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        write(&p, "other").unwrap();
        assert_eq!(mode(&p), 0o600);
        assert_eq!(read(&p).unwrap(), "other");
    }

    #[test]
    fn a_file_others_can_read_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        std::fs::write(&p, "secret").unwrap();
        for open in [0o644, 0o640, 0o604, 0o602, 0o620] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(open)).unwrap();
            let e = read(&p).unwrap_err().to_string();
            assert!(
                e.contains("chmod 600") && e.contains(&format!("{open:03o}")),
                "{e}"
            );
        }
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert_eq!(read(&p).unwrap(), "secret");
    }

    #[test]
    fn read_or_create_makes_once_then_reads() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("token");
        assert_eq!(read_or_create(&p, || "a".into()).unwrap(), "a");
        assert_eq!(read_or_create(&p, || "b".into()).unwrap(), "a");
        assert_eq!(mode(&p), 0o600);
    }
}
