//! Archive builders for tests (this crate's and, through the `test-support`
//! feature, the CLI tests'). Member names are written as given, even hostile
//! ones (`..`, absolute), the way a damaged or malicious archive would.

/// An uncompressed tar of raw members.
pub fn tar_bytes(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data) in members {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        // set_path refuses `..`; write the raw name like a hostile archive would.
        if let Some(gnu) = header.as_gnu_mut() {
            gnu.name[..name.len()].copy_from_slice(name.as_bytes());
        }
        header.set_cksum();
        builder.append(&header, *data).expect("appending to a Vec cannot fail");
    }
    builder.into_inner().expect("finishing a Vec cannot fail")
}

/// A zstd-compressed tar of raw members.
pub fn tar_zst(members: &[(&str, &[u8])]) -> Vec<u8> {
    zstd::encode_all(&tar_bytes(members)[..], 3).expect("compressing a slice cannot fail")
}
