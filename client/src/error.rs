//! Errors of the Ember client, each rendered as one line that names the
//! culprit (a statement position, a table, a file, an address).

use std::path::PathBuf;

use datafusion::error::DataFusionError;
use datafusion::sql::sqlparser::parser::ParserError;

/// The result type of the `ember` crate.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// An error of the Ember client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The scheduler address is not `host:port`.
    #[error(transparent)]
    InvalidAddress(#[from] ember_core::address::InvalidAddress),
    /// Nothing answered at the scheduler's address in time.
    #[error("cannot reach the scheduler at {addr}: {reason}")]
    SchedulerUnreachable {
        /// The address that was tried.
        addr: String,
        /// What went wrong.
        reason: String,
    },
    /// The scheduler refused this client's token, or TLS failed between them
    /// (an untrusted or expired certificate, TLS on one side only).
    #[error("the connection to the scheduler at {addr} failed its security check: {reason}")]
    Insecure {
        /// The scheduler's address.
        addr: String,
        /// Why, in words.
        reason: String,
    },
    /// A token or TLS setting cannot be used.
    #[error("{0}")]
    Security(#[from] ember_auth::AuthError),
    /// Something answered, but it is not an Ember (Ballista) scheduler.
    #[error("{addr} does not answer like an Ember scheduler: {reason}")]
    NotAScheduler {
        /// The address that was tried.
        addr: String,
        /// What was wrong with the answer.
        reason: String,
    },
    /// The scheduler has no executor to run tasks on.
    #[error(
        "the cluster at {addr} has no executors: none registered within {waited_secs}s (start one with `ember-executor --scheduler {addr}`)"
    )]
    NoExecutors {
        /// The scheduler's address.
        addr: String,
        /// How long the client waited for one.
        waited_secs: u64,
    },
    /// A statement could not be parsed.
    #[error("syntax error{}: {message}", position.as_ref().map(|p| format!(" at {p}")).unwrap_or_default())]
    Syntax {
        /// Where, as `line L, column C` (or `FILE:L:C`), when known.
        position: Option<String>,
        /// The parser's message.
        message: String,
    },
    /// A statement's expressions nest deeper than
    /// `ember.max_expression_depth`.
    #[error(
        "the statement nests expressions more than {limit} deep (a chain like `1 + 1 + …` \
         counts a level per operator): split it, or raise ember.max_expression_depth"
    )]
    TooDeep {
        /// The limit it went beyond.
        limit: u64,
    },
    /// A query failed to plan or run.
    #[error("{}", describe(.0))]
    Query(#[from] DataFusionError),
    /// A query needed more memory than it was given, even with every
    /// operator that can spill spilling.
    #[error("out of memory: {detail}; give it more with {remedy}")]
    OutOfMemory {
        /// What was refused: the operator and the memory it asked for.
        detail: String,
        /// The setting that gives queries more memory where this one ran.
        remedy: &'static str,
    },
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A table's file is not what its format needs.
    #[error("{path}: {reason}")]
    BadFile {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A table could not be created from its files.
    #[error("cannot create table `{name}` from {location}: {}", describe(.source))]
    CreateTable {
        /// The table.
        name: String,
        /// Its location.
        location: String,
        /// The cause.
        source: DataFusionError,
    },
    /// Results could not be written.
    #[error("cannot write results: {0}")]
    Output(String),
    /// A local process could not be started or supervised.
    #[error("{0}")]
    Process(String),
    /// The catalog file of an embedded session (`--catalog`) cannot be
    /// read or changed.
    #[error("{0}")]
    CatalogFile(#[from] ember_catalog::CatalogError),
    /// A statement was stopped before it finished (Ctrl-C, SIGTERM). A write
    /// it had started left nothing at its destination.
    #[error("the statement was cancelled by {signal}")]
    Cancelled {
        /// What cancelled it.
        signal: String,
    },
}

impl ClientError {
    /// Converts a DataFusion error, turning parser errors into
    /// [`ClientError::Syntax`] with their line and column.
    pub fn from_datafusion(err: DataFusionError) -> Self {
        if let Some((message, position)) = parser_message(&err) {
            return ClientError::Syntax { position, message };
        }
        ClientError::Query(err)
    }

    /// Shifts a syntax error's position from statement-relative to
    /// script-relative: the statement began at `line`:`column` of `source`.
    pub fn in_script(self, source: &str, line: usize, column: usize) -> Self {
        match self {
            ClientError::Syntax { position, message } => {
                let position = match position.as_deref().and_then(parse_position) {
                    Some((l, c)) => {
                        let c = if l == 1 { c + column - 1 } else { c };
                        format!("{source}:{}:{c}", l + line - 1)
                    }
                    None => format!("{source}:{line}:{column}"),
                };
                ClientError::Syntax {
                    position: Some(position),
                    message,
                }
            }
            other => other,
        }
    }
}

/// Where a query that ran out of memory gets more of it.
pub(crate) const EMBEDDED_MEMORY_REMEDY: &str =
    "`ember sql --memory SIZE` or `SET datafusion.runtime.memory_limit = 'SIZE'`";

/// Where a cluster query that ran out of memory gets more of it.
pub(crate) const CLUSTER_MEMORY_REMEDY: &str = "the executors' `--memory` (EMBER_EXECUTOR_MEMORY)";

/// The refused reservation in a memory pool's error: `Failed to allocate
/// additional 136.0 MB for HashJoinInput[1] with … available for the total
/// memory pool: fair(pool_size: 256.0 MB)`, without the list of the largest
/// consumers or the advice of the operator that asked; `None` when `text`
/// holds no such error.
pub(crate) fn refused_reservation(text: &str) -> Option<String> {
    const MARKER: &str = "Failed to allocate additional";
    let start = text.find(MARKER)?;
    let sentence = &text[start..];
    // The pool's description ends the message; a cluster's job error wraps
    // it in Debug quotes and parentheses.
    let end = sentence
        .find("pool_size: ")
        .and_then(|at| sentence[at..].find(')').map(|close| at + close + 1))
        .unwrap_or(sentence.len());
    Some(one_line(&sentence[..end]))
}

/// The error a memory pool's refusal inside `err` becomes, with `remedy`
/// naming the setting to raise; `None` for any other error.
pub(crate) fn out_of_memory(err: &DataFusionError, remedy: &'static str) -> Option<ClientError> {
    let exhausted = matches!(err.find_root(), DataFusionError::ResourcesExhausted(_));
    let text = err.to_string();
    if !exhausted && !text.contains("ResourcesExhausted") && !text.contains("Resources exhausted") {
        return None;
    }
    let detail = refused_reservation(&text).unwrap_or_else(|| describe(err.find_root()));
    Some(ClientError::OutOfMemory { detail, remedy })
}

/// Finds a SQL parser error inside `err` and splits it into its message and
/// `line L, column C` position.
fn parser_message(err: &DataFusionError) -> Option<(String, Option<String>)> {
    let parser_error = match err.find_root() {
        DataFusionError::SQL(e, _) => e,
        _ => return None,
    };
    let text = match parser_error.as_ref() {
        ParserError::ParserError(m) | ParserError::TokenizerError(m) => m.clone(),
        ParserError::RecursionLimitExceeded => "statement nests too deeply".to_string(),
    };
    Some(match text.rfind(" at Line: ") {
        Some(at) => {
            let (message, location) = text.split_at(at);
            let location = location.trim_start_matches(" at Line: ");
            let position = location
                .split_once(", Column: ")
                .map(|(l, c)| format!("line {}, column {}", l.trim(), c.trim()));
            (message.to_string(), position)
        }
        None => (text, None),
    })
}

fn parse_position(position: &str) -> Option<(usize, usize)> {
    let rest = position.strip_prefix("line ")?;
    let (line, column) = rest.split_once(", column ")?;
    Some((line.parse().ok()?, column.parse().ok()?))
}

/// Renders a DataFusion error as one line, without the internal prefixes
/// ("Error during planning: ", "External error: ") that say nothing to a user.
pub fn describe(err: &DataFusionError) -> String {
    let text = match err {
        // A context that is only an optimizer rule's name (`type_coercion`)
        // says nothing to a user.
        DataFusionError::Context(context, inner) if is_rule_name(context) => describe(inner),
        DataFusionError::Context(context, inner) => format!("{context}: {}", describe(inner)),
        DataFusionError::Execution(m) => simplify_job_error(m).unwrap_or_else(|| m.clone()),
        // Ballista's client wraps what the codec refused to send.
        DataFusionError::Internal(m) if m.starts_with(UNSENDABLE_PLAN) => {
            debug_error_text(&m[UNSENDABLE_PLAN.len()..])
        }
        DataFusionError::Plan(m) | DataFusionError::Configuration(m) => m.clone(),
        DataFusionError::SchemaError(e, _) => e.to_string(),
        DataFusionError::ObjectStore(e) => object_store_message(e),
        DataFusionError::IoError(e) => e.to_string(),
        DataFusionError::ArrowError(e, _) => e.to_string(),
        DataFusionError::External(e) => match e.downcast_ref::<object_store::Error>() {
            Some(store_error) => object_store_message(store_error),
            None => e.to_string(),
        },
        DataFusionError::Shared(e) => describe(e),
        DataFusionError::Diagnostic(_, inner) => describe(inner),
        DataFusionError::Collection(errors) => errors
            .first()
            .map(describe)
            .unwrap_or_else(|| err.to_string()),
        other => other.to_string(),
    };
    one_line(&text)
}

/// How Ballista's client words a logical plan its codec could not encode;
/// the codec's reason follows, in `Debug` form.
const UNSENDABLE_PLAN: &str = "failed to serialize logical plan: ";

/// Whether `context` only names the analyzer or optimizer rule that raised
/// the error, as DataFusion wraps their errors: the analyzer with the rule's
/// name (`type_coercion`), the optimizer with `Optimizer rule 'NAME'
/// failed`.
fn is_rule_name(context: &str) -> bool {
    let name = context
        .strip_prefix("Optimizer rule '")
        .and_then(|rest| rest.strip_suffix("' failed"))
        .unwrap_or(context);
    !name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase() || c == '_')
}

/// An object store's error: Ember's S3 messages as they are (they name the
/// bucket, key and endpoint), others as `object_store` words them.
fn object_store_message(err: &object_store::Error) -> String {
    use ember_core::s3::S3AccessError;
    match err {
        object_store::Error::Generic { source, .. }
        | object_store::Error::NotFound { source, .. } => {
            match source.downcast_ref::<S3AccessError>() {
                Some(s3) => s3.to_string(),
                None => err.to_string(),
            }
        }
        other => other.to_string(),
    }
}

/// Rewrites the error of a failed cluster job into one line that names the
/// job and the cause. Ballista reports a failed task as `Job ID failed: Job
/// failed due to stage N failed: Task failed due to runtime execution error:
/// DataFusionError(Shared(External(...("cause"))))`, and a job it could not
/// plan as `Job ID failed: Error planning job ID: DataFusionError(Context(
/// "rule", Plan("cause")))`; these become `query failed on the cluster (job
/// ID): cause` and `query could not be planned on the cluster (job ID):
/// cause`.
fn simplify_job_error(message: &str) -> Option<String> {
    let rest = message.strip_prefix("Job ")?;
    let (job_id, rest) = rest.split_once(" failed: ")?;
    let rest = rest.trim();
    // Ember's S3 messages are complete sentences; take them whole.
    if let Some(at) = rest.find(ember_core::s3::S3AccessError::MARKER) {
        let cause = rest[at..]
            .trim_end_matches(|c: char| matches!(c, ')' | '}' | '"') || c.is_whitespace());
        return Some(format!(
            "query failed on the cluster (job {job_id}): {cause}"
        ));
    }
    if let Some(planning) = rest.strip_prefix("Error planning job ") {
        let cause = planning
            .split_once(": ")
            .map_or(planning, |(_, cause)| cause);
        return Some(format!(
            "query could not be planned on the cluster (job {job_id}): {}",
            debug_error_text(cause)
        ));
    }
    let cause = ["runtime execution error: ", "failed due to "]
        .iter()
        .find_map(|marker| rest.rsplit_once(marker).map(|(_, after)| after))
        .unwrap_or(rest);
    Some(format!(
        "query failed on the cluster (job {job_id}): {}",
        debug_error_text(cause)
    ))
}

/// The message inside an error printed with `{:?}`: peels wrappers such as
/// `DataFusionError(Shared(External(` ... `)))`, skips the label of a
/// `Context("label", error)`, and unquotes the innermost string.
fn debug_error_text(printed: &str) -> String {
    let mut cause = printed.trim();
    while let Some(open) = cause.find('(') {
        let head = &cause[..open];
        if head.is_empty()
            || !head.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            || !cause.ends_with(')')
        {
            break;
        }
        let inner = cause[open + 1..cause.len() - 1].trim();
        cause = match (head, skip_debug_string(inner)) {
            ("Context", Some(after)) => after
                .trim_start()
                .strip_prefix(',')
                .map_or(inner, str::trim),
            _ => inner,
        };
    }
    match cause.strip_prefix('"').and_then(|c| c.strip_suffix('"')) {
        Some(quoted) => unescape_debug_string(quoted),
        None => cause.to_string(),
    }
}

/// What follows the string literal `text` starts with, as `{:?}` writes
/// strings; `None` when `text` does not start with a whole literal.
fn skip_debug_string(text: &str) -> Option<&str> {
    let body = text.strip_prefix('"')?;
    let mut escaped = false;
    for (at, c) in body.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return Some(&body[at + 1..]),
            _ => {}
        }
    }
    None
}

/// Undoes the escapes `{:?}` writes into a string literal.
fn unescape_debug_string(quoted: &str) -> String {
    let mut text = String::with_capacity(quoted.len());
    let mut chars = quoted.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            text.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => text.push('\n'),
            Some('t') => text.push('\t'),
            Some('r') => text.push('\r'),
            Some('0') => text.push('\0'),
            Some('u') => {
                let code: String = chars
                    .by_ref()
                    .skip_while(|c| *c == '{')
                    .take_while(|c| *c != '}')
                    .collect();
                match u32::from_str_radix(&code, 16).ok().and_then(char::from_u32) {
                    Some(decoded) => text.push(decoded),
                    None => text.push(char::REPLACEMENT_CHARACTER),
                }
            }
            Some(other) => text.push(other),
            None => text.push('\\'),
        }
    }
    text
}

/// Collapses whitespace runs (newlines included) to single spaces.
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_error_position_moves_into_the_script() {
        let err = ClientError::Syntax {
            position: Some("line 2, column 5".to_string()),
            message: "Expected: end of statement, found: FORM".to_string(),
        };
        let err = err.in_script("q.sql", 10, 3);
        assert_eq!(
            err.to_string(),
            "syntax error at q.sql:11:5: Expected: end of statement, found: FORM"
        );
        let first_line = ClientError::Syntax {
            position: Some("line 1, column 8".to_string()),
            message: "m".to_string(),
        };
        assert_eq!(
            first_line.in_script("q.sql", 4, 3).to_string(),
            "syntax error at q.sql:4:10: m"
        );
    }

    #[test]
    fn cluster_job_errors_name_the_cause() {
        let raw = "Job 038G3BTJGA000 failed: Job failed due to stage 0 failed: Task failed due to runtime execution error: DataFusionError(Shared(External(ArrowError(ParseError(\"Error while parsing value 'x' as type 'Int32' for column 1 at line 2. Row data: '[bob,x]'\")))))";
        assert_eq!(
            describe(&DataFusionError::Execution(raw.to_string())),
            "query failed on the cluster (job 038G3BTJGA000): Error while parsing value 'x' as type 'Int32' for column 1 at line 2. Row data: '[bob,x]'"
        );
        let s3 = "Job 7 failed: Job failed due to stage 1 failed: Task failed due to runtime execution error: DataFusionError(ObjectStore(Generic { store: \"S3\", source: S3: access denied to s3://lake/t at http://127.0.0.1:9000: check the S3 credentials }))";
        assert_eq!(
            describe(&DataFusionError::Execution(s3.to_string())),
            "query failed on the cluster (job 7): S3: access denied to s3://lake/t at http://127.0.0.1:9000: check the S3 credentials"
        );
        let plain = "Job 1 failed: executor lost";
        assert_eq!(
            describe(&DataFusionError::Execution(plain.to_string())),
            "query failed on the cluster (job 1): executor lost"
        );
        let planning = "Job 0UoXv1z failed: Error planning job 0UoXv1z: DataFusionError(Context(\"SanityCheckPlan\", Plan(\"Plan: [\\\"SortPreservingMergeExec: [a@0 ASC]\\\"] does not satisfy order requirements: [a@0 ASC]. Child-0 order: []\")))\n";
        assert_eq!(
            describe(&DataFusionError::Execution(planning.to_string())),
            "query could not be planned on the cluster (job 0UoXv1z): Plan: [\"SortPreservingMergeExec: [a@0 ASC]\"] does not satisfy order requirements: [a@0 ASC]. Child-0 order: []"
        );
        let unsendable = "failed to serialize logical plan: Context(\"Error serializing custom table\", NotImplemented(\"series (GenerateSeriesTable) cannot be sent to the cluster\"))";
        assert_eq!(
            describe(&DataFusionError::Internal(unsendable.to_string())),
            "series (GenerateSeriesTable) cannot be sent to the cluster"
        );
        let retried = "Job 9 failed: Job failed due to stage 2 failed: Stage 2 has failed 4 times, most recent failure reason: FetchPartitionError";
        assert_eq!(
            describe(&DataFusionError::Execution(retried.to_string())),
            "query failed on the cluster (job 9): stage 2 failed: Stage 2 has failed 4 times, most recent failure reason: FetchPartitionError"
        );
        assert_eq!(
            describe(&DataFusionError::Execution("disk full".to_string())),
            "disk full"
        );
    }

    #[test]
    fn memory_errors_name_the_operator_the_memory_and_the_remedy() {
        let tracked = DataFusionError::ResourcesExhausted(
            "Additional allocation failed for HashJoinInput[1] with top memory consumers \
             (across reservations) as:\n  HashJoinInput[1]#3(can spill: false) consumed 122.2 MB\n\
             Error: Failed to allocate additional 136.0 MB for HashJoinInput[1] with 122.2 MB \
             already allocated for this reservation - 133.8 MB remain available for the total \
             memory pool: fair(pool_size: 256.0 MB)"
                .to_string(),
        )
        .context("Not enough memory to continue external sort.");
        let err = out_of_memory(&tracked, EMBEDDED_MEMORY_REMEDY).expect("a memory error");
        assert_eq!(
            err.to_string(),
            "out of memory: Failed to allocate additional 136.0 MB for HashJoinInput[1] with \
             122.2 MB already allocated for this reservation - 133.8 MB remain available for \
             the total memory pool: fair(pool_size: 256.0 MB); give it more with \
             `ember sql --memory SIZE` or `SET datafusion.runtime.memory_limit = 'SIZE'`"
        );
        let job = DataFusionError::Execution(
            "Job 7 failed: Job failed due to stage 3 failed: Task failed due to runtime \
             execution error: DataFusionError(ResourcesExhausted(\"Failed to allocate additional \
             8.0 MB for ExternalSorter[0] with 0.0 B already allocated for this reservation - \
             1.0 MB remain available for the total memory pool: fair(pool_size: 16.0 MB)\"))"
                .to_string(),
        );
        let err = out_of_memory(&job, CLUSTER_MEMORY_REMEDY).expect("a memory error");
        assert_eq!(
            err.to_string(),
            "out of memory: Failed to allocate additional 8.0 MB for ExternalSorter[0] with 0.0 B \
             already allocated for this reservation - 1.0 MB remain available for the total \
             memory pool: fair(pool_size: 16.0 MB); give it more with the executors' `--memory` \
             (EMBER_EXECUTOR_MEMORY)"
        );
        let other = DataFusionError::Execution("disk full".to_string());
        assert!(out_of_memory(&other, CLUSTER_MEMORY_REMEDY).is_none());
    }

    #[test]
    fn plan_errors_lose_their_prefix_and_newlines() {
        let err = DataFusionError::Plan("table 'x' not found\n  hint".to_string());
        assert_eq!(describe(&err), "table 'x' not found hint");
    }
}
