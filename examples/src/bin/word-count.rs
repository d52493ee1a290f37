//! Word count: the most frequent words of text files.
//!
//! Lines are read as a dataset, split into words by the named function
//! `words` (a `flat_map`), counted per word with the named reduce `plus`
//! (a `reduce_by_key`), and the top words are printed as `word<TAB>count`.
//!
//! ```text
//! word-count [--master URL] [--top N] [--functions LIB.wasm] PATH...
//! ```
//!
//! PATH is a file, a directory or a glob. Without `--master` (or
//! `EMBER_MASTER`) the job runs embedded; with `--master df://host:port` it
//! runs on that cluster.
//!
//! With `--functions`, the job's functions come from a WebAssembly library
//! loaded at run time (`wasm/guest/examples/word_count.rs`, whose
//! `split_words` and `sum_counts` follow the same rules as the built-in
//! `words` and `plus`): the answer is the same, and the cluster needs no
//! rebuild for them.

use ember::dataset::{Dataset, col, lit};
use ember_examples::{JobArgs, run_job};

const USAGE: &str = "usage: word-count [--master URL] [--top N] [--functions LIB.wasm] PATH...";

#[derive(serde::Deserialize)]
struct WordCount {
    word: String,
    count: i64,
}

async fn word_count(args: JobArgs) -> Result<(), String> {
    if args.positional.is_empty() {
        return Err(format!("no input given\n{USAGE}"));
    }
    let top: usize = args
        .option("top")
        .unwrap_or("20")
        .parse()
        .map_err(|e| format!("--top: {e}"))?;
    let ctx = args.context().await.map_err(|e| e.to_string())?;
    let (words, plus) = match args.option("functions") {
        Some(module) => {
            ctx.register_wasm_library("word_count", module)
                .await
                .map_err(|e| e.to_string())?;
            ("split_words", "sum_counts")
        }
        None => ("words", "plus"),
    };
    let mut lines: Option<Dataset> = None;
    for path in &args.positional {
        let read = ctx.read_text(path).await.map_err(|e| e.to_string())?;
        lines = Some(match lines {
            Some(all) => all.union(&read).map_err(|e| e.to_string())?,
            None => read,
        });
    }
    let Some(lines) = lines else {
        return Err(USAGE.to_string());
    };
    let counts = lines
        .flat_map(words, "line", "word")
        .and_then(|d| d.with_column("count", lit(1i64)))
        .and_then(|d| d.reduce_by_key(&["word"], plus, "count"))
        .and_then(|d| {
            d.sort(vec![
                col("count").sort(false, false),
                col("word").sort(true, false),
            ])
        })
        .and_then(|d| d.limit(top))
        .map_err(|e| e.to_string())?;
    for row in counts
        .collect_as::<WordCount>()
        .await
        .map_err(|e| e.to_string())?
    {
        println!("{}\t{}", row.word, row.count);
    }
    Ok(())
}

fn main() {
    run_job(USAGE, word_count);
}
