//! Splitting SQL text into statements, aware of quotes and comments.

/// One statement of a script, with where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The statement's text, without the terminating `;`.
    pub text: String,
    /// 1-based line of the statement's first character in the script.
    pub line: usize,
    /// 1-based column of that character.
    pub column: usize,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Code,
    SingleQuote,
    DoubleQuote,
    LineComment,
    BlockComment,
}

/// Scans `text` and returns its statements and whatever follows the last `;`
/// (an unterminated statement, or only whitespace and comments).
fn scan(text: &str) -> (Vec<Statement>, String) {
    let mut statements = Vec::new();
    let mut state = State::Code;
    let mut current = String::new();
    let (mut line, mut column) = (1usize, 1usize);
    let mut start: Option<(usize, usize)> = None;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let here = (line, column);
        if c == '\n' {
            line += 1;
            column = 1;
        } else {
            column += 1;
        }
        match state {
            State::Code => match c {
                ';' => {
                    if let Some((l, col)) = start.take() {
                        statements.push(Statement {
                            text: std::mem::take(&mut current),
                            line: l,
                            column: col,
                        });
                    } else {
                        current.clear();
                    }
                    continue;
                }
                '\'' => state = State::SingleQuote,
                '"' => state = State::DoubleQuote,
                '-' if chars.peek() == Some(&'-') => state = State::LineComment,
                '/' if chars.peek() == Some(&'*') => state = State::BlockComment,
                _ => {}
            },
            State::SingleQuote if c == '\'' => state = State::Code,
            State::DoubleQuote if c == '"' => state = State::Code,
            State::LineComment if c == '\n' => state = State::Code,
            State::BlockComment if c == '*' && chars.peek() == Some(&'/') => {
                current.push(c);
                current.push(chars.next().unwrap_or('/'));
                column += 1;
                state = State::Code;
                continue;
            }
            _ => {}
        }
        let starts_code =
            state != State::LineComment && state != State::BlockComment && !c.is_whitespace();
        if start.is_none() && starts_code {
            start = Some(here);
            // Comments before a statement are dropped, so positions count from here.
            current.clear();
        }
        current.push(c);
    }
    let rest = if start.is_some() {
        current
    } else {
        String::new()
    };
    (statements, rest)
}

/// Splits a script into its statements. A last statement without a `;` is
/// included; statements that are only whitespace or comments are skipped.
pub fn split_statements(text: &str) -> Vec<Statement> {
    let (mut statements, rest) = scan(text);
    if !rest.trim().is_empty() {
        let (l, c) = position_of_first_code(text, &rest);
        statements.push(Statement {
            text: rest,
            line: l,
            column: c,
        });
    }
    statements
}

fn position_of_first_code(text: &str, rest: &str) -> (usize, usize) {
    let offset = text.len() - rest.len();
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map(|s| s.chars().count())
        .unwrap_or(0)
        + 1;
    (line, column)
}

/// Whether `buffer` holds at least one complete statement and nothing after
/// its last `;` but whitespace or comments (the REPL's "run it now" test).
pub fn is_complete(buffer: &str) -> bool {
    let (statements, rest) = scan(buffer);
    !statements.is_empty() && rest.trim().is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_on_semicolons_outside_quotes_and_comments() {
        let script = "-- setup\nselect 'a;b' as x;\n\n  select \"c;d\" /* ; */ from t; -- done;\n";
        let statements = split_statements(script);
        assert_eq!(statements.len(), 2);
        assert_eq!(statements[0].text, "select 'a;b' as x");
        assert_eq!((statements[0].line, statements[0].column), (2, 1));
        assert_eq!(statements[1].text, "select \"c;d\" /* ; */ from t");
        assert_eq!((statements[1].line, statements[1].column), (4, 3));
    }

    #[test]
    fn keeps_a_trailing_statement_without_semicolon() {
        let statements = split_statements("select 1;\nselect 2\n");
        assert_eq!(statements.len(), 2);
        assert_eq!(statements[1].text, "select 2\n");
        assert_eq!(statements[1].line, 2);
    }

    #[test]
    fn completeness_for_the_repl() {
        assert!(!is_complete("select 1"));
        assert!(!is_complete("select ';"));
        assert!(is_complete("select 1;"));
        assert!(is_complete("select 1; -- trailing comment"));
        assert!(!is_complete("select 1; select"));
        assert!(!is_complete("-- only a comment;"));
    }
}
