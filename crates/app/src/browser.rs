//! Open Fooocus in the user's browser (argv, never a shell), from the guard: outside Fooocus's
//! contained tree (Fooocus itself runs with a `BROWSER` that opens nothing: guard-fooocus, install.rs).

pub fn open(url: &str) -> Result<(), String> {
    #[cfg(target_os = "linux")]
    let opener = "xdg-open";
    #[cfg(target_os = "macos")]
    let opener = "open";
    // explorer.exe opens a URL with the default browser without a console window.
    #[cfg(windows)]
    let opener = "explorer.exe";
    open_with(opener, url).map(|_| ())
}

/// Runs `opener URL`; returns its pid. A thread waits for it: an opener that has handed the URL
/// to a running browser exits at once, and unwaited it would stay a zombie for as long as the
/// tray app runs, one per click.
fn open_with(opener: &str, url: &str) -> Result<u32, String> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(format!("{url} is not a web address"));
    }
    let url = url.replace("://0.0.0.0", "://127.0.0.1");
    let mut child = std::process::Command::new(opener)
        .arg(&url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot open a browser for {url}: {e}"))?;
    let pid = child.id();
    let _ = std::thread::Builder::new()
        .name("browser-opener".into())
        .spawn(move || child.wait());
    Ok(pid)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// The opener's state letter in /proc (None once it is reaped).
    fn state(pid: u32) -> Option<char> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        stat.rsplit_once(')')?.1.trim_start().chars().next()
    }

    #[test]
    fn the_opener_is_reaped_once_it_has_handed_the_url_over() {
        let pid = open_with("true", "http://127.0.0.1:7865/").unwrap();
        let until = Instant::now() + Duration::from_secs(10);
        while let Some(s) = state(pid) {
            assert!(Instant::now() < until, "the opener is still there ({s})");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn only_web_addresses_are_opened() {
        assert!(open_with("true", "file:///etc/passwd").is_err());
        assert!(open_with("true", "--help").is_err());
    }
}
