//! Sample history for the graphs: full resolution for the last hour, then one-minute buckets
//! (min/avg/max) for 24 hours. Both rings are allocated once; `push` never allocates.
//!
//! Memory: a full-resolution point is 48 bytes and there are at most 3,600 of them (one a
//! second: faster samples are merged into their second); a bucket is 104 bytes and there are
//! 1,440. Together about 320 KiB, whatever the sampling rate or uptime.

use serde::{Deserialize, Serialize};

/// One sample, as the history keeps it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub ts_ms: i64,
    pub cpu_percent: f32,
    pub ram_bytes: f64,
    pub gpu_util: Option<f32>,
    pub vram_bytes: Option<f64>,
}

/// What the webview receives: `[min, avg, max]` per series (docs/ipc.md).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct HistoryPoint {
    pub ts_ms: i64,
    pub cpu: [f64; 3],
    pub ram: [f64; 3],
    pub gpu: Option<[f64; 3]>,
    pub vram: Option<[f64; 3]>,
}

pub const FULL_RES_POINTS: usize = 3600;
pub const BUCKET_MS: i64 = 60_000;
const BUCKETS: usize = 24 * 60;
const FULL_RES_MS: i64 = 3_600_000;

#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Agg {
    min: f64,
    max: f64,
    sum: f64,
    n: u32,
}

impl Agg {
    fn add(&mut self, v: f64) {
        if self.n == 0 {
            self.min = v;
            self.max = v;
        } else {
            self.min = self.min.min(v);
            self.max = self.max.max(v);
        }
        self.sum += v;
        self.n += 1;
    }
    fn merge(&mut self, o: &Agg) {
        if o.n == 0 {
            return;
        }
        if self.n == 0 {
            *self = *o;
            return;
        }
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
        self.sum += o.sum;
        self.n += o.n;
    }
    fn triple(&self) -> Option<[f64; 3]> {
        (self.n > 0).then(|| [self.min, self.sum / self.n as f64, self.max])
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Bucket {
    start_ms: i64,
    cpu: Agg,
    ram: Agg,
    gpu: Agg,
    vram: Agg,
}

impl Bucket {
    fn add(&mut self, p: &Point) {
        self.cpu.add(p.cpu_percent as f64);
        self.ram.add(p.ram_bytes);
        if let Some(g) = p.gpu_util {
            self.gpu.add(g as f64);
        }
        if let Some(v) = p.vram_bytes {
            self.vram.add(v);
        }
    }
    fn merge(&mut self, o: &Bucket) {
        self.cpu.merge(&o.cpu);
        self.ram.merge(&o.ram);
        self.gpu.merge(&o.gpu);
        self.vram.merge(&o.vram);
    }
    fn point(&self, ts: i64) -> HistoryPoint {
        HistoryPoint {
            ts_ms: ts,
            cpu: self.cpu.triple().unwrap_or([0.0; 3]),
            ram: self.ram.triple().unwrap_or([0.0; 3]),
            gpu: self.gpu.triple(),
            vram: self.vram.triple(),
        }
    }
}

/// A fixed-capacity ring.
#[derive(Debug)]
struct Ring<T> {
    items: Vec<T>,
    head: usize,
    len: usize,
}

impl<T: Copy + Default> Ring<T> {
    fn new(cap: usize) -> Self {
        Ring {
            items: vec![T::default(); cap],
            head: 0,
            len: 0,
        }
    }
    fn push(&mut self, v: T) {
        let cap = self.items.len();
        let idx = (self.head + self.len) % cap;
        self.items[idx] = v;
        if self.len == cap {
            self.head = (self.head + 1) % cap;
        } else {
            self.len += 1;
        }
    }
    fn last_mut(&mut self) -> Option<&mut T> {
        if self.len == 0 {
            return None;
        }
        let cap = self.items.len();
        Some(&mut self.items[(self.head + self.len - 1) % cap])
    }
    fn iter(&self) -> impl Iterator<Item = &T> {
        let cap = self.items.len();
        (0..self.len).map(move |i| &self.items[(self.head + i) % cap])
    }
}

#[derive(Debug)]
pub struct SampleHistory {
    full: Ring<(Point, u32)>,
    buckets: Ring<Bucket>,
}

impl Default for SampleHistory {
    fn default() -> Self {
        Self::new()
    }
}

/// Longest answer of `query`: buckets are merged to stay under it.
pub const MAX_POINTS: usize = 1500;

impl SampleHistory {
    pub fn new() -> Self {
        SampleHistory {
            full: Ring::new(FULL_RES_POINTS),
            buckets: Ring::new(BUCKETS),
        }
    }

    /// Bytes held, whatever has been pushed.
    pub fn memory_bytes(&self) -> usize {
        self.full.items.capacity() * std::mem::size_of::<(Point, u32)>()
            + self.buckets.items.capacity() * std::mem::size_of::<Bucket>()
    }

    pub fn len(&self) -> (usize, usize) {
        (self.full.len, self.buckets.len)
    }

    pub fn is_empty(&self) -> bool {
        self.full.len == 0
    }

    pub fn push(&mut self, p: Point) {
        // Several samples in one second (fast sampling during a generation) share a slot.
        match self.full.last_mut() {
            Some((last, n)) if last.ts_ms / 1000 == p.ts_ms / 1000 => {
                let k = *n as f64;
                last.cpu_percent =
                    ((last.cpu_percent as f64 * k + p.cpu_percent as f64) / (k + 1.0)) as f32;
                last.ram_bytes = last.ram_bytes.max(p.ram_bytes);
                last.gpu_util = match (last.gpu_util, p.gpu_util) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b),
                };
                last.vram_bytes = match (last.vram_bytes, p.vram_bytes) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b),
                };
                last.ts_ms = p.ts_ms;
                *n += 1;
            }
            _ => self.full.push((p, 1)),
        }
        let start = p.ts_ms - p.ts_ms.rem_euclid(BUCKET_MS);
        match self.buckets.last_mut() {
            Some(b) if b.start_ms == start => b.add(&p),
            _ => {
                let mut b = Bucket {
                    start_ms: start,
                    ..Default::default()
                };
                b.add(&p);
                self.buckets.push(b);
            }
        }
    }

    /// Points of the last `range_s` seconds before `now_ms`, oldest first: full resolution for
    /// ranges within the last hour, buckets beyond.
    pub fn query(&self, range_s: u64, now_ms: i64) -> Vec<HistoryPoint> {
        let from = now_ms - range_s as i64 * 1000;
        if range_s as i64 * 1000 <= FULL_RES_MS {
            let pts: Vec<&Point> = self
                .full
                .iter()
                .map(|(p, _)| p)
                .filter(|p| p.ts_ms >= from)
                .collect();
            let step = pts.len().div_ceil(MAX_POINTS).max(1);
            return pts
                .chunks(step)
                .map(|c| {
                    let mut b = Bucket::default();
                    for p in c {
                        b.add(p);
                    }
                    b.point(c.last().map(|p| p.ts_ms).unwrap_or(0))
                })
                .collect();
        }
        let bs: Vec<&Bucket> = self
            .buckets
            .iter()
            .filter(|b| b.start_ms + BUCKET_MS > from)
            .collect();
        let step = bs.len().div_ceil(MAX_POINTS).max(1);
        bs.chunks(step)
            .map(|c| {
                let mut m = *c[0];
                for b in &c[1..] {
                    m.merge(b);
                }
                m.point(c[0].start_ms)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pt(ts_ms: i64, cpu: f32) -> Point {
        Point {
            ts_ms,
            cpu_percent: cpu,
            ram_bytes: cpu as f64 * 10.0,
            gpu_util: None,
            vram_bytes: Some(1.0),
        }
    }

    #[test]
    fn a_simulated_day_stays_within_its_memory() {
        let mut h = SampleHistory::new();
        let mem = h.memory_bytes();
        assert!(mem < 400 * 1024, "{mem} bytes");
        let t0 = 1_700_000_000_000i64;
        for s in 0..86_400i64 {
            h.push(pt(t0 + s * 1000, (s % 100) as f32));
        }
        // A 10 Hz burst for a minute.
        for i in 0..600i64 {
            h.push(pt(t0 + 86_400_000 + i * 100, 50.0));
        }
        assert_eq!(h.memory_bytes(), mem, "nothing grew");
        assert_eq!(h.full.items.capacity(), FULL_RES_POINTS);
        let (full, buckets) = h.len();
        assert_eq!(full, FULL_RES_POINTS);
        assert_eq!(buckets, BUCKETS);
    }

    #[test]
    fn buckets_keep_min_avg_max() {
        let mut h = SampleHistory::new();
        let t0 = 0i64;
        for (i, v) in [10.0, 20.0, 60.0].iter().enumerate() {
            h.push(pt(t0 + i as i64 * 1000, *v));
        }
        let q = h.query(86_400, t0 + 3000);
        assert_eq!(q.len(), 1);
        assert_eq!(q[0].cpu, [10.0, 30.0, 60.0]);
        let full = h.query(60, t0 + 3000);
        assert_eq!(full.len(), 3);
        assert_eq!(full[2].cpu, [60.0, 60.0, 60.0]);
    }

    #[test]
    fn fast_samples_share_their_second() {
        let mut h = SampleHistory::new();
        for i in 0..10 {
            h.push(pt(5000 + i * 100, i as f32));
        }
        assert_eq!(h.len().0, 1);
        let q = h.query(60, 6000);
        assert_eq!(q[0].cpu[1], 4.5);
    }
}
