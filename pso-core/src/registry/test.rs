//! Unit tests for closures, levels and cycle search on the raw registry.

use super::*;
use crate::model::LifecycleAction;

fn reg(systems: Vec<SystemSpec>) -> Registry {
    let mut r = Registry::new();
    r.apply_batch(systems, Vec::new()).unwrap();
    r
}

fn names(r: &Registry, v: &[NodeIndex]) -> Vec<String> {
    v.iter().map(|&i| r.node(i).name.to_string()).collect()
}

fn levels(r: &Registry, set: &OrderedSet) -> Vec<Vec<String>> {
    set.levels
        .iter()
        .map(|l| {
            l.iter()
                .map(|&p| r.node(set.members[p as usize]).name.to_string())
                .collect()
        })
        .collect()
}

#[test]
fn after_orders_but_does_not_pull_in() {
    let r = reg(vec![
        SystemSpec::new("log"),
        SystemSpec::new("app").after("log"),
    ]);
    let app = r.index("app").unwrap();
    let closure = r.activation_closure(&[app]);
    assert_eq!(names(&r, &closure.members), ["app"]);
    let both: Vec<_> = r.indices().collect();
    let set = r.order(&both, LifecycleAction::Activate);
    assert_eq!(levels(&r, &set), [vec!["log"], vec!["app"]]);
    assert_eq!(set.succ_hard, [false], "after is not a hard edge");
    let set = r.order(&both, LifecycleAction::Deactivate);
    assert_eq!(levels(&r, &set), [vec!["app"], vec!["log"]]);
}

#[test]
fn levels_sort_by_priority_then_registration_order_and_mark_hard_edges() {
    let r = reg(vec![
        SystemSpec::new("z-low").priority(Priority::Low),
        SystemSpec::new("b"),
        SystemSpec::new("a"),
        SystemSpec::new("crit").priority(Priority::Critical),
        SystemSpec::new("top")
            .requires("z-low")
            .wants("b")
            .requires("a")
            .requires("crit"),
    ]);
    let all: Vec<_> = r.indices().collect();
    let set = r.order(&all, LifecycleAction::Activate);
    assert_eq!(
        levels(&r, &set),
        [vec!["crit", "b", "a", "z-low"], vec!["top"]]
    );
    assert_eq!(set.pred_count, [0, 0, 0, 0, 4]);
    // Successor edges of each level-0 member point at `top` (position 4);
    // only the `wants` edge from b (position 1) is soft.
    for (pos, hard) in [(0usize, true), (1, false), (2, true), (3, true)] {
        let k = set.succ_start[pos] as usize;
        assert_eq!((set.succ[k], set.succ_hard[k]), (4, hard), "member {pos}");
    }
}

#[test]
fn closure_stops_at_active_systems() {
    let mut r = reg(vec![
        SystemSpec::new("db"),
        SystemSpec::new("cache").requires("db"),
        SystemSpec::new("api").requires("cache").wants("db"),
    ]);
    let cache = r.index("cache").unwrap();
    let _ = r.node_mut(cache).life.transition(
        crate::lifecycle::SystemState::Activating,
        &std::sync::Arc::from("t"),
        std::time::SystemTime::now(),
    );
    let _ = r.node_mut(cache).life.transition(
        crate::lifecycle::SystemState::Active,
        &std::sync::Arc::from("t"),
        std::time::SystemTime::now(),
    );
    let api = r.index("api").unwrap();
    let c = r.activation_closure(&[api]);
    assert_eq!(names(&r, &c.members), ["api", "db"]);
    assert_eq!(names(&r, &c.already_active), ["cache"]);
    // Deactivation closure of db: only Active requirers, transitively.
    let db = r.index("db").unwrap();
    let _ = r.node_mut(db).life.transition(
        crate::lifecycle::SystemState::Activating,
        &std::sync::Arc::from("t"),
        std::time::SystemTime::now(),
    );
    let _ = r.node_mut(db).life.transition(
        crate::lifecycle::SystemState::Active,
        &std::sync::Arc::from("t"),
        std::time::SystemTime::now(),
    );
    assert_eq!(names(&r, &r.deactivation_closure(db)), ["db", "cache"]);
}

#[test]
fn cycle_search_visits_each_node_once_across_starts() {
    // A wide diamond lattice: no cycle, many shared descendants.
    let mut specs = vec![SystemSpec::new("root")];
    for i in 0..200 {
        specs.push(SystemSpec::new(format!("m{i}")).requires("root"));
    }
    specs.push((0..200).fold(SystemSpec::new("top"), |s, i| s.requires(format!("m{i}"))));
    let r = reg(specs);
    let starts: Vec<_> = r.indices().collect();
    assert!(cycle::find_from(&r, &starts).is_none());
}
