//! A local Ember cluster: one `ember-scheduler` and N `ember-executor`
//! processes on this machine, started from binaries in one directory.
//!
//! `ember cluster local` uses it, and so do the cross-process tests. Every
//! process is stopped (SIGTERM, then SIGKILL after a grace period) when the
//! [`LocalCluster`] is dropped, also when a test panics. An executor that
//! dies can be started again in its place
//! ([`LocalCluster::restart_exited_executors`]), which is how `ember cluster
//! local` keeps a cluster usable when one of its executors is killed.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ember_auth::{CertificateAuthority, ClusterToken, SecurityOptions};

use crate::cluster::{SchedulerAddress, SchedulerConnection, wait_for_executors};
use crate::error::{ClientError, Result};

/// What to start.
#[derive(Debug, Clone)]
pub struct LocalClusterOptions {
    /// Directory holding the `ember-scheduler` and `ember-executor` binaries.
    pub bin_dir: PathBuf,
    /// Number of executors.
    pub executors: usize,
    /// Task slots per executor.
    pub cores_per_executor: usize,
    /// Each executor's memory pool (`--memory`); `None` keeps the
    /// executor's default, a share of the machine's memory.
    pub executor_memory: Option<ember_memory::ByteSize>,
    /// Scheduler port (0: a free port).
    pub scheduler_port: u16,
    /// Where each process's output goes (`scheduler.log`, `executor-N.log`).
    pub log_dir: PathBuf,
    /// Directory under which each executor gets its work dir.
    pub work_dir: PathBuf,
    /// Log filter passed to every process.
    pub log_filter: String,
    /// How long to wait for the scheduler to listen and executors to register.
    pub startup_timeout: Duration,
    /// Extra environment variables for every process (for example the
    /// `AWS_*` variables that point them at an S3 store).
    pub env: Vec<(String, String)>,
    /// Extra flags for the scheduler (for example `--flight-sql`).
    pub scheduler_args: Vec<String>,
    /// How the cluster is secured.
    pub security: LocalClusterSecurity,
    /// Where generated secrets (the token, certificates) are written.
    pub secrets_dir: PathBuf,
}

/// How a local cluster is secured: each part generated at start, into
/// [`LocalClusterOptions::secrets_dir`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LocalClusterSecurity {
    /// A fresh random token, required on every port.
    pub token: bool,
    /// A fresh self-signed CA, and one certificate for `localhost` and
    /// `127.0.0.1` that every process serves TLS with.
    pub tls: bool,
    /// With `tls`: every port also requires a client certificate signed by
    /// the CA (mutual TLS); clients present the same certificate.
    pub client_auth: bool,
}

impl LocalClusterOptions {
    /// Options for `executors` executors, with binaries in `bin_dir` and
    /// logs and work dirs under `state_dir`.
    pub fn new(bin_dir: impl Into<PathBuf>, executors: usize, state_dir: &Path) -> Self {
        Self {
            bin_dir: bin_dir.into(),
            executors,
            cores_per_executor: 2,
            executor_memory: None,
            scheduler_port: 0,
            log_dir: state_dir.join("logs"),
            work_dir: state_dir.join("work"),
            log_filter: "info".to_string(),
            startup_timeout: Duration::from_secs(60),
            env: Vec::new(),
            scheduler_args: Vec::new(),
            security: LocalClusterSecurity::default(),
            secrets_dir: state_dir.join("secrets"),
        }
    }
}

/// Writes `contents` to `path`, readable by this user only.
fn write_secret(path: &Path, contents: &[u8]) -> Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    options
        .open(path)
        .and_then(|mut file| file.write_all(contents))
        .map_err(|e| ClientError::Process(format!("cannot write {}: {e}", path.display())))
}

/// The names a local cluster's certificate is issued for.
const LOCAL_NAMES: &[&str] = &["localhost", "127.0.0.1"];

/// Generates what `security` asks for into `dir` (`token`, `ca.pem`,
/// `cert.pem`, `key.pem`, readable by this user only), the certificate
/// issued for `names`, and returns the flags every process (servers and
/// clients alike) is then given. Files already there are replaced.
pub fn generate_secrets(
    security: LocalClusterSecurity,
    dir: &Path,
    names: &[String],
) -> Result<SecurityOptions> {
    let mut options = SecurityOptions::default();
    if security == LocalClusterSecurity::default() {
        return Ok(options);
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| ClientError::Process(format!("cannot create {}: {e}", dir.display())))?;
    if security.token {
        let path = dir.join("token");
        write_secret(&path, ClusterToken::generate().secret().as_bytes())?;
        options.token_file = Some(path);
    }
    if security.tls {
        let ca = CertificateAuthority::generate("Ember local cluster CA")?;
        let issued = ca.issue(names)?;
        let (ca_path, cert_path, key_path) = (
            dir.join("ca.pem"),
            dir.join("cert.pem"),
            dir.join("key.pem"),
        );
        write_secret(&ca_path, ca.certificate_pem().as_bytes())?;
        write_secret(&cert_path, issued.certificate_pem.as_bytes())?;
        write_secret(&key_path, issued.private_key_pem.as_bytes())?;
        options.tls_ca = Some(ca_path);
        options.tls_cert = Some(cert_path);
        options.tls_key = Some(key_path);
        options.tls_client_auth = security.client_auth;
    }
    Ok(options)
}

/// The flags that hand `security` to a scheduler or executor.
fn security_args(security: &SecurityOptions) -> Vec<std::ffi::OsString> {
    let mut args = Vec::new();
    let mut add = |flag: &str, path: &Option<PathBuf>| {
        if let Some(path) = path {
            args.push(flag.into());
            args.push(path.clone().into_os_string());
        }
    };
    add("--token-file", &security.token_file);
    add("--tls-cert", &security.tls_cert);
    add("--tls-key", &security.tls_key);
    add("--tls-ca", &security.tls_ca);
    if security.tls_client_auth {
        args.push("--tls-client-auth".into());
    }
    args
}

/// A running local cluster. Dropping it stops every process.
#[derive(Debug)]
pub struct LocalCluster {
    scheduler: Option<Child>,
    executors: Vec<Child>,
    address: SchedulerAddress,
    /// The scheduler, as this cluster's clients reach it.
    connection: SchedulerConnection,
    /// The token and TLS files clients present (empty when not secured).
    client_security: SecurityOptions,
    log_dir: PathBuf,
    /// How executors are started, kept to restart them.
    launch: ExecutorLaunch,
    /// Per executor: when it last started and how many of its last starts
    /// died young.
    starts: Vec<ExecutorStarts>,
}

/// What starting an executor takes.
#[derive(Debug, Clone)]
struct ExecutorLaunch {
    binary: PathBuf,
    options: LocalClusterOptions,
    /// The security flags each executor gets.
    security: SecurityOptions,
}

/// An executor's recent starts, to tell a crash loop from a one-off loss.
#[derive(Debug, Clone, Copy)]
struct ExecutorStarts {
    at: Instant,
    early_deaths: u32,
}

/// An executor that has lived shorter than this when it dies counts as
/// dying young; [`MAX_EARLY_DEATHS`] of those in a row stop the restarts.
const YOUNG: Duration = Duration::from_secs(10);

/// Early deaths in a row after which an executor is not restarted again.
const MAX_EARLY_DEATHS: u32 = 3;

/// An executor [`LocalCluster::restart_exited_executors`] started again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestartedExecutor {
    /// Its number, as in `ember-executor N` and `executor-N.log`.
    pub number: usize,
    /// How the previous process ended, such as `signal: 9 (SIGKILL)`.
    pub exit: String,
    /// The new process's id.
    pub pid: u32,
}

fn binary(bin_dir: &Path, name: &str) -> Result<PathBuf> {
    let path = bin_dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if path.is_file() {
        Ok(path)
    } else {
        Err(ClientError::Process(format!(
            "cannot find {} (build it with `cargo build -p {name}`)",
            path.display()
        )))
    }
}

fn log_file(dir: &Path, name: &str) -> Result<std::fs::File> {
    let path = dir.join(name);
    std::fs::File::create(&path).map_err(|e| {
        ClientError::Process(format!("cannot create log file {}: {e}", path.display()))
    })
}

/// Waits for a line starting with `prefix` on the child's standard output,
/// copying everything it prints to `log`.
fn wait_for_line(
    child: &mut Child,
    prefix: &'static str,
    mut log: std::fs::File,
    timeout: Duration,
) -> Result<String> {
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| ClientError::Process("child has no stdout".into()))?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        use std::io::Write;
        let mut sent = false;
        for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
            let _ = writeln!(log, "{line}");
            if !sent && line.starts_with(prefix) {
                let _ = tx.send(line);
                sent = true;
            }
        }
    });
    rx.recv_timeout(timeout).map_err(|_| {
        ClientError::Process(format!("no `{prefix}` line within {}s", timeout.as_secs()))
    })
}

impl LocalCluster {
    /// Starts the scheduler, then the executors, and waits until every
    /// executor has registered.
    pub async fn start(options: &LocalClusterOptions) -> Result<Self> {
        let scheduler_bin = binary(&options.bin_dir, "ember-scheduler")?;
        let executor_bin = binary(&options.bin_dir, "ember-executor")?;
        for dir in [&options.log_dir, &options.work_dir] {
            std::fs::create_dir_all(dir).map_err(|e| {
                ClientError::Process(format!("cannot create {}: {e}", dir.display()))
            })?;
        }

        let names: Vec<String> = LOCAL_NAMES.iter().map(|name| name.to_string()).collect();
        let security = generate_secrets(options.security, &options.secrets_dir, &names)?;
        let mut scheduler = Command::new(&scheduler_bin)
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &options.scheduler_port.to_string(),
            ])
            .args(["--log", &options.log_filter])
            .args(security_args(&security))
            .args(&options.scheduler_args)
            .envs(options.env.iter().map(|(k, v)| (k, v)))
            // The cluster's own token is passed as a file; one from this
            // process's environment would be a second, conflicting one.
            .env_remove(ClusterToken::ENV)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file(&options.log_dir, "scheduler.stderr.log")?)
            .spawn()
            .map_err(|e| {
                ClientError::Process(format!("cannot start {}: {e}", scheduler_bin.display()))
            })?;
        let placeholder = SchedulerAddress {
            host: "127.0.0.1".into(),
            port: 0,
        };
        let mut client_security = security.clone();
        client_security.tls_client_auth = false;
        if !security.tls_client_auth {
            // Clients present no certificate: the servers do not ask for one.
            client_security.tls_cert = None;
            client_security.tls_key = None;
        }
        let client = client_security.client(false)?;
        let mut cluster = LocalCluster {
            scheduler: None,
            executors: Vec::new(),
            address: placeholder.clone(),
            connection: SchedulerConnection::new(placeholder, client.clone())?,
            client_security,
            log_dir: options.log_dir.clone(),
            launch: ExecutorLaunch {
                binary: executor_bin,
                options: options.clone(),
                security,
            },
            starts: Vec::new(),
        };
        let line = wait_for_line(
            &mut scheduler,
            "ember-scheduler listening on ",
            log_file(&options.log_dir, "scheduler.log")?,
            options.startup_timeout,
        );
        cluster.scheduler = Some(scheduler);
        let line = line?;
        let addr = line
            .trim_start_matches("ember-scheduler listening on ")
            .trim();
        cluster.address = SchedulerAddress::parse(addr)?;
        cluster.connection = SchedulerConnection::new(cluster.address.clone(), client)?;

        for n in 0..options.executors {
            let child = cluster.launch.spawn(n, &cluster.address, false)?;
            cluster.executors.push(child);
            cluster.starts.push(ExecutorStarts {
                at: Instant::now(),
                early_deaths: 0,
            });
        }
        cluster
            .wait_for_registration(options.executors, options.startup_timeout)
            .await?;
        Ok(cluster)
    }

    /// Waits until `count` executors have registered. A process that exits
    /// meanwhile ends the wait at once, with the last line it logged.
    async fn wait_for_registration(&mut self, count: usize, timeout: Duration) -> Result<()> {
        let started = Instant::now();
        loop {
            if let Some(exited) = self.exited() {
                return Err(ClientError::Process(format!(
                    "{} exited while the cluster started{}",
                    exited.description,
                    self.last_log_line(&exited.log_stem)
                        .map(|line| format!(": {line}"))
                        .unwrap_or_default()
                )));
            }
            let remaining = timeout.saturating_sub(started.elapsed());
            let step = remaining.min(Duration::from_secs(1));
            match wait_for_executors(&self.connection, count, step).await {
                Err(ClientError::NoExecutors { .. }) if !remaining.is_zero() => {}
                Err(ClientError::NoExecutors { addr, .. }) => {
                    return Err(ClientError::NoExecutors {
                        addr,
                        waited_secs: timeout.as_secs(),
                    });
                }
                other => return other.map(|_| ()),
            }
        }
    }

    /// What a process of this cluster said last, from its logs
    /// (`<stem>.stderr.log`, `<stem>.log`): the first error line of its error
    /// output, else that output's last line, else its log's.
    fn last_log_line(&self, stem: &str) -> Option<String> {
        let read = |file: String| std::fs::read_to_string(self.log_dir.join(file)).ok();
        let last = |text: &str| {
            text.lines()
                .rev()
                .find(|line| !line.trim().is_empty())
                .map(|line| line.trim().to_string())
        };
        if let Some(stderr) = read(format!("{stem}.stderr.log")) {
            let error = stderr
                .lines()
                .find(|line| line.to_ascii_lowercase().contains("error"))
                .map(|line| line.trim().to_string());
            if let Some(line) = error.or_else(|| last(&stderr)) {
                return Some(line);
            }
        }
        last(&read(format!("{stem}.log"))?)
    }

    /// The scheduler, as this cluster's clients reach it (with its token
    /// and CA when secured).
    pub fn connection(&self) -> &SchedulerConnection {
        &self.connection
    }

    /// The token and TLS files a client of this cluster presents (nothing
    /// when it is not secured), for [`crate::EmberContext::connect_with`].
    pub fn client_security(&self) -> &SecurityOptions {
        &self.client_security
    }

    /// The scheduler's address as clients name it: `https://host:port` with
    /// TLS, else `host:port`.
    pub fn client_address(&self) -> String {
        match self.client_security.tls_ca {
            Some(_) => format!("https://{}", self.address),
            None => self.address.to_string(),
        }
    }

    /// The scheduler's address.
    pub fn address(&self) -> &SchedulerAddress {
        &self.address
    }

    /// Where the processes' logs are.
    pub fn log_dir(&self) -> &Path {
        &self.log_dir
    }

    /// Process id of the scheduler, while it runs.
    pub fn scheduler_pid(&self) -> Option<u32> {
        self.scheduler.as_ref().map(Child::id)
    }

    /// Process ids of the executors, in start order.
    pub fn executor_pids(&self) -> Vec<u32> {
        self.executors.iter().map(Child::id).collect()
    }

    /// Returns the name of the first process that has exited, if any.
    pub fn exited_process(&mut self) -> Option<String> {
        self.exited().map(|exited| exited.description)
    }

    /// Whether the scheduler has exited, and how.
    pub fn scheduler_exit(&mut self) -> Option<String> {
        let scheduler = self.scheduler.as_mut()?;
        match scheduler.try_wait() {
            Ok(Some(status)) => Some(format!("ember-scheduler ({status})")),
            _ => None,
        }
    }

    /// Starts every executor that has exited again, in its place (same
    /// number, work dir and log files, appended to), and returns them. An
    /// executor that died young ([`YOUNG`]) [`MAX_EARLY_DEATHS`] times in a
    /// row is a crash loop, not a loss: that is an error, naming its last
    /// log line.
    pub fn restart_exited_executors(&mut self) -> Result<Vec<RestartedExecutor>> {
        let mut restarted = Vec::new();
        for n in 0..self.executors.len() {
            let status = match self.executors[n].try_wait() {
                Ok(Some(status)) => status,
                _ => continue,
            };
            let starts = &mut self.starts[n];
            if starts.at.elapsed() < YOUNG {
                starts.early_deaths += 1;
            } else {
                starts.early_deaths = 0;
            }
            if starts.early_deaths >= MAX_EARLY_DEATHS {
                return Err(ClientError::Process(format!(
                    "ember-executor {n} died {MAX_EARLY_DEATHS} times within {}s of starting \
                     ({status}){}",
                    YOUNG.as_secs(),
                    self.last_log_line(&format!("executor-{n}"))
                        .map(|line| format!(": {line}"))
                        .unwrap_or_default()
                )));
            }
            let child = self.launch.spawn(n, &self.address, true)?;
            self.starts[n].at = Instant::now();
            restarted.push(RestartedExecutor {
                number: n,
                exit: status.to_string(),
                pid: child.id(),
            });
            self.executors[n] = child;
        }
        Ok(restarted)
    }

    /// The first process that has exited, if any.
    fn exited(&mut self) -> Option<ExitedProcess> {
        if let Some(scheduler) = self.scheduler.as_mut()
            && let Ok(Some(status)) = scheduler.try_wait()
        {
            return Some(ExitedProcess {
                description: format!("ember-scheduler ({status})"),
                log_stem: "scheduler".to_string(),
            });
        }
        for (n, executor) in self.executors.iter_mut().enumerate() {
            if let Ok(Some(status)) = executor.try_wait() {
                return Some(ExitedProcess {
                    description: format!("ember-executor {n} ({status})"),
                    log_stem: format!("executor-{n}"),
                });
            }
        }
        None
    }

    /// Stops every process: executors first, then the scheduler. Each gets
    /// SIGTERM and `grace` to exit before it is killed. Returns how each one
    /// ended, in that order.
    pub fn stop(&mut self, grace: Duration) -> Vec<StoppedProcess> {
        let mut stopped = Vec::new();
        let mut executors = std::mem::take(&mut self.executors);
        for child in &mut executors {
            terminate(child);
        }
        for (n, child) in executors.iter_mut().enumerate() {
            stopped.push(StoppedProcess {
                name: format!("ember-executor {n}"),
                exit: reap(child, grace),
            });
        }
        if let Some(mut scheduler) = self.scheduler.take() {
            terminate(&mut scheduler);
            stopped.push(StoppedProcess {
                name: "ember-scheduler".to_string(),
                exit: reap(&mut scheduler, grace),
            });
        }
        stopped
    }
}

impl ExecutorLaunch {
    /// Starts executor `n`; `append` keeps what its log files hold.
    fn spawn(&self, n: usize, scheduler: &SchedulerAddress, append: bool) -> Result<Child> {
        let options = &self.options;
        let work_dir = options.work_dir.join(format!("executor-{n}"));
        let log = |name: String| {
            if append {
                append_log_file(&options.log_dir, &name)
            } else {
                log_file(&options.log_dir, &name)
            }
        };
        Command::new(&self.binary)
            .args(["--scheduler", &scheduler.to_string()])
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                "0",
                "--grpc-port",
                "0",
                "--health-port",
                "0",
            ])
            .args(["--cores", &options.cores_per_executor.to_string()])
            .args(
                options
                    .executor_memory
                    .map(|memory| ["--memory".to_string(), memory.bytes().to_string()])
                    .into_iter()
                    .flatten(),
            )
            .arg("--work-dir")
            .arg(&work_dir)
            .args(["--log", &options.log_filter])
            .args(security_args(&self.security))
            .envs(options.env.iter().map(|(k, v)| (k, v)))
            .env_remove(ClusterToken::ENV)
            .stdin(Stdio::null())
            .stdout(log(format!("executor-{n}.log"))?)
            .stderr(log(format!("executor-{n}.stderr.log"))?)
            .spawn()
            .map_err(|e| {
                ClientError::Process(format!("cannot start {}: {e}", self.binary.display()))
            })
    }
}

fn append_log_file(dir: &Path, name: &str) -> Result<std::fs::File> {
    let path = dir.join(name);
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| ClientError::Process(format!("cannot open log file {}: {e}", path.display())))
}

/// A process of a [`LocalCluster`] that exited by itself.
struct ExitedProcess {
    /// Its name and exit status, such as `ember-executor 1 (exit status: 2)`.
    description: String,
    /// The stem of its log files in the log dir (`executor-1`).
    log_stem: String,
}

/// How a process of a [`LocalCluster`] ended when it was stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoppedProcess {
    /// `ember-scheduler` or `ember-executor N`.
    pub name: String,
    /// Its exit code when it exited by itself within the grace period;
    /// `None` when it had to be killed (or was killed by a signal).
    pub exit: Option<i32>,
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        let _ = self.stop(Duration::from_secs(5));
    }
}

/// Asks a child to stop (SIGTERM on Unix).
fn terminate(child: &mut Child) {
    #[cfg(unix)]
    {
        if let Ok(pid) = i32::try_from(child.id()) {
            // SAFETY: sending a signal to a process id we spawned and have not reaped.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
            return;
        }
    }
    let _ = child.kill();
}

/// Waits up to `grace` for a child to exit and returns its exit code; kills
/// it when it is still running after that (and returns `None`).
fn reap(child: &mut Child, grace: Duration) -> Option<i32> {
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        match child.try_wait() {
            Ok(Some(status)) => return status.code(),
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}
