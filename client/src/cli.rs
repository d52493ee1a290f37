//! The `ember` command line: argument definitions and what each command does.
//! `main.rs` only parses, calls [`run`] and turns the outcome into an exit code.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::context::EmberContext;
use crate::error::{ClientError, Result};
use crate::format::OutputFormat;
use crate::local_cluster::{LocalCluster, LocalClusterOptions, LocalClusterSecurity};
use crate::runner::StatementRunner;
use crate::tpch::{DataFormat, TpchGenerator};

/// Ember: a distributed dataframe engine. Runs SQL embedded in this process,
/// or on a cluster with `--scheduler`.
#[derive(Debug, Parser)]
#[command(name = "ember", version = ember_core::EMBER_VERSION, propagate_version = true)]
pub struct Cli {
    /// Log filter for Ember's and its libraries' logs on standard error
    /// (for example `info`, or `ember=debug`); RUST_LOG wins. By default only
    /// Ember's own warnings are logged: errors are reported once, as the
    /// command's error line.
    #[arg(long, env = "EMBER_LOG", default_value = "ember=warn", global = true)]
    pub log: String,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Ember's commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run SQL: statements given with -c or -f, or an interactive shell.
    Sql(Box<SqlArgs>),
    /// Start and manage clusters.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Generate sample data.
    #[command(subcommand)]
    Datagen(DatagenCommand),
}

/// `ember sql`.
#[derive(Debug, Args)]
pub struct SqlArgs {
    /// Run these statements and exit (may be repeated; runs after any -f files).
    #[arg(short = 'c', long = "command", value_name = "SQL")]
    pub commands: Vec<String>,
    /// Run the statements in this file and exit (may be repeated).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// How to print results.
    #[arg(long, value_enum, default_value = "table")]
    pub format: OutputFormat,
    /// Run on the cluster whose scheduler listens here (host:port); without
    /// it, queries run embedded in this process.
    #[arg(long, env = "EMBER_SCHEDULER", value_name = "HOST:PORT")]
    pub scheduler: Option<String>,
    /// Embedded: follow this catalog file (a scheduler's
    /// `--state-dir/catalog.json`): its tables, views and schemas are
    /// visible, and what the session declares is kept there, unless a
    /// running scheduler holds the file.
    #[arg(long, env = "EMBER_CATALOG", value_name = "FILE")]
    pub catalog: Option<PathBuf>,
    /// Print how long each statement takes (on standard error), and what it
    /// spilled to disk.
    #[arg(long)]
    pub timing: bool,
    /// No progress line on standard error while a statement runs (it shows
    /// only on a terminal, after a second: rows read embedded, stages and
    /// tasks on a cluster).
    #[arg(long)]
    pub no_progress: bool,
    /// Memory an embedded session may use, such as `2GiB`: its queries'
    /// operators hold 60% of it and spill beyond that (default: operators
    /// hold up to half the machine's or container's memory). On a cluster,
    /// each executor's `--memory` rules.
    #[arg(long, env = "EMBER_MEMORY", value_name = "SIZE")]
    pub memory: Option<ember_memory::ByteSize>,
    /// History file of the interactive shell.
    #[arg(long, value_name = "FILE")]
    pub history_file: Option<PathBuf>,
    /// How to reach S3.
    #[command(flatten)]
    pub s3: S3Args,
    /// The cluster's token and TLS.
    #[command(flatten, next_help_heading = "Security (a cluster's token and TLS)")]
    pub security: ember_auth::SecurityOptions,
}

/// S3 settings of a session. They override the `AWS_*` environment, and
/// `SET s3.<key>` overrides them; on a cluster they travel with every query.
#[derive(Debug, Default, Args)]
#[command(next_help_heading = "S3 (override AWS_* variables)")]
pub struct S3Args {
    /// Endpoint of an S3-compatible store, e.g. http://127.0.0.1:9000.
    #[arg(long, value_name = "URL")]
    pub s3_endpoint: Option<String>,
    /// Region, e.g. us-east-1.
    #[arg(long, value_name = "REGION")]
    pub s3_region: Option<String>,
    /// Access key id.
    #[arg(long, value_name = "ID")]
    pub s3_access_key_id: Option<String>,
    /// Secret access key (prefer AWS_SECRET_ACCESS_KEY: flags show in `ps`).
    #[arg(long, value_name = "SECRET")]
    pub s3_secret_access_key: Option<String>,
    /// Allow plain http:// endpoints.
    #[arg(long)]
    pub s3_allow_http: bool,
    /// Use virtual-hosted-style addressing (bucket.host) instead of path style.
    #[arg(long)]
    pub s3_virtual_hosted_style: bool,
}

impl S3Args {
    /// The session settings (`s3.<key>`, value) these flags set.
    pub fn settings(&self) -> Vec<(String, String)> {
        let mut settings = Vec::new();
        let mut add = |key: &str, value: Option<&String>| {
            if let Some(value) = value {
                settings.push((format!("s3.{key}"), value.clone()));
            }
        };
        add("endpoint", self.s3_endpoint.as_ref());
        add("region", self.s3_region.as_ref());
        add("access_key_id", self.s3_access_key_id.as_ref());
        add("secret_access_key", self.s3_secret_access_key.as_ref());
        if self.s3_allow_http {
            settings.push(("s3.allow_http".to_string(), "true".to_string()));
        }
        if self.s3_virtual_hosted_style {
            settings.push(("s3.virtual_hosted_style".to_string(), "true".to_string()));
        }
        settings
    }
}

/// `ember cluster ...`.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Start a scheduler and N executors as local processes; Ctrl-C stops them.
    Local(LocalClusterArgs),
    /// Generate a cluster's secrets: a token, a CA and a certificate for the
    /// cluster's host names (for --token-file and --tls-*, Docker secrets or
    /// a Kubernetes Secret).
    Secrets(SecretsArgs),
}

/// `ember cluster secrets`.
#[derive(Debug, Args)]
pub struct SecretsArgs {
    /// Directory to write `token`, `ca.pem`, `cert.pem` and `key.pem` into
    /// (created if missing; readable by this user only).
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// Host names and IP addresses the certificate is issued for: every name
    /// clients and executors use to reach the scheduler and executors, or
    /// one name that all of them check (--tls-server-name).
    #[arg(long, value_delimiter = ',', default_value = "localhost,127.0.0.1")]
    pub names: Vec<String>,
    /// Only a token, no CA or certificate.
    #[arg(long)]
    pub no_tls: bool,
}

/// `ember cluster local`.
#[derive(Debug, Args)]
pub struct LocalClusterArgs {
    /// Number of executors.
    #[arg(long, default_value_t = 2)]
    pub executors: usize,
    /// Task slots per executor.
    #[arg(long, default_value_t = 2)]
    pub cores: usize,
    /// Each executor's memory pool, such as `4GiB` (default: a share of
    /// the machine's memory).
    #[arg(long, value_name = "SIZE")]
    pub executor_memory: Option<ember_memory::ByteSize>,
    /// Scheduler port (0 picks a free one).
    #[arg(long, default_value_t = 50050)]
    pub port: u16,
    /// Directory for the processes' logs and work dirs, and for what the
    /// scheduler keeps across restarts (`scheduler/`: the shared catalog
    /// and the history of finished jobs its web UI shows). Default: a new
    /// temporary directory, removed on exit.
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Directory with the ember-scheduler and ember-executor binaries
    /// (default: the directory of this `ember` binary).
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    /// Start the cluster without a token: anyone who can reach its ports
    /// may use it. By default a fresh token is generated into the state
    /// directory, and every port requires it.
    #[arg(long)]
    pub no_token: bool,
    /// Also serve TLS on every port, with a freshly generated self-signed CA
    /// and a certificate for localhost (written to the state directory).
    #[arg(long)]
    pub tls: bool,
}

/// `ember datagen ...`.
#[derive(Debug, Subcommand)]
pub enum DatagenCommand {
    /// Generate the eight TPC-H tables, one directory per table.
    Tpch(TpchArgs),
}

/// `ember datagen tpch`.
#[derive(Debug, Args)]
pub struct TpchArgs {
    /// Scale factor (1 is about 1 GB of raw data).
    #[arg(long, default_value_t = 0.01)]
    pub scale_factor: f64,
    /// Files per table.
    #[arg(long, default_value_t = 1)]
    pub parts: usize,
    /// File format.
    #[arg(long, value_enum, default_value = "parquet")]
    pub format: DataFormat,
    /// Output directory.
    #[arg(long)]
    pub output: PathBuf,
}

/// Runs a parsed command line. Errors are returned for `main` to print.
pub async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Sql(args) => run_sql(*args).await,
        Command::Cluster(ClusterCommand::Local(args)) => run_local_cluster(args).await,
        Command::Cluster(ClusterCommand::Secrets(args)) => run_secrets(args),
        Command::Datagen(DatagenCommand::Tpch(args)) => run_datagen(args),
    }
}

async fn run_sql(args: SqlArgs) -> Result<()> {
    let mut context = match args.scheduler.as_deref() {
        None => EmberContext::embedded()?,
        Some(address) => EmberContext::connect_with(address, &args.security).await?,
    };
    if let Some(path) = &args.catalog {
        context = context.with_catalog_file(path)?;
    }
    if let Some(memory) = args.memory {
        context.set_process_memory(memory)?;
        // A process given a memory budget keeps to it.
        ember_memory::allocator::return_freed_memory_promptly();
    }
    for (key, value) in args.s3.settings() {
        context.set_option(&key, &value)?;
    }
    let mut runner = StatementRunner {
        context,
        format: args.format,
        timing: args.timing,
        progress: !args.no_progress && std::io::IsTerminal::is_terminal(&std::io::stderr()),
    };
    if args.commands.is_empty() && args.files.is_empty() {
        let history = args.history_file.or_else(crate::repl::default_history_file);
        let failures = crate::repl::run(&mut runner, history).await;
        return if failures == 0 || std::io::IsTerminal::is_terminal(&std::io::stdin()) {
            Ok(())
        } else {
            Err(ClientError::Process(format!(
                "{failures} of the statements read from standard input failed"
            )))
        };
    }
    let mut stdout = std::io::stdout().lock();
    for path in &args.files {
        let text = std::fs::read_to_string(path).map_err(|source| ClientError::ReadFile {
            path: path.clone(),
            source,
        })?;
        runner
            .run_script(&path.display().to_string(), &text, &mut stdout)
            .await?;
    }
    for (n, command) in args.commands.iter().enumerate() {
        let source = if args.commands.len() == 1 {
            "-c".to_string()
        } else {
            format!("-c #{}", n + 1)
        };
        runner.run_script(&source, command, &mut stdout).await?;
    }
    stdout
        .flush()
        .map_err(|e| ClientError::Output(e.to_string()))
}

async fn run_local_cluster(args: LocalClusterArgs) -> Result<()> {
    if args.executors == 0 {
        return Err(ClientError::Process(
            "--executors must be at least 1".to_string(),
        ));
    }
    let bin_dir = match args.bin_dir {
        Some(dir) => dir,
        None => std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|p| p.to_path_buf()))
            .ok_or_else(|| {
                ClientError::Process("cannot tell where the ember binary is; pass --bin-dir".into())
            })?,
    };
    let keep_state = args.state_dir.is_some();
    let temp_state;
    let state_dir = match args.state_dir {
        Some(dir) => dir,
        None => {
            temp_state = tempfile::Builder::new()
                .prefix("ember-cluster-")
                .tempdir()
                .map_err(|e| {
                    ClientError::Process(format!("cannot create a state directory: {e}"))
                })?;
            temp_state.path().to_path_buf()
        }
    };
    let mut options = LocalClusterOptions::new(bin_dir, args.executors, &state_dir);
    if keep_state {
        // A state directory the user keeps: the scheduler keeps its
        // catalog and job history there, so both survive a restart.
        let scheduler_state = state_dir.join("scheduler");
        options.scheduler_args = vec![
            "--state-dir".to_string(),
            scheduler_state.display().to_string(),
        ];
    }
    options.cores_per_executor = args.cores;
    options.executor_memory = args.executor_memory;
    options.scheduler_port = args.port;
    options.security = LocalClusterSecurity {
        token: !args.no_token,
        tls: args.tls,
        client_auth: false,
    };
    eprintln!("Starting a scheduler and {} executor(s)...", args.executors);
    let mut cluster = LocalCluster::start(&options).await?;
    // One shutdown future, its handlers installed before the prompt below,
    // and kept across the loop so that no Ctrl-C falls between two polls.
    let shutdown = ember_core::process::shutdown_signal();
    tokio::pin!(shutdown);
    let addr = cluster.client_address();
    println!(
        "Ember cluster running: scheduler at {addr}, {} executor(s).",
        args.executors
    );
    print_connect_help(&addr, cluster.client_security());
    println!("  Logs:     {}", cluster.log_dir().display());
    println!("Press Ctrl-C to stop.");
    let _ = std::io::stdout().flush();

    // The scheduler's exit stops the cluster; an executor's is a loss the
    // cluster survives: it is started again, as a supervisor would.
    let mut watchdog = tokio::time::interval(Duration::from_millis(500));
    let outcome = loop {
        tokio::select! {
            signal = &mut shutdown => {
                eprintln!("Received {signal}; stopping the cluster...");
                break Ok(());
            }
            _ = watchdog.tick() => {
                if let Some(process) = cluster.scheduler_exit() {
                    break Err(ClientError::Process(format!(
                        "{process} exited; stopping the cluster (logs in {})",
                        cluster.log_dir().display()
                    )));
                }
                match cluster.restart_exited_executors() {
                    Ok(restarted) => {
                        for executor in restarted {
                            eprintln!(
                                "ember-executor {} exited ({}); restarted it as process {}",
                                executor.number, executor.exit, executor.pid
                            );
                        }
                    }
                    Err(e) => break Err(e),
                }
            }
        }
    };
    for process in cluster.stop(Duration::from_secs(10)) {
        if process.exit != Some(0) {
            eprintln!("{} did not stop cleanly ({:?})", process.name, process.exit);
        }
    }
    eprintln!("Cluster stopped.");
    outcome
}

/// Prints how a client connects to a local cluster secured with `security`.
fn print_connect_help(addr: &str, security: &ember_auth::SecurityOptions) {
    let mut flags = String::new();
    if let Some(token) = &security.token_file {
        flags.push_str(&format!(" --token-file {}", token.display()));
    }
    if let Some(ca) = &security.tls_ca {
        flags.push_str(&format!(" --tls-ca {}", ca.display()));
    }
    println!("  Connect:  ember sql --scheduler {addr}{flags}");
    let scheme = if security.tls_ca.is_some() {
        "https"
    } else {
        "http"
    };
    let bare = addr.trim_start_matches("https://");
    match (&security.token_file, &security.tls_ca) {
        (Some(token), ca) => println!(
            "  REST API: curl{} -H \"Authorization: Bearer $(cat {})\" {scheme}://{bare}/api/executors",
            ca.as_ref()
                .map(|ca| format!(" --cacert {}", ca.display()))
                .unwrap_or_default(),
            token.display()
        ),
        (None, _) => println!("  REST API: {scheme}://{bare}/api/executors"),
    }
    if security.token_file.is_none() {
        println!(
            "  Not secured (--no-token): anyone who can reach these ports can use the cluster."
        );
    }
}

fn run_secrets(args: SecretsArgs) -> Result<()> {
    let security = LocalClusterSecurity {
        token: true,
        tls: !args.no_tls,
        client_auth: false,
    };
    let written = crate::local_cluster::generate_secrets(security, &args.dir, &args.names)?;
    for path in [
        &written.token_file,
        &written.tls_ca,
        &written.tls_cert,
        &written.tls_key,
    ]
    .into_iter()
    .flatten()
    {
        println!("{}", path.display());
    }
    Ok(())
}

fn run_datagen(args: TpchArgs) -> Result<()> {
    let generator = TpchGenerator {
        scale_factor: args.scale_factor,
        parts: args.parts,
        format: args.format,
    };
    let tables = generator
        .write_all(&args.output)
        .map_err(|e| ClientError::Process(e.to_string()))?;
    for (table, dir) in tables {
        println!("{table}\t{}", dir.display());
    }
    Ok(())
}
