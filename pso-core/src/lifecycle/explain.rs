//! "Why is X not active?" — an explanation built from the current registry.
//!
//! The explanation follows `requires` edges to the first Failed system on a
//! requirement chain (the likeliest reason), then conflicts with an Active
//! system, then the system's own last error or last transition.

#![forbid(unsafe_code)]

use std::collections::HashSet;

use petgraph::stable_graph::NodeIndex;

use super::fmt_time;
use super::state::SystemState;
use crate::model::EdgeKind;
use crate::registry::Registry;

/// Explains the state of `idx` in one or two sentences.
pub(crate) fn why_inactive(reg: &Registry, idx: NodeIndex) -> String {
    let node = reg.node(idx);
    let name = &*node.name;
    let life = &node.life;
    let since = fmt_time(life.since);
    match &life.state {
        SystemState::Active => format!("{name} is Active (since {since}: {})", life.reason),
        SystemState::Activating => {
            format!("{name} is Activating since {since}: its activate handler is running")
        }
        SystemState::Deactivating => {
            format!("{name} is Deactivating since {since}: its deactivate handler is running")
        }
        SystemState::Failed { reason } => format!("{name} is Failed since {since}: {reason}"),
        SystemState::GaveUp { reason } => format!(
            "{name} is GaveUp since {since}: its supervisor stopped restarting it ({reason}); activate it by hand"
        ),
        state @ (SystemState::Registered | SystemState::Inactive) => {
            let state = state.name();
            if let Some(chain) = failed_requirement(reg, idx) {
                let failed = reg.node(*chain.last().expect("chain is not empty"));
                let reason = match &failed.life.state {
                    SystemState::Failed { reason } => reason.clone(),
                    _ => String::new(),
                };
                let mut s = format!("{name} is {state}: it requires ");
                for (k, &c) in chain.iter().enumerate() {
                    if k > 0 {
                        s.push_str(", which requires ");
                    }
                    s.push_str(&reg.node(c).name);
                }
                s.push_str(&format!(
                    ", which Failed at {} with '{reason}'",
                    fmt_time(failed.life.since)
                ));
                return s;
            }
            if let Some(other) = reg
                .conflicting(idx)
                .into_iter()
                .find(|&o| reg.node(o).life.state.is_active())
            {
                return format!(
                    "{name} is {state}: it conflicts with {}, which is Active",
                    reg.node(other).name
                );
            }
            if let Some(err) = &life.last_error {
                return format!("{name} is {state}: {err}");
            }
            match life.state {
                SystemState::Registered => {
                    format!("{name} is Registered: it has not been activated yet")
                }
                _ => {
                    let why = life
                        .history
                        .iter()
                        .rev()
                        .find(|t| t.to == SystemState::Deactivating)
                        .map(|t| t.reason.clone())
                        .unwrap_or_else(|| life.reason.clone());
                    format!("{name} is Inactive since {since} ({why})")
                }
            }
        }
    }
}

/// A chain of `requires` edges from `idx` (excluded) to a Failed system.
fn failed_requirement(reg: &Registry, idx: NodeIndex) -> Option<Vec<NodeIndex>> {
    fn dfs(
        reg: &Registry,
        n: NodeIndex,
        seen: &mut HashSet<NodeIndex>,
        path: &mut Vec<NodeIndex>,
    ) -> bool {
        for dep in reg.out(n, EdgeKind::Requires) {
            if !seen.insert(dep) {
                continue;
            }
            path.push(dep);
            let state = &reg.node(dep).life.state;
            if state.is_failed() || (!state.is_active() && dfs(reg, dep, seen, path)) {
                return true;
            }
            path.pop();
        }
        false
    }
    let mut seen = HashSet::from([idx]);
    let mut path = Vec::new();
    dfs(reg, idx, &mut seen, &mut path).then_some(path)
}
