//! Unpacking into the staging tree: tar+gzip (the source at a tag) and 7z (the Windows
//! package), with progress and cancel. An archive's single top folder (`Fooocus-2.5.5/`,
//! `Fooocus_win64_2-5-0/`) is dropped, so the tree is the install itself. No entry may land
//! outside the tree.

use std::fs;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use super::{ArchiveKind, InstallerError, Phase, Reporter};

pub(crate) fn unpack(
    archive: &Path,
    kind: ArchiveKind,
    tree: &Path,
    rep: &mut Reporter,
) -> Result<(), InstallerError> {
    let mut tmp = tree.as_os_str().to_owned();
    tmp.push(".unpacking");
    let tmp = PathBuf::from(tmp);
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(|e| InstallerError::io("clear", &tmp, e))?;
    }
    fs::create_dir_all(&tmp).map_err(|e| InstallerError::io("create", &tmp, e))?;
    match kind {
        ArchiveKind::TarGz => untar(archive, &tmp, rep)?,
        ArchiveKind::SevenZ => un7z(archive, &tmp, rep)?,
    }
    // One folder at the top: that folder is the install.
    let entries: Vec<PathBuf> = fs::read_dir(&tmp)
        .map_err(|e| InstallerError::io("read", &tmp, e))?
        .flatten()
        .map(|e| e.path())
        .collect();
    let root = match entries.as_slice() {
        [only] if only.is_dir() => only.clone(),
        _ => tmp.clone(),
    };
    fs::rename(&root, tree).map_err(|e| InstallerError::io("move", &root, e))?;
    if root != tmp {
        let _ = fs::remove_dir_all(&tmp);
    }
    Ok(())
}

/// The relative path of an entry, or None when it would leave the tree.
fn safe_relative(name: &str) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for part in name.split(['/', '\\']) {
        match Path::new(part).components().next() {
            None => {}
            Some(Component::Normal(p)) if !part.contains(':') => out.push(p),
            Some(Component::CurDir) => {}
            _ => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

fn archive_error(archive: &Path, detail: impl ToString) -> InstallerError {
    InstallerError::Archive {
        what: archive.display().to_string(),
        detail: detail.to_string(),
    }
}

struct Counting<'a, R> {
    inner: R,
    done: u64,
    total: Option<u64>,
    rep: &'a Reporter<'a>,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.rep.is_cancelled() {
            // Not `Interrupted`: readers retry that kind forever.
            return Err(io::Error::other("cancelled"));
        }
        let n = self.inner.read(buf)?;
        self.done += n as u64;
        self.rep.bytes(Phase::Unpack, self.done, self.total);
        Ok(n)
    }
}

fn untar(archive: &Path, dest: &Path, rep: &mut Reporter) -> Result<(), InstallerError> {
    let f = fs::File::open(archive).map_err(|e| InstallerError::io("open", archive, e))?;
    let total = f.metadata().map(|m| m.len()).ok();
    let counting = Counting {
        inner: io::BufReader::new(f),
        done: 0,
        total,
        rep,
    };
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(counting));
    tar.set_preserve_permissions(true);
    let entries = tar.entries().map_err(|e| archive_error(archive, e))?;
    for entry in entries {
        let mut entry = match entry {
            Ok(e) => e,
            Err(e) => return Err(unpack_error(archive, dest, e, rep)),
        };
        // Global pax headers and the like carry no file.
        let t = entry.header().entry_type();
        if t.is_pax_global_extensions() || t.is_pax_local_extensions() || t.is_gnu_longname() {
            continue;
        }
        // unpack_in refuses `..` and absolute paths (returns false).
        match entry.unpack_in(dest) {
            Ok(true) => {}
            Ok(false) => return Err(archive_error(archive, "an entry points outside the folder")),
            Err(e) => return Err(unpack_error(archive, dest, e, rep)),
        }
    }
    Ok(())
}

fn unpack_error(archive: &Path, dest: &Path, e: io::Error, rep: &Reporter) -> InstallerError {
    if rep.is_cancelled() {
        InstallerError::Cancelled
    } else if super::is_disk_full(&e) {
        InstallerError::io("unpack into", dest, e)
    } else {
        archive_error(archive, e)
    }
}

fn un7z(archive: &Path, dest: &Path, rep: &mut Reporter) -> Result<(), InstallerError> {
    let mut reader = sevenz_rust::SevenZReader::open(archive, sevenz_rust::Password::empty())
        .map_err(|e| archive_error(archive, e))?;
    let total: u64 = reader.archive().files.iter().map(|f| f.size).sum();
    let mut done = 0u64;
    let mut failure: Option<InstallerError> = None;
    let r = reader.for_each_entries(|entry, data| {
        let stop = |failure: &mut Option<InstallerError>, e: InstallerError| {
            *failure = Some(e);
            Err(sevenz_rust::Error::io(io::Error::other("stopped")))
        };
        if rep.is_cancelled() {
            return stop(&mut failure, InstallerError::Cancelled);
        }
        // The archive's root itself.
        if entry.name().trim_matches(['/', '\\', '.']).is_empty() {
            return Ok(true);
        }
        let Some(rel) = safe_relative(entry.name()) else {
            return stop(
                &mut failure,
                archive_error(
                    archive,
                    format!("{} points outside the folder", entry.name()),
                ),
            );
        };
        let path = dest.join(rel);
        if entry.is_directory() {
            if let Err(e) = fs::create_dir_all(&path) {
                return stop(&mut failure, InstallerError::io("create", &path, e));
            }
            return Ok(true);
        }
        if let Some(parent) = path.parent() {
            if let Err(e) = fs::create_dir_all(parent) {
                return stop(&mut failure, InstallerError::io("create", parent, e));
            }
        }
        let mut out = match fs::File::create(&path) {
            Ok(f) => f,
            Err(e) => return stop(&mut failure, InstallerError::io("write", &path, e)),
        };
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            if rep.is_cancelled() {
                return stop(&mut failure, InstallerError::Cancelled);
            }
            let n = match data.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => return stop(&mut failure, archive_error(archive, e)),
            };
            if let Err(e) = io::Write::write_all(&mut out, &buf[..n]) {
                return stop(&mut failure, InstallerError::io("write", &path, e));
            }
            done += n as u64;
            rep.bytes(Phase::Unpack, done, Some(total));
        }
        Ok(true)
    });
    if let Some(f) = failure {
        return Err(f);
    }
    r.map_err(|e| archive_error(archive, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_cannot_leave_the_tree() {
        assert_eq!(
            safe_relative("a/b.txt"),
            Some(PathBuf::from("a").join("b.txt"))
        );
        assert_eq!(
            safe_relative("a\\b.txt"),
            Some(PathBuf::from("a").join("b.txt"))
        );
        assert_eq!(safe_relative("./a"), Some(PathBuf::from("a")));
        assert_eq!(safe_relative("../a"), None);
        assert_eq!(safe_relative("a/../../b"), None);
        assert_eq!(
            safe_relative("/etc/passwd"),
            Some(PathBuf::from("etc").join("passwd"))
        );
        assert_eq!(safe_relative("C:\\Windows"), None);
        assert_eq!(safe_relative(""), None);
    }
}
