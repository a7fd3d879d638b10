//! One snapshot as one file, to hand to a teammate: a plain tar holding `manifest.json` and
//! the volume tars and Qdrant collection snapshots. A file from elsewhere is checked whole (entry names, manifest, sizes, the
//! paths inside every volume tar) in a hidden folder before it gets a name or touches a volume.

use std::io::Read;
use std::path::{Component, Path};

use super::store::{self, Manifest, SnapshotError, MANIFEST};

/// Writes snapshot `folder` (with manifest `m`) to `file`, through a temporary name beside it.
pub(crate) fn write(folder: &Path, m: &Manifest, file: &Path) -> std::io::Result<()> {
    let tmp = file.with_extension(format!("tmp{}", std::process::id()));
    let result = (|| {
        let mut b = tar::Builder::new(std::io::BufWriter::new(std::fs::File::create(&tmp)?));
        b.append_path_with_name(folder.join(MANIFEST), MANIFEST)?;
        for (f, _) in m.files() {
            b.append_path_with_name(folder.join(f), f)?;
        }
        b.into_inner()?
            .into_inner()
            .map_err(|e| e.into_error())?
            .sync_all()?;
        std::fs::rename(&tmp, file)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Reads a snapshot file into the store as snapshot `name`, checked before it gets the name.
pub(crate) fn import(file: &Path, dir: &Path, name: &str) -> Result<Manifest, SnapshotError> {
    store::check_name(name)?;
    let bad = |why: String| SnapshotError::Damaged {
        name: file.display().to_string(),
        why,
    };
    let tmp = store::begin(dir, name).map_err(|e| bad(format!("cannot write the store: {e}")))?;
    let result = unpack(file, &tmp).map_err(bad).and_then(|mut m| {
        store::check_manifest(&m, name)?;
        store::check_files(&tmp, &m).map_err(bad)?;
        store::check_contents(&tmp, &m).map_err(bad)?;
        m.name = name.to_string();
        let text = serde_json::to_vec_pretty(&m).map_err(|e| bad(e.to_string()))?;
        std::fs::write(tmp.join(MANIFEST), text).map_err(|e| bad(e.to_string()))?;
        store::publish(&tmp, dir, name).map_err(|e| bad(e.to_string()))?;
        Ok(m)
    });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

/// Extracts the file's entries into `into`: only plain files with plain names, the manifest
/// and the volume tars it lists, nothing else.
fn unpack(file: &Path, into: &Path) -> Result<Manifest, String> {
    let f = std::fs::File::open(file).map_err(|e| format!("cannot open it: {e}"))?;
    let mut archive = tar::Archive::new(f);
    let mut manifest: Option<Manifest> = None;
    let mut seen = Vec::new();
    for entry in archive
        .entries()
        .map_err(|e| format!("not a tar file: {e}"))?
    {
        let mut entry = entry.map_err(|e| format!("not a tar file: {e}"))?;
        let path = entry
            .path()
            .map_err(|e| format!("bad entry name: {e}"))?
            .into_owned();
        let plain = path.components().count() == 1
            && matches!(path.components().next(), Some(Component::Normal(_)));
        if !plain || !entry.header().entry_type().is_file() {
            return Err(format!(
                "entry `{}` is not a plain file at the top of the archive",
                path.display()
            ));
        }
        let name = path.to_string_lossy().into_owned();
        if name == MANIFEST {
            let mut text = String::new();
            entry
                .by_ref()
                .take(1 << 20)
                .read_to_string(&mut text)
                .map_err(|e| format!("cannot read its manifest: {e}"))?;
            manifest = Some(
                serde_json::from_str(&text)
                    .map_err(|e| format!("its manifest does not parse: {e}"))?,
            );
        } else if store::file_name_ok(&name) {
            let mut out = std::fs::File::create(into.join(&name)).map_err(|e| e.to_string())?;
            std::io::copy(&mut entry, &mut out).map_err(|e| e.to_string())?;
            seen.push(name);
        } else {
            return Err(format!("unexpected entry `{name}`"));
        }
    }
    let m = manifest.ok_or_else(|| format!("it has no {MANIFEST}"))?;
    if let Some(extra) = seen
        .iter()
        .find(|f| !m.files().any(|(v, _)| v == f.as_str()))
    {
        return Err(format!("entry `{extra}` is not listed in its manifest"));
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            let name = &mut h.as_old_mut().name;
            name[..path.len()].copy_from_slice(path.as_bytes());
            h.set_cksum();
            b.append(&h, data.as_slice()).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn volume_tar() -> Vec<u8> {
        let raw = tar_of(&[("v/a", b"hi".to_vec())]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &raw).unwrap();
        gz.finish().unwrap()
    }

    fn manifest(bytes: u64) -> Vec<u8> {
        let mut m = super::super::store::sample_manifest("theirs", &["db.data.tar.gz"]);
        let v = &mut m.services[0].volumes[0];
        (v.bytes, v.raw_bytes) = (bytes, 2);
        serde_json::to_vec(&m).unwrap()
    }

    #[test]
    fn a_good_file_is_imported_under_the_name_given() {
        let tmp = tempfile::tempdir().unwrap();
        let vt = volume_tar();
        let file = tmp.path().join("s.tar");
        std::fs::write(
            &file,
            tar_of(&[
                (MANIFEST, manifest(vt.len() as u64)),
                ("db.data.tar.gz", vt),
            ]),
        )
        .unwrap();
        let dir = tmp.path().join("store");
        let m = import(&file, &dir, "mine").unwrap();
        assert_eq!(m.name, "mine");
        assert_eq!(store::open(&dir, "mine").unwrap(), m);
        // Written back out, it reads the same.
        let again = tmp.path().join("again.tar");
        write(&dir.join("mine"), &m, &again).unwrap();
        assert_eq!(import(&again, &dir, "copy").unwrap().services, m.services);
    }

    #[test]
    fn a_bad_file_leaves_nothing_behind() {
        let tmp = tempfile::tempdir().unwrap();
        let vt = volume_tar();
        let n = vt.len() as u64;
        let evil = {
            let raw = tar_of(&[("v/../../x", b"hi".to_vec())]);
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            std::io::Write::write_all(&mut gz, &raw).unwrap();
            gz.finish().unwrap()
        };
        type Entries<'a> = Vec<(&'a str, Vec<u8>)>;
        let cases: Vec<(&str, Entries)> = vec![
            (
                "escaping entry",
                vec![(MANIFEST, manifest(n)), ("../db.data.tar.gz", vt.clone())],
            ),
            (
                "size differs",
                vec![(MANIFEST, manifest(n + 1)), ("db.data.tar.gz", vt.clone())],
            ),
            ("no manifest", vec![("db.data.tar.gz", vt.clone())]),
            ("missing volume", vec![(MANIFEST, manifest(n))]),
            (
                "unlisted file",
                vec![
                    (MANIFEST, manifest(n)),
                    ("db.data.tar.gz", vt.clone()),
                    ("x.tar.gz", vt.clone()),
                ],
            ),
            (
                "evil volume tar",
                vec![
                    (MANIFEST, manifest(evil.len() as u64)),
                    ("db.data.tar.gz", evil.clone()),
                ],
            ),
        ];
        let dir = tmp.path().join("store");
        for (what, entries) in cases {
            let file = tmp.path().join("s.tar");
            std::fs::write(&file, tar_of(&entries)).unwrap();
            let err = import(&file, &dir, "s").unwrap_err();
            assert!(
                matches!(err, SnapshotError::Damaged { .. }),
                "{what}: {err}"
            );
            let left: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
            assert!(left.is_empty(), "{what}: {left:?}");
        }
    }
}
