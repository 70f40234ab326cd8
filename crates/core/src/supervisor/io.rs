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
    let mut pipes: Vec<(Box<dyn Read + Send>, Stream)> = Vec::new();
    if let Some(out) = child.stdout.take() {
        pipes.push((Box::new(out), Stream::Stdout));
    }
    if let Some(err) = child.stderr.take() {
        pipes.push((Box::new(err), Stream::Stderr));
    }
    // The waiter owns the Child: only it reaps the main process.
    let wait = move || match child.wait() {
        Ok(st) => guard_contain::process::exit_info(st),
        Err(_) => ExitInfo::Code(-1),
    };
    let echo = passthrough.then(|| Echo::start(Box::new(std::io::stdout())));
    watch(tx, echo, inflight, run, pipes, wait);
}

/// Fooocus's output copied to the guard's own stdout (the CLI), on a thread of its own.
///
/// That stdout can stop taking bytes for as long as someone else likes: a Windows console in
/// QuickEdit mode pauses every write to it while the user has clicked into it (the "Waiting for
/// task to start" hang, lllyasviel/Fooocus#1216), a terminal paused with Ctrl-S, a pipe into a
/// pager nobody scrolls. Written from the pipe readers, that pause would fill Fooocus's pipe and
/// block its prints, i.e. Fooocus itself. Here the readers hand bytes over without waiting: a
/// bounded queue, and what does not fit is dropped and counted, said on the copy once it flows
/// again. The guard's own reading of the console (limits, generations) is never held up.
struct Echo {
    tx: Sender<Vec<u8>>,
}

/// Chunks (of up to one pipe read, 64 KiB) the copy to stdout may be behind by.
const ECHO_QUEUE: usize = 64;

impl Echo {
    fn start(mut out: Box<dyn Write + Send>) -> Arc<Echo> {
        let (tx, rx) = bounded::<Vec<u8>>(ECHO_QUEUE);
        let _ = std::thread::Builder::new()
            .name("fooocus-echo".into())
            .spawn(move || {
                // Ends when both readers are done (their senders dropped).
                for chunk in rx {
                    let _ = out.write_all(&chunk);
                    let _ = out.flush();
                }
            });
        Arc::new(Echo { tx })
    }

    /// Queue `bytes` for the copy, or count them dropped (`dropped`) when it is behind.
    fn offer(&self, bytes: &[u8], dropped: &mut usize) {
        if *dropped > 0 {
            let note = format!(
                "\n[fooocus-guard: {dropped} bytes of Fooocus's output not shown here: this window stopped taking output (a click into it pauses a console in QuickEdit mode); the guard still read them]\n"
            );
            if self.tx.try_send(note.into_bytes()).is_err() {
                *dropped += bytes.len();
                return;
            }
            *dropped = 0;
        }
        if self.tx.try_send(bytes.to_vec()).is_err() {
            *dropped += bytes.len();
        }
    }
}

/// The threads of `spawn_io`, for any pipes and any way to wait for the exit (the tests give
/// in-memory pipes and a wait that returns at once).
fn watch(
    tx: &Sender<Msg>,
    echo: Option<Arc<Echo>>,
    inflight: &Arc<AtomicUsize>,
    run: u64,
    pipes: Vec<(Box<dyn Read + Send>, Stream)>,
    wait: impl FnOnce() -> ExitInfo + Send + 'static,
) {
    // The pipes tell the waiter when they have sent their last bytes, so that what
    // Fooocus printed just before it exited (a taken port, a traceback) reaches the
    // loop before its exit does.
    let (closed_tx, closed_rx) = bounded::<()>(2);
    let open_pipes = pipes.len();
    for (mut pipe, stream) in pipes {
        let closed_tx = closed_tx.clone();
        let tx = tx.clone();
        let inflight = inflight.clone();
        let echo = echo.clone();
        let _ = std::thread::Builder::new()
            .name(format!("fooocus-{stream:?}"))
            .spawn(move || {
                // Read continuously: a full pipe blocks Fooocus's print and looks like a hang.
                let mut buf = vec![0u8; 64 * 1024];
                let mut dropped = 0usize;
                let mut echo_dropped = 0usize;
                loop {
                    match pipe.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            if let Some(echo) = &echo {
                                echo.offer(&buf[..n], &mut echo_dropped);
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
    drop(echo);
    let tx = tx.clone();
    let _ = std::thread::Builder::new()
        .name("fooocus-waiter".into())
        .spawn(move || {
            let exit = wait();
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

/// How long the waiter lets the pipes deliver Fooocus's last lines before it reports the exit.
const PIPE_DRAIN: Duration = Duration::from_millis(500);
/// How much of Fooocus's output may wait for the loop (both pipes together).
const CONSOLE_BUDGET: usize = 4 << 20;

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::Receiver;

    /// A pipe that gives `text` and then ends, but only once the test opens its gate.
    struct GatedPipe {
        gate: Receiver<()>,
        text: Option<Vec<u8>>,
    }

    impl Read for GatedPipe {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let Some(text) = self.text.take() else {
                return Ok(0);
            };
            // Closed without a word (the test ended): end as well.
            let _ = self.gate.recv();
            buf[..text.len()].copy_from_slice(&text);
            Ok(text.len())
        }
    }

    fn name(m: &Msg) -> String {
        match m {
            Msg::Output { bytes, .. } => format!("output {}", String::from_utf8_lossy(bytes)),
            Msg::Eof { stream, .. } => format!("eof {stream:?}"),
            Msg::Exited { exit, .. } => format!("exited {exit:?}"),
            _ => "other".into(),
        }
    }

    #[test]
    fn the_last_lines_reach_the_loop_before_the_exit() {
        let (tx, rx) = unbounded();
        let (gate_tx, gate) = bounded(1);
        let pipe = GatedPipe {
            gate,
            text: Some(b"Cannot find empty port in range: 7865-7865\n".to_vec()),
        };
        watch(
            &tx,
            None,
            &Arc::default(),
            1,
            vec![(Box::new(pipe), Stream::Stderr)],
            // The process is reaped before its last line is read: the line is let through
            // only as the wait returns, so the waiter is ahead of the reader.
            move || {
                gate_tx.send(()).unwrap();
                ExitInfo::Code(1)
            },
        );
        let got: Vec<String> = (0..3)
            .map(|_| name(&rx.recv_timeout(Duration::from_secs(10)).unwrap()))
            .collect();
        assert_eq!(
            got,
            [
                "output Cannot find empty port in range: 7865-7865\n",
                "eof Stderr",
                "exited Code(1)"
            ]
        );
    }

    #[test]
    fn a_pipe_held_open_by_a_grandchild_does_not_hold_the_exit() {
        let (tx, rx) = unbounded();
        let (gate_tx, gate) = bounded(1);
        let pipe = GatedPipe {
            gate,
            text: Some(b"x".to_vec()),
        };
        watch(
            &tx,
            None,
            &Arc::default(),
            1,
            vec![(Box::new(pipe), Stream::Stdout)],
            || ExitInfo::Signal(9),
        );
        // The pipe never closes, yet the exit comes (after PIPE_DRAIN).
        let m = rx.recv_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!(name(&m), "exited Signal(9)");
        drop(gate_tx);
    }

    /// A stdout that takes nothing until the test ends (a console paused by QuickEdit).
    struct PausedConsole(Receiver<()>);

    impl Write for PausedConsole {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let _ = self.0.recv();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A pipe that gives that many chunks of 16 KiB and ends.
    struct Chatty(usize);

    impl Read for Chatty {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0 == 0 {
                return Ok(0);
            }
            self.0 -= 1;
            let n = buf.len().min(16 * 1024);
            buf[..n].fill(b'x');
            Ok(n)
        }
    }

    /// Issue 26 (lllyasviel/Fooocus#1216): the guard's copy of the console to a stdout that
    /// takes nothing (a console paused by QuickEdit) must not stop it reading Fooocus's pipe,
    /// or Fooocus blocks on its next print. Before the copy had a thread of its own, the
    /// reader blocked in its first write and nothing reached the loop.
    #[test]
    fn a_paused_console_does_not_pause_fooocus() {
        let (tx, rx) = unbounded();
        let (_unpause, paused) = bounded::<()>(1);
        // More chunks than the copy's queue holds, fewer bytes than the loop's budget.
        let chunks = ECHO_QUEUE + 8;
        watch(
            &tx,
            Some(Echo::start(Box::new(PausedConsole(paused)))),
            &Arc::default(),
            1,
            vec![(Box::new(Chatty(chunks)), Stream::Stdout)],
            || ExitInfo::Code(0),
        );
        let mut read = 0;
        loop {
            match rx.recv_timeout(Duration::from_secs(30)).unwrap() {
                Msg::Output { bytes, .. } => read += bytes.len(),
                Msg::Eof { .. } => break,
                _ => {}
            }
        }
        assert_eq!(read, chunks * 16 * 1024, "every byte reached the loop");
    }
}
