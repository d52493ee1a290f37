//! A real S3-compatible server on 127.0.0.1 for tests and benchmarks:
//! `s3s-fs` (the S3 protocol over a directory) served by hyper on an
//! ephemeral port, with signature checking on, in a thread of its own.
//!
//! It can also inject transient failures: the next N requests that match a
//! method and a path fragment answer `503 SlowDown`, as a throttled S3 does.
//!
//! [`S3TestServerOptions`] serve a kept directory on any address with other
//! credentials: that is how the compose cluster's development store runs.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use tokio::sync::oneshot;

/// The access key id the server accepts.
pub const ACCESS_KEY_ID: &str = "ember-test-key";
/// The secret access key the server accepts.
pub const SECRET_ACCESS_KEY: &str = "ember-test-secret";

/// Requests to fail: the next `remaining` requests with `method` whose path
/// contains `path_fragment`.
#[derive(Debug)]
struct Fault {
    method: String,
    path_fragment: String,
    remaining: usize,
}

#[derive(Debug, Default)]
struct FaultInjector {
    faults: Mutex<Vec<Fault>>,
    injected: AtomicUsize,
    /// Whether requests are recorded in `log`.
    record: bool,
    /// Every request received, in order (when `record` is on).
    log: Mutex<Vec<S3Request>>,
}

/// One request the server received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Request {
    /// `GET`, `PUT`, `HEAD`, ...
    pub method: String,
    /// The decoded path: `/bucket` for a listing, `/bucket/key` for an
    /// object.
    pub path: String,
    /// The query string (`uploads`, `partNumber=1&uploadId=…`, ...).
    pub query: String,
    /// The byte range asked for (`Range: bytes=a-b`), inclusive.
    pub range: Option<(u64, u64)>,
}

impl S3Request {
    /// How many bytes a ranged request asked for.
    pub fn range_len(&self) -> Option<u64> {
        self.range.map(|(first, last)| last + 1 - first)
    }
}

/// Decodes `%XX` escapes (object keys arrive percent-encoded).
fn percent_decode(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| path.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses `bytes=a-b`; other forms (suffixes, open ends) are not needed.
fn parse_range(header: &str) -> Option<(u64, u64)> {
    let (first, last) = header.strip_prefix("bytes=")?.split_once('-')?;
    Some((first.parse().ok()?, last.parse().ok()?))
}

impl FaultInjector {
    fn should_fail(&self, method: &str, path: &str) -> bool {
        let mut faults = self.faults.lock().unwrap_or_else(|e| e.into_inner());
        for fault in faults.iter_mut() {
            if fault.remaining > 0 && fault.method == method && path.contains(&fault.path_fragment)
            {
                fault.remaining -= 1;
                self.injected.fetch_add(1, Ordering::Relaxed);
                return true;
            }
        }
        false
    }
}

/// How to start an [`S3TestServer`]; the defaults are the tests': an
/// ephemeral port on 127.0.0.1, a temporary directory, the test
/// credentials and every request recorded.
#[derive(Debug, Clone)]
pub struct S3TestServerOptions {
    /// Address to listen on (port 0 picks a free port).
    pub bind: SocketAddr,
    /// Directory to serve; `None` makes a temporary one, removed on drop.
    pub data_dir: Option<PathBuf>,
    /// The access key id the server accepts.
    pub access_key_id: String,
    /// The secret access key the server accepts.
    pub secret_access_key: String,
    /// Whether to keep a log of every request ([`S3TestServer::requests`]);
    /// a long-running store turns it off so memory stays flat.
    pub record_requests: bool,
}

impl Default for S3TestServerOptions {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: None,
            access_key_id: ACCESS_KEY_ID.to_string(),
            secret_access_key: SECRET_ACCESS_KEY.to_string(),
            record_requests: true,
        }
    }
}

/// Where a server keeps its buckets.
enum DataDir {
    /// A temporary directory, removed when the server is dropped.
    Temporary(tempfile::TempDir),
    /// A directory the caller owns and keeps.
    Kept(PathBuf),
}

impl DataDir {
    fn path(&self) -> &Path {
        match self {
            DataDir::Temporary(dir) => dir.path(),
            DataDir::Kept(path) => path,
        }
    }
}

/// A running S3-compatible server; stopped when dropped.
pub struct S3TestServer {
    address: SocketAddr,
    root: DataDir,
    access_key_id: String,
    secret_access_key: String,
    faults: Arc<FaultInjector>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl S3TestServer {
    /// Starts a server over a new temporary directory on 127.0.0.1.
    pub fn start() -> io::Result<Self> {
        Self::start_with(S3TestServerOptions::default())
    }

    /// Starts a server as `options` say.
    pub fn start_with(options: S3TestServerOptions) -> io::Result<Self> {
        let root = match options.data_dir {
            Some(path) => {
                std::fs::create_dir_all(&path)?;
                DataDir::Kept(path)
            }
            None => DataDir::Temporary(tempfile::tempdir()?),
        };
        let listener = std::net::TcpListener::bind(options.bind)?;
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?;
        let faults = Arc::new(FaultInjector {
            record: options.record_requests,
            ..FaultInjector::default()
        });
        let (stop, stopped) = oneshot::channel();
        let fs =
            s3s_fs::FileSystem::new(root.path()).map_err(|e| io::Error::other(format!("{e:?}")))?;
        let auth = SimpleAuth::from_single(
            options.access_key_id.as_str(),
            options.secret_access_key.as_str(),
        );
        let thread_faults = faults.clone();
        let thread = std::thread::Builder::new()
            .name("s3-test-server".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("a runtime for the S3 server");
                runtime.block_on(serve(listener, fs, auth, thread_faults, stopped));
            })?;
        Ok(Self {
            address,
            root,
            access_key_id: options.access_key_id,
            secret_access_key: options.secret_access_key,
            faults,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }

    /// The endpoint URL, e.g. `http://127.0.0.1:41234`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Creates a bucket (a directory of the server's root).
    pub fn create_bucket(&self, name: &str) -> io::Result<()> {
        std::fs::create_dir_all(self.root.path().join(name))
    }

    /// Where the server keeps a bucket's objects on disk.
    pub fn bucket_dir(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    /// The `AWS_*` variables that point a process at this server.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ACCESS_KEY_ID", self.access_key_id.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret_access_key.clone()),
            ("AWS_REGION", "us-east-1".to_string()),
            ("AWS_ALLOW_HTTP", "true".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// The session settings (`s3.<key>`, value) that point a session at
    /// this server.
    pub fn session_settings(&self) -> Vec<(String, String)> {
        [
            ("s3.endpoint", self.endpoint()),
            ("s3.access_key_id", self.access_key_id.clone()),
            ("s3.secret_access_key", self.secret_access_key.clone()),
            ("s3.region", "us-east-1".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// Makes the next `count` requests with `method` (`GET`, `PUT`, ...)
    /// whose path contains `path_fragment` fail with `503 SlowDown`.
    pub fn fail_next(&self, count: usize, method: &str, path_fragment: &str) {
        self.faults
            .faults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Fault {
                method: method.to_string(),
                path_fragment: path_fragment.to_string(),
                remaining: count,
            });
    }

    /// The requests received so far, in order.
    pub fn requests(&self) -> Vec<S3Request> {
        self.faults
            .log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Forgets the requests received so far.
    pub fn clear_requests(&self) {
        self.faults
            .log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// How many failures have been injected so far.
    pub fn injected_failures(&self) -> usize {
        self.faults.injected.load(Ordering::Relaxed)
    }

    /// The files under a bucket's `prefix`, relative to the bucket, sorted.
    pub fn list_files(&self, bucket: &str, prefix: &str) -> Vec<String> {
        crate::files_below(&self.bucket_dir(bucket).join(prefix))
            .into_iter()
            .map(|file| Path::new(prefix).join(file).to_string_lossy().into_owned())
            .collect()
    }
}

impl Drop for S3TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(
    listener: std::net::TcpListener,
    fs: s3s_fs::FileSystem,
    auth: SimpleAuth,
    faults: Arc<FaultInjector>,
    mut stopped: oneshot::Receiver<()>,
) {
    let service = {
        let mut builder = S3ServiceBuilder::new(fs);
        builder.set_auth(auth);
        builder.build()
    };
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("s3 test server cannot listen: {e}");
            return;
        }
    };
    let connections = ConnBuilder::new(TokioExecutor::new());
    loop {
        let socket = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, _)) => socket,
                Err(_) => continue,
            },
            _ = &mut stopped => break,
        };
        let service = service.clone();
        let faults = faults.clone();
        let handler = hyper::service::service_fn(move |request: http::Request<Incoming>| {
            let service = service.clone();
            let faults = faults.clone();
            async move {
                let method = request.method().as_str().to_string();
                let path = request.uri().path().to_string();
                let decoded = percent_decode(&path);
                let range = request
                    .headers()
                    .get(http::header::RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_range);
                if faults.record {
                    faults
                        .log
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(S3Request {
                            method: method.clone(),
                            path: decoded,
                            query: request.uri().query().unwrap_or_default().to_string(),
                            range,
                        });
                }
                if faults.should_fail(&method, &path) {
                    return Ok(slow_down());
                }
                hyper::service::Service::call(&service, request).await
            }
        });
        let connection = connections
            .serve_connection(TokioIo::new(socket), handler)
            .into_owned();
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
}

/// The answer of a throttled S3.
fn slow_down() -> http::Response<s3s::Body> {
    let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
        <Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";
    let mut response = http::Response::new(s3s::Body::from(body.to_string()));
    *response.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
    response
}

impl S3TestServer {
    /// An `object_store` client for `bucket` on this server, independent of
    /// Ember's own S3 code: what tests use to upload and inspect data.
    pub fn client(&self, bucket: &str) -> Arc<dyn object_store::ObjectStore> {
        let store = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_endpoint(self.endpoint())
            .with_region("us-east-1")
            .with_access_key_id(&self.access_key_id)
            .with_secret_access_key(&self.secret_access_key)
            .with_allow_http(true)
            .build()
            .expect("an S3 client for the test server");
        Arc::new(store)
    }

    /// Uploads every file under `dir` to `bucket` under `prefix`, with PUTs.
    pub async fn upload_dir(&self, bucket: &str, prefix: &str, dir: &Path) {
        use object_store::ObjectStoreExt;
        let client = self.client(bucket);
        for file in crate::files_below(dir) {
            let bytes = std::fs::read(dir.join(&file)).expect("a generated file");
            let key = object_store::path::Path::from(format!("{prefix}/{file}"));
            client
                .put(&key, bytes.into())
                .await
                .expect("upload to the test server");
        }
    }
}
