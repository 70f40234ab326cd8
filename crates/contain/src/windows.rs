//! Windows backend: one Job Object per Fooocus run.
//!
//! * The job is created with KILL_ON_JOB_CLOSE: its only handle is the guard's, so when the guard
//!   dies -- cleanly, by a crash or by TerminateProcess -- Windows closes the handle and kills
//!   every process in the job. Nothing can be left behind, which is why `clean_stale` has
//!   nothing to do here.
//! * The child is created suspended (CREATE_SUSPENDED, and CREATE_NO_WINDOW: see
//!   [`FOOOCUS_CREATION_FLAGS`]), assigned to the job, and only then resumed: it never runs a
//!   single instruction outside the job, and everything it spawns is born inside.
//! * The RAM cap is the job memory limit. Windows limits *committed* memory (RAM plus page
//!   file), so the cap is RAM + swap: the swap allowance folds into the one limit.
//! * The CPU cap is CPU rate control with a hard cap, in hundredths of a percent of the machine.
//! * A completion-port thread turns job messages into [`ContainerEvent`]s.
//! * Accounting (CPU time, peak commit, process list) comes from the job itself; the sampler reads
//!   it through [`JobProbe`].
//!
//! Wine 8 (where CI runs these tests) creates jobs, assigns, kills and posts process messages,
//! but does not enforce the memory limit, never posts JOB_MEMORY_LIMIT, and reports zero CPU
//! time and peak memory: tests of those run only on real Windows (`FG_REAL_WINDOWS=1`).

use std::mem::{size_of, zeroed};
use std::os::windows::io::AsRawHandle;
use std::os::windows::process::CommandExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use windows_sys::Win32::Foundation::{
    CloseHandle, GetLastError, ERROR_ACCESS_DENIED, ERROR_MORE_DATA, HANDLE, INVALID_HANDLE_VALUE,
    WAIT_TIMEOUT,
};
use windows_sys::Win32::System::Diagnostics::ToolHelp::{
    CreateToolhelp32Snapshot, Thread32First, Thread32Next, TH32CS_SNAPTHREAD, THREADENTRY32,
};
use windows_sys::Win32::System::JobObjects::*;
use windows_sys::Win32::System::ProcessStatus::{K32GetProcessMemoryInfo, PROCESS_MEMORY_COUNTERS};
use windows_sys::Win32::System::SystemServices::{
    JOB_OBJECT_MSG_ABNORMAL_EXIT_PROCESS, JOB_OBJECT_MSG_ACTIVE_PROCESS_ZERO,
    JOB_OBJECT_MSG_EXIT_PROCESS, JOB_OBJECT_MSG_JOB_MEMORY_LIMIT, JOB_OBJECT_MSG_NEW_PROCESS,
    JOB_OBJECT_MSG_PROCESS_MEMORY_LIMIT,
};
use windows_sys::Win32::System::Threading::{
    GetExitCodeProcess, OpenProcess, OpenThread, ResumeThread, TerminateProcess,
    WaitForSingleObject, CREATE_NO_WINDOW, CREATE_SUSPENDED, INFINITE,
    PROCESS_QUERY_LIMITED_INFORMATION, PROCESS_SYNCHRONIZE, PROCESS_VM_READ, THREAD_SUSPEND_RESUME,
};
use windows_sys::Win32::System::IO::{
    CreateIoCompletionPort, GetQueuedCompletionStatus, PostQueuedCompletionStatus, OVERLAPPED,
};

use crate::*;

/// Completion key of the job's messages; [`STOP_KEY`] asks the port thread to end.
const JOB_KEY: usize = 1;
const STOP_KEY: usize = 2;
/// Exit code of processes the guard terminates (shown in the event of a killed run).
pub const KILLED_EXIT_CODE: u32 = 0xF00C;
/// How long a tree kill may take before it is reported as failed.
const KILL_DEADLINE: Duration = Duration::from_secs(30);
/// Events kept for a supervisor that has not taken them yet; later ones are dropped.
const EVENT_BACKLOG: usize = 4096;

/// An owned kernel handle, closed on drop.
#[derive(Debug)]
struct Handle(HANDLE);
// SAFETY: kernel handles are process-wide values; the calls made through them are thread-safe.
unsafe impl Send for Handle {}
unsafe impl Sync for Handle {}
impl Drop for Handle {
    fn drop(&mut self) {
        if !self.0.is_null() && self.0 != INVALID_HANDLE_VALUE {
            // SAFETY: the handle is owned by this value and closed once.
            unsafe { CloseHandle(self.0) };
        }
    }
}

fn last_error(what: &str) -> ContainError {
    ContainError::io(what, std::io::Error::last_os_error())
}

/// The job itself, shared by the container and the sampler's [`JobProbe`]. The job dies (and
/// kills its tree) when the last clone is dropped.
#[derive(Debug)]
struct Job {
    handle: Handle,
    /// Scratch for the process-id list, reused so that a sample does not allocate.
    ids: Mutex<Vec<usize>>,
}

impl Job {
    /// An unnamed job: nothing else can open it, and it cannot collide with another guard's.
    fn new() -> Result<Job> {
        // SAFETY: a plain constructor; the handle is owned by `Handle`.
        let job = unsafe { CreateJobObjectW(std::ptr::null(), std::ptr::null()) };
        if job.is_null() {
            return Err(last_error("creating the Job Object"));
        }
        Ok(Job {
            handle: Handle(job),
            ids: Mutex::new(vec![0; 257]),
        })
    }

    fn query<T>(&self, class: JOBOBJECTINFOCLASS) -> Result<T> {
        // SAFETY: T is one of the plain C structs the class names; the size passed matches it.
        unsafe {
            let mut info: T = zeroed();
            let ok = QueryInformationJobObject(
                self.handle.0,
                class,
                &mut info as *mut T as *mut _,
                size_of::<T>() as u32,
                std::ptr::null_mut(),
            );
            if ok == 0 {
                return Err(last_error("reading the job's information"));
            }
            Ok(info)
        }
    }

    fn set<T>(&self, class: JOBOBJECTINFOCLASS, info: &T, what: &str) -> Result<()> {
        // SAFETY: as in `query`.
        let ok = unsafe {
            SetInformationJobObject(
                self.handle.0,
                class,
                info as *const T as *const _,
                size_of::<T>() as u32,
            )
        };
        if ok == 0 {
            return Err(last_error(what));
        }
        Ok(())
    }

    fn accounting(&self) -> Result<JOBOBJECT_BASIC_ACCOUNTING_INFORMATION> {
        self.query(JobObjectBasicAccountingInformation)
    }

    /// The pids in the job, into `out` (cleared first). Allocates only when the tree grows past
    /// the largest it has been.
    fn pids_into(&self, out: &mut Vec<u32>) -> Result<()> {
        out.clear();
        let mut ids = self.ids.lock().unwrap();
        loop {
            // Two u32 counts fill the first usize; the pids follow.
            let cap = ids.len().saturating_sub(1);
            // SAFETY: `ids` is a usize buffer laid out as JOBOBJECT_BASIC_PROCESS_ID_LIST with
            // room for `cap` pids; its size in bytes is passed.
            let ok = unsafe {
                QueryInformationJobObject(
                    self.handle.0,
                    JobObjectBasicProcessIdList,
                    ids.as_mut_ptr() as *mut _,
                    (ids.len() * size_of::<usize>()) as u32,
                    std::ptr::null_mut(),
                )
            };
            // SAFETY: the header was written by the call (or is the zeroed start).
            let list = unsafe { &*(ids.as_ptr() as *const JOBOBJECT_BASIC_PROCESS_ID_LIST) };
            let more = list.NumberOfAssignedProcesses as usize > cap;
            if ok == 0 && unsafe { GetLastError() } != ERROR_MORE_DATA {
                return Err(last_error("listing the job's processes"));
            }
            if ok == 0 || more {
                let want = (list.NumberOfAssignedProcesses as usize).max(cap * 2) + 1;
                ids.resize(want + 1, 0);
                continue;
            }
            let n = list.NumberOfProcessIdsInList as usize;
            out.extend(ids[1..1 + n.min(cap)].iter().map(|&p| p as u32));
            return Ok(());
        }
    }

    /// One pass over the job for a sample: its accounting, its processes, and each one's memory
    /// (one OpenProcess per process, no allocation once `pids` is large enough).
    fn read(&self, pids: &mut Vec<u32>) -> Result<JobReading> {
        let acct = self.accounting()?;
        self.pids_into(pids)?;
        let (mut working_set, mut commit) = (0u64, 0u64);
        for &pid in pids.iter() {
            if let Some(m) = process_memory(pid) {
                working_set += m.WorkingSetSize as u64;
                commit += m.PagefileUsage as u64;
            }
        }
        Ok(JobReading {
            // FILETIME units: 100 ns.
            cpu_time: Duration::from_nanos(
                (acct.TotalUserTime as u64 + acct.TotalKernelTime as u64) * 100,
            ),
            processes: acct.ActiveProcesses,
            working_set,
            commit,
        })
    }

    fn usage(&self, pids: &mut Vec<u32>) -> Result<NativeUsage> {
        let r = self.read(pids)?;
        let ext: JOBOBJECT_EXTENDED_LIMIT_INFORMATION =
            self.query(JobObjectExtendedLimitInformation)?;
        Ok(NativeUsage {
            memory_bytes: r.working_set,
            peak_memory_bytes: ext.PeakJobMemoryUsed as u64,
            cpu_time: r.cpu_time,
            processes: r.processes,
        })
    }
}

/// The job's figures at one instant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JobReading {
    /// User + kernel time of every process that ran in the job.
    pub cpu_time: Duration,
    pub processes: u32,
    /// Resident memory of the job's processes.
    pub working_set: u64,
    /// Their committed private memory (what the job's memory limit counts).
    pub commit: u64,
}

/// Whether a process with this pid is still running (not exited).
pub fn is_alive(pid: u32) -> bool {
    // SAFETY: the handle is checked and owned by `Handle`.
    unsafe {
        let h = OpenProcess(
            PROCESS_SYNCHRONIZE | PROCESS_QUERY_LIMITED_INFORMATION,
            0,
            pid,
        );
        if h.is_null() {
            return false;
        }
        let h = Handle(h);
        WaitForSingleObject(h.0, 0) == WAIT_TIMEOUT
    }
}

fn process_memory(pid: u32) -> Option<PROCESS_MEMORY_COUNTERS> {
    // SAFETY: the handle is checked and closed by `Handle`; the counters struct is sized.
    unsafe {
        let h = OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION | PROCESS_VM_READ, 0, pid);
        if h.is_null() {
            return None;
        }
        let h = Handle(h);
        let mut c: PROCESS_MEMORY_COUNTERS = zeroed();
        c.cb = size_of::<PROCESS_MEMORY_COUNTERS>() as u32;
        (K32GetProcessMemoryInfo(h.0, &mut c, c.cb) != 0).then_some(c)
    }
}

/// What the sampler holds to read the job's figures. Clones share the job; equality is identity
/// (the sampler re-opens only when the run changes).
#[derive(Clone, Debug)]
pub struct JobProbe(Arc<Job>);

impl PartialEq for JobProbe {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}
impl Eq for JobProbe {}

impl JobProbe {
    /// The job's figures; `pids` receives the processes in the job.
    pub fn read(&self, pids: &mut Vec<u32>) -> Result<JobReading> {
        self.0.read(pids)
    }
}

pub struct JobContainer {
    job: Arc<Job>,
    port: Arc<Handle>,
    port_thread: Option<std::thread::JoinHandle<()>>,
    events: Mutex<Option<crossbeam_channel::Receiver<ContainerEvent>>>,
    memory_hits: Arc<AtomicU64>,
    choice: BackendChoice,
}

/// What `create` would give, from a job made and dropped for the question.
pub fn probe_backend() -> Result<BackendChoice> {
    Ok(choice_for(&Job::new()?))
}

/// The choice for this machine. CPU rate control came with Windows 8 (and Wine has none): ask
/// the job, so that the settings and `doctor` say the CPU cap is not enforced before anyone
/// sets one.
fn choice_for(job: &Job) -> BackendChoice {
    let mut choice = BackendChoice {
        kind: BackendKind::JobObject,
        reason: "a Job Object that kills the tree when the guard's handle closes holds Fooocus; \
                 the RAM cap is the job's commit limit (RAM plus page file), the CPU cap its \
                 hard rate limit"
            .into(),
        unenforced: Vec::new(),
    };
    let off: JOBOBJECT_CPU_RATE_CONTROL_INFORMATION = unsafe { zeroed() };
    if job
        .set(JobObjectCpuRateControlInformation, &off, "")
        .is_err()
    {
        choice.unenforced.push("cpu".into());
        choice
            .reason
            .push_str("; this Windows has no CPU rate control, so the CPU cap is not enforced");
    }
    choice
}

pub fn create(name: &str) -> Result<Box<dyn Containment>> {
    Ok(Box::new(JobContainer::create(name)?))
}

impl JobContainer {
    pub fn create(_name: &str) -> Result<Self> {
        let job = Arc::new(Job::new()?);
        let mut limits: JOBOBJECT_EXTENDED_LIMIT_INFORMATION = unsafe { zeroed() };
        // DIE_ON_UNHANDLED_EXCEPTION: a crashed Python ends at once instead of hanging in the
        // Windows Error Reporting dialog, so the restart policy sees the crash.
        limits.BasicLimitInformation.LimitFlags =
            JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE | JOB_OBJECT_LIMIT_DIE_ON_UNHANDLED_EXCEPTION;
        job.set(
            JobObjectExtendedLimitInformation,
            &limits,
            "setting kill-on-close on the job",
        )?;

        // SAFETY: a new port not tied to a file; owned by `Handle`.
        let port =
            unsafe { CreateIoCompletionPort(INVALID_HANDLE_VALUE, std::ptr::null_mut(), 0, 1) };
        if port.is_null() {
            return Err(last_error("creating the job's completion port"));
        }
        let port = Arc::new(Handle(port));
        let assoc = JOBOBJECT_ASSOCIATE_COMPLETION_PORT {
            CompletionKey: JOB_KEY as *mut _,
            CompletionPort: port.0,
        };
        job.set(
            JobObjectAssociateCompletionPortInformation,
            &assoc,
            "connecting the job to its completion port",
        )?;

        // CPU rate control came with Windows 8 (and Wine does not have it): ask once, so that
        // the settings and `doctor` can say the CPU cap is not enforced before anyone sets one.
        let choice = choice_for(&job);

        let (tx, rx) = crossbeam_channel::bounded(EVENT_BACKLOG);
        let memory_hits = Arc::new(AtomicU64::new(0));
        let port_thread = {
            let port = port.clone();
            let hits = memory_hits.clone();
            std::thread::Builder::new()
                .name("job-messages".into())
                .spawn(move || pump_messages(&port, &tx, &hits))
                .map_err(|e| ContainError::io("starting the job message thread", e))?
        };
        Ok(JobContainer {
            job,
            port,
            port_thread: Some(port_thread),
            events: Mutex::new(Some(rx)),
            memory_hits,
            choice,
        })
    }
}

/// The port thread: one job message at a time, until [`STOP_KEY`]. Each process gets a handle
/// when it joins so that its exit code can still be read when it leaves.
fn pump_messages(
    port: &Handle,
    tx: &crossbeam_channel::Sender<ContainerEvent>,
    memory_hits: &AtomicU64,
) {
    let mut open: std::collections::HashMap<u32, Handle> = std::collections::HashMap::new();
    loop {
        let (mut msg, mut key) = (0u32, 0usize);
        let mut ov: *mut OVERLAPPED = std::ptr::null_mut();
        // SAFETY: out-pointers to locals; the port outlives this thread (joined on drop).
        let ok =
            unsafe { GetQueuedCompletionStatus(port.0, &mut msg, &mut key, &mut ov, INFINITE) };
        if ok == 0 && ov.is_null() {
            return; // the port was closed
        }
        if key == STOP_KEY {
            return;
        }
        if key != JOB_KEY {
            continue;
        }
        // For process messages the "overlapped" pointer carries the pid.
        let pid = ov as usize as u32;
        let event = match msg {
            JOB_OBJECT_MSG_NEW_PROCESS => {
                // SAFETY: the handle is checked and owned by `Handle`.
                let h = unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) };
                if !h.is_null() {
                    open.insert(pid, Handle(h));
                }
                ContainerEvent::NewProcess { pid }
            }
            JOB_OBJECT_MSG_EXIT_PROCESS | JOB_OBJECT_MSG_ABNORMAL_EXIT_PROCESS => {
                let code = open.remove(&pid).and_then(|h| {
                    let mut c = 0u32;
                    // SAFETY: a live handle opened with query rights.
                    (unsafe { GetExitCodeProcess(h.0, &mut c) } != 0).then_some(c as i64)
                });
                // Windows calls an exit abnormal by its code (an NTSTATUS error such as an
                // access violation); Wine never posts the abnormal message, so look too.
                let status_error = code.is_some_and(|c| (c as u32) & 0xC000_0000 == 0xC000_0000);
                ContainerEvent::ProcessExited {
                    pid,
                    code,
                    abnormal: msg == JOB_OBJECT_MSG_ABNORMAL_EXIT_PROCESS || status_error,
                }
            }
            JOB_OBJECT_MSG_ACTIVE_PROCESS_ZERO => {
                open.clear();
                ContainerEvent::Empty
            }
            JOB_OBJECT_MSG_JOB_MEMORY_LIMIT | JOB_OBJECT_MSG_PROCESS_MEMORY_LIMIT => {
                memory_hits.fetch_add(1, Ordering::Relaxed);
                ContainerEvent::MemoryLimitHit
            }
            _ => continue,
        };
        let _ = tx.try_send(event);
    }
}

/// Resume the (single) thread of a process created suspended.
fn resume_process(pid: u32) -> Result<()> {
    // SAFETY: the snapshot and thread handles are checked and owned by `Handle`; THREADENTRY32 is
    // sized before the walk as the API requires.
    unsafe {
        let snap = CreateToolhelp32Snapshot(TH32CS_SNAPTHREAD, 0);
        if snap == INVALID_HANDLE_VALUE {
            return Err(last_error("listing the new process's threads"));
        }
        let snap = Handle(snap);
        let mut te: THREADENTRY32 = zeroed();
        te.dwSize = size_of::<THREADENTRY32>() as u32;
        let mut resumed = 0;
        let mut more = Thread32First(snap.0, &mut te) != 0;
        while more {
            if te.th32OwnerProcessID == pid {
                let t = OpenThread(THREAD_SUSPEND_RESUME, 0, te.th32ThreadID);
                if !t.is_null() {
                    let t = Handle(t);
                    if ResumeThread(t.0) != u32::MAX {
                        resumed += 1;
                    }
                }
            }
            more = Thread32Next(snap.0, &mut te) != 0;
        }
        if resumed == 0 {
            return Err(ContainError::io(
                "resuming the new process",
                std::io::Error::other(format!("no thread of pid {pid} could be resumed")),
            ));
        }
    }
    Ok(())
}

/// CpuRate is in hundredths of a percent of the whole machine; the user's cap is in percent of
/// one core.
/// How Fooocus is created. Suspended, so it joins the job before its first instruction.
///
/// With a console of its own that has no window (CREATE_NO_WINDOW), so a click can never pause it
/// (lllyasviel/Fooocus#1216, "Waiting for task to start"): in a console window in QuickEdit mode a
/// click starts a selection that holds every write to that console until it ends, and Fooocus
/// blocks on its next print. A windowless console has nothing to click; the console programs
/// Fooocus starts (git, pip) share it rather than each opening a visible one, as they would under
/// DETACHED_PROCESS; it is not the guard's own console (the CLI in a terminal), which a child
/// inherits by default; nor a new visible one (CREATE_NEW_CONSOLE). Fooocus's own output goes to
/// the supervisor's pipes, not to any console.
pub const FOOOCUS_CREATION_FLAGS: u32 = CREATE_SUSPENDED | CREATE_NO_WINDOW;

fn cpu_rate(cpu_percent: u32, cores: u32) -> u32 {
    (u64::from(cpu_percent) * 100 / u64::from(cores.max(1))).clamp(1, 10_000) as u32
}

impl Containment for JobContainer {
    fn choice(&self) -> &BackendChoice {
        &self.choice
    }

    fn prepare(&self, cmd: &mut std::process::Command) -> Result<()> {
        cmd.creation_flags(FOOOCUS_CREATION_FLAGS);
        Ok(())
    }

    fn adopt(&self, child: &std::process::Child) -> Result<()> {
        let process = child.as_raw_handle() as HANDLE;
        // SAFETY: `process` is the live handle std holds for the child.
        if unsafe { AssignProcessToJobObject(self.job.handle.0, process) } == 0 {
            let os = std::io::Error::last_os_error();
            let err = if os.raw_os_error() == Some(ERROR_ACCESS_DENIED as i32) {
                // Windows 7, or a launcher that runs the guard in a job of its own that allows
                // no nested jobs.
                ContainError::Unavailable {
                    backend: "job-object",
                    why: "Windows refused to put Fooocus into a Job Object because Fooocus Guard \
                          itself runs inside a job that allows no other (Windows 7, or the \
                          program that started the guard): start Fooocus Guard directly, from \
                          the Start menu or its own folder"
                        .into(),
                }
            } else {
                ContainError::io("putting Fooocus into its Job Object", os)
            };
            // Never let the suspended child run outside the job.
            unsafe { TerminateProcess(process, KILLED_EXIT_CODE) };
            return Err(err);
        }
        if let Err(e) = resume_process(child.id()) {
            let _ = self.kill_tree();
            return Err(e);
        }
        Ok(())
    }

    fn set_limits(&self, limits: &Limits) -> Result<()> {
        let mut ext: JOBOBJECT_EXTENDED_LIMIT_INFORMATION =
            self.job.query(JobObjectExtendedLimitInformation)?;
        let flags = &mut ext.BasicLimitInformation.LimitFlags;
        match limits.memory_bytes {
            Some(ram) => {
                *flags |= JOB_OBJECT_LIMIT_JOB_MEMORY;
                let commit = ram.saturating_add(limits.swap_bytes.unwrap_or(0));
                ext.JobMemoryLimit = usize::try_from(commit).unwrap_or(usize::MAX);
            }
            None => {
                *flags &= !JOB_OBJECT_LIMIT_JOB_MEMORY;
                ext.JobMemoryLimit = 0;
            }
        }
        // Whatever Windows reported, these must stay set.
        *flags |= JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE | JOB_OBJECT_LIMIT_DIE_ON_UNHANDLED_EXCEPTION;
        self.job.set(
            JobObjectExtendedLimitInformation,
            &ext,
            "setting the job's memory limit",
        )?;

        let cores = std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1);
        let mut rate: JOBOBJECT_CPU_RATE_CONTROL_INFORMATION = unsafe { zeroed() };
        if let Some(pct) = limits.cpu_percent {
            rate.ControlFlags =
                JOB_OBJECT_CPU_RATE_CONTROL_ENABLE | JOB_OBJECT_CPU_RATE_CONTROL_HARD_CAP;
            rate.Anonymous.CpuRate = cpu_rate(pct, cores);
        }
        let currently_capped = limits.cpu_percent.is_some()
            || self
                .job
                .query::<JOBOBJECT_CPU_RATE_CONTROL_INFORMATION>(JobObjectCpuRateControlInformation)
                .map(|r| r.ControlFlags & JOB_OBJECT_CPU_RATE_CONTROL_ENABLE != 0)
                .unwrap_or(false);
        if currently_capped {
            self.job.set(
                JobObjectCpuRateControlInformation,
                &rate,
                "setting the CPU cap as the job's CPU rate limit (Windows 8 or later has it)",
            )?;
        }
        Ok(())
    }

    fn kill_tree(&self) -> Result<KillReport> {
        let start = Instant::now();
        let before = self
            .job
            .accounting()
            .map(|a| a.ActiveProcesses)
            .unwrap_or(0);
        // SAFETY: the job handle is live for as long as `self`.
        if unsafe { TerminateJobObject(self.job.handle.0, KILLED_EXIT_CODE) } == 0 {
            return Err(last_error("terminating the Job Object"));
        }
        // TerminateJobObject only starts the kills: wait until the job has no process left.
        let mut rounds = 1;
        loop {
            let active = self.job.accounting()?.ActiveProcesses;
            if active == 0 {
                break;
            }
            if start.elapsed() > KILL_DEADLINE {
                return Err(ContainError::io(
                    "waiting for the job's processes to end",
                    std::io::Error::other(format!(
                        "{active} process(es) still in the job after {}s",
                        KILL_DEADLINE.as_secs()
                    )),
                ));
            }
            rounds += 1;
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(KillReport {
            signalled: before,
            rounds,
            elapsed: start.elapsed(),
        })
    }

    fn pids(&self) -> Result<Vec<u32>> {
        let mut v = Vec::new();
        self.job.pids_into(&mut v)?;
        Ok(v)
    }

    fn oom_kills(&self) -> u64 {
        // Windows does not kill at the limit: allocations fail. Each limit message counts.
        self.memory_hits.load(Ordering::Relaxed)
    }

    fn probe(&self) -> TreeProbe {
        TreeProbe::Job(JobProbe(self.job.clone()))
    }

    fn native_usage(&self) -> Option<NativeUsage> {
        let mut pids = Vec::new();
        self.job.usage(&mut pids).ok()
    }

    fn take_events(&self) -> Option<crossbeam_channel::Receiver<ContainerEvent>> {
        self.events.lock().unwrap().take()
    }
}

impl Drop for JobContainer {
    fn drop(&mut self) {
        // Kill now rather than when the sampler lets go of its probe.
        let _ = self.kill_tree();
        // SAFETY: the port is live until `self.port` drops, after the thread is joined.
        unsafe { PostQueuedCompletionStatus(self.port.0, 0, STOP_KEY, std::ptr::null()) };
        if let Some(t) = self.port_thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{cpu_rate, FOOOCUS_CREATION_FLAGS};
    use windows_sys::Win32::System::Threading::{
        CREATE_NEW_CONSOLE, CREATE_NO_WINDOW, CREATE_SUSPENDED, DETACHED_PROCESS,
    };

    /// Wine has no consoles (AllocConsole fails, no process has a console window), so what the
    /// flags do is tested on real Windows (windows_job.rs, FG_REAL_WINDOWS=1); here, that they
    /// are the ones that do it.
    #[test]
    fn fooocus_is_created_suspended_with_a_console_that_has_no_window() {
        assert_ne!(FOOOCUS_CREATION_FLAGS & CREATE_SUSPENDED, 0);
        assert_ne!(FOOOCUS_CREATION_FLAGS & CREATE_NO_WINDOW, 0);
        // Neither a visible console of its own nor none at all (its helpers would open theirs).
        assert_eq!(
            FOOOCUS_CREATION_FLAGS & (CREATE_NEW_CONSOLE | DETACHED_PROCESS),
            0
        );
    }

    #[test]
    fn cpu_cap_is_converted_to_hundredths_of_the_machine() {
        assert_eq!(cpu_rate(100, 4), 2_500); // one core of four = 25 %
        assert_eq!(cpu_rate(250, 8), 3_125);
        assert_eq!(cpu_rate(800, 4), 10_000); // more than the machine: the whole machine
        assert_eq!(cpu_rate(0, 4), 1); // Windows refuses 0
    }
}
