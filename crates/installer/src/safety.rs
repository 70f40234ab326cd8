//! The folders an install is made in, and the files it writes there, against the machine's
//! other users. Installing as root into a folder others can write would use what they planted
//! there: an archive where the download goes, a link named like a state file that the install
//! then writes through. So the folder the install is made in must belong to this user (or root)
//! and be closed to others, as must every folder above it (a shared folder with the sticky bit,
//! like /tmp, is fine above it, not as it); the staging folder is made fresh and private, or
//! must be this user's own from an earlier attempt; state files are made fresh and never opened
//! through a link.
//!
//! Windows: ownership and mode bits are Unix's; there the checks are of links only (the default
//! folder is under the user's profile, which other users cannot write).

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::Path;

use super::{InstallerError, Plan};

/// The folder `path` is made in ("." for a bare name).
fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Everything an install touches before it makes anything: the folder it is made in (and those
/// above), the target and an earlier staging folder.
pub(crate) fn check_folders(plan: &Plan) -> Result<(), InstallerError> {
    check_where_made(parent_of(&plan.target))?;
    check_existing(&plan.target, Role::Target)?;
    check_existing(&plan.staging, Role::Staging)
}

/// Makes the staging folder: fresh and private, or an earlier attempt's that passes the checks.
pub(crate) fn make_staging(plan: &Plan) -> Result<(), InstallerError> {
    let parent = parent_of(&plan.staging);
    dir_builder(true, 0o755)
        .create(parent)
        .map_err(|e| InstallerError::io("create", parent, e))?;
    match dir_builder(false, 0o700).create(&plan.staging) {
        Ok(()) => Ok(()),
        // Resuming: checked again now that it is used (check_folders ran earlier).
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            check_existing(&plan.staging, Role::Staging)
        }
        Err(e) => Err(InstallerError::io("create", &plan.staging, e)),
    }
}

/// Folders made with `mode` (less the umask) on Unix.
fn dir_builder(recursive: bool, _mode: u32) -> fs::DirBuilder {
    let mut b = fs::DirBuilder::new();
    b.recursive(recursive);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, _mode);
    b
}

#[derive(Clone, Copy, PartialEq)]
enum Role {
    Target,
    Staging,
}

fn unsafe_folder(msg: String) -> InstallerError {
    InstallerError::UnsafeFolder(msg)
}

/// An existing target or staging folder: never a link; on Unix this user's own and closed to
/// others. A missing one is fine (it is made here).
fn check_existing(path: &Path, role: Role) -> Result<(), InstallerError> {
    let md = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(InstallerError::io("read", path, e)),
    };
    let p = path.display();
    let remove = if cfg!(windows) {
        "delete it".to_string()
    } else {
        format!("remove it (rm -rf {p})")
    };
    let leftover = |why: String| {
        unsafe_folder(format!(
            "{p}, where an unfinished install is kept, {why}; this installer did not make it so: {remove} and install again"
        ))
    };
    if md.file_type().is_symlink() {
        let to = fs::read_link(path)
            .map(|t| t.display().to_string())
            .unwrap_or_default();
        return Err(match role {
            Role::Target => unsafe_folder(format!(
                "{p} is a link (to {to}), so the install would be made somewhere else: choose the folder it leads to, or a new one"
            )),
            Role::Staging => leftover(format!("is a link (to {to})")),
        });
    }
    if !md.is_dir() {
        return match role {
            // preflight() names it: not an empty folder.
            Role::Target => Ok(()),
            Role::Staging => Err(leftover("is not a folder".into())),
        };
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let me = euid();
        if md.uid() != me {
            return Err(match role {
                Role::Target => another_user(path, md.uid()),
                Role::Staging => leftover(format!("belongs to another user (uid {})", md.uid())),
            });
        }
        // The staging folder is made 0700; group or others writing into it planted something.
        let open = match role {
            Role::Target => 0o002,
            Role::Staging => 0o022,
        };
        if md.mode() & open != 0 {
            return Err(match role {
                Role::Target => writable_by_others(path, md.mode()),
                Role::Staging => leftover("can be written by other users".into()),
            });
        }
    }
    Ok(())
}

/// The folder the target and the staging folder are made in (or the nearest one that exists,
/// under which the rest is made), and every folder above it: this user's or root's, and none
/// writable by others, except above it a shared folder with the sticky bit (/tmp), where others
/// cannot move what is not theirs.
#[cfg(unix)]
fn check_where_made(dir: &Path) -> Result<(), InstallerError> {
    use std::os::unix::fs::MetadataExt;
    let mut existing = dir;
    while fs::symlink_metadata(existing).is_err() {
        existing = parent_of(existing);
        if existing == Path::new(".") && fs::symlink_metadata(existing).is_err() {
            break;
        }
    }
    let real = fs::canonicalize(existing).map_err(|e| InstallerError::io("read", existing, e))?;
    // The folders of the path as given too: those that hold its links (~/apps -> /data/apps).
    let given =
        std::path::absolute(existing).map_err(|e| InstallerError::io("read", existing, e))?;
    let me = euid();
    let folders = real
        .ancestors()
        .map(|d| (d, d == real))
        .chain(given.ancestors().skip(1).map(|d| (d, false)));
    for (d, itself) in folders {
        let md = fs::metadata(d).map_err(|e| InstallerError::io("read", d, e))?;
        if md.uid() != me && md.uid() != 0 {
            return Err(another_user(d, md.uid()));
        }
        let sticky = md.mode() & 0o1000 != 0;
        if md.mode() & 0o002 != 0 && (itself || !sticky) {
            return Err(writable_by_others(d, md.mode()));
        }
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_where_made(_dir: &Path) -> Result<(), InstallerError> {
    Ok(())
}

#[cfg(unix)]
fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

#[cfg(unix)]
fn another_user(d: &Path, uid: u32) -> InstallerError {
    unsafe_folder(format!(
        "the folder {} belongs to another user (uid {uid}), who could swap what the install makes in it: choose a folder of your own, or install as that user",
        d.display()
    ))
}

#[cfg(unix)]
fn writable_by_others(d: &Path, mode: u32) -> InstallerError {
    let d = d.display();
    if mode & 0o1000 != 0 {
        // /tmp and its like: chmod o-w would break them for everyone else.
        unsafe_folder(format!(
            "the folder {d} is shared with other users (anyone can create files in it), who could plant what the install then uses: choose a folder only you can write, such as one in your home folder"
        ))
    } else {
        unsafe_folder(format!(
            "the folder {d} is writable by other users, who could plant or swap what the install makes in it: choose a folder only you can write, or chmod o-w {d}"
        ))
    }
}

/// Opens a link's own entry instead of what it leads to (which then fails to open or parse).
fn no_follow(o: &mut OpenOptions) {
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(o, libc::O_NOFOLLOW);
    // FILE_FLAG_OPEN_REPARSE_POINT.
    #[cfg(windows)]
    std::os::windows::fs::OpenOptionsExt::custom_flags(o, 0x0020_0000);
}

/// `path` for reading; a link there is not followed.
pub(crate) fn open_read(path: &Path) -> io::Result<File> {
    let mut o = OpenOptions::new();
    o.read(true);
    no_follow(&mut o);
    o.open(path)
}

/// `path` for appending, made when missing; a link there is not followed.
pub(crate) fn open_append(path: &Path) -> io::Result<File> {
    let mut o = OpenOptions::new();
    o.create(true).append(true);
    no_follow(&mut o);
    o.open(path)
}

/// `path` made fresh: whatever is there (a file, a link) is removed first, and the new file
/// is created exclusively, so nothing is ever written through a link.
pub(crate) fn create_fresh(path: &Path) -> io::Result<File> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    OpenOptions::new().write(true).create_new(true).open(path)
}

// Unix: making a link on Windows needs a privilege the Wine suite may not have.
#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn files_are_written_fresh_and_read_without_following_links() {
        use std::io::{Read, Write};
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"precious").unwrap();
        let link = dir.path().join("state.json.tmp");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        // Not read through the link.
        let mut s = String::new();
        let read = open_read(&link).and_then(|mut f| f.read_to_string(&mut s));
        assert!(read.is_err() || s.is_empty(), "{s}");
        // Not appended through it.
        assert!(open_append(&link).is_err());
        // Written fresh: the link is replaced, the file it led to untouched.
        create_fresh(&link).unwrap().write_all(b"{}").unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        assert!(!fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(fs::read(&link).unwrap(), b"{}");
    }
}
