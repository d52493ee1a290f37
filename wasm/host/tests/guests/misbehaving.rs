//! Functions that break the sandbox's limits, for the tests.
fn explode(x: i64) -> i64 {
    if x == 3 {
        panic!("three is not allowed");
    }
    x
}
fn spin(x: i64) -> i64 {
    let mut v = x;
    loop {
        v = v.wrapping_mul(6364136223846793005).wrapping_add(1);
        if v == 42 {
            return v;
        }
    }
}
fn hog(x: i64) -> i64 {
    let mut held: Vec<Vec<u8>> = Vec::new();
    loop {
        held.push(vec![1u8; 16 << 20]);
        if held.len() as i64 == x + 1_000_000 {
            return held.len() as i64;
        }
    }
}
fn wrong_columns(input: &ember_udf::Batch) -> Result<Vec<ember_udf::ColumnWriter>, String> {
    Ok(vec![ember_udf::ColumnWriter::from_values(
        "other",
        vec![Some(input.rows() as i64)],
    )])
}
ember_udf::library! {
    scalar explode(i64) -> i64;
    scalar spin(i64) -> i64;
    scalar hog(i64) -> i64;
    partitions wrong_columns -> (rows: i64);
}
