//! Registration: transactional batches, cycle paths, unknown and duplicate
//! names, relation bookkeeping.

use pso_core::{
    EdgeKind, EdgeSpec, ErrorKind, ExportFormat, Orchestrator, PsoError, RegistryError, SystemSpec,
};

fn orch() -> Orchestrator {
    Orchestrator::builder().workers(1).build().unwrap()
}

/// Everything observable about the registry, to compare before/after.
fn snapshot(o: &Orchestrator) -> (String, Vec<(String, String)>) {
    (
        o.export(ExportFormat::Json),
        o.system_status()
            .into_iter()
            .map(|s| (s.name, s.state.name().to_owned()))
            .collect(),
    )
}

#[test]
fn cycle_error_names_the_whole_path_in_order_and_changes_nothing() {
    let o = orch();
    o.register(SystemSpec::new("A")).unwrap();
    o.register(SystemSpec::new("B").requires("A")).unwrap();
    o.register(SystemSpec::new("C").after("B")).unwrap();
    let before = snapshot(&o);
    // A wants C closes A -> C -> B -> A (as "A wants C, C after B, B requires A").
    let err = o.connect("A", EdgeKind::Wants, "C").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cycle);
    match &err {
        RegistryError::Cycle { path, kinds } => {
            assert_eq!(path, &["A", "C", "B", "A"]);
            assert_eq!(
                kinds,
                &[EdgeKind::Wants, EdgeKind::After, EdgeKind::Requires]
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "ordering cycle: A wants C, C after B, B requires A (path: A -> C -> B -> A)"
    );
    assert_eq!(snapshot(&o), before);
}

#[test]
fn cycle_inside_a_batch_rolls_back_every_system_of_the_batch() {
    let o = orch();
    o.register(SystemSpec::new("base")).unwrap();
    let before = snapshot(&o);
    let err = o
        .register_batch(
            [
                SystemSpec::new("x").requires("base").requires("y"),
                SystemSpec::new("y").requires("z"),
                SystemSpec::new("z").after("x"),
            ],
            [],
        )
        .unwrap_err();
    match err {
        RegistryError::Cycle { path, .. } => {
            assert_eq!(path.first(), path.last());
            assert_eq!(path.len(), 4, "{path:?}");
            for n in ["x", "y", "z"] {
                assert!(path.contains(&n.to_owned()));
            }
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(snapshot(&o), before);
    // The names are free again.
    o.register(SystemSpec::new("x")).unwrap();
}

#[test]
fn self_relations() {
    let o = orch();
    o.register(SystemSpec::new("a")).unwrap();
    let e = o.connect("a", EdgeKind::Requires, "a").unwrap_err();
    assert!(
        matches!(&e, RegistryError::Cycle { path, .. } if path == &["a", "a"]),
        "{e:?}"
    );
    let e = o.connect("a", EdgeKind::Conflicts, "a").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert_eq!(e.to_string(), "system 'a' cannot conflicts itself");
    assert!(o.status("a").unwrap().conflicts.is_empty());
}

#[test]
fn unknown_and_duplicate_names_are_named_and_change_nothing() {
    let o = orch();
    o.register(SystemSpec::new("PDT")).unwrap();
    let before = snapshot(&o);

    let e = o
        .register(SystemSpec::new("PBOS").requires("PSecc"))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert_eq!(
        e.to_string(),
        "unknown system 'PSecc' (in 'PBOS requires PSecc')"
    );

    let e = o.register(SystemSpec::new("PDT")).unwrap_err();
    assert_eq!(
        (e.kind(), e.to_string()),
        (
            ErrorKind::AlreadyExists,
            "system 'PDT' is already registered".into()
        )
    );

    let e = o
        .register_batch([SystemSpec::new("n1"), SystemSpec::new("n1")], [])
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists);

    let e = o
        .register_batch(
            [SystemSpec::new("n2")],
            [EdgeSpec::new("nope", EdgeKind::Wants, "n2")],
        )
        .unwrap_err();
    assert_eq!(e.to_string(), "unknown system 'nope'");

    let e = o.register(SystemSpec::new("bad name")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(e.to_string().contains("' '"), "{e}");
    assert_eq!(
        o.register(SystemSpec::new("")).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );

    assert_eq!(snapshot(&o), before);
}

#[test]
fn relations_are_deduplicated_and_visible_in_status() {
    let o = orch();
    o.register_batch(
        [
            SystemSpec::new("a"),
            SystemSpec::new("b").requires("a").interacts("a"),
            SystemSpec::new("c"),
        ],
        [
            EdgeSpec::new("b", EdgeKind::Requires, "a"),
            EdgeSpec::new("a", EdgeKind::Interacts, "b"),
        ],
    )
    .unwrap();
    o.connect("c", EdgeKind::Conflicts, "b").unwrap();
    o.connect("b", EdgeKind::Conflicts, "c").unwrap(); // same conflict, other direction
    o.connect("c", EdgeKind::After, "a").unwrap();
    let b = o.status("b").unwrap();
    assert_eq!(b.requires, ["a"]);
    assert_eq!(b.interacts, ["a"]);
    assert_eq!(b.conflicts, ["c"]);
    let a = o.status("a").unwrap();
    assert_eq!(a.required_by, ["b"]);
    assert_eq!(a.interacts, ["b"]);
    assert_eq!(o.status("c").unwrap().after, ["a"]);
    let topo = o.topology();
    let edges: usize = topo
        .systems
        .iter()
        .map(|s| s.requires.len() + s.interacts.len() + s.conflicts.len() + s.after.len())
        .sum();
    assert_eq!(edges, 4);
}

#[test]
fn large_batches_and_incremental_registration_agree() {
    // 2,000 systems in a chain, once as one batch and once one by one.
    let n = 2_000;
    let batch = orch();
    batch
        .register_batch(
            (0..n).map(|i| {
                let s = SystemSpec::new(format!("s{i}"));
                if i > 0 {
                    s.requires(format!("s{}", i - 1))
                } else {
                    s
                }
            }),
            [],
        )
        .unwrap();
    let single = orch();
    for i in 0..n {
        let s = SystemSpec::new(format!("s{i}"));
        single
            .register(if i > 0 {
                s.requires(format!("s{}", i - 1))
            } else {
                s
            })
            .unwrap();
    }
    assert_eq!(
        batch.export(ExportFormat::Json),
        single.export(ExportFormat::Json)
    );
    // Closing the chain is a cycle through all of it.
    match single
        .connect("s0", EdgeKind::After, &format!("s{}", n - 1))
        .unwrap_err()
    {
        RegistryError::Cycle { path, .. } => assert_eq!(path.len(), n + 1),
        other => panic!("{other:?}"),
    }
    assert_eq!(single.plan(&format!("s{}", n - 1)).unwrap().levels.len(), n);
}

/// Regression: a rolled-back batch freed graph slots that later systems
/// reused, so status and exports no longer listed systems in registration
/// order.
#[test]
fn registration_order_survives_rolled_back_batches() {
    let o = orch();
    o.register(SystemSpec::new("first")).unwrap();
    assert!(
        o.register_batch(
            [
                SystemSpec::new("x").requires("y"),
                SystemSpec::new("y").requires("x")
            ],
            []
        )
        .is_err()
    );
    for name in ["second", "third", "fourth"] {
        o.register(SystemSpec::new(name).requires("first")).unwrap();
    }
    let names: Vec<String> = o.system_status().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["first", "second", "third", "fourth"]);
    let exported: Vec<String> = o.topology().systems.into_iter().map(|s| s.name).collect();
    assert_eq!(exported, names);
    let dot = o.export(ExportFormat::Dot);
    let pos = |n: &str| dot.find(&format!("\"{n}\" -> \"first\"")).unwrap();
    assert!(
        pos("second") < pos("third") && pos("third") < pos("fourth"),
        "{dot}"
    );
}
