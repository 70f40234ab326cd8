//! The main Fooocus process as the supervisor sees it: asking it to exit, and how it ended.
//!
//! On Linux the process is held by a pidfd (pidfd_open, 5.3+) opened right after the spawn,
//! while the child cannot have been reaped: a signal through it reaches that very process or
//! nothing (ESRCH once it is gone), never a process that was given the same pid after the
//! waiter reaped it. Kernels without pidfds (ENOSYS) fall back to kill(2).

use std::process::{Child, ExitStatus};

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitInfo {
    Code(i32),
    /// Unix only: Windows processes end with a code.
    #[cfg_attr(not(unix), allow(dead_code))]
    Signal(i32),
}

impl ExitInfo {
    /// (code, signal)
    pub fn parts(self) -> (Option<i32>, Option<i32>) {
        match self {
            ExitInfo::Code(c) => (Some(c), None),
            ExitInfo::Signal(s) => (None, Some(s)),
        }
    }
}

#[cfg(unix)]
pub fn exit_info(st: ExitStatus) -> ExitInfo {
    use std::os::unix::process::ExitStatusExt;
    match (st.code(), st.signal()) {
        (Some(c), _) => ExitInfo::Code(c),
        (None, Some(s)) => ExitInfo::Signal(s),
        _ => ExitInfo::Code(-1),
    }
}

#[cfg(not(unix))]
pub fn exit_info(st: ExitStatus) -> ExitInfo {
    ExitInfo::Code(st.code().unwrap_or(-1))
}

/// Whether this OS can ask a process to exit. Windows has no SIGTERM, and a process without a
/// console gets no Ctrl-Break: there the tree kill follows at once rather than after a wait
/// for nothing.
pub const CAN_TERMINATE: bool = cfg!(unix);

/// A handle on one child process that stays valid after its pid is reaped and reused.
#[derive(Debug)]
pub struct ProcessHandle {
    pid: u32,
    #[cfg(target_os = "linux")]
    pidfd: Option<std::os::fd::OwnedFd>,
}

impl ProcessHandle {
    /// Call right after the spawn, before anything may reap `child`.
    pub fn new(child: &Child) -> ProcessHandle {
        ProcessHandle {
            pid: child.id(),
            #[cfg(target_os = "linux")]
            pidfd: linux::pidfd_open(child.id()),
        }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Signals go through a pidfd (false: this kernel has none, kill(2) is used).
    pub fn uses_pidfd(&self) -> bool {
        #[cfg(target_os = "linux")]
        {
            self.pidfd.is_some()
        }
        #[cfg(not(target_os = "linux"))]
        {
            false
        }
    }

    /// Ask the process to exit (SIGTERM). An error when it is gone or where there is no way
    /// to ask (Windows; see [`CAN_TERMINATE`]).
    pub fn terminate(&self) -> std::io::Result<()> {
        #[cfg(target_os = "linux")]
        {
            if let Some(fd) = &self.pidfd {
                return linux::pidfd_send_signal(fd, libc::SIGTERM);
            }
        }
        #[cfg(unix)]
        {
            // SAFETY: kill(2) has no memory effects; without a pidfd this is the best there is.
            if unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGTERM) } == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        }
        #[cfg(not(unix))]
        {
            Err(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "Windows has no way to ask a console-less process to exit",
            ))
        }
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    /// None where the kernel has no pidfd_open (before 5.3: ENOSYS) or refuses it.
    pub fn pidfd_open(pid: u32) -> Option<OwnedFd> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        if fd < 0 {
            return None;
        }
        // SAFETY: the descriptor was just created and is owned by nobody else.
        Some(unsafe { OwnedFd::from_raw_fd(fd as i32) })
    }

    pub fn pidfd_send_signal(fd: &OwnedFd, sig: i32) -> std::io::Result<()> {
        // SAFETY: a valid pidfd, a signal number, no siginfo, no flags.
        let r = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                fd.as_raw_fd(),
                sig,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn terminate_reaches_a_live_child() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let h = ProcessHandle::new(&child);
        assert!(h.uses_pidfd(), "this kernel has pidfds (5.3+)");
        h.terminate().unwrap();
        let exit = exit_info(child.wait().unwrap());
        assert_eq!(exit, ExitInfo::Signal(libc::SIGTERM));
    }

    #[test]
    fn a_reaped_process_is_never_signalled_even_when_its_pid_is_reused() {
        let mut first = Command::new("true").spawn().unwrap();
        let h = ProcessHandle::new(&first);
        first.wait().unwrap();
        // Gone and reaped: the handle says so instead of signalling whatever has the pid now.
        let err = h.terminate().unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ESRCH), "{err}");

        // Where the pid counter can be set (root), give the pid to a new process and check
        // that the old handle still cannot reach it: kill(2) on the pid would.
        let pid = h.pid();
        let set = std::fs::write("/proc/sys/kernel/ns_last_pid", format!("{}", pid - 1));
        let mut second = Command::new("sleep").arg("30").spawn().unwrap();
        if set.is_ok() && second.id() == pid {
            assert!(h.terminate().is_err());
            assert!(
                second.try_wait().unwrap().is_none(),
                "the process that reused the pid was not signalled"
            );
        } else {
            eprintln!(
                "pid {pid} was not reused (ns_last_pid: {set:?}, got {}): only the reaped case ran",
                second.id()
            );
        }
        second.kill().unwrap();
        second.wait().unwrap();
    }
}
