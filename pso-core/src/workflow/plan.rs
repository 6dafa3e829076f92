//! Ordering of ready steps: priority class first, then estimated remaining
//! critical path (the step's own estimate plus the longest estimated chain
//! after it), from durations learned in earlier runs.
//!
//! * [`Estimates`] keeps an exponentially weighted mean and variance of the
//!   measured duration of each `system.operation`, shared by all workflows of
//!   an orchestrator; each compiled workflow also keeps one estimate per step.
//! * A [`RunPlan`] (critical path per step and the order of the roots) is
//!   computed in O(V + E) and cached in the workflow; it is recomputed only
//!   when the workflow's estimates changed since.

use std::collections::HashMap;
use std::time::Duration;

use crate::sync::{Arc, Mutex, Ordering};
use crate::workflow::WorkflowInner;

/// How ready steps of one priority class are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SchedulingPolicy {
    /// Longest estimated remaining critical path first (the default).
    #[default]
    CriticalPath,
    /// Declaration order: roots in the order they were added; successors in
    /// the order their edges were declared.
    Fifo,
}

impl SchedulingPolicy {
    /// `"critical_path"` or `"fifo"`.
    pub fn name(self) -> &'static str {
        match self {
            SchedulingPolicy::CriticalPath => "critical_path",
            SchedulingPolicy::Fifo => "fifo",
        }
    }
}

impl std::str::FromStr for SchedulingPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "critical_path" => Ok(SchedulingPolicy::CriticalPath),
            "fifo" => Ok(SchedulingPolicy::Fifo),
            _ => Err(format!(
                "unknown scheduling policy '{s}' (expected 'critical_path' or 'fifo')"
            )),
        }
    }
}

/// A learned duration estimate.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Estimate {
    /// `system.operation`.
    pub key: String,
    /// Exponentially weighted mean.
    pub mean: Duration,
    /// Exponentially weighted standard deviation.
    pub stddev: Duration,
    /// Number of measurements folded in.
    pub samples: u64,
}

/// An exponentially weighted mean and variance, with its sample count.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Ewma {
    pub(crate) mean: f64,
    pub(crate) var: f64,
    pub(crate) n: u64,
}

impl Ewma {
    pub(crate) fn from_parts(mean: f64, var: f64, n: u64) -> Self {
        Ewma { mean, var, n }
    }

    fn add(&mut self, x: f64, alpha: f64) {
        if self.n == 0 {
            self.mean = x;
            self.var = 0.0;
        } else {
            let d = x - self.mean;
            self.mean += alpha * d;
            self.var = (1.0 - alpha) * (self.var + alpha * d * d);
        }
        self.n += 1;
    }
}

/// Shared per-operation duration estimates.
#[derive(Debug)]
pub(crate) struct Estimates {
    alpha: f64,
    map: Mutex<HashMap<Arc<str>, Ewma>>,
}

impl Estimates {
    pub(crate) fn new(alpha: f64) -> Self {
        Estimates {
            alpha,
            map: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn alpha(&self) -> f64 {
        self.alpha
    }

    /// Mean estimate in ns, if there is any sample.
    pub(crate) fn mean_ns(&self, key: &str) -> Option<u64> {
        self.map
            .lock()
            .get(key)
            .filter(|e| e.n > 0)
            .map(|e| e.mean as u64)
    }

    /// Folds in measurements `(key, ns)` (a key is cloned only when new).
    pub(crate) fn record<'k>(&self, samples: impl IntoIterator<Item = (&'k Arc<str>, u64)>) {
        let mut map = self.map.lock();
        for (k, ns) in samples {
            match map.get_mut(&**k) {
                Some(e) => e.add(ns as f64, self.alpha),
                None => map.entry(k.clone()).or_default().add(ns as f64, self.alpha),
            }
        }
    }

    /// The raw estimates (for saving them).
    pub(crate) fn raw(&self) -> Vec<(Arc<str>, Ewma)> {
        self.map
            .lock()
            .iter()
            .map(|(k, e)| (k.clone(), *e))
            .collect()
    }

    /// Loads saved estimates; a key measured since keeps the one with more
    /// samples.
    pub(crate) fn load(&self, items: Vec<(Arc<str>, Ewma)>) {
        let mut map = self.map.lock();
        for (k, e) in items {
            let slot = map.entry(k).or_default();
            if e.n > slot.n {
                *slot = e;
            }
        }
    }

    /// Every estimate, sorted by key.
    pub(crate) fn snapshot(&self) -> Vec<Estimate> {
        let map = self.map.lock();
        let mut v: Vec<Estimate> = map
            .iter()
            .map(|(k, e)| Estimate {
                key: k.to_string(),
                mean: Duration::from_nanos(e.mean.max(0.0) as u64),
                stddev: Duration::from_nanos(e.var.max(0.0).sqrt() as u64),
                samples: e.n,
            })
            .collect();
        v.sort_by(|a, b| a.key.cmp(&b.key));
        v
    }
}

/// Per-step priorities for one run.
#[derive(Debug)]
pub(crate) struct RunPlan {
    pub(crate) version: u64,
    pub(crate) policy: SchedulingPolicy,
    /// Estimated remaining critical path of each step, ns.
    pub(crate) cp: Box<[u64]>,
    /// Root steps, best first.
    pub(crate) roots: Box<[u32]>,
    /// `roots[lo..hi]` ranges of one priority class each.
    pub(crate) root_groups: Box<[(usize, usize)]>,
}

impl RunPlan {
    /// Sort key of a ready step: smaller runs first.
    #[inline]
    pub(crate) fn key(&self, wf: &WorkflowInner, i: u32) -> (u8, u64, u32) {
        let class = wf.steps[i as usize].class;
        match self.policy {
            SchedulingPolicy::CriticalPath => (class, u64::MAX - coarse(self.cp[i as usize]), i),
            SchedulingPolicy::Fifo => (class, 0, i),
        }
    }
}

/// Remaining critical paths shorter than this are all alike to the order.
const CP_FLOOR_NS: u64 = 1 << 10;

/// A critical path as the order sees it: 0 below [`CP_FLOOR_NS`], else
/// rounded down to its top 3 significant bits (buckets 12.5-25 % wide).
/// Measured durations are noisy; ordering by their exact values shuffled
/// steps of equal work at random on every re-plan, and the permuted order
/// made each step a cache miss (independent 2^16 tasks: 40 ns per task with
/// timing off, 220 with timing on). Steps within one bucket keep index order.
#[inline]
pub(super) fn coarse(cp: u64) -> u64 {
    if cp < CP_FLOOR_NS {
        return 0;
    }
    let shift = 63 - cp.leading_zeros() - 2;
    (cp >> shift) << shift
}

/// The workflow's current plan, recomputed if its estimates changed.
pub(crate) fn current(wf: &WorkflowInner, policy: SchedulingPolicy) -> Arc<RunPlan> {
    let version = wf.est_version.load(Ordering::Acquire);
    let mut cached = wf.plan.lock();
    if let Some(p) = cached.as_ref()
        && p.version == version
        && p.policy == policy
    {
        return p.clone();
    }
    let n = wf.steps.len();
    let mut cp = vec![0u64; n].into_boxed_slice();
    if policy == SchedulingPolicy::CriticalPath {
        for &i in wf.topo.iter().rev() {
            let tail = wf
                .succ_of(i)
                .iter()
                .map(|&s| cp[s as usize])
                .max()
                .unwrap_or(0);
            cp[i as usize] = wf.est[i as usize]
                .load(Ordering::Relaxed)
                .saturating_add(tail);
        }
    }
    let mut plan = RunPlan {
        version,
        policy,
        cp,
        roots: Box::new([]),
        root_groups: Box::new([]),
    };
    let mut roots: Vec<u32> = (0..n as u32)
        .filter(|&i| wf.pred_count[i as usize] == 0)
        .collect();
    roots.sort_by_key(|&i| plan.key(wf, i));
    let mut groups = Vec::new();
    let mut lo = 0;
    while lo < roots.len() {
        let class = wf.steps[roots[lo] as usize].class;
        let hi = lo
            + roots[lo..]
                .iter()
                .take_while(|&&r| wf.steps[r as usize].class == class)
                .count();
        groups.push((lo, hi));
        lo = hi;
    }
    plan.roots = roots.into_boxed_slice();
    plan.root_groups = groups.into_boxed_slice();
    let plan = Arc::new(plan);
    *cached = Some(plan.clone());
    plan
}

/// A cycle among the nodes with `left[i] > 0` (those Kahn's algorithm could
/// not release): step indices in order, the first repeated at the end.
pub(crate) fn find_cycle(left: &[u32], succ_start: &[u32], succ: &[u32]) -> Vec<u32> {
    const WHITE: u8 = 0;
    const GREY: u8 = 1;
    const BLACK: u8 = 2;
    let n = left.len();
    let mut colour = vec![WHITE; n];
    for start in (0..n).filter(|&i| left[i] > 0) {
        if colour[start] != WHITE {
            continue;
        }
        let mut stack: Vec<(u32, u32)> = vec![(start as u32, succ_start[start])];
        colour[start] = GREY;
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            let end = succ_start[node as usize + 1];
            if *next == end {
                colour[node as usize] = BLACK;
                stack.pop();
                continue;
            }
            let s = succ[*next as usize];
            *next += 1;
            if left[s as usize] == 0 {
                continue;
            }
            match colour[s as usize] {
                WHITE => {
                    colour[s as usize] = GREY;
                    stack.push((s, succ_start[s as usize]));
                }
                GREY => {
                    let from = stack
                        .iter()
                        .position(|f| f.0 == s)
                        .expect("grey node is on the stack");
                    let mut path: Vec<u32> = stack[from..].iter().map(|f| f.0).collect();
                    path.push(s);
                    return path;
                }
                _ => {}
            }
        }
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ewma_tracks_mean_and_spread() {
        let e = Estimates::new(0.5);
        let k: Arc<str> = Arc::from("s.op");
        e.record([(&k, 100), (&k, 200)]);
        let snap = e.snapshot();
        assert_eq!(snap[0].samples, 2);
        assert_eq!(snap[0].mean, Duration::from_nanos(150));
        assert!(snap[0].stddev > Duration::ZERO);
        assert_eq!(e.mean_ns("s.op"), Some(150));
        assert_eq!(e.mean_ns("x"), None);
    }

    #[test]
    fn coarse_critical_paths_ignore_noise_and_keep_real_differences() {
        // Below the floor everything is alike.
        assert_eq!(coarse(0), 0);
        assert_eq!(coarse(CP_FLOOR_NS - 1), 0);
        // Within a bucket (top 3 bits) alike, across buckets ordered.
        assert_eq!(coarse(1024), 1024);
        assert_eq!(coarse(1279), 1024);
        assert_eq!(coarse(1280), 1280);
        assert_eq!(coarse(1_000_000), coarse(1_040_000));
        assert!(coarse(2_000_000) > coarse(1_000_000));
        assert!(coarse(u64::MAX) > coarse(u64::MAX / 2));
        // Monotonic, and never more than 25 % below the value.
        let mut last = 0;
        for cp in (0..40)
            .map(|k| 1u64 << k)
            .flat_map(|p| [p, p + p / 3, p + p / 2])
        {
            let c = coarse(cp);
            assert!(c >= last && c <= cp, "{cp} -> {c}");
            assert!(
                cp < CP_FLOOR_NS || c as f64 >= cp as f64 * 0.75,
                "{cp} -> {c}"
            );
            last = c;
        }
    }

    #[test]
    fn finds_cycle_path() {
        // 0 -> 1 -> 2 -> 1, 2 -> 3
        let succ_start = [0, 1, 2, 4, 4];
        let succ = [1, 2, 1, 3];
        let left = [0, 1, 1, 1];
        assert_eq!(find_cycle(&left, &succ_start, &succ), vec![1, 2, 1]);
    }
}
