use futures::FutureExt;
use object_store::local::LocalFileSystem;

use super::*;

/// A local store rooted at a fresh directory, wrapped, and its gate.
fn local_store(
    dir: &std::path::Path,
) -> (Arc<dyn ObjectStore>, AbandonedWriteUndo, Arc<TaskWriteGate>) {
    let local: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new_with_prefix(dir).unwrap());
    let gate = Arc::new(TaskWriteGate::default());
    let store = AbandonedWriteUndo::new(Arc::clone(&local), Arc::clone(&gate));
    (local, store, gate)
}

/// The names of the files in `dir`.
fn files_in(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// What `dir` holds once the gate is closed: every write under way has
/// landed, and been undone where abandoned.
async fn settled_files(dir: &std::path::Path, gate: &TaskWriteGate) -> Vec<String> {
    gate.close().await;
    files_in(dir)
}

/// Polls `future` once, as a task does before it is dropped mid-write. The
/// tests run on one thread, so the wrapper's detached write cannot finish
/// before that first poll returns.
fn poll_once_then_drop<F: Future>(future: F) {
    let mut future = Box::pin(future);
    assert!(
        (&mut future).now_or_never().is_none(),
        "the write finished on its first poll: nothing was abandoned"
    );
}

// The local file system alone leaves the file behind in these two tests
// (checked by writing through `local` instead): its blocking threads create
// and rename files after the caller has gone.

#[tokio::test]
async fn a_put_dropped_half_way_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let (_, store, gate) = local_store(dir.path());
    let payload = PutPayload::from(vec![7u8; 1 << 20]);
    poll_once_then_drop(store.put(&Path::from("part-0.csv"), payload));
    assert_eq!(settled_files(dir.path(), &gate).await, Vec::<String>::new());
}

#[tokio::test]
async fn a_multipart_upload_dropped_while_completing_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let (_, store, gate) = local_store(dir.path());
    let mut upload = store
        .put_multipart(&Path::from("part-0.parquet"))
        .await
        .unwrap();
    upload
        .put_part(PutPayload::from(vec![1u8; 1 << 20]))
        .await
        .unwrap();
    poll_once_then_drop(upload.complete());
    drop(upload);
    assert_eq!(settled_files(dir.path(), &gate).await, Vec::<String>::new());
}

#[tokio::test]
async fn writes_that_are_waited_for_land_as_usual() {
    let dir = tempfile::tempdir().unwrap();
    let (local, store, _) = local_store(dir.path());
    store
        .put(&Path::from("small.csv"), PutPayload::from_static(b"a,b\n"))
        .await
        .unwrap();
    let mut upload = store
        .put_multipart(&Path::from("large.parquet"))
        .await
        .unwrap();
    upload
        .put_part(PutPayload::from_static(b"PAR1"))
        .await
        .unwrap();
    upload.complete().await.unwrap();
    assert_eq!(files_in(dir.path()), ["large.parquet", "small.csv"]);
    let small = local.get(&Path::from("small.csv")).await.unwrap();
    assert_eq!(small.bytes().await.unwrap().as_ref(), b"a,b\n");
    // An aborted upload leaves nothing.
    let mut aborted = store
        .put_multipart(&Path::from("aborted.parquet"))
        .await
        .unwrap();
    aborted.abort().await.unwrap();
    assert_eq!(files_in(dir.path()), ["large.parquet", "small.csv"]);
}

#[tokio::test]
async fn a_closed_gate_refuses_new_writes() {
    let dir = tempfile::tempdir().unwrap();
    let (_, store, gate) = local_store(dir.path());
    gate.close().await;
    let put = store
        .put(
            &Path::from("late/part-0.csv"),
            PutPayload::from_static(b"x"),
        )
        .await;
    assert!(put.is_err(), "a write after the task stopped was admitted");
    let upload = store.put_multipart(&Path::from("late/part-1.csv")).await;
    assert!(
        upload.is_err(),
        "an upload after the task stopped was admitted"
    );
    assert_eq!(files_in(dir.path()), Vec::<String>::new());
}
