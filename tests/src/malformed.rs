//! A generated corpus of malformed inputs: SQL, CSV, Parquet and NDJSON
//! files, settings and S3 options. Each input is a list of statements for
//! `ember sql -c ...`, with the files it reads written under a directory;
//! every one must end in one clear error line and a non-zero exit, with no
//! panic or abort in any process.
//!
//! The cases come from templates and mutations of valid inputs (truncated
//! and corrupted Parquet files at many offsets, valid queries with one part
//! broken), so the corpus grows by adding a template, not a case.

use std::path::Path;

/// One malformed input.
#[derive(Debug, Clone)]
pub struct MalformedInput {
    /// What kind of input is malformed: `sql`, `csv`, `parquet`, `ndjson`,
    /// `setting` or `s3`.
    pub kind: &'static str,
    /// What is wrong with it.
    pub name: String,
    /// The statements, each passed to `ember sql` as one `-c`.
    pub statements: Vec<String>,
    /// Text the error line must contain: the culprit (a file, a table, a
    /// setting, an endpoint), where the input names one.
    pub culprit: Option<String>,
}

impl MalformedInput {
    fn new(kind: &'static str, name: impl Into<String>, statements: Vec<String>) -> Self {
        Self {
            kind,
            name: name.into(),
            statements,
            culprit: None,
        }
    }

    fn naming(mut self, culprit: impl Into<String>) -> Self {
        self.culprit = Some(culprit.into());
        self
    }
}

/// A valid CSV table: `a INT, b VARCHAR, c DATE`, with a header.
const GOOD_CSV: &str = "a,b,c\n1,x,1995-01-01\n2,y,1995-02-01\n3,x,1995-03-01\n";

/// The statement that registers `GOOD_CSV` (written to `dir/good.csv`) as `t`.
fn register_good(dir: &Path) -> String {
    format!(
        "CREATE EXTERNAL TABLE t (a INT, b VARCHAR, c DATE) STORED AS CSV LOCATION '{}' \
         OPTIONS ('format.has_header' 'true')",
        dir.join("good.csv").display()
    )
}

/// Valid queries over `t`, which the SQL cases break one part at a time.
const VALID_QUERIES: [&str; 6] = [
    "SELECT a, b FROM t WHERE a > 1 ORDER BY a",
    "SELECT b, count(*) AS n FROM t GROUP BY b HAVING count(*) > 0",
    "SELECT a, sum(a) OVER (PARTITION BY b ORDER BY a) AS s FROM t",
    "SELECT t.a, u.b FROM t JOIN t AS u ON t.a = u.a",
    "SELECT CASE WHEN a > 1 THEN 'x' ELSE 'y' END AS k FROM t",
    "SELECT max(c) AS latest FROM t WHERE b IN (SELECT b FROM t WHERE a < 3)",
];

fn sql_cases(dir: &Path) -> Vec<MalformedInput> {
    let register = register_good(dir);
    let with_table =
        |name: String, sql: String| MalformedInput::new("sql", name, vec![register.clone(), sql]);
    let mut cases = Vec::new();
    for (i, query) in VALID_QUERIES.iter().enumerate() {
        cases.push(
            with_table(
                format!("query {i}, unknown table"),
                query.replacen("FROM t", "FROM no_such_table", 1),
            )
            .naming("no_such_table"),
        );
        cases.push(with_table(
            format!("query {i}, unknown column"),
            query.replacen("SELECT ", "SELECT no_such_column, ", 1),
        ));
        cases.push(with_table(
            format!("query {i}, unbalanced parenthesis"),
            format!("{query})"),
        ));
        cases.push(with_table(
            format!("query {i}, misspelt keyword"),
            query.replacen("SELECT", "SELCT", 1),
        ));
        cases.push(with_table(
            format!("query {i}, stray token"),
            query.replacen("FROM", "FROM @@", 1),
        ));
        let half = query.len() / 2;
        let cut = (0..=half)
            .rev()
            .find(|&n| query.is_char_boundary(n))
            .unwrap_or(0);
        cases.push(with_table(
            format!("query {i}, cut short"),
            format!("{} (", &query[..cut]),
        ));
    }
    let specific = [
        ("unterminated string", "SELECT 'abc FROM t".to_string()),
        (
            "unterminated comment",
            "SELECT 1 /* never closed".to_string(),
        ),
        (
            "unknown function",
            "SELECT no_such_function(a) FROM t".to_string(),
        ),
        ("wrong argument count", "SELECT substr() FROM t".to_string()),
        ("text plus number", "SELECT b + 1 FROM t".to_string()),
        ("invalid cast", "SELECT CAST('abc' AS INT)".to_string()),
        (
            "invalid date literal",
            "SELECT DATE '1995-13-45'".to_string(),
        ),
        ("division by zero", "SELECT a / 0 FROM t".to_string()),
        (
            "overflow",
            "SELECT 9223372036854775807 + a FROM t".to_string(),
        ),
        ("cast overflow", "SELECT CAST(1e30 AS BIGINT)".to_string()),
        (
            "scalar subquery of many rows",
            "SELECT (SELECT a FROM t) AS x".to_string(),
        ),
        (
            "column not grouped",
            "SELECT a, b FROM t GROUP BY a".to_string(),
        ),
        (
            "ambiguous column",
            "SELECT a FROM t JOIN t AS u ON t.a = u.a".to_string(),
        ),
        (
            "aggregate in WHERE",
            "SELECT a FROM t WHERE sum(a) > 1".to_string(),
        ),
        ("negative LIMIT", "SELECT a FROM t LIMIT -1".to_string()),
        (
            "invalid regular expression",
            "SELECT regexp_like(b, '(') FROM t".to_string(),
        ),
        (
            "UNION of different widths",
            "SELECT a FROM t UNION SELECT a, b FROM t".to_string(),
        ),
        (
            "deep parentheses",
            format!("SELECT {}1{}", "(".repeat(5000), ")".repeat(5000)),
        ),
        (
            "long expression",
            format!("SELECT {} AS s", vec!["a"; 20_000].join(" + ")),
        ),
        (
            "deep subqueries",
            format!(
                "SELECT * FROM {}t{}",
                "(SELECT * FROM ".repeat(2000),
                ") AS s".repeat(2000)
            ),
        ),
        (
            "binary garbage",
            "\u{1}\u{2}\u{7f}\u{fffd}SELECT".to_string(),
        ),
        ("only a semicolon and garbage", "; ;; garbage".to_string()),
        (
            "drop of an unknown table",
            "DROP TABLE no_such_table".to_string(),
        ),
        (
            "insert into an unknown table",
            "INSERT INTO no_such_table VALUES (1)".to_string(),
        ),
        (
            "unsupported statement",
            "CREATE INDEX i ON t (a)".to_string(),
        ),
        ("duplicate table", register.clone()),
        (
            "missing file",
            "CREATE EXTERNAL TABLE m STORED AS CSV LOCATION '/no/such/dir/m.csv'".to_string(),
        ),
        (
            "unknown format",
            "CREATE EXTERNAL TABLE m STORED AS XLSX LOCATION '/tmp/m.xlsx'".to_string(),
        ),
        (
            "write to an unwritable place",
            "COPY (SELECT 1 AS x) TO '/proc/no-such-dir/out.csv'".to_string(),
        ),
        (
            "unknown COPY option",
            format!(
                "COPY t TO '{}' OPTIONS ('no.such.option' 'x')",
                dir.join("copy-out.csv").display()
            ),
        ),
    ];
    for (name, sql) in specific {
        cases.push(with_table(name.to_string(), sql));
    }
    // Each `no_such_*` name is the culprit its error must name.
    for case in &mut cases {
        let last = case.statements.last().cloned().unwrap_or_default();
        if case.culprit.is_none()
            && let Some(name) = ["no_such_column", "no_such_function", "no_such_table"]
                .into_iter()
                .find(|n| last.contains(n))
        {
            case.culprit = Some(name.to_string());
        }
    }
    cases
}

/// A table of file `name` under `dir`, stored as `format` with `schema`.
fn table_over(dir: &Path, name: &str, format: &str, schema: &str, options: &str) -> String {
    format!(
        "CREATE EXTERNAL TABLE f {schema} STORED AS {format} LOCATION '{}' {options}",
        dir.join(name).display()
    )
}

fn csv_cases(dir: &Path) -> Vec<(MalformedInput, Vec<u8>)> {
    let bad: Vec<(&str, Vec<u8>)> = vec![
        (
            "text in an INT column",
            b"a,b,c\n1,x,1995-01-01\nnot-a-number,y,1995-01-02\n".to_vec(),
        ),
        (
            "bad date",
            b"a,b,c\n1,x,1995-01-01\n2,y,1995-02-30x\n".to_vec(),
        ),
        (
            "too many fields",
            b"a,b,c\n1,x,1995-01-01\n2,y,1995-01-02,extra,fields\n".to_vec(),
        ),
        ("too few fields", b"a,b,c\n1,x,1995-01-01\n2\n".to_vec()),
        (
            "unterminated quote",
            b"a,b,c\n1,\"x,1995-01-01\n2,y,1995-01-02\n".to_vec(),
        ),
        (
            "invalid UTF-8",
            b"a,b,c\n1,\xff\xfe\xfd,1995-01-01\n".to_vec(),
        ),
        (
            "an INT too large",
            b"a,b,c\n99999999999999999999,x,1995-01-01\n".to_vec(),
        ),
        ("binary bytes", (0u8..=255).cycle().take(4096).collect()),
        ("a bad row after many good ones", {
            let mut text = String::from("a,b,c\n");
            for i in 0..5000 {
                text.push_str(&format!("{i},x,1995-01-01\n"));
            }
            text.push_str("oops,x,1995-01-01\n");
            text.into_bytes()
        }),
    ];
    bad.into_iter()
        .enumerate()
        .map(|(i, (name, bytes))| {
            let file = format!("bad-{i}.csv");
            let create = table_over(
                dir,
                &file,
                "CSV",
                "(a INT, b VARCHAR, c DATE)",
                "OPTIONS ('format.has_header' 'true')",
            );
            let case = MalformedInput::new(
                "csv",
                format!("CSV: {name}"),
                vec![create, "SELECT sum(a), max(b), max(c) FROM f".into()],
            );
            (case, bytes)
        })
        .collect()
}

/// Corruptions of a valid Parquet file (`good`): truncations at many
/// offsets, broken magic numbers and footers, other formats under the name.
fn parquet_cases(dir: &Path, good: &[u8]) -> Vec<(MalformedInput, Vec<u8>)> {
    let len = good.len();
    let mut bad: Vec<(String, Vec<u8>)> = Vec::new();
    for cut in [
        0,
        1,
        4,
        7,
        8,
        12,
        len / 4,
        len / 2,
        3 * len / 4,
        len - 12,
        len - 8,
        len - 5,
        len - 1,
    ] {
        bad.push((
            format!("truncated to {cut} bytes"),
            good[..cut.min(len)].to_vec(),
        ));
    }
    let mut trailer = good.to_vec();
    trailer[len - 4..].copy_from_slice(b"XXXX");
    bad.push(("trailing magic broken".into(), trailer));
    for (name, footer_len) in [
        ("footer longer than the file", u32::MAX),
        ("footer of zero bytes", 0),
        ("footer one byte too long", 0),
    ] {
        let mut bytes = good.to_vec();
        let stored = u32::from_le_bytes(bytes[len - 8..len - 4].try_into().unwrap_or([0; 4]));
        let value = if name == "footer one byte too long" {
            stored + 1
        } else {
            footer_len
        };
        bytes[len - 8..len - 4].copy_from_slice(&value.to_le_bytes());
        bad.push((name.into(), bytes));
    }
    let mut metadata = good.to_vec();
    let stored =
        u32::from_le_bytes(metadata[len - 8..len - 4].try_into().unwrap_or([0; 4])) as usize;
    let start = len.saturating_sub(8 + stored);
    for byte in &mut metadata[start..len - 8] {
        *byte = 0xff;
    }
    bad.push(("footer metadata overwritten".into(), metadata));
    bad.push((
        "CSV text under a .parquet name".into(),
        GOOD_CSV.as_bytes().to_vec(),
    ));
    bad.push(("only the magic numbers".into(), b"PAR1PAR1".to_vec()));
    bad.into_iter()
        .enumerate()
        .map(|(i, (name, bytes))| {
            let file = format!("bad-{i}.parquet");
            let create = table_over(dir, &file, "PARQUET", "", "");
            let case = MalformedInput::new(
                "parquet",
                format!("Parquet: {name}"),
                vec![create, "SELECT count(*), sum(a) FROM f".into()],
            )
            .naming(file);
            (case, bytes)
        })
        .collect()
}

fn ndjson_cases(dir: &Path) -> Vec<(MalformedInput, Vec<u8>)> {
    let bad: Vec<(&str, &[u8])> = vec![
        (
            "a line cut short",
            b"{\"a\": 1, \"b\": \"x\"}\n{\"a\": 2, \"b\": \"y\"\n",
        ),
        (
            "text in a BIGINT field",
            b"{\"a\": 1, \"b\": \"x\"}\n{\"a\": \"two\", \"b\": \"y\"}\n",
        ),
        (
            "an array, not an object",
            b"{\"a\": 1, \"b\": \"x\"}\n[1, 2]\n",
        ),
        ("invalid UTF-8", b"{\"a\": 1, \"b\": \"\xff\xfe\"}\n"),
        (
            "a BIGINT too large",
            b"{\"a\": 123456789012345678901234567890, \"b\": \"x\"}\n",
        ),
        (
            "garbage after an object",
            b"{\"a\": 1, \"b\": \"x\"} trailing\n",
        ),
        (
            "an object in a text field",
            b"{\"a\": 1, \"b\": {\"nested\": true}}\n",
        ),
        ("not JSON at all", b"this is not json\n"),
    ];
    bad.into_iter()
        .enumerate()
        .map(|(i, (name, bytes))| {
            let file = format!("bad-{i}.json");
            let create = table_over(dir, &file, "JSON", "(a BIGINT, b VARCHAR)", "");
            let case = MalformedInput::new(
                "ndjson",
                format!("NDJSON: {name}"),
                vec![create, "SELECT sum(a), max(b) FROM f".into()],
            );
            (case, bytes.to_vec())
        })
        .collect()
}

fn setting_cases() -> Vec<MalformedInput> {
    let settings = [
        ("ember.checked_arithmetic", "'maybe'"),
        ("ember.dialect", "'oracle'"),
        ("ember.no_such_setting", "1"),
        ("datafusion.execution.batch_size", "'abc'"),
        ("datafusion.execution.target_partitions", "-1"),
        ("datafusion.no_such_setting", "1"),
        ("no_such_namespace.setting", "1"),
        ("s3.allow_http", "'perhaps'"),
        ("s3.max_retries", "'many'"),
        ("s3.endpiont", "'http://127.0.0.1:9000'"),
        ("s3.connect_timeout_secs", "-5"),
        ("ember.gpu", "'sometimes'"),
    ];
    let mut cases: Vec<MalformedInput> = settings
        .into_iter()
        .map(|(key, value)| {
            MalformedInput::new(
                "setting",
                format!("SET {key} = {value}"),
                vec![format!("SET {key} = {value}"), "SELECT 1".into()],
            )
            .naming(
                key.split('.')
                    .find(|part| part.starts_with("no_such"))
                    .unwrap_or(key),
            )
        })
        .collect();
    cases.push(MalformedInput::new(
        "setting",
        "SET without a value",
        vec!["SET ember.dialect".into()],
    ));
    cases.push(MalformedInput::new(
        "setting",
        "SET of nothing",
        vec!["SET = 1".into()],
    ));
    cases
}

fn s3_cases() -> Vec<MalformedInput> {
    let table = |options: &str| {
        format!(
            "CREATE EXTERNAL TABLE s STORED AS PARQUET LOCATION 's3://ember-bucket/t/' OPTIONS ({options})"
        )
    };
    let quick = "'s3.allow_http' 'true', 's3.max_retries' '0', 's3.connect_timeout_secs' '1', \
                 's3.retry_timeout_secs' '1', 's3.access_key_id' 'k', 's3.secret_access_key' 's'";
    let options = [
        ("unknown option", format!("'s3.endpiont' 'http://127.0.0.1:1', {quick}"), "s3.endpiont"),
        ("flag not a flag", "'s3.allow_http' 'perhaps'".to_string(), "s3.allow_http"),
        ("retries not a number", "'s3.max_retries' '-1'".to_string(), "s3.max_retries"),
        ("timeout not a number", "'s3.connect_timeout_secs' 'soon'".to_string(), "s3.connect_timeout_secs"),
        ("unreachable endpoint", format!("'s3.endpoint' 'http://127.0.0.1:1', {quick}"), "127.0.0.1:1"),
        ("endpoint without a scheme", format!("'s3.endpoint' 'not a url', {quick}"), "not a url"),
        ("endpoint of an unknown scheme", format!("'s3.endpoint' 'ftp://127.0.0.1:1', {quick}"), "ftp://127.0.0.1:1"),
        ("http endpoint without allow_http", "'s3.endpoint' 'http://127.0.0.1:1', 's3.allow_http' 'false', 's3.max_retries' '0', 's3.connect_timeout_secs' '1'".to_string(), "127.0.0.1:1"),
        ("unknown aws. option", "'aws.no_such_option' 'x'".to_string(), "no_such_option"),
    ];
    let mut cases: Vec<MalformedInput> = options
        .into_iter()
        .map(|(name, options, culprit)| {
            MalformedInput::new("s3", format!("S3: {name}"), vec![table(&options)]).naming(culprit)
        })
        .collect();
    for (name, location, culprit) in [
        ("no bucket", "s3:///t/", "s3:///t/"),
        (
            "an invalid bucket name",
            "s3://Not_A_Bucket!/t/",
            "Not_A_Bucket!",
        ),
        ("an unknown scheme", "gopher://host/t/", "gopher"),
    ] {
        cases.push(
            MalformedInput::new(
                "s3",
                format!("S3: {name}"),
                vec![format!(
                    "CREATE EXTERNAL TABLE s STORED AS PARQUET LOCATION '{location}' OPTIONS ({quick}, 's3.endpoint' 'http://127.0.0.1:1')"
                )],
            )
            .naming(culprit),
        );
    }
    cases
}

/// Writes the corpus's files under `dir` (`good_parquet` is a valid Parquet
/// file whose corruptions the Parquet cases read) and returns its cases.
pub fn corpus(dir: &Path, good_parquet: &[u8]) -> std::io::Result<Vec<MalformedInput>> {
    std::fs::write(dir.join("good.csv"), GOOD_CSV)?;
    let mut cases = sql_cases(dir);
    let with_files = csv_cases(dir)
        .into_iter()
        .zip(std::iter::repeat("csv"))
        .chain(
            parquet_cases(dir, good_parquet)
                .into_iter()
                .zip(std::iter::repeat("parquet")),
        )
        .chain(ndjson_cases(dir).into_iter().zip(std::iter::repeat("json")));
    for ((case, bytes), _) in with_files {
        let create = &case.statements[0];
        let path = create
            .split('\'')
            .nth(1)
            .ok_or_else(|| std::io::Error::other("a case without a file"))?;
        std::fs::write(path, bytes)?;
        cases.push(case);
    }
    cases.extend(setting_cases());
    cases.extend(s3_cases());
    Ok(cases)
}
