//! Property tests of the registry and of activation, on random graphs of up
//! to 64 systems and 256 relations of every kind.
//!
//! * Cycle detection agrees with a reference (Kahn's algorithm over the
//!   ordering edges), and a reported cycle path is a real, simple cycle.
//! * A rejected batch (cycle, unknown system, duplicate name, bad name) leaves
//!   the registry exactly as it was, also across several incremental batches;
//!   an accepted one matches a model of the registry.
//! * Activation follows every `requires`/`wants`/`after` edge, never activates
//!   two conflicting systems, blocks exactly what transitively requires a
//!   failed system, and never blocks on a failed `wants`. The expected outcome
//!   of every system is computed by a sequential reference and compared.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;

use pso_core::{
    EdgeKind, EdgeSpec, ExportFormat, HandlerError, LifecycleError, Orchestrator, Outcome,
    RegistryError, SystemSpec,
};

const MAX_SYSTEMS: usize = 64;
const MAX_EDGES: usize = 256;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        // Failures print their minimal input; nothing is written next to the
        // sources.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn orchestrator() -> Orchestrator {
    Orchestrator::builder().workers(2).build().unwrap()
}

fn name(i: usize) -> String {
    format!("s{i}")
}

/// One relation between systems `from` and `to` (indices).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Rel {
    from: usize,
    kind: EdgeKind,
    to: usize,
}

/// Whether the ordering edges among `rels` (self-loops included) contain a
/// cycle, by Kahn's algorithm: a cycle exists iff some node is never freed.
fn reference_has_cycle(n: usize, rels: &[Rel]) -> bool {
    let ordering: BTreeSet<(usize, usize)> = rels
        .iter()
        .filter(|r| r.kind.is_ordering())
        .map(|r| (r.from, r.to))
        .collect();
    let mut indeg = vec![0usize; n];
    for &(_, to) in &ordering {
        indeg[to] += 1;
    }
    let mut queue: Vec<usize> = (0..n).filter(|&i| indeg[i] == 0).collect();
    let mut freed = 0;
    while let Some(i) = queue.pop() {
        freed += 1;
        for &(_, to) in ordering.range((i, 0)..=(i, usize::MAX)) {
            indeg[to] -= 1;
            if indeg[to] == 0 {
                queue.push(to);
            }
        }
    }
    freed < n
}

/// Checks that `path`/`kinds` describe a simple cycle made of relations in
/// `rels` (by name).
fn assert_real_cycle(path: &[String], kinds: &[EdgeKind], rels: &Directed) {
    assert!(path.len() >= 2, "cycle path too short: {path:?}");
    assert_eq!(path.first(), path.last(), "cycle does not close: {path:?}");
    assert_eq!(kinds.len(), path.len() - 1, "{path:?} {kinds:?}");
    let inner: HashSet<&String> = path[..path.len() - 1].iter().collect();
    assert_eq!(inner.len(), path.len() - 1, "cycle is not simple: {path:?}");
    for (w, k) in path.windows(2).zip(kinds) {
        assert!(k.is_ordering(), "{k} is not an ordering relation");
        assert!(
            rels.contains(&(w[0].clone(), *k, w[1].clone())),
            "'{} {k} {}' on the reported cycle {path:?} was never declared",
            w[0],
            w[1]
        );
    }
}

/// Everything observable about the registry without running anything.
fn snapshot(o: &Orchestrator) -> (usize, String, String) {
    (
        o.len(),
        o.export(ExportFormat::Json),
        format!("{:?}", o.system_status()),
    )
}

/// Raw generated relation: endpoints, kind index, whether it is declared on
/// the `from` spec (else as a separate `EdgeSpec`).
type RawRel = (usize, usize, usize, bool);

fn raw_rels(n: usize, max: usize) -> impl Strategy<Value = Vec<RawRel>> {
    vec((0..n, 0..n, 0..EdgeKind::ALL.len(), any::<bool>()), 0..=max)
}

/// Turns raw relations into a graph whose ordering edges follow the ranking
/// `rank` (so they are acyclic), except the first `flips` ordering edges,
/// which keep their random direction (and may be self-loops). Non-ordering
/// self-relations are dropped (they are invalid, not cycles).
fn shape(rank: &[usize], raw: &[RawRel], flips: usize) -> Vec<(Rel, bool)> {
    let mut out = Vec::new();
    let mut ordering_seen = 0;
    for &(a, b, k, inline) in raw {
        let kind = EdgeKind::ALL[k];
        let (from, to) = if kind.is_ordering() {
            ordering_seen += 1;
            if ordering_seen <= flips {
                (a, b)
            } else if a == b {
                continue;
            } else if rank[a] > rank[b] {
                (a, b)
            } else {
                (b, a)
            }
        } else if a == b {
            continue;
        } else {
            (a, b)
        };
        out.push((Rel { from, kind, to }, inline));
    }
    out
}

fn names_of(rels: &[Rel]) -> Directed {
    rels.iter()
        .map(|r| (name(r.from), r.kind, name(r.to)))
        .collect()
}

/// The batch for systems `first..first + count` and `rels`: inline relations
/// go on their `from` spec when it is in the batch.
fn batch(first: usize, count: usize, rels: &[(Rel, bool)]) -> (Vec<SystemSpec>, Vec<EdgeSpec>) {
    let mut specs: Vec<SystemSpec> = (first..first + count)
        .map(|i| SystemSpec::new(name(i)))
        .collect();
    let mut extra = Vec::new();
    for &(r, inline) in rels {
        if inline && (first..first + count).contains(&r.from) {
            let s = &mut specs[r.from - first];
            *s = s.clone().edge(r.kind, name(r.to));
        } else {
            extra.push(EdgeSpec::new(name(r.from), r.kind, name(r.to)));
        }
    }
    (specs, extra)
}

fn single_batch() -> impl Strategy<Value = (usize, Vec<(Rel, bool)>)> {
    (1..=MAX_SYSTEMS).prop_flat_map(|n| {
        (
            Just(n),
            Just((0..n).collect::<Vec<_>>()).prop_shuffle(),
            raw_rels(n, MAX_EDGES),
            0..=3usize,
        )
            .prop_map(|(n, rank, raw, flips)| (n, shape(&rank, &raw, flips)))
    })
}

proptest! {
    #![proptest_config(config())]

    /// One batch into an empty registry: rejected with `Cycle` exactly when
    /// the reference finds an ordering cycle, with a real cycle as the path,
    /// and nothing registered then.
    #[test]
    fn cycle_detection_agrees_with_reference((n, rels) in single_batch()) {
        let o = orchestrator();
        let before = snapshot(&o);
        let plain: Vec<Rel> = rels.iter().map(|&(r, _)| r).collect();
        let expect_cycle = reference_has_cycle(n, &plain);
        let (specs, extra) = batch(0, n, &rels);
        match o.register_batch(specs, extra) {
            Ok(added) => {
                prop_assert!(!expect_cycle, "a cyclic batch was accepted: {plain:?}");
                prop_assert_eq!(added, n);
                prop_assert_eq!(o.len(), n);
            }
            Err(RegistryError::Cycle { path, kinds }) => {
                prop_assert!(expect_cycle, "acyclic batch rejected with cycle {path:?}");
                assert_real_cycle(&path, &kinds, &names_of(&plain));
                prop_assert_eq!(snapshot(&o), before);
            }
            Err(e) => prop_assert!(false, "unexpected error {e:?}"),
        }
    }
}

/// A fault injected into an incremental batch.
#[derive(Debug, Clone)]
enum Fault {
    None,
    /// A relation to (or from) a system that does not exist, at a position
    /// among the relations.
    Unknown {
        at: Index,
        as_from: bool,
        inline: bool,
    },
    /// A spec repeating a registered name, or a name earlier in the batch.
    Duplicate {
        at: Index,
        of: Index,
    },
    /// A spec with an invalid name.
    BadName {
        at: Index,
    },
}

fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        3 => Just(Fault::None),
        1 => (any::<Index>(), any::<bool>(), any::<bool>())
            .prop_map(|(at, as_from, inline)| Fault::Unknown { at, as_from, inline }),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(at, of)| Fault::Duplicate { at, of }),
        1 => any::<Index>().prop_map(|at| Fault::BadName { at }),
    ]
}

/// One incremental step: how many new systems, raw relations among all
/// systems so far (endpoints as `Index`), flips, and a fault.
#[derive(Debug, Clone)]
struct Step {
    new: usize,
    raw: Vec<(Index, Index, usize, bool)>,
    flips: usize,
    fault: Fault,
}

fn steps() -> impl Strategy<Value = (Vec<usize>, Vec<Step>)> {
    let step = (
        0..=16usize,
        vec(
            (any::<Index>(), any::<Index>(), 0..5usize, any::<bool>()),
            0..=64,
        ),
        0..=2usize,
        fault(),
    )
        .prop_map(|(new, raw, flips, fault)| Step {
            new,
            raw,
            flips,
            fault,
        });
    (
        Just((0..MAX_SYSTEMS).collect::<Vec<_>>()).prop_shuffle(),
        vec(step, 1..=6),
    )
}

/// Ordering relations as `(from, kind, to)` names.
type Directed = BTreeSet<(String, EdgeKind, String)>;
/// Symmetric relations as `(kind, smaller name, larger name)`.
type Symmetric = BTreeSet<(EdgeKind, String, String)>;

/// The registry as a test model sees it.
#[derive(Debug, Default)]
struct Model {
    n: usize,
    rels: Vec<Rel>,
}

impl Model {
    /// Ordering relations as (from, kind, to) names, and the unordered pairs
    /// of each symmetric kind.
    fn relation_view(&self) -> (Directed, Symmetric) {
        let mut directed = BTreeSet::new();
        let mut symmetric = BTreeSet::new();
        for r in &self.rels {
            let (a, b) = (name(r.from), name(r.to));
            if r.kind.is_ordering() {
                directed.insert((a, r.kind, b));
            } else {
                symmetric.insert((r.kind, a.clone().min(b.clone()), a.max(b)));
            }
        }
        (directed, symmetric)
    }
}

/// The same two views, read from the orchestrator's topology.
fn registry_view(o: &Orchestrator) -> (Vec<String>, Directed, Symmetric) {
    let topo = o.topology();
    let mut names = Vec::new();
    let mut directed = BTreeSet::new();
    let mut symmetric = BTreeSet::new();
    for s in topo.systems {
        for (kind, list) in [
            (EdgeKind::Requires, &s.requires),
            (EdgeKind::Wants, &s.wants),
            (EdgeKind::After, &s.after),
        ] {
            for to in list {
                directed.insert((s.name.clone(), kind, to.clone()));
            }
        }
        for (kind, list) in [
            (EdgeKind::Conflicts, &s.conflicts),
            (EdgeKind::Interacts, &s.interacts),
        ] {
            for to in list {
                let (a, b) = (s.name.clone(), to.clone());
                symmetric.insert((kind, a.clone().min(b.clone()), a.max(b)));
            }
        }
        names.push(s.name);
    }
    (names, directed, symmetric)
}

proptest! {
    #![proptest_config(config())]

    /// Several batches on one orchestrator, some rejected (cycles, unknown
    /// systems, duplicates, bad names injected at random positions). Every
    /// rejection leaves the registry unchanged; every acceptance matches the
    /// model.
    #[test]
    fn rejected_batches_leave_the_registry_unchanged((rank, steps) in steps()) {
        let o = orchestrator();
        let mut model = Model::default();
        for step in steps {
            let new = step.new.min(MAX_SYSTEMS - model.n);
            let total = model.n + new;
            let room = MAX_EDGES - model.rels.len();
            let raw: Vec<RawRel> = if total == 0 {
                Vec::new()
            } else {
                step.raw
                    .iter()
                    .take(room)
                    .map(|(a, b, k, inline)| (a.index(total), b.index(total), *k, *inline))
                    .collect()
            };
            let rels = shape(&rank[..total.max(1)], &raw, step.flips);
            let (mut specs, mut extra) = batch(model.n, new, &rels);

            let expected_fault: Option<RegistryError> = match &step.fault {
                Fault::None => None,
                Fault::Unknown { at, as_from, inline } => {
                    let ghost = "ghost".to_owned();
                    let known = if total == 0 { None } else { Some(name(at.index(total))) };
                    match known {
                        Some(_) if *inline && !*as_from && new > 0 => {
                            let i = at.index(new);
                            specs[i] = specs[i].clone().requires(ghost.clone());
                            Some(RegistryError::UnknownSystem {
                                name: ghost.clone(),
                                referenced_by: Some((specs[i].name().to_owned(), EdgeKind::Requires)),
                            })
                        }
                        Some(known) => {
                            let (from, to) = if *as_from { (ghost.clone(), known.clone()) } else { (known.clone(), ghost.clone()) };
                            let pos = at.index(extra.len() + 1);
                            extra.insert(pos, EdgeSpec::new(from, EdgeKind::Wants, to));
                            Some(RegistryError::UnknownSystem {
                                name: ghost.clone(),
                                referenced_by: (!*as_from).then_some((known, EdgeKind::Wants)),
                            })
                        }
                        None => None,
                    }
                }
                Fault::Duplicate { at, of } => {
                    if total == 0 {
                        None
                    } else {
                        let dup = name(of.index(total));
                        // Insert after the original when it is in this batch,
                        // so the batch itself is what repeats it.
                        let earliest = if of.index(total) >= model.n { of.index(total) - model.n + 1 } else { 0 };
                        let pos = earliest + at.index(specs.len() + 1 - earliest);
                        specs.insert(pos, SystemSpec::new(dup.clone()));
                        Some(RegistryError::DuplicateSystem { name: dup })
                    }
                }
                Fault::BadName { at } => {
                    let pos = at.index(specs.len() + 1);
                    specs.insert(pos, SystemSpec::new("bad name"));
                    Some(RegistryError::Invalid { message: String::new() })
                }
            };
            // Validation (names, duplicates, unknown endpoints) runs before
            // the cycle check, so an injected fault decides the error.
            let mut all = model.rels.clone();
            all.extend(rels.iter().map(|&(r, _)| r));
            let expect_cycle = reference_has_cycle(total, &all);
            let self_loop = rels.iter().any(|(r, _)| r.from == r.to);

            let before = snapshot(&o);
            match (o.register_batch(specs, extra), expected_fault) {
                (Ok(added), None) => {
                    prop_assert!(!expect_cycle, "a cyclic batch was accepted");
                    prop_assert_eq!(added, new);
                    model.n = total;
                    model.rels = all;
                    let (names, directed, symmetric) = registry_view(&o);
                    // In registration order, also after rolled-back batches.
                    prop_assert_eq!(names, (0..model.n).map(name).collect::<Vec<_>>());
                    let (m_directed, m_symmetric) = model.relation_view();
                    prop_assert_eq!(directed, m_directed);
                    prop_assert_eq!(symmetric, m_symmetric);
                }
                (Ok(_), Some(f)) => prop_assert!(false, "accepted a batch with fault {f:?}"),
                (Err(e), expected) => {
                    match (&e, expected) {
                        (RegistryError::Cycle { path, kinds }, None) => {
                            prop_assert!(expect_cycle, "acyclic batch rejected: {e}");
                            assert_real_cycle(path, kinds, &names_of(&all));
                        }
                        (RegistryError::Invalid { message }, Some(RegistryError::Invalid { .. })) => {
                            prop_assert!(message.contains("bad name"), "{message}");
                        }
                        // An ordering self-loop is checked together with the
                        // endpoints, relation by relation, so it may be
                        // reported before a later unknown endpoint.
                        (RegistryError::Cycle { path, kinds }, Some(RegistryError::UnknownSystem { .. }))
                            if self_loop =>
                        {
                            prop_assert!(path.len() == 2 && path[0] == path[1], "{e}");
                            assert_real_cycle(path, kinds, &names_of(&all));
                        }
                        (got, Some(want)) => prop_assert_eq!(got, &want),
                        (got, None) => prop_assert!(false, "unexpected error {got:?}"),
                    }
                    prop_assert_eq!(snapshot(&o), before, "rejected batch changed the registry ({})", e);
                }
            }
        }
    }
}

/// Which call a step makes.
#[derive(Debug, Clone)]
enum Call {
    All,
    System(Index),
}

#[derive(Debug, Clone)]
struct ActivationCase {
    n: usize,
    rels: Vec<Rel>,
    /// `fails[c][i]`: the handler of system `i` fails during call `c`.
    fails: Vec<Vec<bool>>,
    calls: Vec<Call>,
}

fn activation_case() -> impl Strategy<Value = ActivationCase> {
    (1..=MAX_SYSTEMS).prop_flat_map(|n| {
        let call = prop_oneof![1 => Just(Call::All), 2 => any::<Index>().prop_map(Call::System)];
        (
            Just((0..n).collect::<Vec<_>>()).prop_shuffle(),
            raw_rels(n, MAX_EDGES),
            // Conflicts are rare so that many calls get past the check.
            vec((0..n, 0..n), 0..=3),
            vec(vec(prop::bool::weighted(0.15), n), 4),
            vec(call, 1..=4),
        )
            .prop_map(move |(rank, raw, conflicts, fails, calls)| {
                let raw: Vec<RawRel> = raw
                    .into_iter()
                    .filter(|r| EdgeKind::ALL[r.2] != EdgeKind::Conflicts)
                    .chain(conflicts.into_iter().map(|(a, b)| (a, b, 3, false)))
                    .collect();
                let rels = shape(&rank, &raw, 0).into_iter().map(|(r, _)| r).collect();
                ActivationCase {
                    n,
                    rels,
                    fails,
                    calls,
                }
            })
    })
}

/// What the reference expects of one system in one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Activated,
    Failed,
    Blocked,
}

fn outcome_kind(o: &Outcome) -> Option<Expect> {
    match o {
        Outcome::Activated => Some(Expect::Activated),
        Outcome::Failed { .. } => Some(Expect::Failed),
        Outcome::Blocked { .. } => Some(Expect::Blocked),
        _ => None,
    }
}

/// Start and end sequence numbers of each system's handler in the current call.
struct Trace {
    seq: AtomicU64,
    call: AtomicUsize,
    start: Vec<AtomicU64>,
    end: Vec<AtomicU64>,
    runs: Vec<AtomicUsize>,
}

impl Trace {
    fn new(n: usize) -> Self {
        Trace {
            seq: AtomicU64::new(1),
            call: AtomicUsize::new(0),
            start: (0..n).map(|_| AtomicU64::new(0)).collect(),
            end: (0..n).map(|_| AtomicU64::new(0)).collect(),
            runs: (0..n).map(|_| AtomicUsize::new(0)).collect(),
        }
    }

    fn reset(&self, call: usize) {
        self.call.store(call, Ordering::SeqCst);
        for i in 0..self.start.len() {
            self.start[i].store(0, Ordering::SeqCst);
            self.end[i].store(0, Ordering::SeqCst);
            self.runs[i].store(0, Ordering::SeqCst);
        }
    }
}

proptest! {
    #![proptest_config(config())]

    /// Random graphs (acyclic, with a few conflicts), random handler failures,
    /// and up to four `activate_all`/`activate_system` calls in a row.
    #[test]
    fn activation_respects_order_failures_and_conflicts(case in activation_case()) {
        let n = case.n;
        let trace = Arc::new(Trace::new(n));
        let fails = Arc::new(case.fails.clone());
        let specs: Vec<SystemSpec> = (0..n)
            .map(|i| {
                let (trace, fails) = (trace.clone(), fails.clone());
                SystemSpec::new(name(i)).on_activate(move |_ctx| {
                    trace.runs[i].fetch_add(1, Ordering::SeqCst);
                    trace.start[i].store(trace.seq.fetch_add(1, Ordering::SeqCst), Ordering::SeqCst);
                    let call = trace.call.load(Ordering::SeqCst);
                    let fail = fails[call][i];
                    trace.end[i].store(trace.seq.fetch_add(1, Ordering::SeqCst), Ordering::SeqCst);
                    if fail { Err(HandlerError::failed("injected failure")) } else { Ok(()) }
                })
            })
            .collect();
        let edges: Vec<EdgeSpec> = case.rels.iter().map(|r| EdgeSpec::new(name(r.from), r.kind, name(r.to))).collect();
        let o = orchestrator();
        o.register_batch(specs, edges).unwrap();

        let out = |i: usize, k: EdgeKind| -> Vec<usize> {
            case.rels.iter().filter(|r| r.from == i && r.kind == k).map(|r| r.to).collect()
        };
        let conflicting = |i: usize| -> Vec<usize> {
            case.rels.iter().filter(|r| r.kind == EdgeKind::Conflicts).filter_map(|r| {
                if r.from == i { Some(r.to) } else if r.to == i { Some(r.from) } else { None }
            }).collect()
        };
        let mut active = vec![false; n];

        for (c, call) in case.calls.iter().enumerate() {
            trace.reset(c);
            // Reference: members = targets + requires/wants closure, not
            // entering Active systems.
            let targets: Vec<usize> = match call {
                Call::All => (0..n).collect(),
                Call::System(i) => vec![i.index(n)],
            };
            let mut member = vec![false; n];
            let mut stack = targets.clone();
            while let Some(i) = stack.pop() {
                if member[i] || active[i] {
                    continue;
                }
                member[i] = true;
                stack.extend(out(i, EdgeKind::Requires));
                stack.extend(out(i, EdgeKind::Wants));
            }
            let conflict = (0..n).filter(|&i| member[i]).any(|i| {
                conflicting(i).into_iter().any(|j| member[j] || active[j])
            });

            let result = match call {
                Call::All => o.activate_all(),
                Call::System(i) => o.activate_system(&name(i.index(n))),
            };
            if let Call::System(i) = call
                && active[i.index(n)]
            {
                let report = result.expect("an Active target is a no-op");
                prop_assert!(report.was_noop());
                prop_assert!(trace.runs.iter().all(|r| r.load(Ordering::SeqCst) == 0));
                continue;
            }
            if conflict {
                let is_conflict = matches!(result, Err(LifecycleError::Conflict { .. }));
                prop_assert!(is_conflict, "expected a conflict, got {result:?}");
                prop_assert!(trace.runs.iter().all(|r| r.load(Ordering::SeqCst) == 0), "a handler ran despite the conflict");
                continue;
            }
            let report = match &result {
                Ok(r) => r.clone(),
                Err(LifecycleError::ActivationFailed { report, .. }) => (**report).clone(),
                Err(e) => return Err(TestCaseError::fail(format!("unexpected error {e:?}"))),
            };

            // Sequential reference outcome, in an order that follows every
            // ordering edge among members (ranks are a topological order of
            // the reversed edges; follow the members' dependencies by DFS).
            let mut expect: Vec<Option<Expect>> = vec![None; n];
            fn settle(
                i: usize,
                member: &[bool],
                expect: &mut Vec<Option<Expect>>,
                deps: &dyn Fn(usize) -> (Vec<usize>, Vec<usize>),
                fails: &[bool],
            ) -> Expect {
                if let Some(e) = expect[i] {
                    return e;
                }
                let (hard, soft) = deps(i);
                let mut blocked = false;
                for d in hard {
                    if member[d] && settle(d, member, expect, deps, fails) != Expect::Activated {
                        blocked = true;
                    }
                }
                for d in soft {
                    if member[d] {
                        settle(d, member, expect, deps, fails);
                    }
                }
                let e = if blocked {
                    Expect::Blocked
                } else if fails[i] {
                    Expect::Failed
                } else {
                    Expect::Activated
                };
                expect[i] = Some(e);
                e
            }
            let deps = |i: usize| {
                let mut soft = out(i, EdgeKind::Wants);
                soft.extend(out(i, EdgeKind::After));
                (out(i, EdgeKind::Requires), soft)
            };
            for i in (0..n).filter(|&i| member[i]) {
                settle(i, &member, &mut expect, &deps, &case.fails[c]);
            }

            // The report covers exactly the members, with the expected outcomes.
            let mut got: BTreeMap<String, Option<Expect>> = BTreeMap::new();
            for line in &report.outcomes {
                prop_assert!(got.insert(line.system.clone(), outcome_kind(&line.outcome)).is_none(), "{} reported twice", line.system);
            }
            let want: BTreeMap<String, Option<Expect>> = (0..n).filter(|&i| member[i]).map(|i| (name(i), expect[i])).collect();
            prop_assert_eq!(&got, &want);

            // Handlers ran exactly for the Activated/Failed members, once each.
            for (i, e) in expect.iter().enumerate() {
                let runs = trace.runs[i].load(Ordering::SeqCst);
                let ran = matches!(e, Some(Expect::Activated | Expect::Failed));
                prop_assert_eq!(runs, usize::from(ran), "{} ran {} times (expected {:?})", name(i), runs, e);
            }
            // Every ordering edge A -> B between two systems that both ran:
            // B ended before A started.
            for r in case.rels.iter().filter(|r| r.kind.is_ordering()) {
                let (a, b) = (r.from, r.to);
                if trace.runs[a].load(Ordering::SeqCst) == 1 && trace.runs[b].load(Ordering::SeqCst) == 1 {
                    let (b_end, a_start) = (trace.end[b].load(Ordering::SeqCst), trace.start[a].load(Ordering::SeqCst));
                    prop_assert!(b_end < a_start, "{} {} {}: {} ended at {} but {} started at {}", name(a), r.kind, name(b), name(b), b_end, name(a), a_start);
                }
            }
            // Errors: activate_all fails iff something failed; activate_system
            // iff its target did not activate.
            let ok_expected = match call {
                Call::All => want.values().all(|e| *e == Some(Expect::Activated)),
                Call::System(i) => expect[i.index(n)] == Some(Expect::Activated),
            };
            prop_assert_eq!(result.is_ok(), ok_expected, "{:?}", result.as_ref().err());

            for i in 0..n {
                match expect[i] {
                    Some(Expect::Activated) => active[i] = true,
                    Some(Expect::Failed) => active[i] = false,
                    _ => {}
                }
            }
            // States agree with the model, and no two conflicting systems are Active.
            for s in o.system_status() {
                let i: usize = s.name[1..].parse().unwrap();
                prop_assert_eq!(s.state.is_active(), active[i], "{} is {}", s.name, s.state);
                if active[i] {
                    for j in conflicting(i) {
                        prop_assert!(!active[j], "{} and {} conflict but are both Active", name(i), name(j));
                    }
                }
            }
        }
    }
}

/// Regression for a bug this file found (fixed in b07830a): a batch rejected
/// for a cycle was rolled back by removing its nodes from the `StableGraph`,
/// whose free list then handed those slots out again in reverse, so systems
/// registered afterwards were listed out of registration order.
#[test]
fn registration_order_survives_a_rejected_batch() {
    let o = orchestrator();
    let cyclic = o.register_batch(
        [
            SystemSpec::new("a").requires("b"),
            SystemSpec::new("b").requires("a"),
        ],
        [],
    );
    assert!(
        matches!(cyclic, Err(RegistryError::Cycle { .. })),
        "{cyclic:?}"
    );
    o.register(SystemSpec::new("x")).unwrap();
    o.register(SystemSpec::new("y")).unwrap();
    let names: Vec<String> = o.system_status().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["x", "y"]);
}
