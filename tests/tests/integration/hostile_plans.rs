//! The scheduler survives any plan a client can send: plans built here
//! (not by Ember's client, which refuses statements nested too deeply) and
//! sent straight to its gRPC service.

use std::time::Duration;

use ballista_core::serde::protobuf::execute_query_params::Query;
use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;
use ballista_core::serde::protobuf::{ExecuteQueryParams, KeyValuePair};
use datafusion::prelude::SessionContext;
use datafusion_proto::bytes::logical_plan_to_bytes;
use datafusion_proto::protobuf::logical_expr_node::ExprType;
use datafusion_proto::protobuf::logical_plan_node::LogicalPlanType;
use datafusion_proto::protobuf::{LogicalExprNode, LogicalPlanNode};
use ember_tests::{assert_cluster_answers, start_cluster};
use prost::Message;

/// `SELECT 1 + 1 + ... + 1` with `terms` terms, as the bytes of a logical
/// plan: DataFusion encodes a chain of one operator flat, so the message is
/// small, and decoding it builds an expression `terms` levels deep.
async fn chain_plan(terms: usize) -> Vec<u8> {
    let ctx = SessionContext::new();
    let plan = ctx
        .sql("SELECT 1 + 1 + 1 AS x")
        .await
        .unwrap()
        .logical_plan()
        .clone();
    let bytes = logical_plan_to_bytes(&plan).unwrap();
    let mut node = LogicalPlanNode::decode(bytes.as_ref()).unwrap();
    let Some(LogicalPlanType::Projection(projection)) = node.logical_plan_type.as_mut() else {
        panic!("a projection: {node:?}");
    };
    let expr = match projection.expr[0].expr_type.as_mut() {
        Some(ExprType::Alias(alias)) => alias.expr.as_mut().unwrap().expr_type.as_mut(),
        other => other,
    };
    let Some(ExprType::BinaryExpr(chain)) = expr else {
        panic!("a flat chain: {projection:?}");
    };
    let one: LogicalExprNode = chain.operands[0].clone();
    chain.operands = vec![one; terms];
    node.encode_to_vec()
}

async fn submit(address: &str, plan: Vec<u8>) -> Result<(), tonic::Status> {
    let mut client = SchedulerGrpcClient::connect(format!("http://{address}"))
        .await
        .expect("the scheduler answers")
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);
    let mut request = tonic::Request::new(ExecuteQueryParams {
        session_id: String::new(),
        settings: vec![KeyValuePair {
            key: "ember.max_expression_depth".into(),
            value: Some("100000000".into()),
        }],
        operation_id: "hostile".into(),
        query: Some(Query::LogicalPlan(plan)),
    });
    let version = ballista_core::BALLISTA_VERSION
        .parse()
        .expect("a header value");
    request
        .metadata_mut()
        .insert(ballista_core::version::BALLISTA_VERSION_HEADER, version);
    client.execute_query(request).await.map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_nested_too_deeply_is_refused_and_the_scheduler_lives_on() {
    let mut cluster = start_cluster(1).await;
    let address = cluster.address().to_string();
    let status = submit(&address, chain_plan(200_000).await)
        .await
        .expect_err("a 200,000-deep plan is refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("--max-plan-depth"), "{status:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        cluster.exited_process(),
        None,
        "a process of the cluster died"
    );
    tokio::task::spawn_blocking(move || assert_cluster_answers(&address))
        .await
        .unwrap();
}
