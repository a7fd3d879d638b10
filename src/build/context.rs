//! A build context on disk: the files `.dockerignore` leaves in, their content hash, and the tar
//! the engine receives. Blocking file work: call it from `spawn_blocking`.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::dockerignore::DockerIgnore;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EntryKind {
    Dir,
    File { size: u64, executable: bool },
    Symlink(PathBuf),
}

/// One path of the context that is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// Relative to the context, `/`-separated.
    pub rel: String,
    pub kind: EntryKind,
    pub mode: u32,
    pub mtime: u64,
}

/// The context as the engine gets it.
#[derive(Debug, Clone)]
pub(crate) struct Context {
    pub root: PathBuf,
    /// Sorted by path, so the hash and the tar do not depend on the order of `readdir`.
    pub entries: Vec<Entry>,
    /// sha256 over every entry's path, kind, mode and content (hex).
    pub hash: String,
}

fn rel_of(root: &Path, p: &Path) -> String {
    p.strip_prefix(root)
        .unwrap_or(p)
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// What a file was when its content was last hashed. The same size, inode, modification and
/// change times mean the same content (as git's index assumes); the change time cannot be set
/// back by tools that preserve modification times.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Stamp {
    size: u64,
    ino: u64,
    mtime_ns: i128,
    ctime_ns: i128,
    /// sha256 of the content (hex).
    digest: String,
}

/// Content digests of one context's files by path, kept between runs so that an unchanged
/// context is not read again.
pub(crate) type DigestCache = HashMap<String, Stamp>;

fn stamp_of(meta: &std::fs::Metadata) -> (u64, u64, i128, i128) {
    use std::os::unix::fs::MetadataExt;
    (
        meta.len(),
        meta.ino(),
        i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
    )
}

/// The file's content digest: from `cache` when its stamp is unchanged, else read (and kept,
/// unless it changed in the last two seconds: a write within the clock's granularity could
/// leave the stamp as it was).
fn file_digest(
    path: &Path,
    rel: &str,
    meta: &std::fs::Metadata,
    cache: &mut DigestCache,
    buf: &mut [u8],
) -> std::io::Result<String> {
    let (size, ino, mtime_ns, ctime_ns) = stamp_of(meta);
    if let Some(s) = cache.get(rel) {
        if (s.size, s.ino, s.mtime_ns, s.ctime_ns) == (size, ino, mtime_ns, ctime_ns) {
            return Ok(s.digest.clone());
        }
    }
    let mut h = Sha256::new();
    let mut f = std::fs::File::open(path)?;
    loop {
        let n = f.read(buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    let digest = hex(&h.finalize());
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128);
    if now_ns - mtime_ns.max(ctime_ns) > 2_000_000_000 {
        cache.insert(
            rel.to_string(),
            Stamp {
                size,
                ino,
                mtime_ns,
                ctime_ns,
                digest: digest.clone(),
            },
        );
    } else {
        cache.remove(rel);
    }
    Ok(digest)
}

/// Walks `root`, leaving out what `ignore` excludes, and hashes what is left.
#[cfg(test)]
pub(crate) fn scan(root: &Path, ignore: &DockerIgnore) -> std::io::Result<Context> {
    scan_cached(root, ignore, &mut DigestCache::new())
}

/// [`scan`], reading only the files whose stamp is not in `cache` (which it updates: entries of
/// files that are gone are dropped).
pub(crate) fn scan_cached(
    root: &Path,
    ignore: &DockerIgnore,
    cache: &mut DigestCache,
) -> std::io::Result<Context> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let mut entries = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    // Without `!` patterns an excluded folder cannot hold anything that is sent: skip it whole.
    let walk_excluded = ignore.has_exclusions();
    while let Some(dir) = stack.pop() {
        let rd = std::fs::read_dir(&dir).map_err(|e| {
            std::io::Error::new(e.kind(), format!("cannot read `{}`: {e}", dir.display()))
        })?;
        for item in rd {
            let item = item?;
            let path = item.path();
            let rel = rel_of(root, &path);
            let meta = std::fs::symlink_metadata(&path)?;
            let excluded = ignore.excludes(&rel);
            let mtime = u64::try_from(meta.mtime()).unwrap_or(0);
            let mode = meta.permissions().mode() & 0o7777;
            if meta.is_dir() {
                if !excluded || walk_excluded {
                    stack.push(path);
                }
                if !excluded {
                    entries.push(Entry {
                        rel,
                        kind: EntryKind::Dir,
                        mode,
                        mtime,
                    });
                }
            } else if excluded {
                continue;
            } else if meta.file_type().is_symlink() {
                entries.push(Entry {
                    rel,
                    kind: EntryKind::Symlink(std::fs::read_link(&path)?),
                    mode,
                    mtime,
                });
            } else if meta.is_file() {
                entries.push(Entry {
                    rel,
                    kind: EntryKind::File {
                        size: meta.len(),
                        executable: mode & 0o111 != 0,
                    },
                    mode,
                    mtime,
                });
            }
            // Sockets, fifos and devices are not sent (the Docker CLI refuses them).
        }
    }
    entries.sort_by(|a, b| a.rel.cmp(&b.rel));

    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    cache.retain(|rel, _| {
        entries
            .binary_search_by(|e| e.rel.as_str().cmp(rel))
            .is_ok()
    });
    for e in &entries {
        h.update(e.rel.as_bytes());
        h.update([0]);
        match &e.kind {
            EntryKind::Dir => h.update(b"d"),
            EntryKind::Symlink(t) => {
                h.update(b"l");
                h.update(t.as_os_str().as_encoded_bytes());
            }
            EntryKind::File { size, executable } => {
                h.update(if *executable { b"x" } else { b"f" });
                h.update(size.to_le_bytes());
                let path = root.join(&e.rel);
                let meta = std::fs::metadata(&path)?;
                h.update(file_digest(&path, &e.rel, &meta, cache, &mut buf)?.as_bytes());
            }
        }
        h.update([0]);
    }
    Ok(Context {
        root: root.to_path_buf(),
        entries,
        hash: hex(&h.finalize()),
    })
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The tar the engine receives: every entry, plus `extra` files (a Dockerfile from outside the
/// context, an inline one) at the given names. Owners are root, as the Docker CLI sends them.
pub(crate) fn tar(ctx: &Context, extra: &[(String, Vec<u8>)]) -> std::io::Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    let header = |kind: tar::EntryType, mode: u32, mtime: u64, size: u64| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_mtime(mtime);
        h.set_size(size);
        h.set_uid(0);
        h.set_gid(0);
        h
    };
    for e in &ctx.entries {
        match &e.kind {
            EntryKind::Dir => {
                let mut h = header(tar::EntryType::Directory, e.mode, e.mtime, 0);
                b.append_data(&mut h, format!("{}/", e.rel), std::io::empty())?;
            }
            EntryKind::Symlink(target) => {
                let mut h = header(tar::EntryType::Symlink, e.mode, e.mtime, 0);
                b.append_link(&mut h, &e.rel, target)?;
            }
            EntryKind::File { .. } => {
                let f = std::fs::File::open(ctx.root.join(&e.rel))?;
                // The size as it is now: a file that changed since the scan is sent as it is.
                let size = f.metadata()?.len();
                let mut h = header(tar::EntryType::Regular, e.mode, e.mtime, size);
                b.append_data(&mut h, &e.rel, f.take(size))?;
            }
        }
    }
    for (name, data) in extra {
        let mut h = header(tar::EntryType::Regular, 0o644, 0, data.len() as u64);
        b.append_data(&mut h, name, data.as_slice())?;
    }
    b.into_inner()
}

/// A tar of host files at the given paths (absolute container paths; the tar is extracted at
/// `/`), for copying changed files into a running container. Missing files are skipped.
pub(crate) fn files_tar(files: &[(PathBuf, String)]) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let mut b = tar::Builder::new(Vec::new());
    for (host, dest) in files {
        let Ok(meta) = std::fs::metadata(host) else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(meta.permissions().mode() & 0o7777);
        h.set_mtime(u64::try_from(meta.mtime()).unwrap_or(0));
        h.set_size(meta.len());
        let f = std::fs::File::open(host)?;
        b.append_data(&mut h, dest.trim_start_matches('/'), f.take(meta.len()))?;
    }
    b.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, rel: &str, data: &[u8]) {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }

    #[test]
    fn ignored_files_change_nothing_and_are_not_sent() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "Dockerfile", b"FROM scratch\n");
        write(dir.path(), "app/main.py", b"print(1)\n");
        let ig = DockerIgnore::parse("big.bin\n");
        let before = scan(dir.path(), &ig).unwrap();

        write(dir.path(), "big.bin", &vec![7u8; 1 << 20]);
        let after = scan(dir.path(), &ig).unwrap();
        assert_eq!(before.hash, after.hash);
        assert!(after.entries.iter().all(|e| e.rel != "big.bin"));
        let t = tar(&after, &[]).unwrap();
        assert!(t.len() < 64 * 1024, "tar of {} bytes", t.len());

        write(dir.path(), "app/main.py", b"print(2)\n");
        let changed = scan(dir.path(), &ig).unwrap();
        assert_ne!(before.hash, changed.hash);

        // With a digest cache: the same hash, and a rewritten file is read again (its change
        // time moved even if its size and modification time did not).
        let mut cache = DigestCache::new();
        let fresh = scan_cached(dir.path(), &ig, &mut cache).unwrap();
        assert_eq!(fresh.hash, changed.hash);
        let old = cache.clone();
        let again = scan_cached(dir.path(), &ig, &mut cache).unwrap();
        assert_eq!(again.hash, changed.hash);
        assert_eq!(cache, old);
        write(dir.path(), "app/main.py", b"print(3)\n");
        let rewritten = scan_cached(dir.path(), &ig, &mut cache).unwrap();
        assert_ne!(rewritten.hash, changed.hash);
        std::fs::remove_file(dir.path().join("app/main.py")).unwrap();
        scan_cached(dir.path(), &ig, &mut cache).unwrap();
        assert!(!cache.contains_key("app/main.py"));

        // The tar holds what the scan saw.
        let mut names: Vec<String> = tar::Archive::new(t.as_slice())
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        names.sort();
        assert_eq!(names, ["Dockerfile", "app/", "app/main.py"]);
    }
}
