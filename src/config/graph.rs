//! The dependency graph of a stack: start levels, stop order, subsets with their dependencies,
//! and cycles. Pure: names and edges in, orders out.

use std::collections::{BTreeSet, HashMap};

use indexmap::{IndexMap, IndexSet};

use crate::config::{Service, Stack};

/// Services and the services each depends on, in file order.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    deps: IndexMap<String, Vec<String>>,
}

impl Graph {
    /// Edges to names that are not services are ignored (validation reports them).
    pub fn new<'a, I, D>(services: I) -> Self
    where
        I: IntoIterator<Item = (&'a str, D)>,
        D: IntoIterator<Item = &'a str>,
    {
        let mut deps: IndexMap<String, Vec<String>> = services
            .into_iter()
            .map(|(name, ds)| {
                (
                    name.to_string(),
                    ds.into_iter().map(str::to_string).collect(),
                )
            })
            .collect();
        let known: IndexSet<String> = deps.keys().cloned().collect();
        for ds in deps.values_mut() {
            ds.retain(|d| known.contains(d));
        }
        Self { deps }
    }

    pub fn from_stack(stack: &Stack) -> Self {
        Self::from_services(&stack.services)
    }

    pub fn from_services(services: &IndexMap<String, Service>) -> Self {
        Self::new(
            services
                .iter()
                .map(|(n, s)| (n.as_str(), s.depends_on.keys().map(String::as_str))),
        )
    }

    pub fn dependencies(&self, name: &str) -> &[String] {
        self.deps.get(name).map_or(&[], Vec::as_slice)
    }

    /// Services that depend on `name` directly.
    pub fn dependents(&self, name: &str) -> Vec<&str> {
        self.deps
            .iter()
            .filter(|(_, ds)| ds.iter().any(|d| d == name))
            .map(|(n, _)| n.as_str())
            .collect()
    }

    /// The first cycle found, in order, closed: `[a, b, c, a]`. A self-dependency is `[a, a]`.
    pub fn find_cycle(&self) -> Option<Vec<String>> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            OnPath,
            Done,
        }
        let mut marks: HashMap<&str, Mark> =
            self.deps.keys().map(|k| (k.as_str(), Mark::New)).collect();
        let mut path: Vec<&str> = Vec::new();

        fn visit<'g>(
            g: &'g Graph,
            n: &'g str,
            marks: &mut HashMap<&'g str, Mark>,
            path: &mut Vec<&'g str>,
        ) -> Option<Vec<String>> {
            marks.insert(n, Mark::OnPath);
            path.push(n);
            for d in g.dependencies(n) {
                match marks.get(d.as_str()).copied() {
                    Some(Mark::OnPath) => {
                        let start = path.iter().position(|p| *p == d.as_str()).unwrap_or(0);
                        let mut cycle: Vec<String> =
                            path[start..].iter().map(|s| s.to_string()).collect();
                        cycle.push(d.clone());
                        return Some(cycle);
                    }
                    Some(Mark::New) => {
                        if let Some(c) = visit(g, d, marks, path) {
                            return Some(c);
                        }
                    }
                    _ => {}
                }
            }
            path.pop();
            marks.insert(n, Mark::Done);
            None
        }

        for n in self.deps.keys() {
            if marks.get(n.as_str()) == Some(&Mark::New) {
                if let Some(c) = visit(self, n, &mut marks, &mut path) {
                    return Some(c);
                }
            }
        }
        None
    }

    /// Start levels: level 0 has no dependencies; everything in one level can start together.
    /// Within a level, services keep file order. Services on a cycle are left out (validation
    /// rejects cycles before this is used).
    pub fn levels(&self) -> Vec<Vec<String>> {
        let mut level_of: IndexMap<&str, usize> = IndexMap::new();
        let mut changed = true;
        while changed {
            changed = false;
            for (n, ds) in &self.deps {
                if level_of.contains_key(n.as_str()) {
                    continue;
                }
                if ds.iter().all(|d| level_of.contains_key(d.as_str())) {
                    let lvl = ds
                        .iter()
                        .map(|d| level_of[d.as_str()] + 1)
                        .max()
                        .unwrap_or(0);
                    level_of.insert(n, lvl);
                    changed = true;
                }
            }
        }
        let depth = level_of.values().copied().max().map_or(0, |m| m + 1);
        let mut levels = vec![Vec::new(); depth];
        for n in self.deps.keys() {
            if let Some(l) = level_of.get(n.as_str()) {
                levels[*l].push(n.clone());
            }
        }
        levels
    }

    /// One start order: the levels flattened.
    pub fn start_order(&self) -> Vec<String> {
        self.levels().into_iter().flatten().collect()
    }

    /// Stop order: dependents before their dependencies (the start order reversed).
    pub fn stop_order(&self) -> Vec<String> {
        let mut order = self.start_order();
        order.reverse();
        order
    }

    /// `names` plus everything they depend on, transitively, in file order. Unknown names are
    /// returned as the error.
    pub fn closure<'a>(
        &self,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<Vec<String>, Vec<String>> {
        let mut want: BTreeSet<&str> = BTreeSet::new();
        let mut unknown = Vec::new();
        let mut todo: Vec<&str> = Vec::new();
        for n in names {
            match self.deps.get_key_value(n) {
                Some((k, _)) => todo.push(k.as_str()),
                None => unknown.push(n.to_string()),
            }
        }
        if !unknown.is_empty() {
            return Err(unknown);
        }
        while let Some(n) = todo.pop() {
            if want.insert(n) {
                todo.extend(self.dependencies(n).iter().map(String::as_str));
            }
        }
        Ok(self
            .deps
            .keys()
            .filter(|k| want.contains(k.as_str()))
            .cloned()
            .collect())
    }

    /// The graph restricted to `names` (edges to services outside are dropped).
    pub fn subset(&self, names: &[String]) -> Graph {
        Graph::new(
            self.deps
                .iter()
                .filter(|(n, _)| names.contains(n))
                .map(|(n, ds)| (n.as_str(), ds.iter().map(String::as_str))),
        )
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.deps.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(edges: &[(&'static str, &[&'static str])]) -> Graph {
        Graph::new(edges.iter().map(|(n, ds)| (*n, ds.iter().copied())))
    }

    fn ensurestudy() -> Graph {
        g(&[
            ("zookeeper", &[]),
            ("kafka", &["zookeeper"]),
            ("postgres", &[]),
            ("qdrant", &[]),
            ("redis", &[]),
            ("core-service", &["postgres", "redis"]),
            ("celery-worker", &["postgres", "redis"]),
            ("ai-service", &["qdrant", "redis"]),
            ("frontend", &["core-service", "ai-service"]),
        ])
    }

    #[test]
    fn levels_of_the_reference_stack() {
        assert_eq!(
            ensurestudy().levels(),
            vec![
                vec!["zookeeper", "postgres", "qdrant", "redis"],
                vec!["kafka", "core-service", "celery-worker", "ai-service"],
                vec!["frontend"],
            ]
        );
    }

    #[test]
    fn stop_order_reverses_start_order() {
        let graph = ensurestudy();
        let stop = graph.stop_order();
        let pos = |n: &str| stop.iter().position(|s| s == n).unwrap();
        for (n, ds) in &graph.deps {
            for d in ds {
                assert!(pos(n) < pos(d), "{n} must stop before its dependency {d}");
            }
        }
    }

    #[test]
    fn closure_pulls_in_dependencies() {
        let graph = ensurestudy();
        assert_eq!(
            graph.closure(["core-service"]).unwrap(),
            vec!["postgres", "redis", "core-service"]
        );
        assert_eq!(
            graph.closure(["frontend"]).unwrap(),
            vec![
                "postgres",
                "qdrant",
                "redis",
                "core-service",
                "ai-service",
                "frontend"
            ]
        );
        assert_eq!(
            graph.closure(["kafka", "redis"]).unwrap(),
            vec!["zookeeper", "kafka", "redis"]
        );
        assert_eq!(graph.closure(["nope"]), Err(vec!["nope".to_string()]));
    }

    #[test]
    fn cycles_are_printed_in_order() {
        type Edges<'a> = &'a [(&'a str, &'a [&'a str])];
        let cases: &[(Edges, Option<&[&str]>)] = &[
            (&[("a", &[]), ("b", &["a"])], None),
            (
                &[
                    ("alpha", &["beta"]),
                    ("beta", &["gamma"]),
                    ("gamma", &["alpha"]),
                ],
                Some(&["alpha", "beta", "gamma", "alpha"]),
            ),
            (&[("a", &["a"])], Some(&["a", "a"])),
            (
                &[("x", &[]), ("a", &["b"]), ("b", &["c"]), ("c", &["b"])],
                Some(&["b", "c", "b"]),
            ),
        ];
        for (edges, want) in cases {
            let got = g(edges).find_cycle();
            assert_eq!(
                got.as_deref()
                    .map(|c| c.iter().map(String::as_str).collect::<Vec<_>>()),
                want.map(|w| w.to_vec()),
                "{edges:?}"
            );
        }
    }

    #[test]
    fn unknown_edges_are_ignored() {
        let graph = g(&[("a", &["ghost"]), ("b", &["a"])]);
        assert_eq!(graph.levels(), vec![vec!["a"], vec!["b"]]);
        assert_eq!(graph.dependents("a"), vec!["b"]);
    }
}
