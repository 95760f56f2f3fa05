//! Free space on the file system that holds the models, asked before gigabytes are downloaded.

use std::io;
use std::path::Path;

/// Bytes an unprivileged process may still write on the file system holding `dir`, or `None` where the
/// platform cannot tell.
pub(crate) fn available_space(dir: &Path) -> io::Result<Option<u64>> {
    #[cfg(unix)]
    {
        let stats = rustix::fs::statvfs(dir).map_err(io::Error::from)?;
        Ok(Some(stats.f_bavail.saturating_mul(stats.f_frsize)))
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_real_folder_reports_some_free_space() {
        let dir = tempfile::tempdir().unwrap();
        let free = available_space(dir.path()).unwrap();
        assert!(free.is_some_and(|bytes| bytes > 0), "{free:?}");
    }

    #[test]
    fn a_missing_folder_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(available_space(&dir.path().join("missing")).is_err());
    }
}
