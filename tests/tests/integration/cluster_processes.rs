//! The real `ember-scheduler` and `ember-executor` processes: REST API,
//! health endpoints, a cluster without executors, graceful shutdown, and the
//! CLI against a cluster (tables with hive-style partitions, CSV, NDJSON,
//! Parquet) giving the same answers as embedded.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ember::cluster::{SchedulerAddress, list_executors};
use ember::local_cluster::{LocalCluster, LocalClusterOptions};
use ember_tests::{binary, http_get, run_ember, start_cluster};

/// Starts a lone scheduler on a free port; returns it and its address.
fn start_scheduler() -> (Child, String) {
    let mut child = Command::new(binary("ember-scheduler"))
        .args(["--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("scheduler starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("ember-scheduler listening on ")
        .expect("address line")
        .to_string();
    (child, addr)
}

fn terminate_and_wait(child: &mut Child, within: Duration) -> Option<i32> {
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    None
}

#[test]
fn scheduler_serves_rest_and_health_and_stops_on_sigterm() {
    let (mut scheduler, addr) = start_scheduler();
    let (status, body) = http_get(&addr, "/healthz");
    assert_eq!(status, 200, "{body}");
    let (status, body) = http_get(&addr, "/api/executors");
    assert_eq!((status, body.trim()), (200, "[]"));
    // Not ready until an executor registers.
    let (status, _) = http_get(&addr, "/readyz");
    assert_ne!(status, 200);
    assert_eq!(
        terminate_and_wait(&mut scheduler, Duration::from_secs(10)),
        Some(0)
    );
}

#[test]
fn cluster_without_executors_is_a_clear_error() {
    let (mut scheduler, addr) = start_scheduler();
    let started = Instant::now();
    let (code, _, stderr) = run_ember(
        &[
            "sql",
            "--scheduler",
            &addr,
            "-c",
            "set ember.client_executor_wait_secs = 1; select 1",
        ],
        None,
    );
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!("error: the cluster at {addr} has no executors")),
        "{stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));

    // Statements that only touch the client's catalog need no executor.
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("t.csv");
    std::fs::write(&csv, "a\n1\n").unwrap();
    let sql = format!(
        "create external table t stored as csv location '{}' options ('format.has_header' 'true'); \
         select table_name from information_schema.tables where table_schema = 'public'",
        csv.display()
    );
    let (code, stdout, stderr) = run_ember(
        &["sql", "--scheduler", &addr, "--format", "csv", "-c", &sql],
        None,
    );
    assert_eq!((code, stdout.as_str()), (0, "table_name\nt\n"), "{stderr}");
    terminate_and_wait(&mut scheduler, Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executors_register_report_health_and_stop_gracefully() {
    let mut cluster = start_cluster(2).await;
    let addr: SchedulerAddress = cluster.address().clone();
    let executors = list_executors(cluster.connection(), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(executors.len(), 2);
    assert!(
        executors
            .iter()
            .all(|e| e.host == "127.0.0.1" && e.port != 0)
    );
    let (status, _) = http_get(&addr.to_string(), "/readyz");
    assert_eq!(status, 200);
    let stopped = cluster.stop(Duration::from_secs(20));
    assert_eq!(stopped.len(), 3);
    for process in stopped {
        assert_eq!(
            process.exit,
            Some(0),
            "{} stops gracefully on SIGTERM",
            process.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_cluster_whose_executor_dies_at_start_says_why_at_once() {
    let state = tempfile::tempdir().unwrap();
    let mut options = LocalClusterOptions::new(ember_tests::bin_dir(), 1, state.path());
    options.env = vec![("EMBER_EXECUTOR_MEMORY".into(), "lots".into())];
    let err = LocalCluster::start(&options).await.unwrap_err().to_string();
    assert!(
        err.starts_with("ember-executor 0 (exit status: 2) exited while the cluster started: "),
        "{err}"
    );
    assert!(err.contains("'lots'") && err.contains("--memory"), "{err}");
}

#[test]
fn an_executor_port_in_use_is_one_line_naming_the_flag() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let output = Command::new(binary("ember-executor"))
        .args(["--scheduler", "127.0.0.1:1", "--port", &port.to_string()])
        .args(["--grpc-port", "0", "--health-port", "0"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "ember-executor: cannot listen on 127.0.0.1:{port} (--port): "
        )),
        "{stderr}"
    );
}

/// Writes a small lake: hive-partitioned CSV, an NDJSON file, Parquet.
fn write_lake(dir: &std::path::Path) {
    for (year, month, rows) in [
        (2023, 11, "item,amount\napple,3\npear,4\n"),
        (2023, 12, "item,amount\napple,5\n"),
        (2024, 1, "item,amount\npear,7\nplum,1\n"),
    ] {
        let part = dir.join(format!("sales/year={year}/month={month}"));
        std::fs::create_dir_all(&part).unwrap();
        std::fs::write(part.join("data.csv"), rows).unwrap();
    }
    std::fs::write(
        dir.join("events.ndjson"),
        "{\"user\":\"ada\",\"clicks\":3}\n{\"user\":\"alan\",\"clicks\":5}\n{\"user\":\"ada\",\"clicks\":2}\n",
    )
    .unwrap();
    let generator = ember::tpch::TpchGenerator {
        scale_factor: 0.01,
        ..Default::default()
    };
    generator.write_table("nation", dir).unwrap();
}

fn lake_script(dir: &std::path::Path) -> String {
    let d = dir.display();
    format!(
        "CREATE EXTERNAL TABLE sales STORED AS CSV PARTITIONED BY (year, month) LOCATION '{d}/sales/' OPTIONS ('format.has_header' 'true');
CREATE EXTERNAL TABLE events STORED AS JSON LOCATION '{d}/events.ndjson';
CREATE EXTERNAL TABLE nation STORED AS PARQUET LOCATION '{d}/nation/';
SELECT year, item, sum(amount) AS amount FROM sales WHERE month <> '12' GROUP BY year, item ORDER BY year, item;
SELECT user, sum(clicks) AS clicks FROM events GROUP BY user ORDER BY user;
SELECT n_regionkey, count(*) AS nations FROM nation GROUP BY n_regionkey ORDER BY n_regionkey;
"
    )
}

const LAKE_ANSWER: &str = "year,item,amount
2023,apple,3
2023,pear,4
2024,pear,7
2024,plum,1
user,clicks
ada,5
alan,5
n_regionkey,nations
0,5
1,5
2,5
3,5
4,5
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_tables_give_the_same_answers_embedded_and_on_a_cluster() {
    let lake = tempfile::tempdir().unwrap();
    write_lake(lake.path());
    let script = lake.path().join("lake.sql");
    std::fs::write(&script, lake_script(lake.path())).unwrap();
    let script = script.to_str().unwrap().to_string();

    let (code, embedded, stderr) = run_ember(&["sql", "--format", "csv", "-f", &script], None);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(embedded, LAKE_ANSWER);

    let cluster = start_cluster(2).await;
    let addr = cluster.address().to_string();
    let (code, distributed, stderr) = tokio::task::spawn_blocking(move || {
        run_ember(
            &[
                "sql",
                "--scheduler",
                &addr,
                "--format",
                "csv",
                "-f",
                &script,
            ],
            None,
        )
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(distributed, LAKE_ANSWER);

    // A row that fails to parse fails the job on an executor: one line
    // naming the cause, in both modes.
    let bad = lake.path().join("bad.csv");
    std::fs::write(&bad, "name,age\nada,36\nbob,x\n").unwrap();
    let sql = format!(
        "create external table p (name varchar, age int) stored as csv location '{}' options ('format.has_header' 'true'); select sum(age) from p",
        bad.display()
    );
    let cause = "Error while parsing value 'x' as type 'Int32' for column 1 at line 2.";
    let (code, _, stderr) = run_ember(&["sql", "-c", &sql], None);
    assert_eq!((code, stderr.lines().count()), (1, 1), "{stderr}");
    assert!(
        stderr.starts_with("error: ") && stderr.contains(cause),
        "{stderr}"
    );
    let addr = cluster.address().to_string();
    let (code, _, stderr) = tokio::task::spawn_blocking(move || {
        run_ember(&["sql", "--scheduler", &addr, "-c", &sql], None)
    })
    .await
    .unwrap();
    assert_eq!((code, stderr.lines().count()), (1, 1), "{stderr}");
    assert!(
        stderr.starts_with("error: query failed on the cluster (job "),
        "{stderr}"
    );
    assert!(stderr.contains(cause), "{stderr}");
}

/// Picks a free port on 127.0.0.1.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn executor_serves_health_and_both_processes_stop_gracefully() {
    let (mut scheduler, addr) = start_scheduler();
    let work_dir = tempfile::tempdir().unwrap();
    let health_port = free_port();
    let mut executor = Command::new(binary("ember-executor"))
        .args(["--scheduler", &addr, "--port", "0", "--grpc-port", "0"])
        .args(["--health-port", &health_port.to_string(), "--cores", "1"])
        .arg("--work-dir")
        .arg(work_dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("executor starts");
    let health = format!("127.0.0.1:{health_port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let ready = loop {
        if TcpStream::connect(&health).is_ok() && http_get(&health, "/readyz").0 == 200 {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(ready, "executor never became ready");
    assert_eq!(http_get(&health, "/healthz").0, 200);
    assert_eq!(
        http_get(&addr, "/readyz").0,
        200,
        "scheduler is ready once an executor registered"
    );
    assert_eq!(
        terminate_and_wait(&mut executor, Duration::from_secs(20)),
        Some(0)
    );
    assert_eq!(
        terminate_and_wait(&mut scheduler, Duration::from_secs(10)),
        Some(0)
    );
}

/// Starts `ember cluster local` with one one-core executor and its state
/// in `state`, reads what it prints up to "Press Ctrl-C", and returns it
/// with the scheduler address from its connect line (which also names the
/// generated token, see [`token_file`]) and its standard output, to keep
/// open while it runs.
fn start_cluster_local(
    state: &std::path::Path,
    stderr: Stdio,
) -> (Child, String, BufReader<std::process::ChildStdout>) {
    let mut launcher = Command::new(binary("ember"))
        .args([
            "cluster",
            "local",
            "--executors",
            "1",
            "--cores",
            "1",
            "--port",
            "0",
        ])
        .arg("--state-dir")
        .arg(state)
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("ember cluster local starts");
    let mut stdout = BufReader::new(launcher.stdout.take().unwrap());
    let mut printed = String::new();
    let mut addr = None;
    while !printed.contains("Press Ctrl-C") {
        let mut line = String::new();
        if stdout.read_line(&mut line).unwrap() == 0 {
            break;
        }
        if let Some(rest) = line.trim().strip_prefix("Connect:  ember sql --scheduler ") {
            // `ADDR --token-file STATE/secrets/token`: the cluster's token.
            let mut words = rest.split_whitespace();
            addr = words.next().map(str::to_string);
            let token = state.join("secrets/token").display().to_string();
            assert_eq!(
                words.collect::<Vec<_>>(),
                ["--token-file", token.as_str()],
                "{line}"
            );
        }
        printed.push_str(&line);
    }
    let addr = addr.unwrap_or_else(|| panic!("no connect line in: {printed}"));
    (launcher, addr, stdout)
}

/// The token file `ember cluster local` generated in `state`.
fn token_file(state: &std::path::Path) -> String {
    state.join("secrets/token").display().to_string()
}

#[test]
fn cluster_local_prints_how_to_connect_and_stops_on_ctrl_c() {
    let state = tempfile::tempdir().unwrap();
    let (mut launcher, addr, _stdout) = start_cluster_local(state.path(), Stdio::null());
    // The generated token is required: a client without it is refused.
    let (code, _, stderr) = run_ember(&["sql", "--scheduler", &addr, "-c", "SELECT 1"], None);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("it requires a token"), "{stderr}");
    let token = token_file(state.path());
    let (code, stdout_sql, stderr) = run_ember(
        &[
            "sql",
            "--scheduler",
            &addr,
            "--token-file",
            &token,
            "--format",
            "csv",
            "-c",
            "select 40 + 2 as answer",
        ],
        None,
    );
    assert_eq!((code, stdout_sql.as_str()), (0, "answer\n42\n"), "{stderr}");

    unsafe { libc::kill(launcher.id() as i32, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = launcher.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = launcher.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status.and_then(|s| s.code()), Some(0));
    assert!(TcpStream::connect(&addr).is_err(), "the scheduler is gone");
}

/// The process ids of `parent`'s children named `name`.
fn children_named(parent: u32, name: &str) -> Vec<u32> {
    let children = std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children"))
        .unwrap_or_default();
    children
        .split_whitespace()
        .filter_map(|pid| pid.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim() == name)
        })
        .collect()
}

/// `ember cluster local` keeps its cluster usable when an executor is
/// killed: it starts another in its place, says so, and queries run again.
#[test]
fn cluster_local_restarts_an_executor_that_dies() {
    let state = tempfile::tempdir().unwrap();
    let (mut launcher, addr, _stdout) = start_cluster_local(state.path(), Stdio::piped());
    let token = token_file(state.path());
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    let stderr = BufReader::new(launcher.stderr.take().unwrap());
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let query = || {
        run_ember(
            &[
                "sql",
                "--scheduler",
                &addr,
                "--token-file",
                &token,
                "--format",
                "csv",
                "-c",
                "select 40 + 2 as answer",
            ],
            None,
        )
    };
    assert_eq!(query().1, "answer\n42\n");

    let executors = children_named(launcher.id(), "ember-executor");
    assert_eq!(executors.len(), 1, "one executor child: {executors:?}");
    unsafe { libc::kill(executors[0] as i32, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(30);
    let restarted = loop {
        let line = lines_rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the launcher reports the restart");
        if line.contains("restarted") {
            break line;
        }
    };
    assert!(
        restarted.contains("ember-executor 0 exited") && restarted.contains("restarted it"),
        "{restarted}"
    );
    // The new child has its name once it has exec'd its binary.
    let deadline = Instant::now() + Duration::from_secs(10);
    let replacement = loop {
        let children = children_named(launcher.id(), "ember-executor");
        if children.len() == 1 || Instant::now() > deadline {
            break children;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(replacement.len(), 1, "{replacement:?}");
    assert_ne!(replacement[0], executors[0]);
    let (code, answer, stderr) = query();
    assert_eq!((code, answer.as_str()), (0, "answer\n42\n"), "{stderr}");

    unsafe { libc::kill(launcher.id() as i32, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(30);
    while launcher.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the launcher stops on Ctrl-C");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(children_named(launcher.id(), "ember-executor").is_empty());
}

/// A chain of 1,000 terms nests as deep as the client allows
/// (`ember.max_expression_depth`): the executors that evaluate it, on
/// Ballista's task threads, have the stack for it, and answer as embedded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_as_deep_as_the_client_allows_runs_on_a_cluster() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("n.csv"), "x\n1\n2\n3\n").unwrap();
    let sql = format!(
        "CREATE EXTERNAL TABLE n (x BIGINT) STORED AS CSV LOCATION '{}' \
         OPTIONS ('format.has_header' 'true'); SELECT {} AS total FROM n ORDER BY total",
        dir.path().join("n.csv").display(),
        vec!["x"; 1000].join(" + ")
    );
    let expected = "total\n1000\n2000\n3000\n";
    let (code, embedded, stderr) = run_ember(&["sql", "--format", "csv", "-c", &sql], None);
    assert_eq!((code, embedded.as_str()), (0, expected), "{stderr}");
    let cluster = start_cluster(2).await;
    let addr = cluster.address().to_string();
    let (code, distributed, stderr) = tokio::task::spawn_blocking(move || {
        run_ember(
            &["sql", "--scheduler", &addr, "--format", "csv", "-c", &sql],
            None,
        )
    })
    .await
    .unwrap();
    assert_eq!((code, distributed.as_str()), (0, expected), "{stderr}");
}

/// A table the cluster cannot receive (a table function's) is one clear
/// line naming it, not an internal error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_the_cluster_cannot_receive_is_named() {
    let cluster = start_cluster(1).await;
    let addr = cluster.address().to_string();
    let (code, _, stderr) = run_ember(
        &[
            "sql",
            "--scheduler",
            &addr,
            "-c",
            "SELECT count(*) FROM generate_series(1, 10)",
        ],
        None,
    );
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("(GenerateSeriesTable) cannot be sent to the cluster")
            && stderr.contains("run this query embedded"),
        "{stderr}"
    );
    assert!(!stderr.contains("bug in DataFusion"), "{stderr}");
}
