//! Ember's logical and physical extension codecs.
//!
//! Plans cross process boundaries as protobuf. DataFusion encodes its own
//! nodes; extension nodes are handed to a codec. Ember's codecs wrap
//! Ballista's (which encodes its shuffle and cache operators and the file
//! formats) and add Ember's own operators, which register an
//! [`ExtensionOperatorCodec`] under a unique name.
//!
//! Every extension node is written inside an envelope
//! ([`ember_proto::LogicalExtensionEnvelope`] /
//! [`ember_proto::PhysicalExtensionEnvelope`]) that records who encoded it, so
//! decoding never has to guess. The client, the scheduler and every executor
//! must use these codecs (they come with [`crate::session_config`]).

use std::fmt::Debug;
use std::sync::Arc;

use ballista_core::serde::{BallistaLogicalExtensionCodec, BallistaPhysicalExtensionCodec};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::TableProvider;
use datafusion::common::TableReference;
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::FileFormatFactory;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{AggregateUDF, Extension, LogicalPlan, ScalarUDF, WindowUDF};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr_common::physical_expr::proto_decode::PhysicalExprDecodeCtx;
use datafusion::physical_expr_common::physical_expr::proto_encode::PhysicalExprEncodeCtx;
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use ember_proto::{
    ExtensionOperator, LogicalExtensionEnvelope, PhysicalExtensionEnvelope,
    logical_extension_envelope, physical_extension_envelope,
};
use prost::Message;

use crate::cache::{CACHED_DATASET, CachedDataset};
use crate::checked_arithmetic::OverflowCheckedExpr;
use crate::conjunctions::{ORDERED_CONJUNCTION_WIRE, OrderedConjunction};
use crate::functions::{self, MAP_PARTITIONS, MapPartitionsTable};
use crate::memory_table::{MEMORY_TABLE, decode_memory_table, encode_memory_table};

/// The one input of an operator named `name`, or an error saying how many
/// it was given: for codecs' `decode` and `with_new_children`.
pub(crate) fn single_input(
    inputs: &[Arc<dyn ExecutionPlan>],
    name: &str,
) -> Result<Arc<dyn ExecutionPlan>> {
    match inputs {
        [input] => Ok(input.clone()),
        _ => Err(DataFusionError::Internal(format!(
            "{name} takes one input, got {}",
            inputs.len()
        ))),
    }
}

/// Encodes and decodes one of Ember's own physical operators.
///
/// Implementations are registered on [`EmberPhysicalCodec`] on every process;
/// the `name` identifies the operator on the wire and must be unique.
pub trait ExtensionOperatorCodec: Debug + Send + Sync {
    /// The operator's wire name, for example `"ember.parallelize"`.
    fn name(&self) -> &str;

    /// Encodes `node` if it is this codec's operator; returns `Ok(None)` for
    /// any other node.
    fn try_encode(&self, node: &Arc<dyn ExecutionPlan>) -> Result<Option<Vec<u8>>>;

    /// Rebuilds the operator from its payload and its (already decoded) inputs.
    fn decode(
        &self,
        payload: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
    ) -> Result<Arc<dyn ExecutionPlan>>;
}

/// A plan calls a function this process does not hold.
fn missing_function(name: &str) -> DataFusionError {
    DataFusionError::Plan(format!(
        "this process has no function named `{name}`: named functions must be registered \
         on the client, the scheduler and every executor (ember_core::functions::register_library)"
    ))
}

/// A function's definition: the portable library's it names, else what
/// Ballista's codec makes of it (an error naming the function).
fn decode_function<F>(
    portable: Option<Result<Arc<F>>>,
    name: &str,
    ballista: impl FnOnce() -> Result<Arc<F>>,
) -> Result<Arc<F>> {
    portable.unwrap_or_else(|| ballista().map_err(|_| missing_function(name)))
}

/// Ballista's encoding of a function, unless its portable definition was
/// written already.
fn encode_function(portable: bool, ballista: impl FnOnce() -> Result<()>) -> Result<()> {
    if portable { Ok(()) } else { ballista() }
}

fn decode_error(what: &str, err: prost::DecodeError) -> DataFusionError {
    DataFusionError::Internal(format!("cannot decode Ember {what} envelope: {err}"))
}

fn encode_envelope(message: &impl Message, buf: &mut Vec<u8>) -> Result<()> {
    message
        .encode(buf)
        .map_err(|e| DataFusionError::Internal(format!("cannot encode Ember envelope: {e}")))
}

/// Ember's physical extension codec: Ballista's codec plus Ember's operators.
#[derive(Debug)]
pub struct EmberPhysicalCodec {
    ballista: Arc<dyn PhysicalExtensionCodec>,
    operators: Vec<Arc<dyn ExtensionOperatorCodec>>,
}

impl Default for EmberPhysicalCodec {
    fn default() -> Self {
        Self {
            ballista: Arc::new(BallistaPhysicalExtensionCodec::default()),
            operators: vec![
                Arc::new(crate::write::StagedWriteCodec),
                Arc::new(crate::write::WriteCommitCodec),
                Arc::new(crate::cache::CacheOperatorCodec),
                Arc::new(crate::functions::MapPartitionsCodec),
                Arc::new(crate::exchange_properties::ExchangePropertiesCodec),
                Arc::new(crate::grouping_sets::ExpandGroupingSetsCodec),
            ],
        }
    }
}

impl EmberPhysicalCodec {
    /// Adds an operator codec. Operators are matched in registration order.
    pub fn with_operator(mut self, operator: Arc<dyn ExtensionOperatorCodec>) -> Self {
        self.operators.push(operator);
        self
    }

    /// The wire names of the registered Ember operators.
    pub fn operator_names(&self) -> Vec<&str> {
        self.operators.iter().map(|op| op.name()).collect()
    }
}

impl PhysicalExtensionCodec for EmberPhysicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let envelope =
            PhysicalExtensionEnvelope::decode(buf).map_err(|e| decode_error("physical plan", e))?;
        match envelope.node {
            Some(physical_extension_envelope::Node::Ballista(bytes)) => {
                self.ballista
                    .try_decode(&bytes, inputs, ctx, proto_converter)
            }
            Some(physical_extension_envelope::Node::Ember(op)) => {
                let codec = self
                    .operators
                    .iter()
                    .find(|codec| codec.name() == op.name)
                    .ok_or_else(|| {
                        DataFusionError::Plan(format!(
                            "this process does not know the Ember operator `{}`; \
                             are the client, scheduler and executors the same Ember version?",
                            op.name
                        ))
                    })?;
                codec.decode(&op.payload, inputs, ctx)
            }
            None => Err(DataFusionError::Internal(
                "empty Ember physical extension envelope".to_string(),
            )),
        }
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        for codec in &self.operators {
            if let Some(payload) = codec.try_encode(&node)? {
                let envelope = PhysicalExtensionEnvelope {
                    node: Some(physical_extension_envelope::Node::Ember(
                        ExtensionOperator {
                            name: codec.name().to_string(),
                            payload,
                        },
                    )),
                };
                return encode_envelope(&envelope, buf);
            }
        }
        let mut inner = Vec::new();
        self.ballista
            .try_encode(node, &mut inner, proto_converter)?;
        let envelope = PhysicalExtensionEnvelope {
            node: Some(physical_extension_envelope::Node::Ballista(inner)),
        };
        encode_envelope(&envelope, buf)
    }

    fn try_decode_expr(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn PhysicalExpr>],
        _ctx: &PhysicalExprDecodeCtx<'_>,
    ) -> Result<Arc<dyn PhysicalExpr>> {
        if buf == ORDERED_CONJUNCTION_WIRE.as_bytes() {
            return Ok(Arc::new(OrderedConjunction::try_new(inputs.to_vec())?));
        }
        match OverflowCheckedExpr::from_wire(buf, inputs)? {
            Some(expr) => Ok(Arc::new(expr)),
            None => Err(DataFusionError::Plan(format!(
                "this process does not know the Ember expression `{}`; \
                 are the client, scheduler and executors the same Ember version?",
                String::from_utf8_lossy(buf)
            ))),
        }
    }

    fn try_encode_expr(
        &self,
        node: &Arc<dyn PhysicalExpr>,
        buf: &mut Vec<u8>,
        _ctx: &PhysicalExprEncodeCtx<'_>,
    ) -> Result<()> {
        if node.downcast_ref::<OrderedConjunction>().is_some() {
            buf.extend_from_slice(ORDERED_CONJUNCTION_WIRE.as_bytes());
            return Ok(());
        }
        match node.downcast_ref::<OverflowCheckedExpr>() {
            Some(checked) => {
                buf.extend_from_slice(checked.wire_name().as_bytes());
                Ok(())
            }
            None => Err(DataFusionError::NotImplemented(format!(
                "Ember cannot encode the expression `{node}`"
            ))),
        }
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        decode_function(functions::decode_portable_udf(name, buf), name, || {
            self.ballista.try_decode_udf(name, buf)
        })
    }

    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()> {
        encode_function(functions::encode_portable_udf(node, buf), || {
            self.ballista.try_encode_udf(node, buf)
        })
    }

    fn try_decode_udaf(&self, name: &str, buf: &[u8]) -> Result<Arc<AggregateUDF>> {
        decode_function(functions::decode_portable_udaf(name, buf), name, || {
            self.ballista.try_decode_udaf(name, buf)
        })
    }

    fn try_encode_udaf(&self, node: &AggregateUDF, buf: &mut Vec<u8>) -> Result<()> {
        encode_function(functions::encode_portable_udaf(node, buf), || {
            self.ballista.try_encode_udaf(node, buf)
        })
    }

    fn try_decode_udwf(&self, name: &str, buf: &[u8]) -> Result<Arc<WindowUDF>> {
        self.ballista.try_decode_udwf(name, buf)
    }

    fn try_encode_udwf(&self, node: &WindowUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.ballista.try_encode_udwf(node, buf)
    }
}

/// Ember's logical extension codec: Ballista's codec (cache nodes, file
/// formats, table providers) inside Ember's envelope.
///
/// Ember's logical operators will be added beside Ballista's the same way as
/// the physical ones.
#[derive(Debug)]
pub struct EmberLogicalCodec {
    ballista: Arc<dyn LogicalExtensionCodec>,
}

impl Default for EmberLogicalCodec {
    fn default() -> Self {
        Self {
            ballista: Arc::new(BallistaLogicalExtensionCodec::default()),
        }
    }
}

impl EmberLogicalCodec {
    fn unwrap_ballista(&self, buf: &[u8], what: &str) -> Result<Vec<u8>> {
        let envelope = LogicalExtensionEnvelope::decode(buf).map_err(|e| decode_error(what, e))?;
        match envelope.node {
            Some(logical_extension_envelope::Node::Ballista(bytes)) => Ok(bytes),
            Some(logical_extension_envelope::Node::Ember(op)) => {
                Err(DataFusionError::Plan(format!(
                    "this process does not know the Ember logical operator `{}`",
                    op.name
                )))
            }
            None => Err(DataFusionError::Internal(format!(
                "empty Ember {what} envelope"
            ))),
        }
    }

    fn wrap_ballista(inner: Vec<u8>, buf: &mut Vec<u8>) -> Result<()> {
        let envelope = LogicalExtensionEnvelope {
            node: Some(logical_extension_envelope::Node::Ballista(inner)),
        };
        encode_envelope(&envelope, buf)
    }
}

/// Writes one of Ember's own tables, `name` with its `payload`, in Ember's
/// envelope.
fn encode_ember_table(name: &str, payload: Vec<u8>, buf: &mut Vec<u8>) -> Result<()> {
    let envelope = LogicalExtensionEnvelope {
        node: Some(logical_extension_envelope::Node::Ember(ExtensionOperator {
            name: name.to_string(),
            payload,
        })),
    };
    encode_envelope(&envelope, buf)
}

impl LogicalExtensionCodec for EmberLogicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[LogicalPlan],
        ctx: &TaskContext,
    ) -> Result<Extension> {
        let inner = self.unwrap_ballista(buf, "logical plan")?;
        self.ballista.try_decode(&inner, inputs, ctx)
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> Result<()> {
        let mut inner = Vec::new();
        self.ballista.try_encode(node, &mut inner)?;
        Self::wrap_ballista(inner, buf)
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &TableReference,
        schema: SchemaRef,
        ctx: &TaskContext,
    ) -> Result<Arc<dyn TableProvider>> {
        let envelope =
            LogicalExtensionEnvelope::decode(buf).map_err(|e| decode_error("table provider", e))?;
        if let Some(logical_extension_envelope::Node::Ember(op)) = &envelope.node {
            match op.name.as_str() {
                MEMORY_TABLE => return Ok(Arc::new(decode_memory_table(&op.payload, schema)?)),
                CACHED_DATASET => {
                    return Ok(Arc::new(CachedDataset::decode(&op.payload, ctx, self)?));
                }
                MAP_PARTITIONS => {
                    return Ok(Arc::new(MapPartitionsTable::decode(
                        &op.payload,
                        ctx,
                        self,
                    )?));
                }
                _ => {}
            }
        }
        let inner = self.unwrap_ballista(buf, "table provider")?;
        self.ballista
            .try_decode_table_provider(&inner, table_ref, schema, ctx)
    }

    fn try_encode_table_provider(
        &self,
        table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        // Tables the client holds travel in the plan.
        if let Some(memory) = node.downcast_ref::<MemTable>() {
            return encode_ember_table(MEMORY_TABLE, encode_memory_table(memory)?, buf);
        }
        // Cached datasets travel with their lineage.
        if let Some(cached) = node.downcast_ref::<CachedDataset>() {
            return encode_ember_table(CACHED_DATASET, cached.encode(self)?, buf);
        }
        if let Some(table) = node.downcast_ref::<MapPartitionsTable>() {
            return encode_ember_table(MAP_PARTITIONS, table.encode(self)?, buf);
        }
        let mut inner = Vec::new();
        let kind = provider_kind(node.as_ref());
        self.ballista
            .try_encode_table_provider(table_ref, node, &mut inner)
            .map_err(|_| {
                DataFusionError::NotImplemented(format!(
                    "{table_ref} ({kind}) cannot be sent to the cluster: a cluster reads files, \
                     tables the client holds and cached datasets; run this query embedded"
                ))
            })?;
        Self::wrap_ballista(inner, buf)
    }

    fn try_decode_file_format(
        &self,
        buf: &[u8],
        ctx: &TaskContext,
    ) -> Result<Arc<dyn FileFormatFactory>> {
        let inner = self.unwrap_ballista(buf, "file format")?;
        self.ballista.try_decode_file_format(&inner, ctx)
    }

    fn try_encode_file_format(
        &self,
        buf: &mut Vec<u8>,
        node: Arc<dyn FileFormatFactory>,
    ) -> Result<()> {
        let mut inner = Vec::new();
        self.ballista.try_encode_file_format(&mut inner, node)?;
        Self::wrap_ballista(inner, buf)
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        decode_function(functions::decode_portable_udf(name, buf), name, || {
            self.ballista.try_decode_udf(name, buf)
        })
    }

    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()> {
        encode_function(functions::encode_portable_udf(node, buf), || {
            self.ballista.try_encode_udf(node, buf)
        })
    }

    fn try_decode_udaf(&self, name: &str, buf: &[u8]) -> Result<Arc<AggregateUDF>> {
        decode_function(functions::decode_portable_udaf(name, buf), name, || {
            self.ballista.try_decode_udaf(name, buf)
        })
    }

    fn try_encode_udaf(&self, node: &AggregateUDF, buf: &mut Vec<u8>) -> Result<()> {
        encode_function(functions::encode_portable_udaf(node, buf), || {
            self.ballista.try_encode_udaf(node, buf)
        })
    }

    fn try_decode_udwf(&self, name: &str, buf: &[u8]) -> Result<Arc<WindowUDF>> {
        self.ballista.try_decode_udwf(name, buf)
    }

    fn try_encode_udwf(&self, node: &WindowUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.ballista.try_encode_udwf(node, buf)
    }
}

/// What kind of table `provider` is, from its type's name in its `Debug`
/// form (`GenerateSeriesTable { .. }` gives `GenerateSeriesTable`).
fn provider_kind(provider: &dyn TableProvider) -> String {
    let printed = format!("{provider:?}");
    let name: String = printed
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    if name.is_empty() {
        "a table of another kind".to_string()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::physical_plan::empty::EmptyExec;
    use datafusion::prelude::SessionContext;
    use datafusion_proto::physical_plan::DefaultPhysicalProtoConverter;

    use super::*;

    /// A stand-in Ember operator: claims `EmptyExec` nodes, which carry a
    /// one-column schema in this test.
    #[derive(Debug)]
    struct EmptyOperator;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new("x", DataType::Int32, true)]))
    }

    impl ExtensionOperatorCodec for EmptyOperator {
        fn name(&self) -> &str {
            "test.empty"
        }

        fn try_encode(&self, node: &Arc<dyn ExecutionPlan>) -> Result<Option<Vec<u8>>> {
            Ok(node
                .downcast_ref::<EmptyExec>()
                .map(|_| b"payload".to_vec()))
        }

        fn decode(
            &self,
            payload: &[u8],
            _inputs: &[Arc<dyn ExecutionPlan>],
            _ctx: &TaskContext,
        ) -> Result<Arc<dyn ExecutionPlan>> {
            assert_eq!(payload, b"payload");
            Ok(Arc::new(EmptyExec::new(schema())))
        }
    }

    #[test]
    fn ember_operators_travel_in_their_envelope() {
        let codec = EmberPhysicalCodec::default().with_operator(Arc::new(EmptyOperator));
        assert_eq!(
            codec.operator_names(),
            [
                "ember.staged_write",
                "ember.write_commit",
                "ember.cache",
                "ember.map_partitions",
                "ember.exchange_properties",
                "ember.expand_grouping_sets",
                "test.empty"
            ]
        );
        let node: Arc<dyn ExecutionPlan> = Arc::new(EmptyExec::new(schema()));
        let mut buf = Vec::new();
        codec
            .try_encode(node, &mut buf, &DefaultPhysicalProtoConverter {})
            .unwrap();
        let envelope = PhysicalExtensionEnvelope::decode(buf.as_slice()).unwrap();
        assert!(
            matches!(envelope.node, Some(physical_extension_envelope::Node::Ember(ref op)) if op.name == "test.empty")
        );

        let ctx = SessionContext::new();
        let decoded = codec
            .try_decode(
                &buf,
                &[],
                &ctx.task_ctx(),
                &DefaultPhysicalProtoConverter {},
            )
            .unwrap();
        assert!(decoded.downcast_ref::<EmptyExec>().is_some());

        // A process without the operator says which one it lacks.
        let err = EmberPhysicalCodec::default()
            .try_decode(
                &buf,
                &[],
                &ctx.task_ctx(),
                &DefaultPhysicalProtoConverter {},
            )
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("does not know the Ember operator `test.empty`"),
            "{err}"
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let ctx = SessionContext::new();
        let codec = EmberPhysicalCodec::default();
        assert!(
            codec
                .try_decode(
                    &[0xff, 0xff, 0xff],
                    &[],
                    &ctx.task_ctx(),
                    &DefaultPhysicalProtoConverter {}
                )
                .is_err()
        );
        assert!(
            EmberLogicalCodec::default()
                .try_decode(&[0xff, 0x01], &[], &ctx.task_ctx())
                .is_err()
        );
    }
}
