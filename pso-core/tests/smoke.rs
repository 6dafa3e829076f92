//! Smoke test of the basic activate/deactivate path.
use pso_core::{Orchestrator, SystemSpec, SystemState};

#[test]
fn smoke() {
    let o = Orchestrator::new();
    o.register(SystemSpec::new("a")).unwrap();
    o.register(SystemSpec::new("b").requires("a").on_activate(|_| Ok(())))
        .unwrap();
    o.register(SystemSpec::new("c").requires("b").wants("a"))
        .unwrap();
    let r = o.activate_system("c").unwrap();
    assert_eq!(r.activated(), vec!["a", "b", "c"]);
    assert_eq!(o.status("c").unwrap().state, SystemState::Active);
    let r = o.deactivate_system("a").unwrap();
    assert_eq!(r.deactivated(), vec!["c", "b", "a"]);
    println!("{}", o.why_inactive("c").unwrap());
    println!("{}", o.export(pso_core::ExportFormat::Mermaid));
}
