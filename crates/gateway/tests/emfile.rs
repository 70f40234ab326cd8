//! Out of file descriptors, the gateway's accept loop waits instead of spinning. A test binary
//! of its own: it lowers this process's file limit.
#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::Duration;

use guard_gateway::{Gateway, GatewayConfig, Limits};

/// The stat file of this process's thread named `name`, opened now (reading it later needs no
/// new descriptor). A new thread names itself once it runs, which on a loaded machine can be
/// after `Gateway::start` returned: its name is looked for until it appears (at most 10 s).
fn thread_stat(name: &str) -> std::fs::File {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        for t in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
            let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
            if comm.trim() == name {
                return std::fs::File::open(t.path().join("stat")).unwrap();
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no thread named {name}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Its CPU time so far, in clock ticks.
fn ticks(stat: &mut std::fs::File) -> u64 {
    use std::io::{Read, Seek};
    let mut text = String::new();
    stat.rewind().unwrap();
    stat.read_to_string(&mut text).unwrap();
    // Fields after the ")" that ends the name: utime and stime are the 12th and 13th.
    let f: Vec<&str> = text[text.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[test]
fn out_of_descriptors_the_accept_loop_does_not_spin() {
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let g = Gateway::start(GatewayConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        upstream: upstream.local_addr().unwrap(),
        token: None,
        rate_per_minute: None,
        events: None,
        allowed_origins: Vec::new(),
        limits: Limits::default(),
    })
    .unwrap();
    // Another process connects (this one will have no descriptor left for it).
    let script = format!(
        "import socket,sys\nsys.stdin.readline()\ns=[socket.create_connection(('127.0.0.1',{}),timeout=5) for _ in range(20)]\nprint('connected',flush=True)\nsys.stdin.readline()\n",
        g.local_addr().port()
    );
    let mut child = Command::new("python3")
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut to_child = child.stdin.take().unwrap();
    let mut from_child = BufReader::new(child.stdout.take().unwrap());

    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid out-pointer.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    let mut stat = thread_stat("fooocus-gateway");
    let open = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
    let low = libc::rlimit {
        rlim_cur: open,
        rlim_max: lim.rlim_max,
    };
    // SAFETY: a valid rlimit.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &low) }, 0);
    writeln!(to_child, "go").unwrap();
    let mut line = String::new();
    from_child.read_line(&mut line).unwrap();
    assert_eq!(
        line.trim(),
        "connected",
        "the connections are queued in the backlog"
    );

    // A measuring window, not a wait for anything: a spinning loop would burn it all.
    let before = ticks(&mut stat);
    std::thread::sleep(Duration::from_secs(2));
    let burnt = ticks(&mut stat) - before;
    // SAFETY: a valid rlimit.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
    let _ = writeln!(to_child, "done");
    let _ = child.wait();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    assert!(
        burnt * 5 < hz,
        "the accept loop used {burnt} ticks of CPU in 2 s ({hz} a second) while out of descriptors: it spins"
    );
}
