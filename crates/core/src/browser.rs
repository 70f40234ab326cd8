//! Open Fooocus in the user's browser (argv, never a shell).

pub fn open(url: &str) -> Result<(), String> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(format!("{url} is not a web address"));
    }
    let url = url.replace("://0.0.0.0", "://127.0.0.1");
    #[cfg(target_os = "linux")]
    let mut cmd = std::process::Command::new("xdg-open");
    #[cfg(target_os = "macos")]
    let mut cmd = std::process::Command::new("open");
    #[cfg(windows)]
    let mut cmd = {
        // explorer.exe opens a URL with the default browser without a console window.
        std::process::Command::new("explorer.exe")
    };
    cmd.arg(&url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    cmd.spawn()
        .map(|_| ())
        .map_err(|e| format!("cannot open a browser for {url}: {e}"))
}
