//! Integration tests of the state store: CAS under contention, watches,
//! retention errors, snapshots. Every wait is bounded.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use pso_core::{ErrorKind, PsoError, StateConfig, StateError, StateStore, Value};

const LONG: Duration = Duration::from_secs(20);

fn tmp_dir(tag: &str) -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "pso-state-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn put_get_delete_with_revision_writer_and_time() {
    let store = StateStore::new();
    assert_eq!(store.revision(), 0);
    let before = SystemTime::now();
    let r1 = store.as_writer("PDT").put("cfg.mode", "fast").unwrap();
    let r2 = store.put("cfg.level", 3).unwrap();
    assert!(r2 > r1);
    let e = store.get("cfg.mode").unwrap().unwrap();
    assert_eq!(
        (&*e.key, &*e.value, e.revision, e.writer.as_deref()),
        ("cfg.mode", &Value::from("fast"), r1, Some("PDT"))
    );
    assert!(e.timestamp >= before);
    assert_eq!(store.get("cfg.level").unwrap().unwrap().writer, None);
    assert_eq!(
        store
            .list("cfg.")
            .unwrap()
            .iter()
            .map(|e| e.key.to_string())
            .collect::<Vec<_>>(),
        ["cfg.level", "cfg.mode"]
    );
    let d = store.delete("cfg.mode").unwrap().unwrap();
    assert!(d > r2);
    assert_eq!(
        store.delete("cfg.mode").unwrap(),
        None,
        "absent: nothing changes"
    );
    assert_eq!(store.revision(), d);
    assert!(store.get("cfg.mode").unwrap().is_none());
    assert_eq!(
        store.put("", 1).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    let json = serde_json::to_string(&store.get("cfg.level").unwrap().unwrap()).unwrap();
    assert!(
        json.contains("\"key\":\"cfg.level\"") && json.contains("\"value\":3"),
        "{json}"
    );
}

#[test]
fn compare_and_set_returns_the_new_revision_or_the_conflict() {
    let store = StateStore::new();
    let r1 = store.compare_and_set("lock", 0, "A").unwrap();
    let e = store.compare_and_set("lock", 0, "B").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::CasConflict);
    assert_eq!(e.current_revision(), Some(r1));
    match &e {
        StateError::Conflict {
            key,
            expected: 0,
            current: Some(cur),
        } => {
            assert_eq!((key.as_str(), &*cur.value), ("lock", &Value::from("A")))
        }
        other => panic!("{other:?}"),
    }
    let r2 = store.compare_and_set("lock", r1, "B").unwrap();
    assert!(r2 > r1);
    assert!(matches!(
        store.compare_and_delete("lock", r1),
        Err(StateError::Conflict { .. })
    ));
    let r3 = store.compare_and_delete("lock", r2).unwrap();
    assert!(r3 > r2);
    let e = store.compare_and_set("lock", r2, "C").unwrap_err();
    assert!(
        matches!(e, StateError::Conflict { current: None, .. }),
        "{e}"
    );
    assert_eq!(e.current_revision(), Some(0));
}

#[test]
fn concurrent_cas_writers_never_lose_an_update() {
    let store = StateStore::new();
    const THREADS: usize = 4;
    const EACH: usize = 2_000;
    let revisions: Vec<Vec<u64>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let w = store.as_writer(&format!("w{t}"));
                s.spawn(move || {
                    (0..EACH)
                        .map(|_| {
                            w.update("counter", |v| {
                                Value::Int(v.and_then(Value::as_int).unwrap_or(0) + 1)
                            })
                            .unwrap()
                        })
                        .collect::<Vec<u64>>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let e = store.get("counter").unwrap().unwrap();
    assert_eq!(*e.value, Value::Int((THREADS * EACH) as i64));
    let all: HashSet<u64> = revisions.iter().flatten().copied().collect();
    assert_eq!(
        all.len(),
        THREADS * EACH,
        "every successful CAS has its own revision"
    );
    for per_thread in &revisions {
        assert!(
            per_thread.windows(2).all(|w| w[0] < w[1]),
            "revisions increase"
        );
    }
}

#[test]
fn watch_delivers_history_then_live_changes_exactly_once_in_order() {
    let store = StateStore::new();
    let r1 = store.put("jobs.1", "queued").unwrap();
    let r2 = store.put("other", 0).unwrap();
    let r3 = store.put("jobs.2", "queued").unwrap();
    let mut w = store.watch_prefix("jobs.", r1).unwrap();
    let mut k = store.watch("jobs.1", 0).unwrap();
    let r4 = store.put("jobs.1", "running").unwrap();
    let r5 = store.delete("jobs.2").unwrap().unwrap();
    let got: Vec<u64> = (0..2)
        .map(|_| w.recv_timeout(LONG).unwrap().revision)
        .collect();
    assert_eq!(got, [r3, r4]);
    let del = w.recv_timeout(LONG).unwrap();
    assert_eq!(
        (del.revision, del.is_delete(), &*del.key),
        (r5, true, "jobs.2")
    );
    assert!(w.try_recv().unwrap().is_none());
    assert_eq!(k.recv_timeout(LONG).unwrap().revision, r1);
    assert_eq!(k.recv_timeout(LONG).unwrap().revision, r4);
    assert_eq!(
        k.recv_timeout(Duration::from_millis(5)).unwrap_err().kind(),
        ErrorKind::Timeout
    );
    let _ = r2;
}

#[test]
fn a_watch_older_than_the_history_fails_clearly() {
    let store = StateStore::with_config(StateConfig::new().history_per_key(2));
    let r1 = store.put("k", 1).unwrap();
    let r2 = store.put("k", 2).unwrap();
    let _r3 = store.put("k", 3).unwrap();
    let e = store.watch("k", 0).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Compacted);
    assert!(matches!(e, StateError::Compacted { requested: 0, oldest } if oldest == r1));
    assert!(e.to_string().contains("no longer all retained"), "{e}");
    let mut w = store.watch("k", r1).unwrap();
    assert_eq!(w.recv_timeout(LONG).unwrap().revision, r2);
}

#[test]
fn a_lagging_watcher_catches_up_from_history_or_fails_clearly() {
    let store = StateStore::with_config(StateConfig::new().watch_capacity(2).history_per_key(8));
    let from = store.revision();
    let mut w = store.watch("k", from).unwrap();
    let revs: Vec<u64> = (0..6).map(|i| store.put("k", i).unwrap()).collect();
    let got: Vec<u64> = (0..6)
        .map(|_| w.recv_timeout(LONG).unwrap().revision)
        .collect();
    assert_eq!(
        got, revs,
        "queue of 2 overflowed, the rest came from history"
    );
    // Now fall behind by more than the history keeps.
    let mut w2 = store.watch("k", store.revision()).unwrap();
    for i in 0..20 {
        store.put("k", i).unwrap();
    }
    // The two queued before the queue overflowed still arrive.
    for _ in 0..2 {
        assert!(!w2.recv_timeout(LONG).unwrap().is_delete());
    }
    let e = w2.recv_timeout(LONG).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Compacted);
}

#[test]
fn concurrent_writers_and_a_watcher_see_every_revision_once() {
    // A small watch queue forces catch-ups from history while writers run.
    let store =
        StateStore::with_config(StateConfig::new().watch_capacity(16).history_per_key(1000));
    let mut w = store.watch_prefix("", 0).unwrap();
    const THREADS: usize = 3;
    const EACH: usize = 500;
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let st = store.clone();
            s.spawn(move || {
                for i in 0..EACH {
                    st.put(&format!("k{t}.{}", i % 7), i as i64).unwrap();
                }
            });
        }
    });
    let total = (THREADS * EACH) as u64;
    let got: Vec<u64> = (0..total)
        .map(|_| w.recv_timeout(LONG).unwrap().revision)
        .collect();
    assert_eq!(got, (1..=total).collect::<Vec<_>>());
    assert!(w.try_recv().unwrap().is_none());
}

#[test]
fn snapshot_and_restore_round_trip() {
    let dir = tmp_dir("snap");
    let path = dir.join("state.json");
    let store = StateStore::new();
    let bytes = Value::Bytes(vec![0, 1, 254, 255]);
    store.as_writer("PSec").put("b", bytes.clone()).unwrap();
    store.put("f", f64::NEG_INFINITY).unwrap();
    store
        .put(
            "m",
            Value::from_json(r#"{"x":[1,2.5,"s",null,true]}"#).unwrap(),
        )
        .unwrap();
    store.put("gone", 1).unwrap();
    store.delete("gone").unwrap();
    let info = store.snapshot(&path).unwrap();
    assert_eq!((info.entries, info.revision), (3, store.revision()));
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.contains("\"format\":\"pso-state\"") && text.contains("\"version\":1"),
        "{text}"
    );

    let other = StateStore::new();
    other.put("stale", 1).unwrap();
    let mut live = other.watch("stale", 0).unwrap();
    let back = other.restore(&path).unwrap();
    assert_eq!(back.entries, 3);
    assert!(
        other.get("stale").unwrap().is_none(),
        "restore replaces the contents"
    );
    let b = other.get("b").unwrap().unwrap();
    assert_eq!((&*b.value, b.writer.as_deref()), (&bytes, Some("PSec")));
    assert_eq!(b.revision, store.get("b").unwrap().unwrap().revision);
    assert_eq!(
        *other.get("f").unwrap().unwrap().value,
        Value::Float(f64::NEG_INFINITY)
    );
    assert_eq!(other.list("").unwrap().len(), 3);
    assert_eq!(other.revision(), store.revision());
    // The live watch saw its backlog, then learns about the restore.
    assert_eq!(live.recv_timeout(LONG).unwrap().revision, 1);
    assert_eq!(
        live.recv_timeout(LONG).unwrap_err().kind(),
        ErrorKind::Closed
    );
    assert_eq!(
        other.watch("b", 0).unwrap_err().kind(),
        ErrorKind::Compacted
    );
    let r = other.put("new", 1).unwrap();
    assert!(
        r > back.revision,
        "revisions keep increasing after a restore"
    );
    let mut w = other.watch("new", back.revision).unwrap();
    assert_eq!(w.recv_timeout(LONG).unwrap().revision, r);

    std::fs::write(&path, b"{}").unwrap();
    assert_eq!(other.restore(&path).unwrap_err().kind(), ErrorKind::Parse);
    assert_eq!(
        other.restore(dir.join("missing.json")).unwrap_err().kind(),
        ErrorKind::Io
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn watchers_are_released_when_dropped() {
    let store = StateStore::new();
    for _ in 0..100 {
        let w = store.watch("k", store.revision()).unwrap();
        drop(w);
        store.put("k", 1).unwrap();
    }
    let shared = Arc::new(store);
    let mut w = shared.watch("k", shared.revision()).unwrap();
    w.close();
    assert_eq!(w.recv_timeout(LONG).unwrap_err().kind(), ErrorKind::Closed);
}

#[test]
fn handles_can_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<StateStore>();
    send_sync::<StateError>();
    send_sync::<pso_core::Entry>();
    send::<pso_core::Watcher>();
}
