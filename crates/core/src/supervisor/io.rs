//! The supervisor's effect code that touches processes: the spawner thread, the pipe readers
//! and the waiter.

use std::io::{Read, Write};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, unbounded, Sender};

use super::{ExitInfo, Msg};
use crate::console::Stream;

type SpawnReply = Sender<std::io::Result<Child>>;

pub(super) struct Spawner {
    tx: Sender<(Command, SpawnReply)>,
}

impl Spawner {
    pub(super) fn start() -> std::io::Result<Spawner> {
        let (tx, rx) = unbounded::<(Command, SpawnReply)>();
        std::thread::Builder::new()
            .name("fooocus-guard-spawner".into())
            .spawn(move || {
                // Lives until the supervisor drops its sender: children's PDEATHSIG is tied to it.
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })?;
        Ok(Spawner { tx })
    }

    pub(super) fn spawn(&self, cmd: Command) -> std::io::Result<Child> {
        let (rtx, rrx) = bounded(1);
        self.tx
            .send((cmd, rtx))
            .map_err(|_| std::io::Error::other("spawner thread is gone"))?;
        rrx.recv()
            .map_err(|_| std::io::Error::other("spawner thread is gone"))?
    }
}

/// Read Fooocus's pipes and wait for its exit, each on a thread of its own, handing what they
/// see to the loop as messages.
pub(super) fn spawn_io(
    tx: &Sender<Msg>,
    passthrough: bool,
    inflight: &Arc<AtomicUsize>,
    run: u64,
    mut child: Child,
) {
    let streams: [(Option<Box<dyn Read + Send>>, Stream); 2] = [
        (
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
            Stream::Stdout,
        ),
        (
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
            Stream::Stderr,
        ),
    ];
    // The pipes tell the waiter when they have sent their last bytes, so that what
    // Fooocus printed just before it exited (a taken port, a traceback) reaches the
    // loop before its exit does.
    let (closed_tx, closed_rx) = bounded::<()>(2);
    let mut open_pipes = 0;
    for (pipe, stream) in streams {
        let Some(mut pipe) = pipe else { continue };
        open_pipes += 1;
        let closed_tx = closed_tx.clone();
        let tx = tx.clone();
        let inflight = inflight.clone();
        let _ = std::thread::Builder::new()
            .name(format!("fooocus-{stream:?}"))
            .spawn(move || {
                // Read continuously: a full pipe blocks Fooocus's print and looks like a hang.
                let mut buf = vec![0u8; 64 * 1024];
                let mut dropped = 0usize;
                loop {
                    match pipe.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            if passthrough {
                                let mut o = std::io::stdout().lock();
                                let _ = o.write_all(&buf[..n]);
                                let _ = o.flush();
                            }
                            // Fooocus flooding its console must not grow the guard (it
                            // sits outside the cgroup, so no cap would catch it): past
                            // the budget, output is dropped and counted, and the pipe is
                            // still read so Fooocus never blocks on a print.
                            if inflight.load(Ordering::Relaxed) + n > CONSOLE_BUDGET {
                                dropped += n;
                                continue;
                            }
                            let mut bytes = Vec::new();
                            if dropped > 0 {
                                bytes.extend_from_slice(
                                    format!("\n[fooocus-guard: {dropped} bytes of Fooocus's output dropped: it printed faster than the guard could read]\n")
                                        .as_bytes(),
                                );
                                dropped = 0;
                            }
                            bytes.extend_from_slice(&buf[..n]);
                            inflight.fetch_add(bytes.len(), Ordering::Relaxed);
                            if tx.send(Msg::Output { run, stream, bytes }).is_err() {
                                break;
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(_) => break,
                    }
                }
                let _ = tx.send(Msg::Eof { run, stream });
                let _ = closed_tx.send(());
            });
    }
    drop(closed_tx);
    let tx = tx.clone();
    // The waiter owns the Child: only it reaps the main process.
    let _ = std::thread::Builder::new()
        .name("fooocus-waiter".into())
        .spawn(move || {
            let exit = match child.wait() {
                Ok(st) => exit_info(st),
                Err(_) => ExitInfo::Code(-1),
            };
            // A grandchild may hold the pipes open for ever: wait a little, not for them
            // (the loop kills the tree on exit, which closes them).
            let deadline = Instant::now() + PIPE_DRAIN;
            for _ in 0..open_pipes {
                if closed_rx.recv_deadline(deadline).is_err() {
                    break;
                }
            }
            let _ = tx.send(Msg::Exited { run, exit });
        });
}

#[cfg(unix)]
pub(super) fn terminate(pid: u32) -> bool {
    // SAFETY: plain kill(2) on the pid the guard spawned and has not reaped yet.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGTERM);
    }
    true
}

#[cfg(not(unix))]
pub(super) fn terminate(_pid: u32) -> bool {
    // Windows has no SIGTERM, and a process without a console gets no Ctrl-Break: the tree
    // kill follows at once rather than after a wait for nothing.
    false
}

#[cfg(unix)]
pub(super) fn exit_info(st: std::process::ExitStatus) -> ExitInfo {
    use std::os::unix::process::ExitStatusExt;
    match (st.code(), st.signal()) {
        (Some(c), _) => ExitInfo::Code(c),
        (None, Some(s)) => ExitInfo::Signal(s),
        _ => ExitInfo::Code(-1),
    }
}

#[cfg(not(unix))]
pub(super) fn exit_info(st: std::process::ExitStatus) -> ExitInfo {
    ExitInfo::Code(st.code().unwrap_or(-1))
}

/// How long the waiter lets the pipes deliver Fooocus's last lines before it reports the exit.
const PIPE_DRAIN: Duration = Duration::from_millis(500);
/// How much of Fooocus's output may wait for the loop (both pipes together).
const CONSOLE_BUDGET: usize = 4 << 20;
