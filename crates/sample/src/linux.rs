//! Linux readers: /proc/stat and /proc/meminfo for the machine; the tree's cgroup counters, or
//! /proc for a root pid's descendants. Files stay open; each tick is a pread into a fixed buffer.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use guard_contain::TreeProbe;

use crate::{RamSource, SystemSample, TreeSample};

const BUF: usize = 16 * 1024;

/// A file kept open and re-read from offset 0.
struct Counter {
    file: File,
}

impl Counter {
    fn open(p: &Path) -> Option<Counter> {
        File::open(p).ok().map(|file| Counter { file })
    }
    fn read<'a>(&self, buf: &'a mut [u8]) -> &'a [u8] {
        let mut n = 0;
        while n < buf.len() {
            match self.file.read_at(&mut buf[n..], n as u64) {
                Ok(0) | Err(_) => break,
                Ok(k) => n += k,
            }
        }
        &buf[..n]
    }
}

fn parse_u64(b: &[u8]) -> Option<u64> {
    let mut v: u64 = 0;
    let mut any = false;
    for &c in b {
        if c.is_ascii_digit() {
            v = v.checked_mul(10)?.checked_add((c - b'0') as u64)?;
            any = true;
        } else if any {
            break;
        } else if !c.is_ascii_whitespace() {
            return None;
        }
    }
    any.then_some(v)
}

/// The value after `key ` in a `key value` file.
fn keyed(text: &[u8], key: &[u8]) -> Option<u64> {
    let mut rest = text;
    while !rest.is_empty() {
        let end = rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len());
        let line = &rest[..end];
        if line.len() > key.len()
            && line.starts_with(key)
            && (line[key.len()] == b' ' || line[key.len()] == b':')
        {
            return parse_u64(&line[key.len() + 1..]);
        }
        rest = &rest[(end + 1).min(rest.len())..];
    }
    None
}

fn count_lines(b: &[u8], pids: &mut Vec<u32>) -> u32 {
    pids.clear();
    for line in b.split(|&c| c == b'\n') {
        if let Some(p) = parse_u64(line) {
            pids.push(p as u32);
        }
    }
    pids.len() as u32
}

pub struct System {
    stat: Option<Counter>,
    meminfo: Option<Counter>,
    last: Option<(u64, u64)>,
    buf: Box<[u8; BUF]>,
}

impl System {
    pub fn open() -> System {
        System {
            stat: Counter::open(Path::new("/proc/stat")),
            meminfo: Counter::open(Path::new("/proc/meminfo")),
            last: None,
            buf: Box::new([0; BUF]),
        }
    }

    pub fn read(&mut self, out: &mut SystemSample) {
        if let Some(c) = &self.stat {
            let b = c.read(&mut self.buf[..]);
            // "cpu  user nice system idle iowait irq softirq steal ..."
            let line = b.split(|&c| c == b'\n').next().unwrap_or(&[]);
            let mut total = 0u64;
            let mut idle = 0u64;
            for (i, f) in line
                .split(|&c| c == b' ')
                .filter(|f| !f.is_empty())
                .skip(1)
                .take(8)
                .enumerate()
            {
                let v = parse_u64(f).unwrap_or(0);
                total += v;
                if i == 3 || i == 4 {
                    idle += v;
                }
            }
            if let Some((t0, i0)) = self.last {
                let dt = total.saturating_sub(t0);
                if dt > 0 {
                    out.cpu_percent =
                        (dt - idle.saturating_sub(i0).min(dt)) as f64 / dt as f64 * 100.0;
                }
            }
            self.last = Some((total, idle));
        }
        if let Some(c) = &self.meminfo {
            let b = c.read(&mut self.buf[..]);
            let total = keyed(b, b"MemTotal").unwrap_or(0) * 1024;
            let avail = keyed(b, b"MemAvailable").unwrap_or(0) * 1024;
            out.ram_total_bytes = total;
            out.ram_used_bytes = total.saturating_sub(avail);
        }
    }
}

enum Source {
    V1 {
        usage: Option<Counter>,
        stat: Option<Counter>,
        memsw: Option<Counter>,
        cpuacct: Option<Counter>,
        procs: Option<Counter>,
    },
    V2 {
        current: Option<Counter>,
        swap: Option<Counter>,
        cpu: Option<Counter>,
        procs: Option<Counter>,
    },
    Procs {
        root: u32,
        ticks_per_s: u64,
        page: u64,
    },
}

pub struct Tree {
    src: Source,
    buf: Box<[u8; BUF]>,
    path: String,
}

impl Tree {
    pub fn open(p: &TreeProbe) -> Option<Tree> {
        let src = match p {
            TreeProbe::CgroupV1 {
                memory, cpuacct, ..
            } => Source::V1 {
                usage: Counter::open(&memory.join("memory.usage_in_bytes")),
                stat: Counter::open(&memory.join("memory.stat")),
                memsw: Counter::open(&memory.join("memory.memsw.usage_in_bytes")),
                cpuacct: Counter::open(&cpuacct.join("cpuacct.usage")),
                procs: Counter::open(&memory.join("cgroup.procs")),
            },
            TreeProbe::CgroupV2 { dir } => Source::V2 {
                current: Counter::open(&dir.join("memory.current")),
                swap: Counter::open(&dir.join("memory.swap.current")),
                cpu: Counter::open(&dir.join("cpu.stat")),
                procs: Counter::open(&dir.join("cgroup.procs")),
            },
            TreeProbe::Processes { root_pid } => {
                // SAFETY: sysconf with constant names.
                let (hz, page) = unsafe {
                    (
                        libc::sysconf(libc::_SC_CLK_TCK),
                        libc::sysconf(libc::_SC_PAGESIZE),
                    )
                };
                Source::Procs {
                    root: *root_pid,
                    ticks_per_s: hz.max(1) as u64,
                    page: page.max(1) as u64,
                }
            }
        };
        Some(Tree {
            src,
            buf: Box::new([0; BUF]),
            path: String::with_capacity(64),
        })
    }

    /// Fill `t` (all but CPU %) and `pids`; returns the tree's cumulative CPU time in ns.
    pub fn read(&mut self, t: &mut TreeSample, pids: &mut Vec<u32>) -> u64 {
        let buf = &mut self.buf[..];
        match &self.src {
            Source::V1 {
                usage,
                stat,
                memsw,
                cpuacct,
                procs,
            } => {
                let usage_b = usage
                    .as_ref()
                    .and_then(|c| parse_u64(c.read(buf)))
                    .unwrap_or(0);
                // The charge includes page cache the kernel can drop at once: the user's "RAM
                // used" is the charge less inactive file pages (as `docker stats` shows).
                let inactive = stat
                    .as_ref()
                    .and_then(|c| keyed(c.read(buf), b"total_inactive_file"))
                    .unwrap_or(0);
                t.ram_bytes = usage_b.saturating_sub(inactive);
                t.ram_source = RamSource::Cgroup;
                t.swap_bytes = memsw
                    .as_ref()
                    .and_then(|c| parse_u64(c.read(buf)))
                    .map(|sw| sw.saturating_sub(usage_b))
                    .unwrap_or(0);
                t.processes = procs
                    .as_ref()
                    .map(|c| count_lines(c.read(buf), pids))
                    .unwrap_or(0);
                cpuacct
                    .as_ref()
                    .and_then(|c| parse_u64(c.read(buf)))
                    .unwrap_or(0)
            }
            Source::V2 {
                current,
                swap,
                cpu,
                procs,
            } => {
                t.ram_bytes = current
                    .as_ref()
                    .and_then(|c| parse_u64(c.read(buf)))
                    .unwrap_or(0);
                t.ram_source = RamSource::Cgroup;
                t.swap_bytes = swap
                    .as_ref()
                    .and_then(|c| parse_u64(c.read(buf)))
                    .unwrap_or(0);
                t.processes = procs
                    .as_ref()
                    .map(|c| count_lines(c.read(buf), pids))
                    .unwrap_or(0);
                cpu.as_ref()
                    .and_then(|c| keyed(c.read(buf), b"usage_usec"))
                    .unwrap_or(0)
                    * 1000
            }
            Source::Procs {
                root,
                ticks_per_s,
                page,
            } => {
                // No cgroup: the root and its descendants only (a fallback; it allocates while
                // walking /proc, which the cgroup path never does).
                let all = guard_contain::linux::descendants(*root);
                pids.clear();
                pids.extend_from_slice(&all);
                let (mut rss, mut swap, mut ticks) = (0u64, 0u64, 0u64);
                for p in &all {
                    use std::fmt::Write;
                    self.path.clear();
                    let _ = write!(self.path, "/proc/{p}/statm");
                    if let Ok(s) = std::fs::read(&self.path) {
                        let mut it = s.split(|&c| c == b' ');
                        let _size = it.next();
                        rss += it.next().and_then(parse_u64).unwrap_or(0) * page;
                    }
                    self.path.clear();
                    let _ = write!(self.path, "/proc/{p}/stat");
                    if let Ok(s) = std::fs::read(&self.path) {
                        if let Some(close) = s.iter().rposition(|&c| c == b')') {
                            // fields after ')': state(3) ... utime(14) stime(15), 1-based.
                            let f: Vec<&[u8]> = s[close + 2..].split(|&c| c == b' ').collect();
                            ticks += f.get(11).and_then(|v| parse_u64(v)).unwrap_or(0)
                                + f.get(12).and_then(|v| parse_u64(v)).unwrap_or(0);
                        }
                    }
                    self.path.clear();
                    let _ = write!(self.path, "/proc/{p}/status");
                    if let Ok(s) = std::fs::read(&self.path) {
                        swap += keyed(&s, b"VmSwap").unwrap_or(0) * 1024;
                    }
                }
                t.ram_bytes = rss;
                t.ram_source = RamSource::Rss;
                t.swap_bytes = swap;
                t.processes = all.len() as u32;
                ticks * 1_000_000_000 / ticks_per_s
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsing() {
        assert_eq!(parse_u64(b"123\n"), Some(123));
        assert_eq!(parse_u64(b"  42 kB"), Some(42));
        assert_eq!(parse_u64(b"max\n"), None);
        assert_eq!(
            keyed(
                b"cache 1\ntotal_inactive_file 4096\n",
                b"total_inactive_file"
            ),
            Some(4096)
        );
        assert_eq!(
            keyed(
                b"MemTotal:       16000 kB\nMemAvailable:   8000 kB\n",
                b"MemAvailable"
            ),
            Some(8000)
        );
        let mut v = Vec::new();
        assert_eq!(count_lines(b"1\n22\n333\n", &mut v), 3);
        assert_eq!(v, [1, 22, 333]);
    }
}
