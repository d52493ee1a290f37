//! How the write operators travel from the scheduler to the executors.

use std::sync::Arc;

use datafusion::datasource::listing::ListingTableUrl;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_plan::ExecutionPlan;
use prost::Message;

use super::exec::{SinkSpec, StagedWriteExec, WriteCommitExec};
use crate::codec::{ExtensionOperatorCodec, single_input};

/// Codec of [`StagedWriteExec`] (`ember.staged_write`).
#[derive(Debug, Default)]
pub struct StagedWriteCodec;

impl ExtensionOperatorCodec for StagedWriteCodec {
    fn name(&self) -> &str {
        "ember.staged_write"
    }

    fn try_encode(&self, node: &Arc<dyn ExecutionPlan>) -> Result<Option<Vec<u8>>> {
        Ok(node
            .downcast_ref::<StagedWriteExec>()
            .map(|w| w.sink().encode(w.write_id())))
    }

    fn decode(
        &self,
        payload: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        _ctx: &TaskContext,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let (spec, write_id) = SinkSpec::decode(payload)?;
        let input = single_input(inputs, "StagedWriteExec")?;
        Ok(Arc::new(StagedWriteExec::try_new(input, spec, write_id)?))
    }
}

/// Codec of [`WriteCommitExec`] (`ember.write_commit`).
#[derive(Debug, Default)]
pub struct WriteCommitCodec;

impl ExtensionOperatorCodec for WriteCommitCodec {
    fn name(&self) -> &str {
        "ember.write_commit"
    }

    fn try_encode(&self, node: &Arc<dyn ExecutionPlan>) -> Result<Option<Vec<u8>>> {
        Ok(node.downcast_ref::<WriteCommitExec>().map(|c| {
            ember_proto::WriteCommit {
                write_id: c.write_id().to_string(),
                destination: c.destination().to_string(),
                single_file: c.single_file(),
            }
            .encode_to_vec()
        }))
    }

    fn decode(
        &self,
        payload: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        _ctx: &TaskContext,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let message = ember_proto::WriteCommit::decode(payload)
            .map_err(|e| DataFusionError::Internal(format!("cannot decode a write commit: {e}")))?;
        let input = single_input(inputs, "WriteCommitExec")?;
        let destination = ListingTableUrl::parse(&message.destination)?;
        Ok(Arc::new(WriteCommitExec::new(
            input,
            destination,
            message.single_file,
            message.write_id,
        )))
    }
}
