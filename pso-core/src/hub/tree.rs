//! The subscription tree and its match cache.
//!
//! [`SubTree`] is a trie over pattern tokens: each node has literal children
//! (a hash map), one `*` child, the entries whose pattern ends at the node
//! (`here`) and the entries whose pattern ends with `>` right below it
//! (`rest`). Matching a topic walks at most two children per token (the
//! literal and `*`), so its cost depends on the depth of the topic and the
//! wildcards on its path, not on the number of subscriptions. Each entry
//! sits at exactly one node, so a match never yields an entry twice.
//!
//! [`Router`] pairs the tree with a cache `topic -> Arc<Matches>`:
//!
//! * The tree and the cache are two locks; the order is tree, then cache.
//!   A change (subscribe/unsubscribe) holds the tree write lock, clears the
//!   cache and bumps `generation` under the cache write lock.
//! * A miss computes the matches under the tree read lock, noting the
//!   generation, then inserts under the cache write lock only if the
//!   generation did not move. So the cache never holds a result computed
//!   from an older tree than the last change.
//! * `generation` is also what thread-local one-entry caches in the hub
//!   compare against (Acquire load; the bump is a Release store after the
//!   tree is changed).

#![forbid(unsafe_code)]

use smallvec::SmallVec;

use crate::metrics::hub::TopicSeries;
use crate::sync::{Arc, AtomicU64, AtomicUsize, OnceLock, Ordering, RwLock};

type Map<K, V> = foldhash::HashMap<K, V>;

/// A trie of subscriptions keyed by pattern tokens. See the module docs.
#[derive(Debug)]
pub(crate) struct SubTree<T> {
    root: Node<T>,
    len: usize,
}

#[derive(Debug)]
struct Node<T> {
    literal: Map<Box<str>, Node<T>>,
    star: Option<Box<Node<T>>>,
    here: Vec<T>,
    rest: Vec<T>,
}

impl<T> Default for Node<T> {
    fn default() -> Self {
        Node {
            literal: Map::default(),
            star: None,
            here: Vec::new(),
            rest: Vec::new(),
        }
    }
}

impl<T> Node<T> {
    fn is_empty(&self) -> bool {
        self.literal.is_empty()
            && self.star.is_none()
            && self.here.is_empty()
            && self.rest.is_empty()
    }
}

impl<T: Clone> Default for SubTree<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Clone> SubTree<T> {
    pub(crate) fn new() -> Self {
        SubTree {
            root: Node::default(),
            len: 0,
        }
    }

    /// Number of entries.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Adds `entry` under `pattern` (assumed valid).
    pub(crate) fn insert(&mut self, pattern: &str, entry: T) {
        let mut node = &mut self.root;
        let mut tokens = pattern.split('.').peekable();
        while let Some(tok) = tokens.next() {
            let last = tokens.peek().is_none();
            if last && tok == ">" {
                node.rest.push(entry);
                self.len += 1;
                return;
            }
            node = if tok == "*" {
                node.star.get_or_insert_with(Default::default)
            } else {
                node.literal.entry(tok.into()).or_default()
            };
        }
        node.here.push(entry);
        self.len += 1;
    }

    /// Removes the first entry under `pattern` for which `is_it` holds,
    /// pruning nodes left empty. Returns it.
    pub(crate) fn remove(&mut self, pattern: &str, is_it: impl Fn(&T) -> bool) -> Option<T> {
        let tokens: SmallVec<[&str; 8]> = pattern.split('.').collect();
        let removed = remove_in(&mut self.root, &tokens, &is_it);
        if removed.is_some() {
            self.len -= 1;
        }
        removed
    }

    /// Whether some entry's pattern matches a topic that begins with the
    /// tokens of `prefix` and has at least one more token.
    pub(crate) fn any_under(&self, prefix: &str) -> bool {
        let tokens: SmallVec<[&str; 8]> = prefix.split('.').collect();
        any_under(&self.root, &tokens)
    }

    /// Appends every entry whose pattern matches `topic` (assumed valid).
    pub(crate) fn collect(&self, topic: &str, out: &mut Vec<T>) {
        let tokens: SmallVec<[&str; 8]> = topic.split('.').collect();
        walk(&self.root, &tokens, out);
    }
}

fn remove_in<T>(node: &mut Node<T>, tokens: &[&str], is_it: &impl Fn(&T) -> bool) -> Option<T> {
    let take = |v: &mut Vec<T>| v.iter().position(is_it).map(|i| v.remove(i));
    match tokens {
        [] => take(&mut node.here),
        [">"] => take(&mut node.rest),
        [tok, rest @ ..] => {
            if *tok == "*" {
                let child = node.star.as_mut()?;
                let r = remove_in(child, rest, is_it);
                if child.is_empty() {
                    node.star = None;
                }
                r
            } else {
                let child = node.literal.get_mut(*tok)?;
                let r = remove_in(child, rest, is_it);
                if child.is_empty() {
                    node.literal.remove(*tok);
                }
                r
            }
        }
    }
}

fn any_under<T>(node: &Node<T>, tokens: &[&str]) -> bool {
    if !node.rest.is_empty() {
        return true;
    }
    match tokens.split_first() {
        // Below the prefix: any pattern that continues (pruned nodes are
        // never empty, so a child means an entry further down).
        None => !node.literal.is_empty() || node.star.is_some(),
        Some((tok, rest)) => {
            node.literal.get(*tok).is_some_and(|c| any_under(c, rest))
                || node.star.as_ref().is_some_and(|c| any_under(c, rest))
        }
    }
}

fn walk<T: Clone>(node: &Node<T>, tokens: &[&str], out: &mut Vec<T>) {
    match tokens.split_first() {
        None => out.extend(node.here.iter().cloned()),
        Some((tok, rest)) => {
            out.extend(node.rest.iter().cloned());
            if let Some(child) = node.literal.get(*tok) {
                walk(child, rest, out);
            }
            if let Some(star) = &node.star {
                walk(star, rest, out);
            }
        }
    }
}

/// The members of one queue group that match a topic; each message goes to
/// one of them, chosen round robin.
#[derive(Debug)]
pub(crate) struct GroupMatch<T> {
    pub(crate) name: Arc<str>,
    pub(crate) members: Vec<T>,
    pub(crate) next: AtomicUsize,
}

/// What a topic matches: plain subscriptions, and queue groups.
#[derive(Debug)]
pub(crate) struct Matches<T> {
    /// The topic, shared by every message published to it while cached.
    pub(crate) topic: Arc<str>,
    pub(crate) plain: Vec<T>,
    pub(crate) groups: Vec<GroupMatch<T>>,
    /// The topic's metrics series, looked up on the first publish that
    /// records metrics (so a cached match set costs no lookup).
    pub(crate) series: OnceLock<Arc<TopicSeries>>,
}

impl<T> Matches<T> {
    /// No matches for `topic`.
    #[cfg(test)]
    pub(crate) fn empty(topic: &str) -> Self {
        Matches {
            topic: topic.into(),
            plain: Vec::new(),
            groups: Vec::new(),
            series: OnceLock::new(),
        }
    }

    /// Whether nobody listens.
    pub(crate) fn is_empty(&self) -> bool {
        self.plain.is_empty() && self.groups.is_empty()
    }

    /// Number of subscriptions a message reaches (one per group).
    pub(crate) fn receivers(&self) -> usize {
        self.plain.len() + self.groups.len()
    }
}

/// An entry's queue group, if any, for splitting matches.
pub(crate) trait Grouped {
    fn group(&self) -> Option<&Arc<str>>;
}

/// The tree plus the match cache. See the module docs for the protocol.
#[derive(Debug)]
pub(crate) struct Router<T> {
    tree: RwLock<SubTree<T>>,
    cache: RwLock<Map<Box<str>, Arc<Matches<T>>>>,
    cache_capacity: usize,
    generation: AtomicU64,
}

impl<T: Clone + Grouped> Router<T> {
    pub(crate) fn new(cache_capacity: usize) -> Self {
        Router {
            tree: RwLock::new(SubTree::new()),
            cache: RwLock::new(Map::default()),
            cache_capacity: cache_capacity.max(1),
            generation: AtomicU64::new(1),
        }
    }

    /// The current generation (Acquire): a cached [`Matches`] taken at an
    /// older generation may miss a subscription added since.
    #[inline]
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Number of subscriptions.
    pub(crate) fn len(&self) -> usize {
        self.tree.read().len()
    }

    /// See [`SubTree::any_under`].
    pub(crate) fn any_under(&self, prefix: &str) -> bool {
        self.tree.read().any_under(prefix)
    }

    pub(crate) fn insert(&self, pattern: &str, entry: T) {
        let mut tree = self.tree.write();
        tree.insert(pattern, entry);
        self.invalidate();
        drop(tree);
    }

    pub(crate) fn remove(&self, pattern: &str, is_it: impl Fn(&T) -> bool) -> Option<T> {
        let mut tree = self.tree.write();
        let r = tree.remove(pattern, is_it);
        if r.is_some() {
            self.invalidate();
        }
        drop(tree);
        r
    }

    /// Clears the cache and bumps the generation; the caller holds the tree
    /// write lock.
    fn invalidate(&self) {
        let mut cache = self.cache.write();
        cache.clear();
        self.generation.fetch_add(1, Ordering::Release);
        drop(cache);
    }

    /// The matches of `topic` (assumed valid) and the generation they
    /// reflect.
    pub(crate) fn lookup(&self, topic: &str) -> (Arc<Matches<T>>, u64) {
        {
            let cache = self.cache.read();
            if let Some(m) = cache.get(topic) {
                let m = m.clone();
                // Read under the cache lock: a change clears the cache and
                // bumps the generation under its write lock, so `m` is at
                // least as new as this generation.
                let g = self.generation.load(Ordering::Acquire);
                return (m, g);
            }
        }
        let (matches, generation) = {
            let tree = self.tree.read();
            let mut found = Vec::new();
            tree.collect(topic, &mut found);
            (split(topic, found), self.generation.load(Ordering::Acquire))
        };
        let matches = Arc::new(matches);
        let mut cache = self.cache.write();
        if self.generation.load(Ordering::Acquire) == generation {
            if cache.len() >= self.cache_capacity {
                cache.clear();
            }
            cache.insert(topic.into(), matches.clone());
        }
        drop(cache);
        (matches, generation)
    }
}

fn split<T: Clone + Grouped>(topic: &str, found: Vec<T>) -> Matches<T> {
    let mut plain = Vec::with_capacity(found.len());
    let mut groups: Vec<GroupMatch<T>> = Vec::new();
    for e in found {
        match e.group() {
            None => plain.push(e),
            Some(g) => match groups.iter_mut().find(|x| &x.name == g) {
                Some(x) => x.members.push(e),
                None => groups.push(GroupMatch {
                    name: g.clone(),
                    members: vec![e],
                    next: AtomicUsize::new(0),
                }),
            },
        }
    }
    Matches {
        topic: topic.into(),
        plain,
        groups,
        series: OnceLock::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::topic::pattern_matches;
    use super::*;

    #[derive(Debug, Clone, PartialEq)]
    struct E(u32, Option<Arc<str>>);
    impl Grouped for E {
        fn group(&self) -> Option<&Arc<str>> {
            self.1.as_ref()
        }
    }

    fn ids(t: &SubTree<u32>, topic: &str) -> Vec<u32> {
        let mut v = Vec::new();
        t.collect(topic, &mut v);
        v.sort();
        v
    }

    #[test]
    fn trie_matches_like_the_reference() {
        let patterns = [
            "a", "a.b", "a.*", "a.>", "*.b", ">", "*.*", "a.b.c", "*.b.>", "a.*.c", "x.y",
        ];
        let mut t = SubTree::new();
        for (i, p) in patterns.iter().enumerate() {
            t.insert(p, i as u32);
        }
        for topic in [
            "a", "a.b", "a.c", "a.b.c", "x.b", "x.y", "q", "a.b.c.d", "z.b.q",
        ] {
            let want: Vec<u32> = patterns
                .iter()
                .enumerate()
                .filter(|(_, p)| pattern_matches(p, topic))
                .map(|(i, _)| i as u32)
                .collect();
            assert_eq!(ids(&t, topic), want, "topic {topic}");
        }
        assert_eq!(t.len(), patterns.len());
        for (i, p) in patterns.iter().enumerate() {
            assert_eq!(t.remove(p, |e| *e == i as u32), Some(i as u32));
            assert_eq!(t.remove(p, |e| *e == i as u32), None);
        }
        assert_eq!(t.len(), 0);
        assert!(t.root.is_empty(), "empty nodes are pruned");
    }

    #[test]
    fn any_under_agrees_with_matching_the_topics_below_a_prefix() {
        let prefixes = ["pso.lifecycle", "pso", "a", "a.b", "x.y.z"];
        // Every topic of up to 4 tokens over the patterns' tokens (plus one
        // they never name) below each prefix.
        let alphabet = ["q", "lifecycle", "activated", "b", "c", "x", "y", "z"];
        let mut below: Vec<String> = alphabet.iter().map(|t| t.to_string()).collect();
        for _ in 1..4 {
            let longer: Vec<String> = below
                .iter()
                .flat_map(|s| alphabet.iter().map(move |t| format!("{s}.{t}")))
                .collect();
            below.extend(longer);
        }
        for patterns in [
            &[][..],
            &["pso.lifecycle.>"][..],
            &["pso.lifecycle"][..],
            &["pso.*.x.y"][..],
            &["*.lifecycle.*.activated"][..],
            &[">"][..],
            &["pso.>"][..],
            &["a.b", "a.*.c", "x.y.z"][..],
            &["*"][..],
        ] {
            let mut t = SubTree::new();
            for (i, p) in patterns.iter().enumerate() {
                t.insert(p, i as u32);
            }
            for prefix in prefixes {
                let want = below.iter().any(|rest| {
                    let topic = format!("{prefix}.{rest}");
                    patterns.iter().any(|p| pattern_matches(p, &topic))
                });
                assert_eq!(t.any_under(prefix), want, "{patterns:?} under {prefix}");
            }
        }
    }

    #[test]
    fn router_caches_and_invalidates() {
        let r: Router<E> = Router::new(2);
        r.insert("a.*", E(1, None));
        let (m, g1) = r.lookup("a.b");
        assert_eq!(m.plain, vec![E(1, None)]);
        let (m2, _) = r.lookup("a.b");
        assert!(Arc::ptr_eq(&m, &m2), "second lookup hits the cache");
        let grp: Arc<str> = "workers".into();
        r.insert("a.b", E(2, Some(grp.clone())));
        r.insert(">", E(3, Some(grp.clone())));
        let (m3, g2) = r.lookup("a.b");
        assert!(g2 > g1);
        assert_eq!(m3.plain, vec![E(1, None)]);
        assert_eq!(m3.groups.len(), 1);
        assert_eq!(m3.groups[0].members.len(), 2);
        assert_eq!(m3.receivers(), 2);
        // Capacity 2: a third topic clears the cache instead of growing it.
        r.lookup("a.c");
        r.lookup("q");
        assert!(r.cache.read().len() <= 2);
        assert!(r.remove("a.*", |e| e.0 == 1).is_some());
        assert!(r.lookup("a.b").0.plain.is_empty());
        assert_eq!(r.len(), 2);
    }
}
