//! The Progressive Engine: the 23 systems of the PSO seed specification,
//! loaded from `examples/progressive-engine.toml`, activated in dependency
//! order on the worker pool, then taken through a failure and its explanation;
//! then a few hundred release workflows teach PSO where coordination time
//! goes, and it applies what it recommends (`learning.rs`).
//!
//! Run: `cargo run --release -p pso-core --example progressive_engine`
//! (optional argument: the directory for the Mermaid and DOT files; default
//! `target/progressive-engine`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

mod learning;

use pso_core::{
    EdgeKind, ExportFormat, HandlerError, Handlers, LifecycleError, Orchestrator, SystemOutcome,
};

const TOPOLOGY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../examples/progressive-engine.toml"
);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../target/progressive-engine"
            ))
        });

    let orch = Orchestrator::builder()
        .hub_config(learning::hub_config())
        .build()?;
    let added = orch.load_topology(TOPOLOGY)?;
    let status = orch.system_status();
    let mut edges: BTreeMap<EdgeKind, usize> = BTreeMap::new();
    for s in &status {
        *edges.entry(EdgeKind::Requires).or_default() += s.requires.len();
        *edges.entry(EdgeKind::Wants).or_default() += s.wants.len();
    }
    let interacts = orch
        .topology()
        .systems
        .iter()
        .map(|s| s.interacts.len())
        .sum::<usize>();
    println!(
        "Loaded {added} systems from examples/progressive-engine.toml: {} requires, {} wants, {interacts} interacts edges; {} workers.",
        edges[&EdgeKind::Requires],
        edges[&EdgeKind::Wants],
        orch.workers()
    );

    // Handlers that do a little simulated work. PSec's activation can be made
    // to fail, to show what a failing requirement does.
    let psec_broken = Arc::new(AtomicBool::new(false));
    for s in &status {
        let work =
            Duration::from_millis(2 + (s.resources.get("cpu").copied().unwrap_or(100) / 100));
        let broken = psec_broken.clone();
        let is_psec = s.name == "PSec";
        orch.set_handlers(
            &s.name,
            Handlers::new()
                .on_activate(move |_ctx| {
                    std::thread::sleep(work);
                    if is_psec && broken.load(Ordering::Relaxed) {
                        return Err(HandlerError::failed("certificate store unreachable"));
                    }
                    Ok(())
                })
                .on_deactivate(move |_ctx| {
                    std::thread::sleep(work / 2);
                    Ok(())
                }),
        )?;
    }

    let plan = orch.plan("PBOS")?;
    println!("\nPlan for PBOS (build operations), without running anything:");
    for (i, level) in plan.levels.iter().enumerate() {
        println!("  level {i}: {}", level.join(", "));
    }

    println!("\nActivating all 23 systems, level by level, in parallel within a level:");
    let report = orch.activate_all()?;
    print_outcomes(&report.outcomes);
    let serial: Duration = report.outcomes.iter().map(|o| o.ran).sum();
    println!(
        "  {} activated in {:.1} ms wall time ({:.1} ms of handler work).",
        report.activated().len(),
        ms(report.elapsed),
        ms(serial)
    );

    println!("\nStatus:");
    println!(
        "  {:<6} {:<15} {:<11} {:<7} since",
        "system", "tier", "priority", "state"
    );
    for s in orch.system_status() {
        println!(
            "  {:<6} {:<15} {:<11} {:<7} {}",
            s.name,
            s.tier.unwrap_or_default(),
            s.priority,
            s.state.name(),
            humantime::format_rfc3339_millis(s.since)
        );
    }

    println!("\nDeactivating PSec stops what requires it first:");
    let report = orch.deactivate_system("PSec")?;
    println!("  order: {}", report.deactivated().join(" -> "));

    println!("\nPSec's certificate store goes away; activating PBOS again:");
    psec_broken.store(true, Ordering::Relaxed);
    match orch.activate_system("PBOS") {
        Err(e @ LifecycleError::ActivationFailed { .. }) => println!("  error: {e}"),
        other => println!("  unexpected: {other:?}"),
    }
    println!("  why_inactive(PBOS): {}", orch.why_inactive("PBOS")?);

    psec_broken.store(false, Ordering::Relaxed);
    let report = orch.activate_system("PBOS")?;
    println!(
        "\nPSec recovers; activate_system(PBOS) again: {}",
        report.activated().join(", ")
    );

    orch.activate_all()?;
    learning::run(&orch)?;

    std::fs::create_dir_all(&out_dir)?;
    let out_dir = out_dir.canonicalize()?;
    let mermaid = out_dir.join("progressive-engine.mmd");
    let dot = out_dir.join("progressive-engine.dot");
    std::fs::write(&mermaid, orch.export(ExportFormat::Mermaid))?;
    std::fs::write(&dot, orch.export(ExportFormat::Dot))?;
    println!("\nWrote {} and {}.", mermaid.display(), dot.display());

    let report = orch.deactivate_all()?;
    println!(
        "Deactivated all {} active systems, dependents first.",
        report.deactivated().len()
    );
    orch.close();
    Ok(())
}

fn print_outcomes(outcomes: &[SystemOutcome]) {
    println!(
        "  {:<5} {:<6} {:<10} {:>9} {:>9}",
        "level", "system", "outcome", "queued", "ran"
    );
    for o in outcomes {
        println!(
            "  {:<5} {:<6} {:<10} {:>6.2} ms {:>6.2} ms",
            o.level,
            o.system,
            o.outcome.name(),
            ms(o.queued),
            ms(o.ran)
        );
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
