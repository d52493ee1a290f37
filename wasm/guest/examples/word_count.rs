//! The `word-count` example's functions as a WebAssembly library
//! (`word-count --functions word_count.wasm`): the same rules as Ember's
//! built-in `words` and `plus`.

/// The lowercase words of a text: runs of letters, digits and apostrophes,
/// without leading or trailing apostrophes.
fn split_words(text: String) -> Vec<String> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .map(|w| w.trim_matches('\'').to_lowercase())
        .filter(|w| !w.is_empty())
        .collect()
}

/// A sum that fails, rather than wraps, on overflow.
fn sum_counts(a: i64, b: i64) -> i64 {
    match a.checked_add(b) {
        Some(sum) => sum,
        None => panic!("{} + {} overflows BIGINT", a, b),
    }
}

ember_udf::library! {
    flat split_words(String) -> String;
    reduce sum_counts(i64);
}
