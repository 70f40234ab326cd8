//! The few /proc reads the backends need: descendants of a pid, liveness, environments.

use std::path::Path;

/// Whether `pid` exists and is not a zombie.
pub fn is_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s
            .rsplit_once(')')
            .map(|(_, r)| !r.trim_start().starts_with(['Z', 'X']))
            .unwrap_or(false),
        Err(_) => false,
    }
}

/// Children of `pid`, from every thread's `children` file.
pub fn children(pid: u32, out: &mut Vec<u32>) {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return;
    };
    for t in tasks.flatten() {
        if let Ok(s) = std::fs::read_to_string(t.path().join("children")) {
            out.extend(s.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
        }
    }
}

/// `root` and all its descendants that are alive.
pub fn descendants(root: u32) -> Vec<u32> {
    let mut all = Vec::new();
    if !Path::new(&format!("/proc/{root}")).exists() {
        return all;
    }
    let mut stack = vec![root];
    while let Some(p) = stack.pop() {
        if all.contains(&p) {
            continue;
        }
        all.push(p);
        let mut kids = Vec::new();
        children(p, &mut kids);
        stack.extend(kids);
    }
    all.retain(|p| is_alive(*p));
    all
}

/// Whether `pid`'s environment holds `token` (a `NAME=value` pair). An empty token is in no
/// environment (split on NUL, every environment ends in an empty element).
pub fn env_has(pid: u32, token: &[u8]) -> bool {
    !token.is_empty()
        && std::fs::read(format!("/proc/{pid}/environ"))
            .map(|e| e.split(|b| *b == 0).any(|kv| kv == token))
            .unwrap_or(false)
}

/// When `pid` started, in clock ticks since boot (field 22 of /proc/PID/stat): with the pid, it
/// names one process, never a later one given the same pid.
pub fn start_time(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the ")" that ends the name start at field 3; the start time is field 22.
    s.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_empty_token_is_in_no_environment() {
        let me = std::process::id();
        assert!(!super::env_has(me, b""));
        let path = format!("PATH={}", std::env::var("PATH").unwrap_or_default());
        assert!(super::env_has(me, path.as_bytes()));
    }
}
