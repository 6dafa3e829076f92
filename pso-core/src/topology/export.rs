//! Exports of the registry: the topology model, Graphviz DOT and Mermaid.
//!
//! Output is deterministic: systems in registration order, relations oldest
//! first, tiers in order of first appearance.

use std::fmt::Write;

use super::{SystemDecl, Topology};
use crate::model::EdgeKind;
use crate::registry::Registry;

/// The registry as a topology (relations inline on their systems).
pub(crate) fn to_topology(reg: &Registry) -> Topology {
    let mut systems = Vec::with_capacity(reg.len());
    for idx in reg.indices() {
        let n = reg.node(idx);
        let names = |kind| {
            reg.out(idx, kind)
                .into_iter()
                .map(|o| reg.node(o).name.to_string())
                .collect::<Vec<_>>()
        };
        systems.push(SystemDecl {
            name: n.name.to_string(),
            tier: n.info.tier.clone(),
            tags: n.info.tags.clone(),
            priority: n.info.priority,
            resources: n.info.resources.clone(),
            requires: names(EdgeKind::Requires),
            wants: names(EdgeKind::Wants),
            after: names(EdgeKind::After),
            conflicts: names(EdgeKind::Conflicts),
            interacts: names(EdgeKind::Interacts),
            timeout_ms: n.info.timeout.map(|d| d.as_millis() as u64),
            concurrency: n.slots.limit(),
            pinned: n.slots.pinned(),
        });
    }
    Topology {
        systems,
        edges: Vec::new(),
    }
}

fn tiers(reg: &Registry) -> Vec<Option<String>> {
    let mut tiers: Vec<Option<String>> = Vec::new();
    for idx in reg.indices() {
        let t = reg.node(idx).info.tier.clone();
        if !tiers.contains(&t) {
            tiers.push(t);
        }
    }
    tiers
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Graphviz DOT: one cluster per tier; edge style by kind.
pub(crate) fn to_dot(reg: &Registry) -> String {
    let mut out = String::from(
        "digraph pso {\n  rankdir=LR;\n  node [shape=box, style=rounded, fontname=\"Helvetica\"];\n",
    );
    for (t, tier) in tiers(reg).iter().enumerate() {
        let members = reg.indices().filter(|&i| &reg.node(i).info.tier == tier);
        match tier {
            Some(name) => {
                let _ = writeln!(
                    out,
                    "  subgraph cluster_{t} {{\n    label=\"{}\";",
                    escape(name)
                );
                for i in members {
                    let _ = writeln!(out, "    \"{}\";", escape(&reg.node(i).name));
                }
                out.push_str("  }\n");
            }
            None => {
                for i in members {
                    let _ = writeln!(out, "  \"{}\";", escape(&reg.node(i).name));
                }
            }
        }
    }
    for e in reg.edge_specs() {
        let style = match e.kind {
            EdgeKind::Requires => "label=\"requires\", style=bold",
            EdgeKind::Wants => "label=\"wants\"",
            EdgeKind::After => "label=\"after\", style=dashed",
            EdgeKind::Conflicts => {
                "label=\"conflicts\", color=red, dir=both, arrowhead=tee, arrowtail=tee"
            }
            EdgeKind::Interacts => "style=dotted, color=gray40, dir=none",
        };
        let _ = writeln!(
            out,
            "  \"{}\" -> \"{}\" [{style}];",
            escape(&e.from),
            escape(&e.to)
        );
    }
    out.push_str("}\n");
    out
}

/// A Mermaid flowchart: one subgraph per tier; arrows by kind
/// (`==>` requires, `-->` wants, `-.->` after, `x--x` conflicts, `-.-` interacts).
pub(crate) fn to_mermaid(reg: &Registry) -> String {
    let mut out = String::from(
        "flowchart LR\n  %% ==> requires, --> wants, -.->|after| after, x--x conflicts, -.- interacts\n",
    );
    let id = |name: &str| -> String {
        // Names are [A-Za-z0-9_-]; Mermaid ids must not contain '-'. The
        // mapping '_' -> "__", '-' -> "_h" is injective.
        format!("s_{}", name.replace('_', "__").replace('-', "_h"))
    };
    for (t, tier) in tiers(reg).iter().enumerate() {
        let members: Vec<_> = reg
            .indices()
            .filter(|&i| &reg.node(i).info.tier == tier)
            .collect();
        let indent = if tier.is_some() { "    " } else { "  " };
        if let Some(name) = tier {
            let _ = writeln!(out, "  subgraph tier{t}[\"{}\"]", name.replace('"', "'"));
        }
        for i in members {
            let name = &reg.node(i).name;
            let _ = writeln!(out, "{indent}{}[\"{name}\"]", id(name));
        }
        if tier.is_some() {
            out.push_str("  end\n");
        }
    }
    for e in reg.edge_specs() {
        let arrow = match e.kind {
            EdgeKind::Requires => "==>",
            EdgeKind::Wants => "-->",
            EdgeKind::After => "-.->|after|",
            EdgeKind::Conflicts => "x--x",
            EdgeKind::Interacts => "-.-",
        };
        let _ = writeln!(out, "  {} {arrow} {}", id(&e.from), id(&e.to));
    }
    out
}
