//! Topology files: the Progressive Engine example, round trips through the
//! exports, and errors that point at the file, line and column.

use std::path::{Path, PathBuf};

use pso_core::{
    EdgeKind, ErrorKind, ExportFormat, Orchestrator, PsoError, RegistryError, SystemState,
    TopologyError, TopologyFormat,
};

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/progressive-engine.toml")
}

fn orch() -> Orchestrator {
    Orchestrator::builder().workers(2).build().unwrap()
}

#[test]
fn progressive_engine_has_23_systems_in_4_tiers_with_60_interactions() {
    let o = orch();
    assert_eq!(o.load_topology(example()).unwrap(), 23);
    let topo = o.topology();
    let mut tiers: Vec<_> = topo.systems.iter().filter_map(|s| s.tier.clone()).collect();
    tiers.dedup();
    assert_eq!(
        tiers,
        ["foundation", "professional", "enterprise", "meta-knowledge"]
    );
    assert_eq!(
        topo.systems
            .iter()
            .map(|s| s.interacts.len())
            .sum::<usize>(),
        60
    );
    let status = o.system_status();
    let pairs = |a: &str, b: &str| {
        status
            .iter()
            .find(|s| s.name == a)
            .unwrap()
            .interacts
            .contains(&b.to_owned())
    };
    assert!(
        pairs("PAES", "PPO") && pairs("PPO", "PAES"),
        "the direct-mode pair of the spec"
    );
    assert!(
        pairs("PSec", "PDT"),
        "PSec with the debugging/emergency side"
    );
    let report = o.activate_all().unwrap();
    assert_eq!(report.activated().len(), 23);
    assert!(
        o.system_status()
            .iter()
            .all(|s| s.state == SystemState::Active)
    );
    // PSO is the root: nothing activates before it.
    assert_eq!(report.outcomes[0].system, "PSO");
    assert_eq!(o.plan("PBOS").unwrap().already_active.len(), 1);
}

#[test]
fn json_and_toml_exports_round_trip() {
    let o = orch();
    o.load_topology(example()).unwrap();
    for (export, format) in [
        (ExportFormat::Json, TopologyFormat::Json),
        (ExportFormat::Toml, TopologyFormat::Toml),
    ] {
        let text = o.export(export);
        let copy = orch();
        assert_eq!(copy.load_topology_str(&text, format).unwrap(), 23);
        assert_eq!(copy.export(export), text, "{export} round trip");
        assert_eq!(copy.export(ExportFormat::Dot), o.export(ExportFormat::Dot));
    }
}

#[test]
fn dot_and_mermaid_show_tiers_and_every_relation() {
    let o = orch();
    o.load_topology(example()).unwrap();
    let dot = o.export(ExportFormat::Dot);
    assert!(dot.starts_with("digraph pso {"));
    assert_eq!(dot.matches("subgraph cluster_").count(), 4);
    assert!(
        dot.contains("\"PBOS\" -> \"PSec\" [label=\"requires\", style=bold];"),
        "{dot}"
    );
    assert_eq!(dot.matches(" -> ").count(), 26 + 15 + 60);
    let mmd = o.export(ExportFormat::Mermaid);
    assert!(mmd.starts_with("flowchart LR\n"));
    assert!(
        mmd.contains("  subgraph tier0[\"foundation\"]\n    s_PSO[\"PSO\"]\n"),
        "{mmd}"
    );
    assert!(mmd.contains("  s_PBOS ==> s_PSec\n"));
    assert!(mmd.contains("  s_PAES -.- s_PPO\n"));
    let relations = mmd
        .lines()
        .filter(|l| !l.trim_start().starts_with("%%"))
        .filter(|l| l.contains(" ==> ") || l.contains(" --> ") || l.contains(" -.- "))
        .count();
    assert_eq!(relations, 26 + 15 + 60);
}

#[test]
fn readme_embeds_the_current_mermaid_diagram() {
    let o = orch();
    o.load_topology(example()).unwrap();
    let mmd = o.export(ExportFormat::Mermaid);
    let readme_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let readme = std::fs::read_to_string(&readme_path).unwrap();
    let (begin, end) = (
        "<!-- mermaid:begin -->\n```mermaid\n",
        "```\n<!-- mermaid:end -->",
    );
    let (Some(a), Some(b)) = (readme.find(begin), readme.find(end)) else {
        panic!("README.md has no {begin:?} ... {end:?} block");
    };
    let current = &readme[a + begin.len()..b];
    if current != mmd {
        if std::env::var_os("PSO_UPDATE_README").is_some() {
            let updated = format!("{}{mmd}{}", &readme[..a + begin.len()], &readme[b..]);
            std::fs::write(&readme_path, updated).unwrap();
        } else {
            panic!(
                "README.md's Mermaid diagram is stale: run `PSO_UPDATE_README=1 cargo test -p pso-core --test topology`"
            );
        }
    }
}

#[test]
fn parse_errors_name_file_line_and_column() {
    let dir = std::env::temp_dir().join(format!("pso-topology-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("broken.toml");
    std::fs::write(
        &file,
        "[[systems]]\nname = \"a\"\n\n[[systems]]\nname = \"b\"\nwants = \"a\"\n",
    )
    .unwrap();
    let o = orch();
    let e = o.load_topology(&file).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Parse);
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!("{}:6:9: ", file.display())),
        "{msg}"
    );
    assert!(msg.contains("expected a sequence"), "{msg}");

    let e = o
        .load_topology_str(
            "{\"systems\": [{\"name\": \"a\", \"tier\": 3}]}",
            TopologyFormat::Json,
        )
        .unwrap_err();
    assert!(
        matches!(&e, TopologyError::Parse { line: 1, column, .. } if *column > 30),
        "{e:?}"
    );
    assert!(e.to_string().starts_with("<string>:1:"), "{e}");
    assert!(o.is_empty(), "nothing registered on a parse error");

    let e = o.load_topology(dir.join("missing.toml")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Io);
    assert!(e.to_string().contains("missing.toml"), "{e}");
    let e = o.load_topology(dir.join("topology.yaml")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn semantic_errors_point_at_the_offending_name() {
    let o = orch();
    let text =
        "[[systems]]\nname = \"PSec\"\n\n[[systems]]\nname = \"PBOS\"\nrequires = [\"PSecc\"]\n";
    let e = o.load_topology_str(text, TopologyFormat::Toml).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert_eq!(
        e.to_string(),
        "<string>:6:14: unknown system 'PSecc' (in 'PBOS requires PSecc')"
    );
    match e {
        TopologyError::Invalid {
            error:
                RegistryError::UnknownSystem {
                    name,
                    referenced_by,
                    ..
                },
            ..
        } => {
            assert_eq!(name, "PSecc");
            assert_eq!(referenced_by, Some(("PBOS".to_owned(), EdgeKind::Requires)));
        }
        other => panic!("{other:?}"),
    }
    let dup = "{\"systems\": [\n {\"name\": \"a\"},\n {\"name\": \"a\"}\n]}";
    let e = o.load_topology_str(dup, TopologyFormat::Json).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists);
    assert!(e.to_string().starts_with("<string>:3:"), "{e}");
    let cyc = "[[systems]]\nname = \"a\"\nafter = [\"b\"]\n[[systems]]\nname = \"b\"\nrequires = [\"a\"]\n";
    let e = o.load_topology_str(cyc, TopologyFormat::Toml).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Cycle);
    assert!(o.is_empty());
    // A valid file afterwards loads normally.
    o.load_topology_str("[[systems]]\nname = \"ok\"\n[[edges]]\nfrom = \"ok\"\nkind = \"interacts\"\nto = \"ok2\"\n[[systems]]\nname = \"ok2\"\n", TopologyFormat::Toml).unwrap();
    assert_eq!(o.status("ok").unwrap().interacts, ["ok2"]);
}
