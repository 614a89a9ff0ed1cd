//! The multi-node protocol (`sse_core::cluster::ClusterHub`) on a perfect
//! simulated broker passes the hub suites every engine passes.

use sse_conformance::sim::{Faults, SimBroker};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_hub_passes_the_hub_suite() {
    let broker = SimBroker::new(1, Faults::none());
    sse_conformance::hub::run(|| broker.node()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_hubs_pass_the_multi_node_suite() {
    let broker = SimBroker::new(2, Faults::none());
    sse_conformance::hub::run_nodes(|| broker.node()).await;
}
