//! Windows figures: the machine from GetSystemTimes and GlobalMemoryStatusEx, the tree from its
//! Job Object's own accounting (CPU time, process list) plus the working sets of the job's
//! processes -- only the job's, never a scan of every process.

use std::mem::{size_of, zeroed};

use guard_contain::windows::JobProbe;
use guard_contain::TreeProbe;
use windows_sys::Win32::Foundation::FILETIME;
use windows_sys::Win32::System::SystemInformation::{GlobalMemoryStatusEx, MEMORYSTATUSEX};
use windows_sys::Win32::System::Threading::GetSystemTimes;

use crate::{RamSource, SystemSample, TreeSample};

fn ticks(f: &FILETIME) -> u64 {
    (u64::from(f.dwHighDateTime) << 32) | u64::from(f.dwLowDateTime)
}

#[derive(Default)]
pub struct System {
    /// (busy, total) in 100 ns at the previous read.
    last: Option<(u64, u64)>,
}

impl System {
    pub fn open() -> System {
        System::default()
    }

    pub fn read(&mut self, out: &mut SystemSample) {
        // SAFETY: out-pointers to zeroed locals of the types the calls fill.
        unsafe {
            let (mut idle, mut kernel, mut user): (FILETIME, FILETIME, FILETIME) =
                (zeroed(), zeroed(), zeroed());
            if GetSystemTimes(&mut idle, &mut kernel, &mut user) != 0 {
                // Kernel time includes idle time.
                let total = ticks(&kernel) + ticks(&user);
                let busy = total.saturating_sub(ticks(&idle));
                if let Some((b0, t0)) = self.last {
                    let dt = total.saturating_sub(t0);
                    if dt > 0 {
                        out.cpu_percent =
                            busy.saturating_sub(b0).min(dt) as f64 / dt as f64 * 100.0;
                    }
                }
                self.last = Some((busy, total));
            }
            let mut m: MEMORYSTATUSEX = zeroed();
            m.dwLength = size_of::<MEMORYSTATUSEX>() as u32;
            if GlobalMemoryStatusEx(&mut m) != 0 {
                out.ram_total_bytes = m.ullTotalPhys;
                out.ram_used_bytes = m.ullTotalPhys.saturating_sub(m.ullAvailPhys);
            }
        }
    }
}

pub struct Tree {
    job: JobProbe,
}

impl Tree {
    pub fn open(p: &TreeProbe) -> Option<Tree> {
        match p {
            TreeProbe::Job(job) => Some(Tree { job: job.clone() }),
            _ => None,
        }
    }

    /// Fill `t` (all but CPU %) and `pids`; returns the tree's cumulative CPU time in ns.
    pub fn read(&mut self, t: &mut TreeSample, pids: &mut Vec<u32>) -> u64 {
        let Ok(r) = self.job.read(pids) else {
            return 0;
        };
        t.ram_bytes = r.working_set;
        t.ram_source = RamSource::Job;
        // What the job has committed beyond what is resident lives in the page file: the
        // closest Windows figure to Linux's swap.
        t.swap_bytes = r.commit.saturating_sub(r.working_set);
        t.commit_bytes = Some(r.commit);
        t.processes = r.processes;
        r.cpu_time.as_nanos() as u64
    }
}
