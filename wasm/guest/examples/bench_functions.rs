//! The functions `ember-wasm-bench` times against the same Rust code as
//! native named functions: arithmetic, string parsing and a reduce.

/// TPC-H's discounted price.
fn disc_price(price: f64, discount: f64) -> f64 {
    price * (1.0 - discount)
}

/// The number of words of a text.
fn comment_words(text: String) -> i64 {
    text.split_whitespace().count() as i64
}

/// The larger of two keys.
fn max_key(a: i64, b: i64) -> i64 {
    if b > a {
        b
    } else {
        a
    }
}

ember_udf::library! {
    scalar disc_price(f64, f64) -> f64;
    scalar comment_words(String) -> i64;
    reduce max_key(i64);
}
