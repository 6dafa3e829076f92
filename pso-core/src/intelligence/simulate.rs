//! List-scheduling simulation: the makespan a DAG with known step durations
//! would have on `workers` workers under a scheduling policy. Used to
//! predict what changing the policy would gain, from measured durations.
//! O((V + E) log V).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use crate::workflow::SchedulingPolicy;

/// A DAG in CSR form.
pub(crate) struct Dag<'a> {
    pub(crate) succ_start: &'a [u32],
    pub(crate) succ: &'a [u32],
    pub(crate) pred_count: &'a [u32],
}

impl Dag<'_> {
    fn succ_of(&self, i: usize) -> &[u32] {
        &self.succ[self.succ_start[i] as usize..self.succ_start[i + 1] as usize]
    }

    /// Longest path from each step to the end (inclusive), by `d`.
    pub(crate) fn critical_path(&self, d: &[u64]) -> Vec<u64> {
        let n = d.len();
        let order = self.topo();
        let mut cp = vec![0u64; n];
        for &i in order.iter().rev() {
            let tail = self
                .succ_of(i)
                .iter()
                .map(|&s| cp[s as usize])
                .max()
                .unwrap_or(0);
            cp[i] = d[i].saturating_add(tail);
        }
        cp
    }

    /// A topological order (Kahn, roots in index order).
    pub(crate) fn topo(&self) -> Vec<usize> {
        let n = self.pred_count.len();
        let mut left: Vec<u32> = self.pred_count.to_vec();
        let mut order: Vec<usize> = (0..n).filter(|&i| left[i] == 0).collect();
        let mut k = 0;
        while k < order.len() {
            let i = order[k];
            for &s in self.succ_of(i) {
                left[s as usize] -= 1;
                if left[s as usize] == 0 {
                    order.push(s as usize);
                }
            }
            k += 1;
        }
        order
    }
}

/// The simulated makespan (ns) of `dag` with durations `d` on `workers`.
pub(crate) fn makespan(dag: &Dag<'_>, d: &[u64], workers: usize, policy: SchedulingPolicy) -> u64 {
    let n = d.len();
    if n == 0 {
        return 0;
    }
    let workers = workers.max(1);
    let cp = match policy {
        SchedulingPolicy::CriticalPath => dag.critical_path(d),
        SchedulingPolicy::Fifo => Vec::new(),
    };
    let mut left: Vec<u32> = dag.pred_count.to_vec();
    let mut fifo: VecDeque<usize> = VecDeque::new();
    let mut best: BinaryHeap<(u64, Reverse<usize>)> = BinaryHeap::new();
    let push =
        |i: usize, fifo: &mut VecDeque<usize>, best: &mut BinaryHeap<(u64, Reverse<usize>)>| {
            match policy {
                SchedulingPolicy::Fifo => fifo.push_back(i),
                SchedulingPolicy::CriticalPath => best.push((cp[i], Reverse(i))),
            }
        };
    for i in (0..n).filter(|&i| left[i] == 0) {
        push(i, &mut fifo, &mut best);
    }
    // (finish time, step), earliest first.
    let mut running: BinaryHeap<Reverse<(u64, usize)>> = BinaryHeap::new();
    let mut now = 0u64;
    let mut done = 0;
    while done < n {
        while running.len() < workers {
            let next = match policy {
                SchedulingPolicy::Fifo => fifo.pop_front(),
                SchedulingPolicy::CriticalPath => best.pop().map(|(_, Reverse(i))| i),
            };
            let Some(i) = next else { break };
            running.push(Reverse((now.saturating_add(d[i]), i)));
        }
        let Some(Reverse((t, i))) = running.pop() else {
            break; // a cycle (cannot happen for a built workflow)
        };
        now = t;
        done += 1;
        for &s in dag.succ_of(i) {
            left[s as usize] -= 1;
            if left[s as usize] == 0 {
                push(s as usize, &mut fifo, &mut best);
            }
        }
    }
    now
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chain of `chain` steps of `long` beside `short_n` independent steps
    /// of `short`, declared short steps first.
    fn skewed(chain: usize, short_n: usize) -> (Vec<u32>, Vec<u32>, Vec<u32>) {
        let n = short_n + chain;
        let mut succ_start = vec![0u32];
        let mut succ = Vec::new();
        let mut pred = vec![0u32; n];
        for i in 0..n {
            if i >= short_n && i + 1 < n {
                succ.push(i as u32 + 1);
                pred[i + 1] = 1;
            }
            succ_start.push(succ.len() as u32);
        }
        (succ_start, succ, pred)
    }

    #[test]
    fn critical_path_first_beats_fifo_on_a_skewed_dag() {
        let (ss, s, p) = skewed(4, 8);
        let dag = Dag {
            succ_start: &ss,
            succ: &s,
            pred_count: &p,
        };
        let d = vec![10u64; 12];
        // FIFO runs the 8 short steps first (40 on 2 workers), then the
        // chain (40): 80. Critical path starts the chain at once: 40 + ...
        assert_eq!(makespan(&dag, &d, 2, SchedulingPolicy::Fifo), 80);
        assert_eq!(makespan(&dag, &d, 2, SchedulingPolicy::CriticalPath), 60);
        assert_eq!(makespan(&dag, &d, 1, SchedulingPolicy::Fifo), 120);
        assert_eq!(dag.critical_path(&d)[8], 40);
    }
}
