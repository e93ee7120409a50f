//! Putting an archive in the archive folder without ever having it nowhere.

use epiflow_pipelines::output::sync_dir;
use std::fs;
use std::io;
use std::path::Path;

/// Makes `dst` a complete copy of `src` and leaves `src` in place. A hard link
/// when both are on one file system; otherwise a copy that is fsynced before it
/// is renamed into place. Either way `dst` appears whole or not at all.
pub fn place_copy(src: &Path, dst: &Path) -> io::Result<()> {
    // Already linked there (a rerun after a kill): renaming a link onto another
    // link of the same file does nothing, so there is nothing to do.
    if let (Ok(a), Ok(b)) = (fs::metadata(src), fs::metadata(dst)) {
        use std::os::unix::fs::MetadataExt;
        if (a.dev(), a.ino()) == (b.dev(), b.ino()) {
            return Ok(());
        }
    }
    let dir = dst.parent().ok_or_else(|| io::Error::other("archive path has no folder"))?;
    fs::create_dir_all(dir)?;
    let tmp = tempfile::Builder::new().prefix(".archiving.").suffix(".tmp").tempfile_in(dir)?;
    let tmp_path = tmp.path().to_path_buf();
    // Free the name for the hard link; the guard still removes it on failure.
    fs::remove_file(&tmp_path)?;
    if fs::hard_link(src, &tmp_path).is_err() {
        let mut from = fs::File::open(src)?;
        let mut to = fs::File::create(&tmp_path)?;
        io::copy(&mut from, &mut to)?;
        to.sync_all()?;
    }
    let tmp = tmp.into_temp_path();
    tmp.persist(dst).map_err(|e| e.error)?;
    sync_dir(dir);
    Ok(())
}

/// Removes a file and makes the removal durable.
pub fn remove_durably(path: &Path) -> io::Result<()> {
    fs::remove_file(path)?;
    if let Some(dir) = path.parent() {
        sync_dir(dir);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_copy_is_whole_and_the_source_stays() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("a.tar.zst");
        fs::write(&src, b"bytes").unwrap();
        let dst = dir.path().join("archive/h/a.tar.zst");
        place_copy(&src, &dst).unwrap();
        place_copy(&src, &dst).unwrap();
        assert_eq!(fs::read(&dst).unwrap(), b"bytes");
        assert!(src.exists());
        assert_eq!(fs::read_dir(dst.parent().unwrap()).unwrap().count(), 1);
    }
}
