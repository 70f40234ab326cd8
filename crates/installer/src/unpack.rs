//! Unpacking into the staging tree: tar+gzip (the source at a tag) and 7z (the Windows
//! package), with progress and cancel. An archive's single top folder (`Fooocus-2.5.5/`,
//! `Fooocus_win64_2-5-0/`) is dropped, so the tree is the install itself; a link at the top is
//! never taken for that folder. No entry may land outside the tree, and the tree keeps nothing
//! an archive should not bring: no link that leads out of it (refused: Fooocus's archives hold
//! no links at all), no setuid or setgid bit, nothing other users can write. What it unpacks to
//! is counted as it is written against the plan's ceilings, so a decompression bomb stops there,
//! and the free space is read again as it grows.

use std::cell::RefCell;
use std::fs;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use super::{
    human_bytes, safety, ArchiveKind, Ceilings, DiskWatch, InstallerError, Phase, Reporter,
};

/// What each file, folder or link costs against the ceiling besides its bytes: the block and
/// the inode it takes (a million empty files is a bomb too).
const ENTRY_COST: u64 = 4096;

/// Makes `unpack` panic on the thread named here, as a reader does on some broken archives (one
/// thread, so that tests running beside it are untouched; a plain static, since the Windows
/// toolchain's clippy flags `thread_local!` even with a const initializer).
#[cfg(test)]
pub(crate) static PANIC_IN_UNPACK: std::sync::Mutex<Option<std::thread::ThreadId>> =
    std::sync::Mutex::new(None);

pub(crate) fn unpack(
    archive: &Path,
    kind: ArchiveKind,
    tree: &Path,
    ceilings: &Ceilings,
    disk: DiskWatch,
    rep: &mut Reporter,
) -> Result<(), InstallerError> {
    #[cfg(test)]
    if *PANIC_IN_UNPACK.lock().unwrap_or_else(|e| e.into_inner())
        == Some(std::thread::current().id())
    {
        panic!("as a test asked");
    }
    let mut tmp = tree.as_os_str().to_owned();
    tmp.push(".unpacking");
    let tmp = PathBuf::from(tmp);
    if fs::symlink_metadata(&tmp).is_ok() {
        remove_tree(&tmp).map_err(|e| InstallerError::io("clear", &tmp, e))?;
    }
    fs::create_dir_all(&tmp).map_err(|e| InstallerError::io("create", &tmp, e))?;
    let archive_len = fs::metadata(archive)
        .map_err(|e| InstallerError::io("open", archive, e))?
        .len();
    let budget = RefCell::new(Budget::new(archive, ceilings, archive_len, disk));
    let r = match kind {
        ArchiveKind::TarGz => untar(archive, &tmp, &budget, rep),
        ArchiveKind::SevenZ => un7z(archive, &tmp, &mut budget.borrow_mut(), rep),
    }
    .and_then(|()| settle(archive, &tmp, tree));
    if r.is_err() {
        // An unpack always starts over; what a bomb wrote is freed now, not at the next try.
        let _ = remove_tree(&tmp);
    }
    r
}

/// The unpacked tree made safe and moved to `tree`.
fn settle(archive: &Path, tmp: &Path, tree: &Path) -> Result<(), InstallerError> {
    // One folder at the top, a real one (not a link to one elsewhere): that folder is the install.
    let entries: Vec<(PathBuf, bool)> = fs::read_dir(tmp)
        .map_err(|e| InstallerError::io("read", tmp, e))?
        .flatten()
        .map(|e| (e.path(), e.file_type().is_ok_and(|t| t.is_dir())))
        .collect();
    let root = match entries.as_slice() {
        [(only, true)] => only.clone(),
        _ => tmp.to_path_buf(),
    };
    secure_tree(archive, &root)?;
    fs::rename(&root, tree).map_err(|e| InstallerError::io("move", &root, e))?;
    if root != tmp {
        let _ = remove_tree(tmp);
    }
    Ok(())
}

/// Every link in the tree must lead inside it, and nothing keeps setuid, setgid or sticky bits
/// or write access for group and others (on Unix; 7z entries are made with the umask's modes).
fn secure_tree(archive: &Path, root: &Path) -> Result<(), InstallerError> {
    #[cfg(unix)]
    restrict_mode(root)?;
    // Each folder with how deep it is under the root (real folders only: links are not entered).
    let mut stack = vec![(root.to_path_buf(), 0usize)];
    while let Some((dir, depth)) = stack.pop() {
        let rd = fs::read_dir(&dir).map_err(|e| InstallerError::io("read", &dir, e))?;
        for e in rd {
            let e = e.map_err(|e| InstallerError::io("read", &dir, e))?;
            let path = e.path();
            let ft = e
                .file_type()
                .map_err(|e| InstallerError::io("read", &path, e))?;
            if ft.is_symlink() {
                let to = fs::read_link(&path).map_err(|e| InstallerError::io("read", &path, e))?;
                if !link_stays_inside(&to, depth) {
                    let name = path.strip_prefix(root).unwrap_or(&path);
                    return Err(InstallerError::refused(
                        archive.display(),
                        format!(
                            "its entry {} is a link to {}, outside the install (an install holds no link that leads out of it)",
                            name.display(),
                            to.display()
                        ),
                    ));
                }
                continue;
            }
            #[cfg(unix)]
            restrict_mode(&path)?;
            if ft.is_dir() {
                stack.push((path, depth + 1));
            }
        }
    }
    Ok(())
}

/// Whether a link `to`, in a folder `depth` levels under the root, leads inside the root
/// whatever other links it passes through: `to` is relative, and its `..` come first (resolved
/// from the real folder the link is in) and climb no higher than the root. A `..` after a name
/// is refused, as that name may itself be a link (`a/..` is not always the folder `a` is in).
fn link_stays_inside(to: &Path, depth: usize) -> bool {
    let mut up = 0;
    let mut named = false;
    for c in to.components() {
        match c {
            Component::Prefix(_) | Component::RootDir => return false,
            Component::CurDir => {}
            Component::ParentDir => {
                up += 1;
                if named || up > depth {
                    return false;
                }
            }
            Component::Normal(_) => named = true,
        }
    }
    true
}

/// Drops setuid, setgid and sticky, and write for group and others, and gives the owner
/// read and write (and enter, for a folder): an archive's 0500 or 0000 folder would otherwise
/// make the tree unreadable, unwritable and unremovable (the path is no link).
#[cfg(unix)]
fn restrict_mode(path: &Path) -> Result<(), InstallerError> {
    use std::os::unix::fs::PermissionsExt;
    let m = fs::symlink_metadata(path).map_err(|e| InstallerError::io("read", path, e))?;
    let mode = m.permissions().mode() & 0o7777;
    let owner = if m.is_dir() { 0o700 } else { 0o600 };
    let want = (mode & 0o755) | owner;
    if want != mode {
        fs::set_permissions(path, fs::Permissions::from_mode(want))
            .map_err(|e| InstallerError::io("set the permissions of", path, e))?;
    }
    Ok(())
}

/// Removes a tree an archive was unpacked into, whatever modes its folders were given: each
/// real folder (links are not followed) gets owner rwx first, so a 0500 folder cannot keep a
/// bomb's data on disk and make every retry fail.
pub(crate) fn remove_tree(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mut stack = vec![path.to_path_buf()];
        while let Some(dir) = stack.pop() {
            let Ok(m) = fs::symlink_metadata(&dir) else {
                continue;
            };
            if !m.is_dir() {
                continue;
            }
            let mode = m.permissions().mode();
            if mode & 0o700 != 0o700 {
                let _ = fs::set_permissions(&dir, fs::Permissions::from_mode(mode | 0o700));
            }
            if let Ok(rd) = fs::read_dir(&dir) {
                stack.extend(
                    rd.flatten()
                        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                        .map(|e| e.path()),
                );
            }
        }
    }
    fs::remove_dir_all(path)
}

/// The deepest and longest entry name taken. Each entry is charged one ENTRY_COST, but making
/// it makes every missing folder above it: `a/a/.../x` 2000 deep would be 2000 folders for one
/// entry's budget. Fooocus 2.5.5's deepest name has 6 parts and its longest 81 bytes; the
/// Windows package's site-packages go some 15 deep.
const MAX_NAME_PARTS: usize = 64;
const MAX_NAME_BYTES: usize = 1024;

fn check_name(archive: &Path, name: &str) -> Result<(), InstallerError> {
    let parts = name.split(['/', '\\']).filter(|p| !p.is_empty()).count();
    if parts > MAX_NAME_PARTS || name.len() > MAX_NAME_BYTES {
        let shown: String = name.chars().take(80).collect();
        return Err(InstallerError::refused(
            archive.display(),
            format!(
                "its entry {shown}... is {parts} folders deep and {} bytes long (at most {MAX_NAME_PARTS} and {MAX_NAME_BYTES}): no Fooocus archive has such names",
                name.len()
            ),
        ));
    }
    Ok(())
}

/// Whether a name part is a Windows device (CON, PRN, AUX, NUL, COM1-9, LPT1-9, CONIN$,
/// CONOUT$), in any case, with or without an extension and trailing dots or spaces: writing to
/// `NUL.txt` or `com1` on Windows opens the device, not a file in the tree.
fn is_windows_device(part: &str) -> bool {
    let stem = part.trim_end_matches(['.', ' ']);
    let stem = stem.split('.').next().unwrap_or("").trim_end_matches(' ');
    let up = stem.to_ascii_uppercase();
    let numbered = |p: &str| {
        up.strip_prefix(p).is_some_and(|n| {
            matches!(
                n,
                "1" | "2" | "3" | "4" | "5" | "6" | "7" | "8" | "9" | "¹" | "²" | "³"
            )
        })
    };
    matches!(
        up.as_str(),
        "CON" | "PRN" | "AUX" | "NUL" | "CONIN$" | "CONOUT$"
    ) || numbered("COM")
        || numbered("LPT")
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

/// What the archive may still write: bytes counted as they are written (never the sizes its
/// headers declare), against the plan's ceiling or `ratio` times the archive's own size,
/// whichever is lower; and the free space, read again as it grows.
struct Budget<'a> {
    archive: &'a Path,
    written: u64,
    max: u64,
    /// Where `max` comes from, for the message.
    basis: String,
    file_max: u64,
    disk: DiskWatch,
    /// Why a read stopped: the tar reader passes only an io::Error on.
    failure: Option<InstallerError>,
}

impl<'a> Budget<'a> {
    fn new(archive: &'a Path, c: &Ceilings, archive_len: u64, disk: DiskWatch) -> Budget<'a> {
        let by_ratio = archive_len
            .saturating_mul(c.ratio)
            .saturating_add(c.slack_bytes);
        let (max, basis) = if by_ratio < c.unpacked_bytes {
            (
                by_ratio,
                format!(
                    "{} times the archive's own {}, plus {}",
                    c.ratio,
                    human_bytes(archive_len),
                    human_bytes(c.slack_bytes)
                ),
            )
        } else {
            (
                c.unpacked_bytes,
                "what Fooocus for this platform takes unpacked, with a margin".into(),
            )
        };
        Budget {
            archive,
            written: 0,
            max,
            basis,
            file_max: c.file_bytes,
            disk,
            failure: None,
        }
    }

    fn add(&mut self, n: u64) -> Result<(), InstallerError> {
        self.written = self.written.saturating_add(n);
        if self.written > self.max {
            return Err(InstallerError::refused(
                self.archive.display(),
                format!(
                    "it unpacks to more than {} ({}), as a decompression bomb does",
                    human_bytes(self.max),
                    self.basis
                ),
            ));
        }
        self.disk.check(self.written)
    }

    fn file_too_large(&self, name: &str) -> InstallerError {
        InstallerError::refused(
            self.archive.display(),
            format!(
                "its file {name} is larger than {}, the most any one file of Fooocus for this platform takes",
                human_bytes(self.file_max)
            ),
        )
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

/// The decompressed tar stream, counted against the budget: every byte the tar reader writes
/// out comes through here.
struct Capped<'b, 'a, R> {
    inner: R,
    budget: &'b RefCell<Budget<'a>>,
}

impl<R: Read> Read for Capped<'_, '_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut b = self.budget.borrow_mut();
        if let Err(e) = b.add(n as u64) {
            b.failure = Some(e);
            return Err(io::Error::other("stopped at the ceiling"));
        }
        Ok(n)
    }
}

fn untar(
    archive: &Path,
    dest: &Path,
    budget: &RefCell<Budget>,
    rep: &mut Reporter,
) -> Result<(), InstallerError> {
    let f = fs::File::open(archive).map_err(|e| InstallerError::io("open", archive, e))?;
    let total = f.metadata().map(|m| m.len()).ok();
    let counting = Counting {
        inner: io::BufReader::new(f),
        done: 0,
        total,
        rep,
    };
    let capped = Capped {
        inner: flate2::read::GzDecoder::new(counting),
        budget,
    };
    let mut tar = tar::Archive::new(capped);
    // Modes without setuid, setgid and sticky (what `false` keeps is mode & 0o777), and without
    // write for group and others; owners are never taken from the archive.
    tar.set_preserve_permissions(false);
    tar.set_mask(0o022);
    tar.set_preserve_ownerships(false);
    let entries = tar.entries().map_err(|e| archive_error(archive, e))?;
    for entry in entries {
        let mut entry = match entry {
            Ok(e) => e,
            Err(e) => return Err(unpack_error(archive, dest, e, budget, rep)),
        };
        // Global pax headers and the like carry no file.
        let t = entry.header().entry_type();
        if t.is_pax_global_extensions()
            || t.is_pax_local_extensions()
            || t.is_gnu_longname()
            || t.is_gnu_longlink()
        {
            continue;
        }
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        check_name(archive, &name)?;
        // Sparse files (holes: a size on disk far from what was read), devices, fifos: no
        // Fooocus archive has any.
        if !(t.is_file() || t.is_dir() || t.is_symlink() || t.is_hard_link()) {
            return Err(InstallerError::refused(
                archive.display(),
                format!("its entry {name} is neither a file, a folder nor a link ({t:?})"),
            ));
        }
        {
            let mut b = budget.borrow_mut();
            // The tar reader writes exactly the size the header declares, read through Capped
            // (so counted); a declared size above the ceiling is refused before a byte of it.
            if entry.size() > b.file_max {
                return Err(b.file_too_large(&name));
            }
            b.add(ENTRY_COST)?;
        }
        // unpack_in refuses `..` and absolute paths (returns false), and any entry whose folder
        // leads outside through a link.
        match entry.unpack_in(dest) {
            Ok(true) => {
                // tar-rs applies a folder's mode as it makes it (again for a repeated entry):
                // the owner keeps rwx so the entries after it can be written (and removed).
                #[cfg(unix)]
                if t.is_dir() {
                    if let Some(rel) = safe_relative(&name) {
                        let path = dest.join(rel);
                        if fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
                            restrict_mode(&path)?;
                        }
                    }
                }
            }
            Ok(false) => return Err(archive_error(archive, "an entry points outside the folder")),
            Err(e) => return Err(unpack_error(archive, dest, e, budget, rep)),
        }
    }
    Ok(())
}

fn unpack_error(
    archive: &Path,
    dest: &Path,
    e: io::Error,
    budget: &RefCell<Budget>,
    rep: &Reporter,
) -> InstallerError {
    if let Some(f) = budget.borrow_mut().failure.take() {
        f
    } else if rep.is_cancelled() {
        InstallerError::Cancelled
    } else if super::is_disk_full(&e) {
        InstallerError::io("unpack into", dest, e)
    } else {
        archive_error(archive, e)
    }
}

/// The largest header a 7z may declare. sevenz-rust allocates the declared size before reading
/// a byte of it, and a failed allocation aborts the whole guard, supervision included. The
/// header holds a name, a size and a few flags per entry: some 100 bytes each, and far less
/// once packed, as 7-Zip packs it; Fooocus's package has some 30 000 entries.
const MAX_7Z_HEADER: u64 = 16 << 20;
/// The largest LZMA/LZMA2 dictionary a 7z may ask for (allocated whole by the decoder; 7-Zip's
/// ultra preset uses 64 MiB).
const MAX_7Z_DICTIONARY: u64 = 256 << 20;

/// The 32-byte signature header checked before sevenz-rust sees the archive: the next header
/// it points to must lie inside the file and be of a sane size.
fn check_7z_header(archive: &Path) -> Result<(), InstallerError> {
    let mut f = fs::File::open(archive).map_err(|e| InstallerError::io("open", archive, e))?;
    let len = f
        .metadata()
        .map_err(|e| InstallerError::io("open", archive, e))?
        .len();
    let mut h = [0u8; 32];
    if f.read_exact(&mut h).is_err() || h[..6] != [b'7', b'z', 0xBC, 0xAF, 0x27, 0x1C] {
        return Err(archive_error(archive, "not a 7z archive (no 7z signature)"));
    }
    let offset = u64::from_le_bytes(h[12..20].try_into().unwrap());
    let size = u64::from_le_bytes(h[20..28].try_into().unwrap());
    let end = 32u64.checked_add(offset).and_then(|e| e.checked_add(size));
    if end.is_none_or(|e| e > len) {
        return Err(archive_error(
            archive,
            format!(
                "its header claims to lie past its end ({} bytes at {offset}, in a file of {len}): the file is truncated or not a real 7z; download it again",
                size
            ),
        ));
    }
    if size > MAX_7Z_HEADER {
        return Err(archive_error(
            archive,
            format!(
                "its header is {} (more than {}): not a Fooocus package",
                human_bytes(size),
                human_bytes(MAX_7Z_HEADER)
            ),
        ));
    }
    Ok(())
}

fn check_7z_dictionaries(archive: &Path, a: &sevenz_rust::Archive) -> Result<(), InstallerError> {
    for coder in a.folders.iter().flat_map(|f| f.coders.iter()) {
        let id = coder.decompression_method_id();
        let p = &coder.properties;
        let dict = if id == sevenz_rust::SevenZMethod::ID_LZMA {
            // sevenz-rust slices these 5 bytes unchecked (a panic).
            if p.len() < 5 {
                return Err(archive_error(
                    archive,
                    "an LZMA coder without its properties",
                ));
            }
            u64::from(u32::from_le_bytes(p[1..5].try_into().unwrap()))
        } else if id == sevenz_rust::SevenZMethod::ID_LZMA2 {
            match p.first() {
                Some(&b) if b <= 40 => {
                    if b == 40 {
                        u64::from(u32::MAX)
                    } else {
                        (2 | u64::from(b & 1)) << (b / 2 + 11)
                    }
                }
                _ => return Err(archive_error(archive, "an LZMA2 coder with bad properties")),
            }
        } else {
            continue;
        };
        if dict > MAX_7Z_DICTIONARY {
            return Err(archive_error(
                archive,
                format!(
                    "it asks for a {} dictionary (more than {}): not a Fooocus package",
                    human_bytes(dict),
                    human_bytes(MAX_7Z_DICTIONARY)
                ),
            ));
        }
    }
    Ok(())
}

fn un7z(
    archive: &Path,
    dest: &Path,
    budget: &mut Budget,
    rep: &mut Reporter,
) -> Result<(), InstallerError> {
    check_7z_header(archive)?;
    let mut reader = sevenz_rust::SevenZReader::open(archive, sevenz_rust::Password::empty())
        .map_err(|e| archive_error(archive, e))?;
    check_7z_dictionaries(archive, reader.archive())?;
    // Declared sizes: for the progress figure only.
    let total: u64 = reader
        .archive()
        .files
        .iter()
        .fold(0u64, |t, f| t.saturating_add(f.size));
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
        if let Err(e) = check_name(archive, entry.name()) {
            return stop(&mut failure, e);
        }
        // The 7z is the Windows package: a device name would write to the device there.
        if let Some(dev) = entry
            .name()
            .split(['/', '\\'])
            .find(|p| is_windows_device(p))
        {
            return stop(
                &mut failure,
                InstallerError::refused(
                    archive.display(),
                    format!(
                        "its entry {} is named as a Windows device ({dev}): no Fooocus package has one",
                        entry.name()
                    ),
                ),
            );
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
        if let Err(e) = budget.add(ENTRY_COST) {
            return stop(&mut failure, e);
        }
        // No link is ever made here (a link stored in a 7z comes out as a file holding its
        // target's name), so the folders below are all real ones inside `dest`.
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
        let mut out = match safety::create_fresh(&path) {
            Ok(f) => f,
            Err(e) => return stop(&mut failure, InstallerError::io("write", &path, e)),
        };
        let mut buf = vec![0u8; 256 * 1024];
        let mut this_file = 0u64;
        loop {
            if rep.is_cancelled() {
                return stop(&mut failure, InstallerError::Cancelled);
            }
            let n = match data.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => return stop(&mut failure, archive_error(archive, e)),
            };
            // Counted before it is written.
            this_file += n as u64;
            if this_file > budget.file_max {
                return stop(&mut failure, budget.file_too_large(entry.name()));
            }
            if let Err(e) = budget.add(n as u64) {
                return stop(&mut failure, e);
            }
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

    #[cfg(unix)]
    #[test]
    fn an_archives_modes_never_lock_its_owner_out() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mode = |p: &Path| fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777;
        let d = dir.path().join("d");
        let f = dir.path().join("f");
        fs::create_dir(&d).unwrap();
        fs::write(&f, b"x").unwrap();
        for (p, m, want) in [(&d, 0o500, 0o700), (&d, 0o4777, 0o755), (&f, 0o000, 0o600)] {
            fs::set_permissions(p, fs::Permissions::from_mode(m)).unwrap();
            restrict_mode(p).unwrap();
            assert_eq!(mode(p), want, "{} from {m:o}", p.display());
        }
        // A tree with a 0500 and a 0000 folder is removed whole.
        let t = dir.path().join("t");
        fs::create_dir_all(t.join("a/b")).unwrap();
        fs::write(t.join("a/b/data"), b"x").unwrap();
        fs::set_permissions(t.join("a/b"), fs::Permissions::from_mode(0o000)).unwrap();
        fs::set_permissions(t.join("a"), fs::Permissions::from_mode(0o500)).unwrap();
        remove_tree(&t).unwrap();
        assert!(fs::symlink_metadata(&t).is_err());
    }

    #[test]
    fn windows_device_names_are_known_in_every_spelling() {
        for d in [
            "CON",
            "con",
            "Nul.txt",
            "aux.tar.gz",
            "PRN. ",
            "com1",
            "LPT9.log",
            "nul .txt",
            "COM¹",
            "conin$",
            "CONOUT$.x",
        ] {
            assert!(is_windows_device(d), "{d}");
        }
        for f in [
            "console",
            "nul_",
            "com0",
            "com10",
            "lpt",
            "aux_data.py",
            "a.con",
            "python.exe",
        ] {
            assert!(!is_windows_device(f), "{f}");
        }
    }

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

    #[test]
    fn a_link_must_lead_inside_the_install_whatever_it_passes_through() {
        let inside = |to: &str, depth| link_stays_inside(Path::new(to), depth);
        assert!(inside("a/b", 0));
        assert!(inside("./a", 0));
        assert!(inside("../a", 1));
        assert!(inside("../../a/b", 2));
        assert!(!inside("/etc", 3), "absolute");
        assert!(!inside("../a", 0), "above the root");
        assert!(!inside("../../a", 1), "above the root");
        // `b/..` is not `.` when b is a link (b -> ../.. from deeper down): refused.
        assert!(!inside("b/../a", 2));
        assert!(!inside("b/..", 0));
    }
}
