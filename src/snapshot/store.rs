//! Where snapshots live and what they are, as data: the name rule, the manifest, the checks a
//! snapshot passes before anything is written from it (manifest, sizes, paths inside the volume
//! tars), and the listing. Pure apart from reading and renaming folders; no engine.
//!
//! A snapshot is a folder `<state>/snapshots/NAME/` with `manifest.json` and one gzipped tar per
//! volume. It is written as `.tmp-NAME-<pid>` and renamed at the end, so a save that stops half
//! way leaves nothing under its name.

use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The manifest's format; a reader refuses other ones.
pub(crate) const FORMAT: u32 = 1;
pub(crate) const MANIFEST: &str = "manifest.json";
/// Inside a volume tar every entry sits under this folder (the volume's root).
pub(crate) const ROOT: &str = "v";

/// Why a snapshot cannot be used: each reads after "failed to".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SnapshotError {
    #[error("snapshot name `{name}` is not allowed: {why}")]
    BadName { name: String, why: &'static str },
    #[error("no snapshot `{0}` in this project")]
    Missing(String),
    #[error("snapshot `{name}` is damaged: {why}")]
    Damaged { name: String, why: String },
}

/// One volume in a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct VolumeEntry {
    /// The volume's name in the stack file (`postgres_data`).
    pub volume: String,
    /// The engine's name when saved (`<project>_postgres_data`).
    pub engine_name: String,
    /// Where the service mounts it.
    pub target: String,
    /// The gzipped tar beside the manifest.
    pub file: String,
    /// The tar file's size in bytes (checked before a restore).
    pub bytes: u64,
    /// Bytes of the volume's files, uncompressed.
    pub raw_bytes: u64,
}

/// One Qdrant collection in a snapshot, saved through Qdrant's snapshot API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CollectionEntry {
    pub collection: String,
    /// Qdrant's snapshot file beside the manifest.
    pub file: String,
    /// Its size in bytes (checked before a restore).
    pub bytes: u64,
}

/// How a service saved through Qdrant's snapshot API says so in `consistency`: it has
/// `collections` and no `volumes`.
pub(crate) const SNAPSHOT_API: &str = "snapshot-api";

/// One service in a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ServiceEntry {
    pub service: String,
    pub image: String,
    /// The local image's id when saved; a restore into another one warns.
    pub image_id: Option<String>,
    /// The container's config hash when saved, if it had a container.
    pub config_hash: Option<String>,
    /// How the copy was made consistent (`checkpoint+stop`, `save`, `stop`, `stopped`), or
    /// [`SNAPSHOT_API`].
    pub consistency: String,
    pub volumes: Vec<VolumeEntry>,
    /// With [`SNAPSHOT_API`]: every collection Qdrant held (none is a Qdrant saved empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub collections: Vec<CollectionEntry>,
}

impl ServiceEntry {
    pub(crate) fn through_api(&self) -> bool {
        self.consistency == SNAPSHOT_API
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Manifest {
    pub format: u32,
    pub name: String,
    pub project: String,
    /// Seconds since the epoch.
    pub created: u64,
    pub devstack: String,
    pub services: Vec<ServiceEntry>,
}

impl Manifest {
    pub(crate) fn bytes(&self) -> u64 {
        self.files().map(|(_, bytes)| bytes).sum()
    }

    /// Every file beside the manifest, with its size: the volume tars and the collections.
    pub(crate) fn files(&self) -> impl Iterator<Item = (&str, u64)> {
        self.services.iter().flat_map(|s| {
            s.volumes
                .iter()
                .map(|v| (v.file.as_str(), v.bytes))
                .chain(s.collections.iter().map(|c| (c.file.as_str(), c.bytes)))
        })
    }

    pub(crate) fn volumes(&self) -> impl Iterator<Item = &VolumeEntry> {
        self.services.iter().flat_map(|s| s.volumes.iter())
    }

    pub(crate) fn service(&self, name: &str) -> Option<&ServiceEntry> {
        self.services.iter().find(|s| s.service == name)
    }
}

/// A snapshot name: letters, digits, `-`, `_`, `.`; not starting with `.` (so never `..`, and
/// never one of the hidden temporary folders); at most 100 characters.
pub(crate) fn check_name(name: &str) -> Result<(), SnapshotError> {
    let bad = |why| {
        Err(SnapshotError::BadName {
            name: name.to_string(),
            why,
        })
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > 100 {
        return bad("it is longer than 100 characters");
    }
    if name.contains('/') || name.contains('\\') {
        return bad("it contains a path separator");
    }
    if name.starts_with('.') {
        return bad("it starts with `.`");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return bad("only letters, digits, `-`, `_` and `.` are allowed");
    }
    Ok(())
}

/// The file name of one volume's tar inside a snapshot.
pub(crate) fn volume_file(service: &str, volume: &str) -> String {
    format!("{service}.{volume}.tar.gz")
}

/// The file name of a service's `n`th collection inside a snapshot (collection names may hold
/// any character, so they are not used).
pub(crate) fn collection_file(service: &str, n: usize) -> String {
    format!("{service}.collection-{n}.snapshot")
}

/// Whether a file named in a manifest is one this devstack writes: a plain name, not hidden,
/// a volume tar or a collection.
pub(crate) fn file_name_ok(file: &str) -> bool {
    Path::new(file)
        .components()
        .all(|c| matches!(c, Component::Normal(_)))
        && !file.contains('/')
        && !file.starts_with('.')
        && (file.ends_with(".tar.gz") || file.ends_with(".snapshot"))
}

/// Checks what a manifest says about itself: format, its own name, safe file names, no volume
/// twice. Pure.
pub(crate) fn check_manifest(m: &Manifest, name: &str) -> Result<(), SnapshotError> {
    let damaged = |why: String| {
        Err(SnapshotError::Damaged {
            name: name.to_string(),
            why,
        })
    };
    if m.format != FORMAT {
        return damaged(format!(
            "its format is {}, this devstack reads format {FORMAT}",
            m.format
        ));
    }
    let mut files = std::collections::BTreeSet::new();
    for (file, _) in m.files() {
        if !file_name_ok(file) {
            return damaged(format!("file `{file}` is not a plain file name"));
        }
        if !files.insert(file) {
            return damaged(format!("file `{file}` is listed twice"));
        }
    }
    for s in &m.services {
        if !s.collections.is_empty() && !s.through_api() {
            return damaged(format!(
                "`{}` lists collections but was not saved through Qdrant's API",
                s.service
            ));
        }
        if s.volumes.iter().any(|v| !v.file.ends_with(".tar.gz"))
            || s.collections.iter().any(|c| !c.file.ends_with(".snapshot"))
        {
            return damaged(format!("`{}` names a file of the wrong kind", s.service));
        }
    }
    Ok(())
}

/// Whether a path inside a volume tar stays inside the volume: relative, under `v/`, no `..`.
pub(crate) fn entry_path_ok(path: &Path) -> bool {
    let mut parts = path.components();
    let first_ok = match parts.next() {
        Some(Component::Normal(p)) => p == ROOT,
        _ => false,
    };
    first_ok && parts.all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

/// Whether a link target inside a volume tar is harmless. Symbolic links may point anywhere
/// (they are resolved inside the container, as the service sees them); hard links must name
/// an entry of the same volume.
pub(crate) fn hard_link_ok(target: &Path) -> bool {
    entry_path_ok(target)
}

/// Every entry of a gzipped volume tar checked: its path, hard link targets, and the total of
/// the sizes its headers claim. Returns the uncompressed bytes of its files.
pub(crate) fn check_volume_tar(file: &Path) -> Result<u64, String> {
    let f = std::fs::File::open(file).map_err(|e| format!("cannot open: {e}"))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(f));
    let mut total = 0u64;
    for entry in archive
        .entries()
        .map_err(|e| format!("not a tar archive: {e}"))?
    {
        let entry = entry.map_err(|e| format!("not a tar archive: {e}"))?;
        let path = entry.path().map_err(|e| format!("bad entry name: {e}"))?;
        if !entry_path_ok(&path) {
            return Err(format!(
                "entry `{}` would be written outside the volume",
                path.display()
            ));
        }
        if entry.header().entry_type().is_hard_link() {
            let target = entry
                .link_name()
                .map_err(|e| format!("bad link name: {e}"))?
                .unwrap_or_default();
            if !hard_link_ok(&target) {
                return Err(format!(
                    "hard link `{}` points outside the volume",
                    path.display()
                ));
            }
        }
        total += entry.header().size().unwrap_or(0);
    }
    Ok(total)
}

/// The contents of a snapshot's files checked, before any of it is written anywhere: every
/// volume tar (`check_volume_tar`), and every collection a plain tar whose entries stay inside
/// it (Qdrant unpacks and checks its own snapshots too).
pub(crate) fn check_contents(folder: &Path, m: &Manifest) -> Result<(), String> {
    for v in m.volumes() {
        check_volume_tar(&folder.join(&v.file))
            .map_err(|why| format!("volume file `{}`: {why}", v.file))?;
    }
    for c in m.services.iter().flat_map(|s| &s.collections) {
        check_collection_tar(&folder.join(&c.file))
            .map_err(|why| format!("collection file `{}`: {why}", c.file))?;
    }
    Ok(())
}

/// A Qdrant snapshot: a plain tar, every entry relative and without `..`.
fn check_collection_tar(file: &Path) -> Result<(), String> {
    let f = std::fs::File::open(file).map_err(|e| format!("cannot open: {e}"))?;
    let mut archive = tar::Archive::new(f);
    for entry in archive
        .entries()
        .map_err(|e| format!("not a tar archive: {e}"))?
    {
        let entry = entry.map_err(|e| format!("not a tar archive: {e}"))?;
        let path = entry.path().map_err(|e| format!("bad entry name: {e}"))?;
        if !path
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
        {
            return Err(format!("entry `{}` leaves the snapshot", path.display()));
        }
    }
    Ok(())
}

/// The project's snapshot folder, in its state folder.
pub(crate) fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("snapshots")
}

/// Reads and checks the manifest of snapshot `name` in `dir`, and that each volume file is
/// there with the size the manifest gives.
pub(crate) fn open(dir: &Path, name: &str) -> Result<Manifest, SnapshotError> {
    check_name(name)?;
    let folder = dir.join(name);
    if !folder.is_dir() {
        return Err(SnapshotError::Missing(name.to_string()));
    }
    let damaged = |why: String| SnapshotError::Damaged {
        name: name.to_string(),
        why,
    };
    let text = std::fs::read_to_string(folder.join(MANIFEST))
        .map_err(|e| damaged(format!("cannot read its {MANIFEST}: {e}")))?;
    let m: Manifest = serde_json::from_str(&text)
        .map_err(|e| damaged(format!("its {MANIFEST} does not parse: {e}")))?;
    check_manifest(&m, name)?;
    check_files(&folder, &m).map_err(damaged)?;
    Ok(m)
}

/// Each file present with the size the manifest gives.
pub(crate) fn check_files(folder: &Path, m: &Manifest) -> Result<(), String> {
    for (file, bytes) in m.files() {
        let len = std::fs::metadata(folder.join(file))
            .map_err(|e| format!("file `{file}` is missing: {e}"))?
            .len();
        if len != bytes {
            return Err(format!(
                "file `{file}` has {len} bytes, its manifest says {bytes}"
            ));
        }
    }
    Ok(())
}

/// Every snapshot of the project that opens, newest first; the ones that do not open are
/// returned beside with why.
pub(crate) fn list(dir: &Path) -> (Vec<Manifest>, Vec<(String, String)>) {
    let mut good = Vec::new();
    let mut bad = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (good, bad);
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !e.path().is_dir() {
            continue;
        }
        match open(dir, &name) {
            Ok(m) => good.push(m),
            Err(err) => bad.push((name, err.to_string())),
        }
    }
    good.sort_by(|a, b| b.created.cmp(&a.created).then(a.name.cmp(&b.name)));
    (good, bad)
}

/// A folder to write a new snapshot into, hidden until [`publish`]; temporary folders a killed
/// save left are removed first.
pub(crate) fn begin(dir: &Path, name: &str) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if let Some(pid) = n
                .strip_prefix(".tmp-")
                .and_then(|rest| rest.rsplit_once('-'))
                .and_then(|(_, pid)| pid.parse::<i32>().ok())
            {
                // SAFETY: signal 0 only asks whether the process exists.
                let alive = unsafe { libc::kill(pid, 0) } == 0;
                if !alive {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
    }
    let tmp = dir.join(format!(".tmp-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir(&tmp)?;
    Ok(tmp)
}

/// Gives the finished folder its name (replacing an older snapshot of that name).
pub(crate) fn publish(tmp: &Path, dir: &Path, name: &str) -> std::io::Result<()> {
    let target = dir.join(name);
    if target.exists() {
        let old = dir.join(format!(".old-{name}-{}", std::process::id()));
        std::fs::rename(&target, &old)?;
        std::fs::rename(tmp, &target)?;
        return std::fs::remove_dir_all(&old);
    }
    std::fs::rename(tmp, &target)
}

/// For tests: snapshot `name` of project `p`, one service `db` (`postgres:15`, stopped for the
/// copy) with volume `data` in each of `files` (empty).
#[cfg(test)]
pub(crate) fn sample_manifest(name: &str, files: &[&str]) -> Manifest {
    Manifest {
        format: FORMAT,
        name: name.into(),
        project: "p".into(),
        created: 1,
        devstack: "0".into(),
        services: vec![ServiceEntry {
            service: "db".into(),
            image: "postgres:15".into(),
            image_id: None,
            config_hash: None,
            consistency: "stop".into(),
            collections: Vec::new(),
            volumes: files
                .iter()
                .map(|f| VolumeEntry {
                    volume: "data".into(),
                    engine_name: "p_data".into(),
                    target: "/data".into(),
                    file: (*f).into(),
                    bytes: 0,
                    raw_bytes: 0,
                })
                .collect(),
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["s1", "before-migration", "v1.2_x", "A"] {
            assert_eq!(check_name(good), Ok(()), "{good}");
        }
        for (bad, why) in [
            ("", "empty"),
            ("a/b", "separator"),
            ("..", "starts with"),
            ("../x", "separator"),
            (".hidden", "starts with"),
            ("a b", "only letters"),
            ("é", "only letters"),
            ("a\\b", "separator"),
        ] {
            match check_name(bad) {
                Err(SnapshotError::BadName { why: w, .. }) => {
                    assert!(w.contains(why), "{bad}: {w}")
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
        assert!(check_name(&"x".repeat(101)).is_err());
    }

    /// A Qdrant saved through its API: collections, no volumes; each file checked as a volume
    /// tar's name is, and collections only where the service says it was saved that way.
    #[test]
    fn collections_in_a_manifest() {
        let mut m = sample_manifest("s1", &[]);
        m.services[0].consistency = SNAPSHOT_API.into();
        m.services[0].collections = vec![CollectionEntry {
            collection: "docs".into(),
            file: collection_file("db", 0),
            bytes: 7,
        }];
        assert_eq!(check_manifest(&m, "s1"), Ok(()));
        assert_eq!(m.bytes(), 7);
        assert_eq!(
            m.files().collect::<Vec<_>>(),
            [("db.collection-0.snapshot", 7)]
        );
        for (file, why) in [
            ("../x.snapshot", "not a plain file name"),
            ("db.collection-0.tar", "not a plain file name"),
        ] {
            let mut bad = m.clone();
            bad.services[0].collections[0].file = file.into();
            let err = check_manifest(&bad, "s1").unwrap_err().to_string();
            assert!(err.contains(why), "{file}: {err}");
        }
        let mut bad = m.clone();
        bad.services[0].consistency = "stop".into();
        let err = check_manifest(&bad, "s1").unwrap_err().to_string();
        assert!(err.contains("not saved through Qdrant's API"), "{err}");
        // A collection file that is not a tar, or whose entries leave it, is refused.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("db.collection-0.snapshot"), b"not a tar").unwrap();
        let err = check_contents(dir.path(), &m).unwrap_err();
        assert!(err.contains("collection file"), "{err}");
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_entry_type(tar::EntryType::Regular);
        h.as_gnu_mut().unwrap().name[..9].copy_from_slice(b"../escape");
        h.set_cksum();
        b.append(&h, &b"x"[..]).unwrap();
        std::fs::write(
            dir.path().join("db.collection-0.snapshot"),
            b.into_inner().unwrap(),
        )
        .unwrap();
        let err = check_contents(dir.path(), &m).unwrap_err();
        assert!(err.contains("leaves the snapshot"), "{err}");
    }

    #[test]
    fn entry_paths() {
        for ok in ["v", "v/", "v/base/1", "v/./a"] {
            assert!(entry_path_ok(Path::new(ok)), "{ok}");
        }
        for bad in [
            "/v/a",
            "v/../etc",
            "../v",
            "etc/passwd",
            "w/a",
            "",
            "v/a/../../x",
        ] {
            assert!(!entry_path_ok(Path::new(bad)), "{bad}");
        }
    }

    fn manifest(files: &[&str]) -> Manifest {
        sample_manifest("s1", files)
    }

    #[test]
    fn manifests() {
        assert_eq!(check_manifest(&manifest(&["db.data.tar.gz"]), "s1"), Ok(()));
        for bad in [
            vec!["../x.tar.gz"],
            vec!["/etc/x.tar.gz"],
            vec!["a/b.tar.gz"],
            vec![".tar.gz"],
            vec!["db.data.tar"],
            vec!["a.tar.gz", "a.tar.gz"],
        ] {
            assert!(
                matches!(
                    check_manifest(&manifest(&bad), "s1"),
                    Err(SnapshotError::Damaged { .. })
                ),
                "{bad:?}"
            );
        }
        let mut m = manifest(&[]);
        m.format = 2;
        assert!(check_manifest(&m, "s1").is_err());
    }

    fn gz_tar(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            // `set_path` refuses `..`; write the name raw, as a hostile file would.
            let name = &mut h.as_old_mut().name;
            name[..path.len()].copy_from_slice(path.as_bytes());
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        let raw = b.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &raw).unwrap();
        gz.finish().unwrap()
    }

    #[test]
    fn volume_tars_are_checked_before_use() {
        let tmp = tempfile::tempdir().unwrap();
        let good = tmp.path().join("good.tar.gz");
        std::fs::write(&good, gz_tar(&[("v/a", b"hello"), ("v/b/c", b"!")])).unwrap();
        assert_eq!(check_volume_tar(&good), Ok(6));
        let evil = tmp.path().join("evil.tar.gz");
        std::fs::write(&evil, gz_tar(&[("v/a", b"x"), ("v/../../etc/x", b"y")])).unwrap();
        assert!(check_volume_tar(&evil)
            .unwrap_err()
            .contains("outside the volume"));
        let other = tmp.path().join("other.tar.gz");
        std::fs::write(&other, gz_tar(&[("etc/passwd", b"y")])).unwrap();
        assert!(check_volume_tar(&other).is_err());
        let junk = tmp.path().join("junk.tar.gz");
        std::fs::write(&junk, b"not gzip").unwrap();
        assert!(check_volume_tar(&junk).is_err());
    }

    #[test]
    fn a_snapshot_is_published_whole_and_listed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = dir(tmp.path());
        let work = begin(&dir, "s1").unwrap();
        let m = manifest(&["db.data.tar.gz"]);
        std::fs::write(work.join("db.data.tar.gz"), b"").unwrap();
        // Not published yet: not there under its name.
        assert_eq!(open(&dir, "s1"), Err(SnapshotError::Missing("s1".into())));
        std::fs::write(work.join(MANIFEST), serde_json::to_string(&m).unwrap()).unwrap();
        publish(&work, &dir, "s1").unwrap();
        assert_eq!(open(&dir, "s1"), Ok(m.clone()));
        let (good, bad) = list(&dir);
        assert_eq!((good.len(), bad.len()), (1, 0));
        // A size that does not match is damage.
        std::fs::write(dir.join("s1/db.data.tar.gz"), b"extra").unwrap();
        assert!(matches!(
            open(&dir, "s1"),
            Err(SnapshotError::Damaged { .. })
        ));
        assert!(matches!(
            open(&dir, "../s1"),
            Err(SnapshotError::BadName { .. })
        ));
    }
}
