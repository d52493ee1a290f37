//! The scheduler's web UI in a real headless browser (Debian's chromium
//! through chromedriver), on a real two-executor cluster: the jobs page
//! lists a finished TPC-H query with its SQL, its page draws the stage DAG
//! and shows each stage's rows (checked against Ballista's own REST API
//! and the client's answer), the executors and storage pages list what
//! the cluster has, a running job is cancelled with the page's button,
//! and after the scheduler restarts the finished jobs are still there,
//! from the history.

use std::time::{Duration, Instant};

use ember::EmberContext;
use ember::tpch::query;
use ember_tests::browser::Browser;
use ember_tests::{TestCluster, generate_tpch, http_get, start_cluster_with};
use ember_ui::{CacheView, ExecutorView, JobStatus, JobSummary, JobView};
use serde_json::Value;

/// 60,000 × 25 × 25 × 25 combinations, each filtered on an expression no
/// statistics can decide: far longer than the test waits, so it ends only
/// by being cancelled.
const ENDLESS: &str = "SELECT count(*) AS n FROM lineitem a, nation b, nation c, nation d \
     WHERE length(a.l_comment) + length(b.n_comment) + length(c.n_comment) \
     + length(d.n_comment) = 7";

fn get_json<T: serde::de::DeserializeOwned>(address: &str, path: &str) -> T {
    let (status, body) = http_get(address, path);
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
}

/// `n` with thousands separated by commas, as the page shows counts.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

async fn cluster(state_dir: &str) -> TestCluster {
    start_cluster_with(2, |options| {
        options.scheduler_args = vec!["--state-dir".into(), state_dir.to_string()];
    })
    .await
}

/// The tasks that succeeded and the shuffle bytes they wrote, over every
/// job the scheduler shows.
pub(crate) fn scheduler_task_totals(address: &str) -> (u64, u64) {
    let jobs: Vec<JobSummary> = get_json(address, "/api/ember/ui/jobs");
    let (mut tasks, mut bytes) = (0, 0);
    for job in jobs {
        let view: JobView = get_json(address, &format!("/api/ember/ui/job/{}", job.job_id));
        for stage in view.stages {
            tasks += stage.tasks_done as u64;
            bytes += stage.output_bytes;
        }
    }
    (tasks, bytes)
}

/// Follows the link of the jobs page's `row` to its completed job, and
/// checks that its stage graph has `stages` stages.
async fn open_completed_job(browser: &Browser, row: &str, stages: usize) {
    browser.click(&format!("{row} a.job-link")).await;
    browser
        .text_until("#job-status", |t| t == "completed")
        .await;
    assert_eq!(browser.elements("#dag a.node").await.len(), stages);
}

/// The UI's job whose SQL contains `marker`.
fn job_with_sql(address: &str, marker: &str) -> JobSummary {
    let jobs: Vec<JobSummary> = get_json(address, "/api/ember/ui/jobs");
    jobs.into_iter()
        .find(|job| job.sql.as_deref().is_some_and(|sql| sql.contains(marker)))
        .unwrap_or_else(|| panic!("no job runs SQL containing {marker:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_ui_shows_jobs_stages_executors_and_storage_and_cancels_and_keeps_history() {
    let data = tempfile::tempdir().unwrap();
    let generator = generate_tpch(data.path(), 0.01);
    let state = tempfile::tempdir().unwrap();
    let state_dir = state.path().display().to_string();
    let cluster = cluster(&state_dir).await;
    let address = cluster.address().to_string();
    let ctx = EmberContext::connect(&address).await.unwrap();
    for statement in generator.create_table_statements(data.path()) {
        ctx.run_sql(&statement).await.unwrap();
    }
    let q3 = query(3).unwrap();
    let answer = ctx.run_sql(q3).await.unwrap();
    let answer_rows: usize = answer.iter().map(|b| b.num_rows()).sum();
    let cached = crate::dataset_cache::positive_doubled(&ctx)
        .cache()
        .unwrap();
    let cached_rows = cached.count().await.unwrap();

    // The UI's JSON agrees with Ballista's own REST API and the answer.
    let job = job_with_sql(&address, "o_shippriority");
    assert_eq!(job.status, JobStatus::Completed);
    assert_eq!(job.output_rows, answer_rows as u64);
    let view: JobView = get_json(&address, &format!("/api/ember/ui/job/{}", job.job_id));
    let ballista: Value = get_json(&address, &format!("/api/job/{}/stages", job.job_id));
    let ballista_stages = ballista["stages"].as_array().expect("Ballista's stages");
    assert_eq!(view.stages.len(), ballista_stages.len());
    assert!(view.stages.len() >= 3, "{view:?}");
    for stage in ballista_stages {
        let id: usize = stage["stage_id"].as_str().unwrap().parse().unwrap();
        let ours = view.stages.iter().find(|s| s.stage_id == id).unwrap();
        assert_eq!(
            ours.output_rows,
            stage["output_rows"].as_u64().unwrap(),
            "stage {id}"
        );
        assert_eq!(ours.status, "Successful");
        assert_eq!(ours.tasks_done, ours.tasks_total, "stage {id}");
        assert!(ours.plan.contains("metrics=["), "stage {id}: {}", ours.plan);
    }
    for stage in view.stages.iter().filter(|s| !s.inputs.is_empty()) {
        let written: u64 = stage
            .inputs
            .iter()
            .map(|i| {
                view.stages
                    .iter()
                    .find(|s| s.stage_id == *i)
                    .unwrap()
                    .output_bytes
            })
            .sum();
        assert!(written > 0 && stage.input_bytes == written, "{stage:?}");
    }

    // What the executors say they did is what the scheduler recorded.
    let executors: Vec<ExecutorView> = get_json(&address, "/api/ember/ui/executors");
    assert_eq!(executors.len(), 2, "{executors:?}");
    let usages: Vec<_> = executors
        .iter()
        .map(|e| e.usage.clone().unwrap_or_else(|| panic!("no usage: {e:?}")))
        .collect();
    let (tasks, bytes) = scheduler_task_totals(&address);
    assert!(tasks > 0);
    assert_eq!(usages.iter().map(|u| u.tasks_succeeded).sum::<u64>(), tasks);
    assert_eq!(
        usages.iter().map(|u| u.shuffle_bytes_written).sum::<u64>(),
        bytes
    );
    assert_eq!(usages.iter().map(|u| u.tasks_failed).sum::<u64>(), 0);
    assert!(usages.iter().all(|u| u.memory_pool_bytes > 0), "{usages:?}");
    assert!(
        usages.iter().map(|u| u.cache_memory_bytes).sum::<u64>() > 0,
        "{usages:?}"
    );

    let browser = Browser::start(1400, 900).await;
    let client = &browser.client;

    // The jobs page: the root redirects to it.
    client.goto(&format!("http://{address}/")).await.unwrap();
    let row = format!("tr[data-job-id='{}']", job.job_id);
    browser.element(&row).await;
    assert!(
        client
            .current_url()
            .await
            .unwrap()
            .as_str()
            .ends_with("/ui/")
    );
    let text = browser.text_until(&row, |t| t.contains("completed")).await;
    assert!(text.contains("o_shippriority"), "{text}");
    // Its stages bar is full (set by the script: the page's policy refuses
    // inline styles).
    let bar = browser.element(&format!("{row} .bar > span")).await;
    assert_eq!(
        bar.attr("style").await.unwrap().as_deref(),
        Some("width: 100%;")
    );
    browser.screenshot("ui-jobs").await;

    // Following the link to the job: its DAG, its stages, its rows.
    open_completed_job(&browser, &row, view.stages.len()).await;
    assert_eq!(
        browser.elements("#stages tbody tr").await.len(),
        view.stages.len()
    );
    let slowest = browser
        .text_until("#slowest-stage", |t| t.starts_with("Stage "))
        .await;
    let slowest_id = view
        .stages
        .iter()
        .max_by_key(|s| s.wall_ms)
        .unwrap()
        .stage_id;
    assert!(
        slowest.starts_with(&format!("Stage {slowest_id},")),
        "{slowest}"
    );
    browser
        .text_until("#job-rows", |t| t == grouped(answer_rows as u64))
        .await;
    browser.screenshot("ui-job").await;

    // The executors and the storage.
    browser.click("nav a[data-page='executors']").await;
    browser.element("#executors tr[data-executor-id]").await;
    let executors = browser.elements("#executors tr[data-executor-id]").await;
    assert_eq!(executors.len(), 2);
    for executor in executors {
        assert!(executor.text().await.unwrap().contains("alive"));
    }
    let tasks_cells = browser.elements("#executors td[data-field='tasks']").await;
    let mut shown = Vec::new();
    for cell in tasks_cells {
        shown.push(cell.text().await.unwrap());
    }
    let expected: Vec<String> = usages
        .iter()
        .map(|u| format!("{} / 0", grouped(u.tasks_succeeded)))
        .collect();
    assert_eq!(shown.len(), 2);
    assert!(
        expected.iter().all(|e| shown.contains(e)),
        "{shown:?} {expected:?}"
    );
    browser.screenshot("ui-executors").await;
    let caches: Vec<CacheView> = get_json(&address, "/api/ember/ui/storage");
    assert_eq!(caches.len(), 1, "{caches:?}");
    assert_eq!(caches[0].rows, cached_rows as u64);
    browser.click("nav a[data-page='storage']").await;
    let cache_row = format!("tr[data-cache-id='{}']", caches[0].cache_id);
    let text = browser.text_until(&cache_row, |t| !t.is_empty()).await;
    assert!(text.contains(&grouped(cached_rows as u64)), "{text}");
    browser.screenshot("ui-storage").await;

    // A running job, cancelled with the jobs page's button.
    // The tables are in the cluster's shared catalog already.
    let runner = EmberContext::connect(&address).await.unwrap();
    let endless = tokio::spawn(async move {
        runner.run_sql(ENDLESS).await.map(|batches| {
            arrow::util::pretty::pretty_format_batches(&batches)
                .map(|t| t.to_string())
                .unwrap_or_default()
        })
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let running = loop {
        let jobs: Vec<JobSummary> = get_json(&address, "/api/ember/ui/jobs");
        if let Some(job) = jobs.into_iter().find(|j| {
            j.status == JobStatus::Running
                && j.sql.as_deref().is_some_and(|s| s.contains("nation d"))
        }) {
            break job;
        }
        if endless.is_finished() {
            let job = job_with_sql(&address, "nation d");
            let view: JobView = get_json(&address, &format!("/api/ember/ui/job/{}", job.job_id));
            let plans: Vec<_> = view.stages.iter().map(|s| s.plan.clone()).collect();
            panic!(
                "the endless query ended: {:?}\n{}",
                endless.await,
                plans.join("\n")
            );
        }
        let jobs: Vec<JobSummary> = get_json(&address, "/api/ember/ui/jobs");
        assert!(
            Instant::now() < deadline,
            "the endless query never ran: {jobs:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // The scheduler's metrics count its running stage and tasks.
    let (status, metrics) = http_get(&address, "/metrics");
    assert_eq!(status, 200);
    let gauge = |series: &str| -> f64 {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {series} in:\n{metrics}"))
    };
    assert!(gauge(r#"ember_running_job_stages{state="running"}"#) >= 1.0);
    assert!(gauge(r#"ember_running_job_tasks{state="running"}"#) >= 1.0);

    // Its page shows it running, then the jobs page cancels it.
    client
        .goto(&format!("http://{address}/ui/#/job/{}", running.job_id))
        .await
        .unwrap();
    browser.text_until("#job-status", |t| t == "running").await;
    browser.element("#dag a.node.status-running").await;
    browser.screenshot("ui-job-running").await;
    browser.click("nav a[data-page='jobs']").await;
    let button = format!("button.cancel[data-job-id='{}']", running.job_id);
    browser.click(&button).await;
    client.accept_alert().await.unwrap();
    let running_row = format!("tr[data-job-id='{}']", running.job_id);
    browser
        .text_until(&running_row, |t| t.contains("cancelled"))
        .await;
    let outcome = tokio::time::timeout(Duration::from_secs(30), endless)
        .await
        .expect("the cancelled query's client returns")
        .unwrap();
    let error = outcome.expect_err("a cancelled query fails").to_string();
    assert!(error.to_lowercase().contains("cancel"), "{error}");

    // A killed executor is listed as lost.
    let victim = cluster.executor_pids()[1];
    // SAFETY: plain kill(2) on a child process of this test.
    assert_eq!(unsafe { libc::kill(victim as i32, libc::SIGKILL) }, 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let executors: Vec<ExecutorView> = get_json(&address, "/api/ember/ui/executors");
        let states: Vec<&str> = executors.iter().map(|e| e.state.as_str()).collect();
        if states.contains(&"lost") && states.contains(&"alive") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no executor was found lost: {executors:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    browser.click("nav a[data-page='executors']").await;
    browser
        .text_until("#executors tbody", |t| {
            t.contains("lost") && t.contains("alive")
        })
        .await;

    // The history keeps both jobs across a restart.
    let history = state.path().join("history");
    let deadline = Instant::now() + Duration::from_secs(20);
    for id in [&job.job_id, &running.job_id] {
        while !history.join(format!("{id}.job.json")).is_file() {
            assert!(Instant::now() < deadline, "job {id} was not recorded");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    drop(ctx);
    drop(cluster);
    let cluster = self::cluster(&state_dir).await;
    let address = cluster.address().to_string();
    client.goto(&format!("http://{address}/ui/")).await.unwrap();
    let row = format!("tr[data-job-id='{}']", job.job_id);
    let text = browser.text_until(&row, |t| t.contains("history")).await;
    assert!(
        text.contains("completed") && text.contains("o_shippriority"),
        "{text}"
    );
    let text = browser
        .text_until(&format!("tr[data-job-id='{}']", running.job_id), |t| {
            t.contains("history")
        })
        .await;
    assert!(text.contains("cancelled"), "{text}");
    open_completed_job(&browser, &row, view.stages.len()).await;
    client
        .goto(&format!("http://{address}/ui/#/job/{}", running.job_id))
        .await
        .unwrap();
    browser
        .text_until("#job-status", |t| t == "cancelled")
        .await;
    browser
        .text_until("#job-error", |t| t.contains("Cancelled"))
        .await;
    let restored: JobView = get_json(&address, &format!("/api/ember/ui/job/{}", job.job_id));
    assert!(restored.summary.from_history);
    assert_eq!(restored.stages, view.stages);
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_with_a_token_the_web_ui_asks_for_it_once() {
    let cluster = start_cluster_with(1, |options| {
        options.security = ember::local_cluster::LocalClusterSecurity {
            token: true,
            tls: false,
            client_auth: false,
        };
    })
    .await;
    let address = cluster.address().to_string();
    let token_file = cluster
        .client_security()
        .token_file
        .clone()
        .expect("a token");
    let token = std::fs::read_to_string(token_file)
        .unwrap()
        .trim()
        .to_string();
    let ctx = EmberContext::connect_with(&address, cluster.client_security())
        .await
        .unwrap();
    ctx.run_sql("SELECT count(*) FROM (VALUES (1), (2)) AS t(x)")
        .await
        .unwrap();
    // The data routes need the token; the page itself does not.
    let (status, _) = http_get(&address, "/api/ember/ui/jobs");
    assert_eq!(status, 401);
    let (status, page) = http_get(&address, "/ui/");
    assert_eq!(status, 200);
    assert!(page.contains("/ui/app.js"));
    assert!(!page.contains(&token));

    let browser = Browser::start(1200, 800).await;
    let client = &browser.client;
    client.goto(&format!("http://{address}/")).await.unwrap();
    let input = browser.element("form#login input#token").await;
    input
        .send_keys("not-the-token-of-this-cluster")
        .await
        .unwrap();
    browser.click("form#login button[type='submit']").await;
    browser
        .text_until("form#login .error", |t| {
            t.contains("not this Ember cluster's token")
        })
        .await;
    let input = browser.element("form#login input#token").await;
    input.send_keys(&token).await.unwrap();
    browser.click("form#login button[type='submit']").await;
    browser
        .text_until("#jobs tbody", |t| t.contains("completed"))
        .await;
    // The cookie is the browser's: the page never holds the token.
    let source = client.source().await.unwrap();
    assert!(!source.contains(&token));
    browser.close().await;
}
