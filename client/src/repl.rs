//! The interactive SQL shell behind `ember sql`.
//!
//! Statements may span lines and run when a line ends the statement with `;`.
//! Backslash commands (`\d`, `\timing`, `\q`, `\?`) are read at the start of a
//! statement. On a terminal the shell has line editing and a history file;
//! when standard input is not a terminal it reads lines plainly, so scripts
//! can be piped in.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use rustyline::DefaultEditor;
use rustyline::error::ReadlineError;

use crate::format::{OutputFormat, write_batches};
use crate::runner::StatementRunner;
use crate::script::{is_complete, split_statements};

/// The shell's help text, printed by `\?`.
pub const HELP: &str = "\
Statements end with `;` and may span several lines.

  \\d              list tables
  \\d NAME         describe table NAME
  \\timing [on|off] print how long each statement takes
  \\format FORMAT  print results as table, csv, json or ndjson
  \\?              this help
  \\q              quit (or Ctrl-D)

Ctrl-C clears the statement being typed.
Tables: CREATE EXTERNAL TABLE t STORED AS PARQUET|CSV|JSON LOCATION 'path/';";

/// Where lines come from.
enum LineSource {
    Editor(Box<DefaultEditor>, Option<PathBuf>),
    Plain(std::io::StdinLock<'static>),
}

enum Line {
    Text(String),
    Interrupted,
    End,
}

impl LineSource {
    fn open(history: Option<PathBuf>) -> Self {
        if std::io::stdin().is_terminal()
            && let Ok(mut editor) = DefaultEditor::new()
        {
            if let Some(path) = &history {
                let _ = editor.load_history(path);
            }
            return LineSource::Editor(Box::new(editor), history);
        }
        LineSource::Plain(std::io::stdin().lock())
    }

    fn read(&mut self, prompt: &str) -> Line {
        match self {
            LineSource::Editor(editor, _) => match editor.readline(prompt) {
                Ok(line) => Line::Text(line),
                Err(ReadlineError::Interrupted) => Line::Interrupted,
                Err(_) => Line::End,
            },
            LineSource::Plain(stdin) => {
                let mut line = String::new();
                match stdin.read_line(&mut line) {
                    Ok(0) | Err(_) => Line::End,
                    Ok(_) => Line::Text(line.trim_end_matches(['\n', '\r']).to_string()),
                }
            }
        }
    }

    fn remember(&mut self, entry: &str) {
        if let LineSource::Editor(editor, _) = self {
            let _ = editor.add_history_entry(entry);
        }
    }

    fn save(&mut self) {
        if let LineSource::Editor(editor, Some(path)) = self
            && let Err(e) = editor.save_history(path)
        {
            tracing::debug!(path = %path.display(), error = %e, "history not saved");
        }
    }
}

/// The default history file: `~/.ember_history`.
pub fn default_history_file() -> Option<PathBuf> {
    dirs::home_dir().map(|home| home.join(".ember_history"))
}

/// Runs the shell until `\q` or end of input. Returns how many statements or
/// commands failed (each failure was printed on standard error).
pub async fn run(runner: &mut StatementRunner, history: Option<PathBuf>) -> usize {
    let mut source = LineSource::open(history);
    let interactive = matches!(source, LineSource::Editor(..));
    if interactive {
        println!(
            "Ember {} ({}). Type \\? for help.",
            ember_core::EMBER_VERSION,
            mode_name(runner)
        );
    }
    let mut failures = 0;
    let mut buffer = String::new();
    loop {
        let prompt = if buffer.is_empty() {
            "ember> "
        } else {
            "  ...> "
        };
        let line = match source.read(prompt) {
            Line::Text(line) => line,
            Line::Interrupted => {
                buffer.clear();
                continue;
            }
            Line::End => break,
        };
        if buffer.is_empty() && line.trim_start().starts_with('\\') {
            source.remember(line.trim());
            match run_command(runner, line.trim()).await {
                Ok(Continue::Yes) => {}
                Ok(Continue::No) => break,
                Err(message) => {
                    eprintln!("error: {message}");
                    failures += 1;
                }
            }
            continue;
        }
        if buffer.is_empty() && line.trim().is_empty() {
            continue;
        }
        if !buffer.is_empty() {
            buffer.push('\n');
        }
        buffer.push_str(&line);
        if !is_complete(&buffer) {
            continue;
        }
        source.remember(&buffer);
        let text = std::mem::take(&mut buffer);
        for statement in split_statements(&text) {
            let mut stdout = std::io::stdout().lock();
            if let Err(e) = runner.run_statement(&statement.text, &mut stdout).await {
                eprintln!("error: {e}");
                failures += 1;
                break;
            }
        }
    }
    if !buffer.trim().is_empty() {
        eprintln!("error: input ended inside a statement (missing `;`?)");
        failures += 1;
    }
    source.save();
    failures
}

fn mode_name(runner: &StatementRunner) -> String {
    match runner.context.mode() {
        crate::ExecutionMode::Embedded => "embedded".to_string(),
        crate::ExecutionMode::Cluster(addr) => format!("cluster at {addr}"),
    }
}

enum Continue {
    Yes,
    No,
}

async fn run_command(runner: &mut StatementRunner, command: &str) -> Result<Continue, String> {
    let mut words = command.split_whitespace();
    let name = words.next().unwrap_or_default();
    let argument = words.next();
    let mut stdout = std::io::stdout().lock();
    match (name, argument) {
        ("\\q" | "\\quit", _) => return Ok(Continue::No),
        ("\\?" | "\\h" | "\\help", _) => {
            writeln!(stdout, "{HELP}").map_err(|e| e.to_string())?;
        }
        ("\\d", None) => {
            let tables = runner.list_tables().map_err(|e| e.to_string())?;
            write_batches(&mut stdout, &[tables], runner.format).map_err(|e| e.to_string())?;
        }
        ("\\d", Some(table)) => {
            let columns = runner
                .describe_table(table)
                .await
                .map_err(|e| e.to_string())?;
            write_batches(&mut stdout, &[columns], runner.format).map_err(|e| e.to_string())?;
        }
        ("\\timing", setting) => {
            runner.timing = match setting {
                None => !runner.timing,
                Some("on") => true,
                Some("off") => false,
                Some(other) => return Err(format!("\\timing takes on or off, not `{other}`")),
            };
            writeln!(
                stdout,
                "Timing is {}.",
                if runner.timing { "on" } else { "off" }
            )
            .map_err(|e| e.to_string())?;
        }
        ("\\format", Some(format)) => {
            runner.format = format.parse::<OutputFormat>()?;
        }
        ("\\format", None) => {
            writeln!(stdout, "Format is {:?}.", runner.format).map_err(|e| e.to_string())?;
        }
        (other, _) => {
            return Err(format!(
                "unknown command `{other}` (\\? lists the commands)"
            ));
        }
    }
    Ok(Continue::Yes)
}
