//! The resource DAG: resources as nodes, "must happen before" as edges (dependency → dependent).

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, HashSet};
use std::fmt::Write as _;

use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::Direction;

use crate::error::GraphError;
use crate::resource::{Address, Resource};

#[derive(Debug, Default)]
pub struct ResourceGraph {
    graph: DiGraph<Resource, ()>,
    index: HashMap<Address, NodeIndex>,
}

impl ResourceGraph {
    pub fn len(&self) -> usize {
        self.graph.node_count()
    }

    pub fn is_empty(&self) -> bool {
        self.graph.node_count() == 0
    }

    pub fn get(&self, address: &Address) -> Option<&Resource> {
        self.index.get(address).map(|i| &self.graph[*i])
    }

    /// The direct dependencies of `address`, sorted.
    pub fn depends_on(&self, address: &Address) -> Vec<Address> {
        let Some(i) = self.index.get(address) else {
            return Vec::new();
        };
        let mut deps: Vec<Address> =
            self.graph.neighbors_directed(*i, Direction::Incoming).map(|n| self.graph[n].address.clone()).collect();
        deps.sort();
        deps
    }

    /// Every resource, dependencies before dependents; among ready resources, the one compiled first goes
    /// first, so the order is the same on every run.
    pub fn in_dependency_order(&self) -> Vec<&Resource> {
        let mut pending: Vec<usize> =
            self.graph.node_indices().map(|i| self.graph.neighbors_directed(i, Direction::Incoming).count()).collect();
        let mut ready: BinaryHeap<Reverse<NodeIndex>> =
            self.graph.node_indices().filter(|i| pending[i.index()] == 0).map(Reverse).collect();
        let mut out = Vec::with_capacity(self.len());
        while let Some(Reverse(i)) = ready.pop() {
            out.push(&self.graph[i]);
            for next in self.graph.neighbors_directed(i, Direction::Outgoing) {
                pending[next.index()] -= 1;
                if pending[next.index()] == 0 {
                    ready.push(Reverse(next));
                }
            }
        }
        out
    }

    /// `targets` with everything they depend on, transitively.
    pub fn with_dependencies(&self, targets: &[Address]) -> BTreeSet<Address> {
        let mut out = BTreeSet::new();
        let mut stack: Vec<NodeIndex> = targets.iter().filter_map(|t| self.index.get(t).copied()).collect();
        while let Some(i) = stack.pop() {
            if out.insert(self.graph[i].address.clone()) {
                stack.extend(self.graph.neighbors_directed(i, Direction::Incoming));
            }
        }
        out
    }

    /// Graphviz text of the graph, nodes and edges sorted, for snapshots and `sealer graph`.
    pub fn to_dot(&self) -> String {
        let mut nodes: Vec<String> = self.graph.node_weights().map(|r| r.address.to_string()).collect();
        nodes.sort();
        let mut edges: Vec<(String, String)> = self
            .graph
            .edge_indices()
            .filter_map(|e| self.graph.edge_endpoints(e))
            .map(|(a, b)| (self.graph[a].address.to_string(), self.graph[b].address.to_string()))
            .collect();
        edges.sort();
        let mut out = String::from("digraph sealer {\n");
        for n in nodes {
            let _ = writeln!(out, "  \"{n}\";");
        }
        for (a, b) in edges {
            let _ = writeln!(out, "  \"{a}\" -> \"{b}\";");
        }
        out.push_str("}\n");
        out
    }
}

/// Builds a [`ResourceGraph`], refusing duplicate resources, edges to unknown resources and cycles.
#[derive(Default)]
pub struct GraphBuilder {
    graph: ResourceGraph,
    /// petgraph's `update_edge` scans the source's edges; a hub like the last master join has one edge per
    /// node, so duplicates are found here instead, in constant time.
    edges: HashSet<(NodeIndex, NodeIndex)>,
}

impl GraphBuilder {
    pub fn add(&mut self, resource: Resource) -> Result<(), GraphError> {
        if self.graph.index.contains_key(&resource.address) {
            return Err(GraphError::Duplicate(resource.address.to_string()));
        }
        let address = resource.address.clone();
        let i = self.graph.graph.add_node(resource);
        self.graph.index.insert(address, i);
        Ok(())
    }

    pub fn contains(&self, address: &Address) -> bool {
        self.graph.index.contains_key(address)
    }

    /// `dependent` runs after `dependency`.
    pub fn depends(&mut self, dependent: &Address, dependency: &Address) -> Result<(), GraphError> {
        let missing = |a: &Address| GraphError::Dangling { from: dependent.to_string(), to: a.to_string() };
        let to = *self.graph.index.get(dependent).ok_or_else(|| missing(dependent))?;
        let from = *self.graph.index.get(dependency).ok_or_else(|| missing(dependency))?;
        if self.edges.insert((from, to)) {
            self.graph.graph.add_edge(from, to, ());
        }
        Ok(())
    }

    pub fn finish(self) -> Result<ResourceGraph, GraphError> {
        if let Err(cycle) = petgraph::algo::toposort(&self.graph.graph, None) {
            return Err(GraphError::Cycle(self.graph.graph[cycle.node_id()].address.to_string()));
        }
        Ok(self.graph)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::Kind;

    fn res(kind: Kind, key: &str) -> Resource {
        Resource { address: Address::new(kind, key), host: None, attributes: Default::default() }
    }

    #[test]
    fn cycle_and_dangling_edges_are_internal_errors_naming_the_resource() {
        let mut b = GraphBuilder::default();
        b.add(res(Kind::Host, "a")).unwrap();
        b.add(res(Kind::Hostname, "a")).unwrap();
        let (host, name) = (Address::new(Kind::Host, "a"), Address::new(Kind::Hostname, "a"));
        let ghost = Address::new(Kind::Image, "a");
        assert_eq!(
            b.depends(&name, &ghost).unwrap_err().to_string(),
            "internal error: `hostname.a` depends on `image.a`, which is not in the graph"
        );
        b.depends(&name, &host).unwrap();
        b.depends(&host, &name).unwrap();
        assert!(b.finish().unwrap_err().to_string().contains("dependency cycle through"));
    }

    #[test]
    fn duplicate_resources_are_refused() {
        let mut b = GraphBuilder::default();
        b.add(res(Kind::Host, "a")).unwrap();
        assert!(b.add(res(Kind::Host, "a")).is_err());
    }

    #[test]
    fn order_is_dependencies_first_then_compile_order() {
        let mut b = GraphBuilder::default();
        for key in ["c", "b", "a"] {
            b.add(res(Kind::Host, key)).unwrap();
        }
        b.depends(&Address::new(Kind::Host, "c"), &Address::new(Kind::Host, "a")).unwrap();
        let g = b.finish().unwrap();
        let order: Vec<String> = g.in_dependency_order().iter().map(|r| r.address.key.clone()).collect();
        assert_eq!(order, ["b", "a", "c"]);
    }
}
