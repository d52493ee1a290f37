//! Writes that leave nothing behind when the task that started them is
//! dropped.
//!
//! A task of a cancelled or failed job is dropped wherever it is waiting,
//! and a store's write goes on without it: the local file system creates,
//! fills and renames files on blocking threads that a dropped future cannot
//! stop, so a `put` dropped half-way still lands its file, and a multipart
//! upload dropped while it opens its temporary file (`<name>#<n>`) leaves
//! that file with no upload left to remove it. In a staging directory the
//! client has already cleaned, such a file would stay forever.
//!
//! [`AbandonedWriteUndo`] runs each call that creates an object (`put`,
//! opening a multipart upload, completing one) to its end in a task of its
//! own and hands the result to the caller; a result nobody takes any more is
//! undone: the object deleted, the upload aborted. [`StagedWriteExec`]
//! writes through it.
//!
//! Each task's wrapper admits its calls through a [`TaskWriteGate`]. When
//! the task stops unfinished, its clean-up closes the gate, which refuses
//! new calls and waits for those under way (a file being created, a
//! completion renaming one, an undo deleting one), so that the clean-up
//! removes the task's directory after the last file or directory any of
//! them creates.
//!
//! [`StagedWriteExec`]: super::exec::StagedWriteExec

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use datafusion::error::Result as DataFusionResult;
use datafusion::execution::object_store::ObjectStoreRegistry;
use datafusion::execution::runtime_env::RuntimeEnv;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    ListResult, MultipartUpload, ObjectMeta, ObjectStore, ObjectStoreExt, PutMultipartOptions,
    PutOptions, PutPayload, PutResult, UploadPart,
};
use tokio::sync::{Notify, oneshot};
use url::Url;

use crate::object_store::forward_to_inner_store;

/// How the error names this store when a detached write's task is lost.
const STORE_NAME: &str = "AbandonedWriteUndo";

/// Admits one task's object-creating calls until the task stops, and tells
/// when those under way have ended (see the [module documentation](self)).
#[derive(Debug, Default)]
pub struct TaskWriteGate {
    state: Mutex<GateState>,
    idle: Notify,
}

#[derive(Debug, Default)]
struct GateState {
    closed: bool,
    under_way: usize,
}

impl TaskWriteGate {
    /// Admits one call, or refuses it once the gate is closed.
    fn enter(self: &Arc<Self>) -> object_store::Result<WritePass> {
        let mut state = self.state();
        if state.closed {
            return Err(object_store::Error::Generic {
                store: STORE_NAME,
                source: "the task writing was stopped".into(),
            });
        }
        state.under_way += 1;
        Ok(WritePass(Arc::clone(self)))
    }

    /// Admits no more calls, and returns once those under way have ended.
    pub async fn close(&self) {
        self.state().closed = true;
        loop {
            // Registered before the check, so a pass dropped after it wakes
            // this wait.
            let ended = self.idle.notified();
            if self.state().under_way == 0 {
                return;
            }
            ended.await;
        }
    }

    /// The gate's state; a panic elsewhere while holding it leaves it whole
    /// (each change is one field), so a poisoned lock is used as it is.
    fn state(&self) -> MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One admitted call; dropping it tells the gate the call has ended.
struct WritePass(Arc<TaskWriteGate>);

impl Drop for WritePass {
    fn drop(&mut self) {
        let mut state = self.0.state();
        state.under_way -= 1;
        if state.under_way == 0 {
            self.0.idle.notify_waiters();
        }
    }
}

/// A store whose writes are undone when their caller has gone away (see the
/// [module documentation](self)); everything else passes straight through.
#[derive(Debug)]
pub struct AbandonedWriteUndo {
    inner: Arc<dyn ObjectStore>,
    gate: Arc<TaskWriteGate>,
}

impl AbandonedWriteUndo {
    /// Wraps `inner`, admitting its writes through `gate`.
    pub fn new(inner: Arc<dyn ObjectStore>, gate: Arc<TaskWriteGate>) -> Self {
        Self { inner, gate }
    }
}

impl fmt::Display for AbandonedWriteUndo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AbandonedWriteUndo({})", self.inner)
    }
}

/// A result that undoes itself when dropped before its caller takes it.
struct Unclaimed<T: Send + 'static> {
    value: Option<T>,
    undo: Option<Box<dyn FnOnce(T) -> BoxFuture<'static, ()> + Send>>,
    /// Held until the result is claimed or its undo has ended.
    pass: Option<WritePass>,
}

impl<T: Send + 'static> Unclaimed<T> {
    fn claim(mut self) -> T {
        self.value.take().expect("a result is claimed once")
    }
}

impl<T: Send + 'static> Drop for Unclaimed<T> {
    fn drop(&mut self) {
        let (Some(value), Some(undo)) = (self.value.take(), self.undo.take()) else {
            return;
        };
        let pass = self.pass.take();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn(async move {
                undo(value).await;
                drop(pass);
            })),
            Err(_) => tracing::debug!("cannot undo an abandoned write outside a runtime"),
        }
    }
}

/// Runs `work` to its end in a task of its own, admitted by `gate`, and
/// returns its result; when the caller has gone away by then, `undo` gets
/// the result instead.
async fn run_to_end<T, W, U>(gate: &Arc<TaskWriteGate>, work: W, undo: U) -> object_store::Result<T>
where
    T: Send + 'static,
    W: Future<Output = object_store::Result<T>> + Send + 'static,
    U: FnOnce(T) -> BoxFuture<'static, ()> + Send + 'static,
{
    let pass = gate.enter()?;
    let (sender, receiver) = oneshot::channel();
    tokio::spawn(async move {
        let result = work.await.map(|value| Unclaimed {
            value: Some(value),
            undo: Some(Box::new(undo)),
            pass: Some(pass),
        });
        // Refused when the caller is gone: the result drops, and undoes.
        let _ = sender.send(result);
    });
    match receiver.await {
        Ok(result) => result.map(Unclaimed::claim),
        Err(_) => Err(object_store::Error::Generic {
            store: STORE_NAME,
            source: "the write's task ended before it answered".into(),
        }),
    }
}

/// Deletes `location` from `store`, as the undo of a write that landed it.
fn delete_landed(store: Arc<dyn ObjectStore>, location: Path) -> BoxFuture<'static, ()> {
    Box::pin(async move {
        match store.delete(&location).await {
            Ok(()) => tracing::debug!(%location, "removed an abandoned write's object"),
            Err(e) => tracing::debug!(%location, "cannot remove an abandoned write's object: {e}"),
        }
    })
}

#[async_trait]
impl ObjectStore for AbandonedWriteUndo {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let store = Arc::clone(&self.inner);
        let (path, undo_path) = (location.clone(), location.clone());
        let undo_store = Arc::clone(&self.inner);
        run_to_end(
            &self.gate,
            async move { store.put_opts(&path, payload, opts).await },
            move |_| delete_landed(undo_store, undo_path),
        )
        .await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let store = Arc::clone(&self.inner);
        let path = location.clone();
        let upload = run_to_end(
            &self.gate,
            async move { store.put_multipart_opts(&path, opts).await },
            |mut upload: Box<dyn MultipartUpload>| {
                Box::pin(async move {
                    if let Err(e) = upload.abort().await {
                        tracing::debug!("cannot abort an abandoned multipart upload: {e}");
                    }
                })
            },
        )
        .await?;
        Ok(Box::new(UndoableUpload {
            inner: Some(upload),
            store: Arc::clone(&self.inner),
            location: location.clone(),
            gate: Arc::clone(&self.gate),
        }))
    }

    forward_to_inner_store!();

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }
}

/// A multipart upload whose completion, once started, runs to its end and
/// is undone (the object deleted) when its caller has gone away.
struct UndoableUpload {
    /// Taken by `complete` or `abort`.
    inner: Option<Box<dyn MultipartUpload>>,
    store: Arc<dyn ObjectStore>,
    location: Path,
    gate: Arc<TaskWriteGate>,
}

impl fmt::Debug for UndoableUpload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UndoableUpload")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl UndoableUpload {
    fn taken() -> object_store::Error {
        object_store::Error::Generic {
            store: STORE_NAME,
            source: "the upload was already completed or aborted".into(),
        }
    }
}

#[async_trait]
impl MultipartUpload for UndoableUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        match &mut self.inner {
            Some(upload) => upload.put_part(data),
            None => Box::pin(futures::future::ready(Err(Self::taken()))),
        }
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let mut upload = self.inner.take().ok_or_else(Self::taken)?;
        let (store, location) = (Arc::clone(&self.store), self.location.clone());
        run_to_end(
            &self.gate,
            async move { upload.complete().await },
            move |_| delete_landed(store, location),
        )
        .await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        let mut upload = self.inner.take().ok_or_else(Self::taken)?;
        upload.abort().await
    }
}

/// A registry whose stores are [`AbandonedWriteUndo`]s over `inner`'s, all
/// admitted by one task's gate.
#[derive(Debug)]
struct AbandonedWriteUndoRegistry {
    inner: Arc<dyn ObjectStoreRegistry>,
    gate: Arc<TaskWriteGate>,
}

impl ObjectStoreRegistry for AbandonedWriteUndoRegistry {
    fn register_store(
        &self,
        url: &Url,
        store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        self.inner.register_store(url, store)
    }

    fn deregister_store(&self, url: &Url) -> DataFusionResult<Arc<dyn ObjectStore>> {
        self.inner.deregister_store(url)
    }

    fn get_store(&self, url: &Url) -> DataFusionResult<Arc<dyn ObjectStore>> {
        let store = self.inner.get_store(url)?;
        Ok(Arc::new(AbandonedWriteUndo::new(
            store,
            Arc::clone(&self.gate),
        )))
    }
}

/// `runtime` with every store it serves wrapped in [`AbandonedWriteUndo`],
/// admitted by `gate`: one task's writes.
pub fn with_abandoned_writes_undone(
    runtime: &RuntimeEnv,
    gate: Arc<TaskWriteGate>,
) -> Arc<RuntimeEnv> {
    Arc::new(RuntimeEnv {
        object_store_registry: Arc::new(AbandonedWriteUndoRegistry {
            inner: Arc::clone(&runtime.object_store_registry),
            gate,
        }),
        ..runtime.clone()
    })
}

#[cfg(test)]
mod tests;
