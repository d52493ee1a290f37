//! One function of each kind over every value type, for the tests.
use ember_udf::{Batch, ColumnWriter, Date, Decimal};

fn add(a: i64, b: i64) -> i64 {
    a.wrapping_add(b)
}
fn half(x: f64) -> f64 {
    x / 2.0
}
fn shrink(x: f32) -> f32 {
    x * 0.5
}
fn negate(b: bool) -> bool {
    !b
}
fn twice(x: i32) -> i32 {
    x.wrapping_mul(2)
}
fn shout(s: String) -> String {
    s.to_uppercase()
}
fn next_day(d: Date) -> Date {
    Date(d.0 + 1)
}
fn add_cent(d: Decimal<15, 2>) -> Decimal<15, 2> {
    Decimal(d.0 + 1)
}
fn parse_int(s: String) -> Option<i64> {
    s.trim().parse().ok()
}
fn letters(s: String) -> Vec<String> {
    s.chars()
        .filter(|c| c.is_alphabetic())
        .map(|c| c.to_string())
        .collect()
}
fn biggest(a: i64, b: i64) -> i64 {
    a.max(b)
}
fn longest(a: String, b: String) -> String {
    if b.len() > a.len() || (b.len() == a.len() && b < a) {
        b
    } else {
        a
    }
}
fn totals(input: &Batch) -> Result<Vec<ColumnWriter>, String> {
    let column = input.column_named("x").ok_or("no column x")?;
    let sum: i64 = column.values::<i64>().into_iter().flatten().sum();
    Ok(vec![
        ColumnWriter::from_values("rows", vec![Some(input.rows() as i64)]),
        ColumnWriter::from_values("total", vec![Some(sum)]),
    ])
}
ember_udf::library! {
    scalar add(i64, i64) -> i64;
    scalar half(f64) -> f64;
    scalar shrink(f32) -> f32;
    scalar negate(bool) -> bool;
    scalar twice(i32) -> i32;
    scalar shout(String) -> String;
    scalar next_day(Date) -> Date;
    scalar add_cent(Decimal<15, 2>) -> Decimal<15, 2>;
    partial parse_int(String) -> i64;
    flat letters(String) -> String;
    reduce biggest(i64);
    reduce longest(String);
    partitions totals -> (rows: i64, total: i64);
}
