//! The warden: a tiny process forked from the guard that outlives it by a moment. It blocks on
//! a pipe whose write end only the guard holds; when the guard dies -- exit, panic, SIGKILL --
//! the pipe closes and the warden kills whatever is left of the tree and removes its groups.
//!
//! It is forked without exec from a multi-threaded process, so after the fork it only makes
//! async-signal-safe system calls: every path and buffer is prepared before forking.
//!
//! A fork keeps the guard's command line, so `pkill -9 -f fooocus-guard-cli` used to kill the
//! warden together with the guard, and nothing was left to clean up. The warden overwrites its
//! copy of the argument strings (the kernel shows that memory as /proc/PID/cmdline; plain stores,
//! safe after the fork) with its own name. It does not exec itself instead: the guard is a CLI,
//! a tray app or a test binary, none of whose `main`s should have to know about wardens, and
//! an exec would open a moment in which nothing watches the guard.

use std::ffi::CString;
use std::io;
use std::os::fd::RawFd;

/// What the warden does when the guard is gone.
/// The warden's process name (comm), NUL-terminated.
pub const WARDEN_NAME: &[u8] = b"fooocus-warden\0";

#[derive(Default)]
pub struct Plan {
    /// cgroup v2 `cgroup.kill` files: write "1".
    pub kill_files: Vec<CString>,
    /// v1 `freezer.state` of the tree's group.
    pub freezer_state: Option<CString>,
    /// `cgroup.procs` files: kill every pid listed until they are empty.
    pub procs_files: Vec<CString>,
    /// Processes carrying this `NAME=value` in their environment are the tree's (fallback).
    pub env_token: Option<Vec<u8>>,
    /// Group directories to remove, deepest first.
    pub rmdirs: Vec<CString>,
}

pub struct Warden {
    pid: libc::pid_t,
    write_fd: RawFd,
}

const MAX_ROOTS: usize = 64;
const BUF: usize = 64 * 1024;

impl Warden {
    pub fn spawn(plan: Plan) -> io::Result<Warden> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: pipe2 writes two fds into the array.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let (read_fd, write_fd) = (fds[0], fds[1]);
        // Everything the child touches is allocated here, before the fork.
        let mut buf: Vec<u8> = vec![0u8; BUF];
        let devnull = CString::new("/dev/null").expect("static");
        let proc_dir = CString::new("/proc").expect("static");
        let args = argv_area();
        // SAFETY: fork; the child only runs `warden_main`, which makes raw system calls.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            let e = io::Error::last_os_error();
            unsafe {
                libc::close(read_fd);
                libc::close(write_fd);
            }
            return Err(e);
        }
        if pid == 0 {
            // SAFETY: in the child of fork: no allocation, no locks, only system calls.
            unsafe {
                warden_main(
                    read_fd, write_fd, &plan, &mut buf, &devnull, &proc_dir, args,
                )
            }
        }
        unsafe { libc::close(read_fd) };
        Ok(Warden { pid, write_fd })
    }

    /// Tell the warden the pid of a process spawned into the tree (its process group is killed
    /// too, which is all the fallback has once the guard is gone).
    pub fn tell_root(&self, pid: u32) {
        let b = pid.to_ne_bytes();
        // SAFETY: write to our own pipe; a failure only loses the hint.
        unsafe { libc::write(self.write_fd, b.as_ptr().cast(), b.len()) };
    }

    pub fn pid(&self) -> u32 {
        self.pid as u32
    }
}

impl Drop for Warden {
    /// The guard lets go: the warden cleans up what is left (normally nothing) and exits.
    fn drop(&mut self) {
        unsafe {
            libc::close(self.write_fd);
            let mut st = 0;
            libc::waitpid(self.pid, &mut st, 0);
        }
    }
}

/// Where this process's argument strings are (fields 48 and 49 of /proc/self/stat: arg_start,
/// arg_end), read before the fork since the child may not allocate.
fn argv_area() -> Option<(usize, usize)> {
    let s = std::fs::read_to_string("/proc/self/stat").ok()?;
    let mut f = s.rsplit_once(')')?.1.split_whitespace().skip(45);
    let start: usize = f.next()?.parse().ok()?;
    let end: usize = f.next()?.parse().ok()?;
    (start > 0 && end > start).then_some((start, end))
}

/// Make /proc/self/cmdline read `fooocus-warden` (NUL-padded): every argument string is
/// overwritten in place. The area is this process's own copy after the fork.
unsafe fn rename_argv(area: Option<(usize, usize)>) {
    let Some((start, end)) = area else { return };
    let name = &WARDEN_NAME[..WARDEN_NAME.len() - 1];
    let len = end - start;
    let p = start as *mut u8;
    std::ptr::write_bytes(p, 0, len);
    // The last byte stays NUL: the kernel then shows exactly this area, nothing past it.
    std::ptr::copy_nonoverlapping(name.as_ptr(), p, name.len().min(len - 1));
}

unsafe fn write_file(path: &CString, data: &[u8]) {
    let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
    if fd >= 0 {
        libc::write(fd, data.as_ptr().cast(), data.len());
        libc::close(fd);
    }
}

unsafe fn read_file(path_ptr: *const libc::c_char, buf: &mut [u8]) -> usize {
    let fd = libc::open(path_ptr, libc::O_RDONLY | libc::O_CLOEXEC);
    if fd < 0 {
        return 0;
    }
    let mut n = 0usize;
    while n < buf.len() {
        let r = libc::read(fd, buf[n..].as_mut_ptr().cast(), buf.len() - n);
        if r <= 0 {
            break;
        }
        n += r as usize;
    }
    libc::close(fd);
    n
}

/// Kill every pid listed in a cgroup.procs-style buffer; how many were listed.
unsafe fn kill_listed(buf: &[u8]) -> usize {
    let mut count = 0;
    let mut v: i64 = -1;
    for &b in buf {
        if b.is_ascii_digit() {
            v = if v < 0 { 0 } else { v } * 10 + (b - b'0') as i64;
        } else {
            if v > 0 {
                libc::kill(v as libc::pid_t, libc::SIGKILL);
                count += 1;
            }
            v = -1;
        }
    }
    if v > 0 {
        libc::kill(v as libc::pid_t, libc::SIGKILL);
        count += 1;
    }
    count
}

unsafe fn sleep_ms(ms: i64) {
    let ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: ms * 1_000_000,
    };
    libc::nanosleep(&ts, std::ptr::null_mut());
}

/// Scan /proc for processes whose environment holds `token` and kill them. One pass.
unsafe fn kill_by_env(token: &[u8], buf: &mut [u8], proc_dir: &CString) -> usize {
    let dir = libc::open(
        proc_dir.as_ptr(),
        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
    );
    if dir < 0 {
        return 0;
    }
    let me = libc::getpid();
    let mut killed = 0;
    // Directory entries go in the first half of the buffer, environ in the second.
    let (dents, env) = buf.split_at_mut(BUF / 2);
    loop {
        let n = libc::syscall(libc::SYS_getdents64, dir, dents.as_mut_ptr(), dents.len());
        if n <= 0 {
            break;
        }
        let mut off = 0usize;
        while off < n as usize {
            // struct linux_dirent64 { u64 ino; i64 off; u16 reclen; u8 type; char name[]; }
            let reclen = u16::from_ne_bytes([dents[off + 16], dents[off + 17]]) as usize;
            let name = &dents[off + 19..off + reclen];
            let len = name.iter().position(|&c| c == 0).unwrap_or(name.len());
            let name = &name[..len];
            off += reclen;
            if name.is_empty() || !name.iter().all(u8::is_ascii_digit) || name.len() > 10 {
                continue;
            }
            let mut pid: libc::pid_t = 0;
            for &d in name {
                pid = pid * 10 + (d - b'0') as libc::pid_t;
            }
            if pid == me {
                continue;
            }
            // "/proc/<pid>/environ\0" built in a stack buffer.
            let mut path = [0u8; 32];
            let mut p = 0;
            for &c in b"/proc/"
                .iter()
                .chain(name.iter())
                .chain(b"/environ".iter())
            {
                path[p] = c;
                p += 1;
            }
            path[p] = 0;
            let got = read_file(path.as_ptr().cast(), env);
            if got >= token.len() && env[..got].windows(token.len()).any(|w| w == token) {
                libc::kill(pid, libc::SIGKILL);
                killed += 1;
            }
        }
    }
    libc::close(dir);
    killed
}

unsafe fn warden_main(
    read_fd: RawFd,
    write_fd: RawFd,
    plan: &Plan,
    buf: &mut [u8],
    devnull: &CString,
    proc_dir: &CString,
    args: Option<(usize, usize)>,
) -> ! {
    libc::close(write_fd);
    // Out of the guard's session and process group: Ctrl-C and group kills aimed at the
    // guard do not reach the warden.
    libc::setsid();
    // Its own name: it is a copy of the guard, and `pkill fooocus-guard` (or a task manager's
    // "end all fooocus-guard") must leave it alive to clean up after the guard.
    libc::prctl(libc::PR_SET_NAME, WARDEN_NAME.as_ptr());
    rename_argv(args);
    for sig in [
        libc::SIGINT,
        libc::SIGTERM,
        libc::SIGHUP,
        libc::SIGQUIT,
        libc::SIGPIPE,
    ] {
        libc::signal(sig, libc::SIG_IGN);
    }
    let null = libc::open(devnull.as_ptr(), libc::O_RDWR);
    if null >= 0 {
        libc::dup2(null, 0);
        libc::dup2(null, 1);
        libc::dup2(null, 2);
    }
    // Hold nothing of the guard's open (sockets, pipes to Fooocus, files).
    for fd in 3..4096 {
        if fd != read_fd {
            libc::close(fd);
        }
    }
    let mut roots = [0 as libc::pid_t; MAX_ROOTS];
    let mut nroots = 0usize;
    let mut word = [0u8; 4];
    let mut have = 0usize;
    loop {
        let r = libc::read(read_fd, word[have..].as_mut_ptr().cast(), 4 - have);
        if r == 0 {
            break;
        }
        if r < 0 {
            if *libc::__errno_location() == libc::EINTR {
                continue;
            }
            break;
        }
        have += r as usize;
        if have == 4 {
            if nroots < MAX_ROOTS {
                roots[nroots] = u32::from_ne_bytes(word) as libc::pid_t;
                nroots += 1;
            }
            have = 0;
        }
    }
    // The guard is gone (or let go): clean up.
    for f in &plan.kill_files {
        write_file(f, b"1");
    }
    if let Some(f) = &plan.freezer_state {
        write_file(f, b"FROZEN");
    }
    for &r in &roots[..nroots] {
        libc::kill(-r, libc::SIGKILL);
        libc::kill(r, libc::SIGKILL);
    }
    if let Some(token) = &plan.env_token {
        for _ in 0..3 {
            if kill_by_env(token, buf, proc_dir) == 0 {
                break;
            }
        }
    }
    let mut thawed = plan.freezer_state.is_none();
    for _ in 0..3000 {
        let mut listed = 0;
        for f in &plan.procs_files {
            let n = read_file(f.as_ptr(), buf);
            listed += kill_listed(&buf[..n]);
        }
        if !thawed {
            // Frozen tasks die only once thawed.
            if let Some(f) = &plan.freezer_state {
                write_file(f, b"THAWED");
            }
            thawed = true;
        }
        if listed == 0 {
            break;
        }
        sleep_ms(1);
    }
    for d in &plan.rmdirs {
        for _ in 0..200 {
            if libc::rmdir(d.as_ptr()) == 0 || *libc::__errno_location() == libc::ENOENT {
                break;
            }
            sleep_ms(5);
        }
    }
    libc::_exit(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_warden_does_not_answer_to_the_guards_name() {
        let w = Warden::spawn(Plan::default()).unwrap();
        // The child names itself right after the fork: wait for it to have run that far.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let comm = loop {
            let comm = std::fs::read_to_string(format!("/proc/{}/comm", w.pid())).unwrap();
            if comm.trim() == "fooocus-warden" || std::time::Instant::now() > deadline {
                break comm;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        assert_eq!(comm.trim(), "fooocus-warden");
    }

    /// `pkill -f fooocus-guard-cli` matches the command line: the warden's is its own.
    #[test]
    fn the_warden_has_a_command_line_of_its_own() {
        let w = Warden::spawn(Plan::default()).unwrap();
        let mine = std::fs::read(format!("/proc/{}/cmdline", std::process::id())).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let theirs = loop {
            let c = std::fs::read(format!("/proc/{}/cmdline", w.pid())).unwrap();
            if c != mine || std::time::Instant::now() > deadline {
                break c;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        let words: Vec<&[u8]> = theirs
            .split(|b| *b == 0)
            .filter(|w| !w.is_empty())
            .collect();
        assert_eq!(
            words,
            [b"fooocus-warden".as_slice()],
            "{:?}",
            String::from_utf8_lossy(&theirs)
        );
        // What `pkill -f` would look for: the guard's program name appears nowhere.
        let exe = std::env::current_exe().unwrap();
        let prog = exe.file_name().unwrap().to_str().unwrap().as_bytes();
        assert!(!theirs.windows(prog.len()).any(|w| w == prog));
        // Still the warden: it answers the pipe closing by exiting.
        drop(w);
    }
}
