//! The example jobs under `examples/`, run as their binaries embedded and on
//! a real two-executor cluster, against the same computation in plain Rust.

use std::collections::HashMap;
use std::process::Command;

use ember_tests::{binary, start_cluster};

/// Text files with punctuation, case and apostrophes, in a directory.
fn corpus(dir: &std::path::Path) -> Vec<String> {
    let texts = [
        "It was the best of times, it was the worst of times;\nit was the age of wisdom.\n",
        "The cat's hat — THE CAT'S HAT!\n\nTimes change.\n",
        "wisdom, wisdom, wisdom\n",
    ];
    for (i, text) in texts.iter().enumerate() {
        std::fs::write(dir.join(format!("part-{i}.txt")), text).unwrap();
    }
    texts.iter().map(|t| t.to_string()).collect()
}

/// Word counts as the example defines words, sorted by count, then word.
fn expected_counts(texts: &[String], top: usize) -> Vec<String> {
    let mut counts: HashMap<String, i64> = HashMap::new();
    for text in texts {
        for word in text.split(|c: char| !(c.is_alphanumeric() || c == '\'')) {
            let word = word.trim_matches('\'').to_lowercase();
            if !word.is_empty() {
                *counts.entry(word).or_default() += 1;
            }
        }
    }
    let mut counts: Vec<(String, i64)> = counts.into_iter().collect();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    counts
        .into_iter()
        .take(top)
        .map(|(w, c)| format!("{w}\t{c}"))
        .collect()
}

fn word_count(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(binary("word-count"))
        .args(args)
        .env_remove("EMBER_MASTER")
        .output()
        .expect("word-count runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn word_count_runs_embedded_and_on_a_cluster_with_the_same_answer() {
    let dir = tempfile::tempdir().unwrap();
    let texts = corpus(dir.path());
    let path = dir.path().to_str().unwrap().to_string();
    let expected = expected_counts(&texts, 8);

    let (code, stdout, stderr) = word_count(&["--top", "8", &path]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.lines().collect::<Vec<_>>(), expected);

    let cluster = start_cluster(2).await;
    let master = format!("df://{}", cluster.address());
    let (code, stdout, stderr) = word_count(&["--master", &master, "--top", "8", &path]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.lines().collect::<Vec<_>>(), expected);

    // Bad input: one line naming the culprit, a non-zero exit.
    let missing = dir.path().join("missing");
    let (code, _, stderr) = word_count(&[missing.to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: ") && stderr.contains("missing"),
        "{stderr}"
    );
    let (code, _, stderr) = word_count(&["--top"]);
    assert_eq!(code, 2, "{stderr}");
}
