//! Per-process dedicated GPU memory from Windows' GPU performance counters: what Task Manager's
//! "Dedicated GPU memory" column shows, and the only per-process VRAM figure under the Windows
//! display driver model (WDDM, every consumer GeForce), where NVML reports "not available".
//!
//! The counter set is `\GPU Process Memory(*)\Dedicated Usage` (Windows 10 1709 and later, WDDM
//! 2 drivers of any vendor): one instance per process and adapter, named
//! `pid_1234_luid_0x00000000_0x0000D1A5_phys_0`. A process that holds no GPU memory has no
//! instance, so its 0 is a real 0.

/// The pid in a GPU counter instance name (`pid_1234_luid_...`), as UTF-16.
#[cfg_attr(not(windows), allow(dead_code))]
pub fn pid_of_instance(name: &[u16]) -> Option<u32> {
    let prefix: Vec<u16> = "pid_".encode_utf16().collect();
    let rest = name.strip_prefix(prefix.as_slice())?;
    let digits = rest
        .iter()
        .take_while(|&&c| (u16::from(b'0')..=u16::from(b'9')).contains(&c))
        .count();
    if digits == 0 || digits > 10 {
        return None;
    }
    match rest.get(digits) {
        None => {}
        Some(&c) if c == u16::from(b'_') => {}
        Some(_) => return None,
    }
    String::from_utf16(&rest[..digits]).ok()?.parse().ok()
}

#[cfg(windows)]
pub use pdh::GpuCounters;

#[cfg(windows)]
mod pdh {
    use std::ptr::null;

    use windows_sys::Win32::System::Performance::{
        PdhAddEnglishCounterW, PdhCloseQuery, PdhCollectQueryData, PdhGetFormattedCounterArrayW,
        PdhOpenQueryW, PDH_CSTATUS_NO_COUNTER, PDH_CSTATUS_NO_OBJECT, PDH_FMT_COUNTERVALUE_ITEM_W,
        PDH_FMT_LARGE, PDH_MORE_DATA,
    };

    use super::pid_of_instance;

    const DEDICATED_USAGE: &str = r"\GPU Process Memory(*)\Dedicated Usage";

    /// One PDH query with the wildcard counter, kept open; its item buffer is reused.
    pub struct GpuCounters {
        query: isize,
        counter: isize,
        /// u64 for the items' alignment; grows to the largest answer seen.
        buf: Vec<u64>,
    }

    // SAFETY: PDH query and counter handles may be used from any thread, one at a time; the
    // sampler owns this value.
    unsafe impl Send for GpuCounters {}

    impl GpuCounters {
        /// Opens the counter and reads it once, so that a machine without it is known at once.
        pub fn open() -> Result<GpuCounters, String> {
            let path: Vec<u16> = DEDICATED_USAGE.encode_utf16().chain([0]).collect();
            let (mut query, mut counter) = (0isize, 0isize);
            // SAFETY: out-pointers to locals; `path` is NUL-terminated and outlives the call.
            unsafe {
                let st = PdhOpenQueryW(null(), 0, &mut query);
                if st != 0 {
                    return Err(format!("PDH refused a query (0x{st:08X})"));
                }
                let st = PdhAddEnglishCounterW(query, path.as_ptr(), 0, &mut counter);
                if st != 0 {
                    PdhCloseQuery(query);
                    return Err(
                        if st == PDH_CSTATUS_NO_OBJECT || st == PDH_CSTATUS_NO_COUNTER {
                            format!("this Windows has no {DEDICATED_USAGE} counter (Windows 10 1709 or later with a WDDM 2 driver has it)")
                        } else {
                            format!("PDH refused {DEDICATED_USAGE} (0x{st:08X})")
                        },
                    );
                }
            }
            let mut c = GpuCounters {
                query,
                counter,
                buf: Vec::new(),
            };
            c.read(&[])?;
            Ok(c)
        }

        /// The dedicated GPU memory of `pids`, summed over every adapter.
        pub fn read(&mut self, pids: &[u32]) -> Result<u64, String> {
            // SAFETY: the handles are open until Drop; the buffer is as large as PDH says it
            // must be, 8-byte aligned, and the items (and the names they point into) are read
            // only before the next call that writes it.
            unsafe {
                let st = PdhCollectQueryData(self.query);
                if st != 0 {
                    return Err(format!(
                        "PDH could not collect {DEDICATED_USAGE} (0x{st:08X})"
                    ));
                }
                loop {
                    let mut size = (self.buf.len() * 8) as u32;
                    let mut count = 0u32;
                    let items = self.buf.as_mut_ptr().cast::<PDH_FMT_COUNTERVALUE_ITEM_W>();
                    let st = PdhGetFormattedCounterArrayW(
                        self.counter,
                        PDH_FMT_LARGE,
                        &mut size,
                        &mut count,
                        if self.buf.is_empty() {
                            std::ptr::null_mut()
                        } else {
                            items
                        },
                    );
                    if st == PDH_MORE_DATA {
                        self.buf.resize((size as usize).div_ceil(8) + 1, 0);
                        continue;
                    }
                    if st != 0 {
                        return Err(format!("PDH could not read {DEDICATED_USAGE} (0x{st:08X})"));
                    }
                    let items = std::slice::from_raw_parts(items, count as usize);
                    let mut sum = 0u64;
                    for it in items {
                        // 0 = valid data, 1 = new data.
                        if it.FmtValue.CStatus > 1 || it.szName.is_null() {
                            continue;
                        }
                        let mut len = 0;
                        while len < 256 && *it.szName.add(len) != 0 {
                            len += 1;
                        }
                        let name = std::slice::from_raw_parts(it.szName, len);
                        if pid_of_instance(name).is_some_and(|p| pids.contains(&p)) {
                            sum += it.FmtValue.Anonymous.largeValue.max(0) as u64;
                        }
                    }
                    return Ok(sum);
                }
            }
        }
    }

    impl Drop for GpuCounters {
        fn drop(&mut self) {
            // SAFETY: the query is open and closed once.
            unsafe {
                PdhCloseQuery(self.query);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::pid_of_instance;

    fn w(s: &str) -> Vec<u16> {
        s.encode_utf16().collect()
    }

    #[test]
    fn the_pid_comes_from_the_instance_name() {
        assert_eq!(
            pid_of_instance(&w("pid_1234_luid_0x00000000_0x0000D1A5_phys_0")),
            Some(1234)
        );
        assert_eq!(pid_of_instance(&w("pid_7")), Some(7));
        assert_eq!(pid_of_instance(&w("pid__luid")), None);
        assert_eq!(pid_of_instance(&w("pid_12x_luid")), None);
        assert_eq!(pid_of_instance(&w("luid_0x0_pid_5")), None);
        assert_eq!(pid_of_instance(&w("_Total")), None);
        assert_eq!(pid_of_instance(&w("pid_99999999999_luid")), None);
    }
}
