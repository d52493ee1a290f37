//! A secured cluster, with real processes and certificates generated here:
//! TPC-H answers as on a plain cluster with TLS and a token on every port;
//! clients, executors and Flight fetches without the token, with a wrong
//! one, in plain text on a TLS port, trusting another CA, or facing an
//! expired certificate are each refused with one clear line; no secret
//! appears in any process's output; and a session can keep its S3
//! credentials at home.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::{Empty, Ticket};
use ember::EmberContext;
use ember::cluster::list_executors;
use ember::local_cluster::LocalClusterSecurity;
use ember_auth::{CertificateAuthority, ClientSecurity, ClientTls, ClusterToken};
use ember_tests::{
    TestCluster, binary, compare, generate_tpch, run_ember_with_env, start_cluster_with,
};

use crate::dataset_cache::{expected, per_sensor, positive_doubled, reads};
use crate::tpch::{register_tables, run_all_queries};

async fn secured_cluster(security: LocalClusterSecurity) -> TestCluster {
    start_cluster_with(2, |options| {
        options.security = security;
        // Everything the processes say, for the secret grep.
        options.log_filter = "debug".into();
    })
    .await
}

const TOKEN_AND_TLS: LocalClusterSecurity = LocalClusterSecurity {
    token: true,
    tls: true,
    client_auth: false,
};

fn path_str(path: &Option<PathBuf>) -> String {
    path.as_ref()
        .expect("the cluster has this file")
        .display()
        .to_string()
}

fn token_of(cluster: &TestCluster) -> String {
    let path = cluster.client_security().token_file.clone().expect("token");
    std::fs::read_to_string(path).unwrap().trim().to_string()
}

/// Every log line the cluster's processes wrote.
fn cluster_logs(cluster: &TestCluster) -> String {
    let mut all = String::new();
    for entry in std::fs::read_dir(cluster.log_dir()).unwrap().flatten() {
        all.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
    }
    all
}

/// Waits until the cluster's logs hold a line containing all of `parts`;
/// returns that line.
fn wait_for_log_line(cluster: &TestCluster, parts: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let logs = cluster_logs(cluster);
        if let Some(line) = logs
            .lines()
            .find(|line| parts.iter().all(|part| line.contains(part)))
        {
            return line.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no log line with {parts:?} in:\n{logs}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs `ember sql -c SELECT 1` against the cluster with `args` added and
/// `env`; returns (exit code, stderr).
fn ember_select(address: &str, args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut all = vec!["sql", "--scheduler", address];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-c", "SELECT 1"]);
    let (code, _, stderr) = run_ember_with_env(&std::env::temp_dir(), &all, None, env);
    (code, stderr)
}

/// Asserts that `stderr` is exactly one `error:` line holding `expected`.
fn assert_one_error_line(stderr: &str, expected: &str) {
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line expected: {stderr}");
    assert!(
        lines[0].starts_with("error: ") && lines[0].contains(expected),
        "expected `{expected}` in: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_with_tls_and_a_token_answers_tpch_and_serves_cached_partitions() {
    let data = tempfile::tempdir().unwrap();
    let generator = generate_tpch(data.path(), 0.01);
    let cluster = secured_cluster(TOKEN_AND_TLS).await;
    let address = cluster.client_address();
    assert!(address.starts_with("https://"), "{address}");
    let ctx = EmberContext::connect_with(&address, cluster.client_security())
        .await
        .expect("a client with the token and the CA connects");
    register_tables(&ctx, &generator, data.path()).await;
    // Shuffles between executors, results fetched by the client: all over
    // TLS, all carrying the token.
    run_all_queries(&ctx, &generator, data.path(), "secured cluster").await;

    // Cached partitions: kept by executors, read back over their Flight
    // service with the token.
    let (rows, sums) = expected();
    let cached = positive_doubled(&ctx).cache().unwrap();
    assert_eq!(cached.count().await.unwrap(), rows);
    assert_eq!(per_sensor(&cached).await, sums);
    let storage = cached.storage().await.unwrap();
    assert!(
        reads(&storage) > 0,
        "cached partitions were read: {storage:?}"
    );
    cached.unpersist().await.unwrap();

    // The CLI, with the token in the environment instead of a file.
    let token = token_of(&cluster);
    let ca = path_str(&cluster.client_security().tls_ca);
    let (code, stdout, stderr) = run_ember_with_env(
        &std::env::temp_dir(),
        &[
            "sql",
            "--scheduler",
            &address,
            "--tls-ca",
            &ca,
            "--format",
            "csv",
            "-c",
            "SELECT 40 + 2 AS answer",
        ],
        None,
        &[("EMBER_TOKEN", &token)],
    );
    assert_eq!((code, stdout.as_str()), (0, "answer\n42\n"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_without_the_right_token_or_tls_are_refused_with_one_clear_line() {
    let cluster = secured_cluster(TOKEN_AND_TLS).await;
    let address = cluster.client_address();
    let plain_address = cluster.address().to_string();
    let security = cluster.client_security().clone();
    let ca = path_str(&security.tls_ca);
    let token_file = path_str(&security.token_file);

    let (code, stderr) = ember_select(&address, &["--tls-ca", &ca], &[]);
    assert_eq!(code, 1);
    assert_one_error_line(&stderr, "it requires a token");
    let line = wait_for_log_line(
        &cluster,
        &["refused an unauthenticated request", "no token"],
    );
    assert!(line.contains("peer=127.0.0.1:"), "{line}");

    let wrong = "not-the-cluster-token-0000";
    let (code, stderr) = ember_select(&address, &["--tls-ca", &ca], &[("EMBER_TOKEN", wrong)]);
    assert_eq!(code, 1);
    assert_one_error_line(&stderr, "the token sent is not this cluster's token");
    wait_for_log_line(
        &cluster,
        &["refused an unauthenticated request", "wrong token"],
    );

    // Plain text on the TLS port.
    let (code, stderr) = ember_select(&plain_address, &["--token-file", &token_file], &[]);
    assert_eq!(code, 1);
    assert_one_error_line(&stderr, "if it serves TLS, connect with https://");
    wait_for_log_line(
        &cluster,
        &["TLS handshake failed", "the peer spoke plain text"],
    );

    // A client that trusts another CA.
    let other = tempfile::tempdir().unwrap();
    let other_ca = other.path().join("other-ca.pem");
    let stranger = CertificateAuthority::generate("another CA").unwrap();
    std::fs::write(&other_ca, stranger.certificate_pem()).unwrap();
    let other_ca = other_ca.display().to_string();
    let (code, stderr) = ember_select(
        &address,
        &["--tls-ca", &other_ca, "--token-file", &token_file],
        &[],
    );
    assert_eq!(code, 1);
    assert_one_error_line(
        &stderr,
        "the server's certificate is not signed by a trusted CA",
    );
    wait_for_log_line(
        &cluster,
        &[
            "TLS handshake failed",
            "the peer does not trust this server's certificate",
        ],
    );

    // Rust jobs: the same refusal from `EmberContext::connect_with`.
    let mut no_token = security.clone();
    no_token.token_file = None;
    let err = EmberContext::connect_with(&address, &no_token)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("it requires a token"), "{err}");

    // The probes stay open, for orchestrators.
    let probe = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(&ca).unwrap()).unwrap())
        .build()
        .unwrap();
    let url = format!("{address}/healthz");
    let response = probe.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let response = probe
        .get(format!("{address}/api/jobs"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_server_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = CertificateAuthority::generate("test CA").unwrap();
    let expired = ca
        .issue_with(&["127.0.0.1".into()], |params| {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        })
        .unwrap();
    let write = |name: &str, contents: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path.display().to_string()
    };
    let ca_path = write("ca.pem", &ca.certificate_pem());
    let cert = write("cert.pem", &expired.certificate_pem);
    let key = write("key.pem", &expired.private_key_pem);
    let mut scheduler = Command::new(binary("ember-scheduler"))
        .args(["--port", "0", "--tls-cert", &cert, "--tls-key", &key])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let address = listening_address(&mut scheduler);
    let (code, stderr) = ember_select(&format!("https://{address}"), &["--tls-ca", &ca_path], &[]);
    let _ = scheduler.kill();
    let _ = scheduler.wait();
    assert_eq!(code, 1);
    assert_one_error_line(&stderr, "the server's certificate has expired");
}

/// Reads a scheduler's `listening on` line.
fn listening_address(child: &mut std::process::Child) -> String {
    use std::io::BufRead;
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    line.trim()
        .strip_prefix("ember-scheduler listening on ")
        .unwrap_or_else(|| panic!("address line: {line}"))
        .to_string()
}

/// Starts an executor for `cluster` with `args` and `env`; returns its exit
/// code and standard error once it exits, or `None` after 20 s.
fn run_executor(
    cluster: &TestCluster,
    args: &[&str],
    env: &[(&str, &str)],
) -> (Option<i32>, String) {
    let scheduler = cluster.address().to_string();
    let mut child = Command::new(binary("ember-executor"))
        .args(["--scheduler", &scheduler, "--bind", "127.0.0.1"])
        .args(["--port", "0", "--grpc-port", "0", "--health-port", "0"])
        .args(["--scheduler-connect-timeout-secs", "5"])
        .args(args)
        .env_remove("EMBER_TOKEN")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            let output = child.wait_with_output().unwrap();
            return (
                status.code(),
                String::from_utf8_lossy(&output.stderr).into_owned(),
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    (
        None,
        String::from_utf8_lossy(&child.wait_with_output().unwrap().stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_executor_without_the_token_cannot_register() {
    let cluster = secured_cluster(TOKEN_AND_TLS).await;
    let security = cluster.client_security().clone();
    let (ca, cert, key) = (
        path_str(&security.tls_ca),
        path_str(&Some(
            cluster.log_dir().parent().unwrap().join("secrets/cert.pem"),
        )),
        path_str(&Some(
            cluster.log_dir().parent().unwrap().join("secrets/key.pem"),
        )),
    );
    let tls = ["--tls-ca", &ca, "--tls-cert", &cert, "--tls-key", &key];

    let (code, stderr) = run_executor(&cluster, &tls, &[]);
    assert_eq!(code, Some(1), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("ember-executor: the scheduler at")
            && last.contains("did not accept this executor: it requires another token"),
        "{stderr}"
    );
    let (code, stderr) = run_executor(
        &cluster,
        &tls,
        &[("EMBER_TOKEN", "a-wrong-token-of-some-length")],
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("it requires another token"), "{stderr}");

    // With the token but in plain text, it cannot reach the TLS port.
    let token_file = path_str(&security.token_file);
    let (code, stderr) = run_executor(&cluster, &["--token-file", &token_file], &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("did not accept this executor: the server answered in TLS"),
        "{stderr}"
    );

    let executors = list_executors(cluster.connection(), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(executors.len(), 2, "no executor joined: {executors:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flight_requests_to_executors_need_the_token() {
    let cluster = secured_cluster(TOKEN_AND_TLS).await;
    let security = cluster.client_security().clone();
    let executor = list_executors(cluster.connection(), Duration::from_secs(5))
        .await
        .unwrap()
        .remove(0);
    let ca_pem = std::fs::read(security.tls_ca.clone().unwrap()).unwrap();
    let tls = ClientTls {
        ca_pem: Some(ca_pem),
        identity: None,
        server_name: None,
    };
    let flight = |token: Option<ClusterToken>| {
        let security = ClientSecurity::new(token, Some(tls.clone()));
        let endpoint = security
            .endpoint(&format!("127.0.0.1:{}", executor.port))
            .unwrap();
        async move {
            let channel = endpoint.connect().await.expect("TLS to the executor");
            FlightServiceClient::with_interceptor(channel, security.interceptor())
        }
    };
    let ticket = Ticket {
        ticket: b"ember.cache/nothing/0/1".to_vec().into(),
    };

    let mut anonymous = flight(None).await;
    let refused = anonymous.do_get(ticket.clone()).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused}");
    let refused = anonymous.list_actions(Empty {}).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused}");
    let wrong = ClusterToken::parse("a-wrong-token-of-some-length", "test").unwrap();
    let refused = flight(Some(wrong))
        .await
        .list_actions(Empty {})
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused}");
    wait_for_log_line(
        &cluster,
        &["refused an unauthenticated request", "executor Flight"],
    );

    let token = ClusterToken::parse(&token_of(&cluster), "test").unwrap();
    let mut trusted = flight(Some(token)).await;
    let actions = trusted
        .list_actions(Empty {})
        .await
        .expect("the token passes");
    let _ = actions.into_inner();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_refuses_clients_without_a_certificate() {
    let cluster = secured_cluster(LocalClusterSecurity {
        token: true,
        tls: true,
        client_auth: true,
    })
    .await;
    let address = cluster.client_address();
    let security = cluster.client_security().clone();
    let ctx = EmberContext::connect_with(&address, &security)
        .await
        .expect("a client with the cluster's certificate connects");
    let sql = "SELECT x % 3 AS k, count(*) AS n FROM generate_series(1, 1000) t(x) GROUP BY 1";
    let sql = sql.replace(
        "generate_series(1, 1000) t(x)",
        "(VALUES (1), (2), (3), (4), (5)) t(x)",
    );
    let batches = ctx.run_sql(&sql).await.unwrap();
    let expected = datafusion::prelude::SessionContext::new()
        .sql(&sql)
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    compare(&expected, &batches, false).unwrap();

    let ca = path_str(&security.tls_ca);
    let token_file = path_str(&security.token_file);
    let (code, stderr) = ember_select(
        &address,
        &["--tls-ca", &ca, "--token-file", &token_file],
        &[],
    );
    assert_eq!(code, 1);
    assert_one_error_line(&stderr, "give --tls-cert and --tls-key");
    wait_for_log_line(
        &cluster,
        &["TLS handshake failed", "presented no client certificate"],
    );
}

/// The session's S3 secret used by the secret tests: no query reads S3, but
/// the setting travels with every query unless kept at home.
const S3_SECRET: &str = "S3-SECRET-never-to-be-seen-4711";

/// The settings a job's configuration shows on the scheduler's REST API.
async fn job_settings(cluster: &TestCluster, client: &reqwest::Client) -> Vec<serde_json::Value> {
    let base = cluster.client_address();
    let jobs: Vec<serde_json::Value> = client
        .get(format!("{base}/api/jobs"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut configs = Vec::new();
    for job in jobs {
        let id = job["job_id"].as_str().unwrap().to_string();
        let config: serde_json::Value = client
            .get(format!("{base}/api/job/{id}/config"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        configs.push(config);
    }
    configs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_appears_in_any_process_output_and_credentials_can_stay_home() {
    let cluster = secured_cluster(TOKEN_AND_TLS).await;
    let token = token_of(&cluster);
    let address = cluster.client_address();
    let security = cluster.client_security().clone();
    let ca = path_str(&security.tls_ca);
    let token_file = path_str(&security.token_file);
    let set_secret = format!("SET s3.secret_access_key = '{S3_SECRET}'");
    let (code, stdout, stderr) = run_ember_with_env(
        &std::env::temp_dir(),
        &[
            "sql",
            "--scheduler",
            &address,
            "--tls-ca",
            &ca,
            "--token-file",
            &token_file,
            "--log",
            "debug",
            "-c",
            &set_secret,
            "-c",
            "SELECT count(*) FROM (VALUES (1), (2), (3)) t(x)",
            "-c",
            "EXPLAIN SELECT sum(x) FROM (VALUES (1), (2)) t(x)",
            "-c",
            "SHOW s3.secret_access_key",
            "-c",
            "SELECT x / 0 FROM (VALUES (1)) t(x)",
        ],
        None,
        &[],
    );
    assert_eq!(code, 1, "the last statement fails: {stderr}");
    let http = cluster.connection().security().http_client().unwrap();
    let with_secret = job_settings(&cluster, &http).await;
    assert!(!with_secret.is_empty());
    let shipped = with_secret
        .iter()
        .filter(|config| config["s3.secret_access_key"] == "****")
        .count();
    assert!(
        shipped > 0,
        "the secret travels, masked on the API: {with_secret:?}"
    );

    // Kept at home: the setting does not reach the cluster at all.
    let ctx = EmberContext::connect_with(&address, &security)
        .await
        .unwrap();
    ctx.run_sql(&set_secret).await.unwrap();
    ctx.run_sql("SET ember.ship_credentials = false")
        .await
        .unwrap();
    ctx.run_sql("SET ballista.job.name = 'kept-home'")
        .await
        .unwrap();
    ctx.run_sql("SELECT count(*) FROM (VALUES (1), (2)) t(x)")
        .await
        .unwrap();
    let kept: Vec<_> = job_settings(&cluster, &http)
        .await
        .into_iter()
        .filter(|config| {
            config["ballista.job.name"]
                .as_str()
                .is_some_and(|name| name.starts_with("kept-home"))
        })
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(
        kept[0]
            .get("s3.secret_access_key")
            .is_none_or(|v| v.is_null() || v.as_str() == Some("")),
        "no credential reaches the cluster: {:?}",
        kept[0]
    );

    let mut outputs = vec![
        ("the client's standard output".to_string(), stdout),
        ("the client's standard error".to_string(), stderr),
        ("the REST API".to_string(), format!("{with_secret:?}")),
    ];
    for entry in std::fs::read_dir(cluster.log_dir()).unwrap().flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        outputs.push((entry.file_name().to_string_lossy().into_owned(), text));
    }
    for (name, secret) in [("the token", token.as_str()), ("the S3 secret", S3_SECRET)] {
        for (place, text) in &outputs {
            // The line, with the secret itself masked, shows where it leaked.
            if let Some(line) = text.lines().find(|line| line.contains(secret)) {
                panic!(
                    "{name} appears in {place}: {}",
                    line.replace(secret, "<SECRET>")
                );
            }
        }
    }
    assert!(
        cluster_logs(&cluster).contains("DEBUG"),
        "the processes logged at debug level"
    );
}

#[test]
fn cluster_secrets_writes_a_token_a_ca_and_a_certificate_only_its_owner_reads() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("secrets");
    let out_str = out.display().to_string();
    let (code, stdout, stderr) = run_ember_with_env(
        dir.path(),
        &[
            "cluster",
            "secrets",
            "--dir",
            &out_str,
            "--names",
            "scheduler,ember-cluster",
        ],
        None,
        &[],
    );
    assert_eq!(code, 0, "{stderr}");
    let listed: Vec<&str> = stdout.lines().collect();
    assert_eq!(listed.len(), 4, "{stdout}");
    for name in ["token", "ca.pem", "cert.pem", "key.pem"] {
        let path = out.join(name);
        assert!(
            listed.contains(&path.display().to_string().as_str()),
            "{stdout}"
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{name}");
    }
    let token = std::fs::read_to_string(out.join("token")).unwrap();
    assert!(ClusterToken::parse(&token, "test").is_ok());
    assert_eq!(token.len(), 64);
    // The files serve a scheduler as they are.
    let mut scheduler = Command::new(binary("ember-scheduler"))
        .args(["--port", "0"])
        .args(["--token-file", &out.join("token").display().to_string()])
        .args(["--tls-cert", &out.join("cert.pem").display().to_string()])
        .args(["--tls-key", &out.join("key.pem").display().to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let address = listening_address(&mut scheduler);
    let port = address.rsplit(':').next().unwrap();
    // The certificate names `scheduler`, not 127.0.0.1: a client checking
    // the host it dials is refused, naming the reason.
    let ca = out.join("ca.pem").display().to_string();
    let token_file = out.join("token").display().to_string();
    let (code, stderr) = ember_select(
        &format!("https://127.0.0.1:{port}"),
        &["--tls-ca", &ca, "--token-file", &token_file],
        &[],
    );
    let _ = scheduler.kill();
    let _ = scheduler.wait();
    assert_eq!(code, 1);
    assert_one_error_line(
        &stderr,
        "the server's certificate does not name the host connected to",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_jobs_run_unchanged_on_a_secured_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let texts = crate::examples::corpus(dir.path());
    let path = dir.path().to_str().unwrap().to_string();
    let expected = crate::examples::expected_counts(&texts, 8);
    let cluster = secured_cluster(TOKEN_AND_TLS).await;
    let security = cluster.client_security().clone();
    // The job binary takes no security flags: the environment says it all.
    let word_count = |extra: &[&std::ffi::OsStr]| {
        let output = Command::new(binary("word-count"))
            .args(["--master", &cluster.client_address(), "--top", "8", &path])
            .args(extra)
            .env_remove("EMBER_MASTER")
            .env_remove("EMBER_TOKEN")
            .env("EMBER_TOKEN_FILE", path_str(&security.token_file))
            .env("EMBER_TLS_CA", path_str(&security.tls_ca))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{extra:?}: {stderr}");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(stdout.lines().collect::<Vec<_>>(), expected, "{extra:?}");
    };
    word_count(&[]);
    // Its functions as a WebAssembly library: sent with the token over
    // TLS, and fetched by the executors the same way.
    let module = ember_tests::guest_module("word_count");
    word_count(&["--functions".as_ref(), module.as_os_str()]);
    // Only an authenticated client may load code into the cluster.
    let anonymous = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(path_str(&security.tls_ca)).unwrap())
                .unwrap(),
        )
        .build()
        .unwrap();
    let bytes = std::fs::read(&module).unwrap();
    let hash = ember_wasm::sha256_hex(&bytes);
    let response = anonymous
        .put(format!(
            "{}/api/ember/wasm/{hash}",
            cluster.client_address()
        ))
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let response = anonymous
        .get(format!("{}/api/ember/functions", cluster.client_address()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}
