//! Limit tuning: what past generations used, how many a limit would have stopped, and a
//! suggested value.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct LimitStats {
    pub limit: String,
    pub values: Vec<f64>,
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub max: Option<f64>,
    pub would_stop: u32,
    pub suggested: Option<f64>,
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    Some(sorted[rank.min(sorted.len()) - 1])
}

/// A limit that would have stopped none of the past generations, with headroom, in friendly
/// units: whole minutes for durations, 256 MiB steps for sizes, 25 % steps for CPU.
pub fn suggest(kind: &str, sorted: &[f64]) -> Option<f64> {
    let p99 = percentile(sorted, 99.0)?;
    let max = *sorted.last()?;
    let raw = (p99 * 1.5).max(max * 1.2);
    let step = match kind {
        "timeout" | "stall" => 60.0,
        "memory" | "vram" | "swap" => (256u64 << 20) as f64,
        _ => 25.0,
    };
    Some((raw / step).ceil().max(1.0) * step)
}

pub fn stats(kind: &str, mut values: Vec<f64>, proposed: Option<f64>) -> LimitStats {
    values.retain(|v| v.is_finite());
    let mut sorted = values.clone();
    sorted.sort_by(|a, b| a.total_cmp(b));
    LimitStats {
        limit: kind.to_string(),
        p50: percentile(&sorted, 50.0),
        p95: percentile(&sorted, 95.0),
        max: sorted.last().copied(),
        would_stop: proposed
            .map(|p| sorted.iter().filter(|v| **v > p).count() as u32)
            .unwrap_or(0),
        suggested: suggest(kind, &sorted),
        values,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_suggestions() {
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[5.0], 95.0), Some(5.0));
        let v: Vec<f64> = (1..=100).map(|i| i as f64).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 95.0), Some(95.0));
        // 99 * 1.5 = 148.5 -> 3 minutes.
        assert_eq!(suggest("timeout", &v), Some(180.0));
        let s = stats("timeout", vec![30.0, 40.0, 300.0], Some(100.0));
        assert_eq!(s.would_stop, 1);
        assert_eq!(s.max, Some(300.0));
        assert_eq!(stats("memory", vec![], None).suggested, None);
        assert_eq!(
            suggest("memory", &[1000.0 * 1048576.0]),
            Some((1536u64 << 20) as f64)
        );
    }
}
