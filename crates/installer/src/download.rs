//! The archive over HTTP(S): resumable (Range), checked (SHA-256), cancellable.
//!
//! Bytes go straight to `NAME.part`; a lost connection, a truncated body or a read that waits
//! longer than the body budget ends one request, and the next asks for the rest
//! (`Range: bytes=N-`). Only a run of attempts that brings no byte at all gives up. A body
//! larger than the plan's ceiling for the archive is refused (announced or counted), and the
//! free space is read again as it grows.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::{human_bytes, DiskWatch, InstallerError, Phase, Reporter};

#[derive(Clone, Debug)]
pub struct DownloadOptions {
    pub connect_timeout: Duration,
    /// How long one request may read its body before the download reconnects from where it
    /// stopped (a silent connection never blocks a download, or its cancel, for longer).
    pub body_budget: Duration,
    /// Attempts in a row that bring no byte before the download gives up.
    pub attempts: u32,
}

impl Default for DownloadOptions {
    fn default() -> Self {
        DownloadOptions {
            connect_timeout: Duration::from_secs(20),
            body_budget: Duration::from_secs(30),
            attempts: 5,
        }
    }
}

fn part_path(dest: &Path) -> PathBuf {
    let mut s = dest.as_os_str().to_owned();
    s.push(".part");
    PathBuf::from(s)
}

fn agent(opts: &DownloadOptions, budget: Option<Duration>) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_connect(Some(opts.connect_timeout))
        .timeout_recv_response(Some(opts.connect_timeout))
        .timeout_recv_body(budget)
        .http_status_as_error(false)
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .provider(ureq::tls::TlsProvider::NativeTls)
                .build(),
        )
        .build()
        .into()
}

/// `bytes START-END/TOTAL` -> (START, TOTAL).
fn content_range(v: &str) -> Option<(u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let total = total.trim().parse().ok();
    if range.trim() == "*" {
        return Some((0, total));
    }
    let start = range.split_once('-')?.0.trim().parse().ok()?;
    Some((start, total))
}

fn status_fix(status: u16) -> String {
    match status {
        404 | 410 => "there is no such file there: check the address (or the version)".into(),
        401 | 403 => "the server refuses the download: check the address".into(),
        429 => "the server asks to wait: Retry in a few minutes".into(),
        s if s >= 500 => "the server has a problem: Retry in a few minutes".into(),
        _ => "check the address, then Retry".into(),
    }
}

fn too_large(url: &str, detail: String, max: u64) -> InstallerError {
    InstallerError::refused(
        format!("the download from {url}"),
        format!(
            "{detail}, more than the {} a Fooocus archive for this platform can be",
            human_bytes(max)
        ),
    )
}

/// Download `url` to `dest` (resuming `dest.part`), at most `max` bytes. Nothing is done when
/// `dest` exists (verify() checks its size).
pub(crate) fn fetch(
    url: &str,
    dest: &Path,
    opts: &DownloadOptions,
    max: u64,
    mut disk: DiskWatch,
    rep: &mut Reporter,
) -> Result<(), InstallerError> {
    if dest.is_file() {
        return Ok(());
    }
    if let Some(dir) = dest.parent() {
        fs::create_dir_all(dir).map_err(|e| InstallerError::io("create", dir, e))?;
    }
    let part = part_path(dest);
    let ranged = agent(opts, Some(opts.body_budget));
    // A server that ignores Range restarts from 0 every time: give it no body budget.
    let whole = agent(opts, None);
    let mut range_ok = true;
    let mut fruitless = 0u32;
    let mut last_error = String::new();
    loop {
        rep.cancelled()?;
        if fruitless >= opts.attempts {
            return Err(InstallerError::Network {
                url: url.to_string(),
                detail: last_error,
            });
        }
        let mut offset = fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
        let mut req = if range_ok { &ranged } else { &whole }.get(url);
        if offset > 0 {
            req = req.header("Range", format!("bytes={offset}-"));
            rep.line(&format!(
                "Resuming the download at {}",
                super::human_bytes(offset)
            ));
        }
        let resp = match req.call() {
            Ok(r) => r,
            Err(e) => {
                fruitless += 1;
                last_error = e.to_string();
                rep.line(&format!("Download attempt failed: {last_error}"));
                continue;
            }
        };
        let status = resp.status().as_u16();
        let header = |n: &str| {
            resp.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let total: Option<u64>;
        match status {
            206 => {
                let (start, t) = header("content-range")
                    .as_deref()
                    .and_then(content_range)
                    .unwrap_or((u64::MAX, None));
                if start != offset {
                    // Not the part asked for: start over rather than splice wrong bytes.
                    let _ = fs::remove_file(&part);
                    fruitless += 1;
                    last_error = "the server sent another part of the file than asked".into();
                    continue;
                }
                total = t;
            }
            200 => {
                if offset > 0 {
                    rep.line(
                        "The server cannot resume downloads: starting again from the beginning",
                    );
                    range_ok = false;
                }
                offset = 0;
                total = header("content-length").and_then(|v| v.trim().parse().ok());
            }
            416 => {
                // Asked for bytes past the end: the part is complete if it has them all.
                let t = header("content-range")
                    .as_deref()
                    .and_then(content_range)
                    .and_then(|(_, t)| t);
                if t == Some(offset) {
                    break;
                }
                let _ = fs::remove_file(&part);
                fruitless += 1;
                last_error = "the file on the server changed".into();
                continue;
            }
            s => {
                return Err(InstallerError::HttpStatus {
                    url: url.to_string(),
                    status: s,
                    fix: status_fix(s),
                })
            }
        }
        if let Some(t) = total.filter(|t| *t > max) {
            return Err(too_large(
                url,
                format!("the server announces {}", human_bytes(t)),
                max,
            ));
        }
        let mut file = fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(offset > 0)
            .truncate(offset == 0)
            .open(&part)
            .map_err(|e| InstallerError::io("write", &part, e))?;
        let mut body = resp.into_body().into_reader();
        let mut buf = vec![0u8; 256 * 1024];
        let mut got = 0u64;
        let mut eof = false;
        loop {
            if rep.is_cancelled() {
                let _ = file.flush();
                return Err(InstallerError::Cancelled);
            }
            match body.read(&mut buf) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    // Counted, whatever the server announced (or did not).
                    if offset + got + n as u64 > max {
                        return Err(too_large(
                            url,
                            format!("more than {} arrived", human_bytes(max)),
                            max,
                        ));
                    }
                    file.write_all(&buf[..n])
                        .map_err(|e| InstallerError::io("write", &part, e))?;
                    got += n as u64;
                    rep.bytes(Phase::Download, offset + got, total);
                    disk.check(offset + got)?;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    last_error = e.to_string();
                    break;
                }
            }
        }
        file.flush()
            .map_err(|e| InstallerError::io("write", &part, e))?;
        drop(file);
        let have = offset + got;
        if got > 0 {
            fruitless = 0;
        } else {
            fruitless += 1;
        }
        match (eof, total) {
            (true, Some(t)) if have == t => break,
            (true, None) => break,
            (true, Some(t)) if have > t => {
                let _ = fs::remove_file(&part);
                last_error = "the server sent more than the file's size".into();
            }
            (true, Some(t)) => {
                last_error = format!(
                    "the connection ended after {} of {}",
                    super::human_bytes(have),
                    super::human_bytes(t)
                );
                rep.line(&format!("{last_error}; resuming"));
            }
            (false, _) => rep.line(&format!(
                "The download was interrupted ({last_error}); resuming"
            )),
        }
    }
    fs::rename(&part, dest).map_err(|e| InstallerError::io("rename", &part, e))?;
    Ok(())
}

/// SHA-256 of `path`, compared with `expected` when there is one; refused when larger than
/// `max` (a local archive too, before it is read, and as it is read). With `copy_to`, what is
/// hashed is also written there (from the one open file), and kept only if it passes.
pub(crate) fn verify(
    path: &Path,
    expected: Option<&str>,
    max: u64,
    copy_to: Option<&Path>,
    rep: &mut Reporter,
) -> Result<String, InstallerError> {
    let mut copy = match copy_to {
        Some(to) => {
            let dir = to.parent().expect("a folder");
            fs::create_dir_all(dir).map_err(|e| InstallerError::io("create", dir, e))?;
            let part = to.with_extension("copying");
            let f = super::safety::create_fresh(&part)
                .map_err(|e| InstallerError::io("write", &part, e))?;
            Some((f, part, to))
        }
        None => None,
    };
    let mut f = fs::File::open(path).map_err(|e| InstallerError::io("open", path, e))?;
    let total = f.metadata().map(|m| m.len()).ok();
    if let Some(t) = total.filter(|t| *t > max) {
        return Err(InstallerError::refused(
            path.display(),
            format!(
                "it is {}, more than the {} a Fooocus archive for this platform can be",
                human_bytes(t),
                human_bytes(max)
            ),
        ));
    }
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    loop {
        rep.cancelled()?;
        let n = f
            .read(&mut buf)
            .map_err(|e| InstallerError::io("read", path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        done += n as u64;
        if done > max {
            return Err(InstallerError::refused(
                path.display(),
                format!(
                    "it grew past the {} a Fooocus archive for this platform can be as it was read",
                    human_bytes(max)
                ),
            ));
        }
        if let Some((out, part, _)) = &mut copy {
            out.write_all(&buf[..n])
                .map_err(|e| InstallerError::io("write", part, e))?;
        }
        rep.bytes(Phase::Verify, done, total);
    }
    let got: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    let keep = |copy: Option<(fs::File, PathBuf, &Path)>| -> Result<(), InstallerError> {
        if let Some((out, part, to)) = copy {
            out.sync_all()
                .map_err(|e| InstallerError::io("write", &part, e))?;
            fs::rename(&part, to).map_err(|e| InstallerError::io("rename", &part, e))?;
        }
        Ok(())
    };
    match expected {
        Some(e) if !e.eq_ignore_ascii_case(&got) => Err(InstallerError::Checksum {
            what: path.display().to_string(),
            expected: e.to_string(),
            got,
            fix: "Retry downloads it again".into(),
        }),
        Some(_) => {
            keep(copy)?;
            rep.line(&format!("SHA-256 {got}: as expected"));
            Ok(got)
        }
        None => {
            keep(copy)?;
            rep.line(&format!(
                "SHA-256 {got} (no checksum is pinned for this archive; its contents are checked when unpacked)"
            ));
            Ok(got)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_is_read() {
        assert_eq!(content_range("bytes 100-199/200"), Some((100, Some(200))));
        assert_eq!(content_range("bytes */200"), Some((0, Some(200))));
        assert_eq!(content_range("bytes 5-9/*"), Some((5, None)));
        assert_eq!(content_range("items 1-2/3"), None);
    }
}
