//! A module's manifest: one line per function, as `ember-udf` writes it.
//!
//! ```text
//! scalar fare_band(f64) -> str
//! flat words(str) -> str
//! reduce longest(str) -> str
//! partitions summarize() -> (band:str,trips:i64)
//! ```

use crate::wire::WireType;

/// What kind of function a manifest line declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FunctionKind {
    /// One value per row.
    Scalar {
        /// The arguments' types.
        args: Vec<WireType>,
        /// The result's type.
        result: WireType,
    },
    /// A list of values per row.
    Flat {
        /// The argument's type.
        arg: WireType,
        /// The type of each value.
        item: WireType,
    },
    /// A fold of a column's values.
    Reduce {
        /// The values' type.
        value: WireType,
    },
    /// A whole partition in, named columns out.
    Partitions {
        /// The output columns.
        output: Vec<(String, WireType)>,
    },
}

/// One function of a module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionDecl {
    /// Its position in the manifest (what `ember_call` takes).
    pub index: usize,
    /// Its name.
    pub name: String,
    /// What it is.
    pub kind: FunctionKind,
}

/// Splits `text` on commas that are not inside parentheses.
fn split_top(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
        .into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect()
}

fn wire(name: &str) -> Result<WireType, String> {
    WireType::parse(name).ok_or_else(|| format!("unknown type `{name}`"))
}

/// Reads one manifest line.
pub fn parse_line(index: usize, line: &str) -> Result<FunctionDecl, String> {
    let (kind, rest) = line
        .trim()
        .split_once(' ')
        .ok_or("expected `kind name(args) -> result`")?;
    let (head, result) = rest
        .split_once("->")
        .ok_or("expected `-> result` after the arguments")?;
    let (name, args) = head
        .trim()
        .split_once('(')
        .ok_or("expected `(` after the name")?;
    let args = args
        .trim()
        .strip_suffix(')')
        .ok_or("expected `)` after the arguments")?;
    let name = name.trim();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!("`{name}` is not a function name"));
    }
    let args = split_top(args)
        .into_iter()
        .map(wire)
        .collect::<Result<Vec<_>, _>>()?;
    let result = result.trim();
    let kind = match kind {
        "scalar" => FunctionKind::Scalar {
            args,
            result: wire(result)?,
        },
        "flat" | "reduce" if args.len() != 1 => {
            return Err(format!("a {kind} function takes one argument"));
        }
        "flat" => FunctionKind::Flat {
            arg: args[0],
            item: wire(result)?,
        },
        "reduce" => FunctionKind::Reduce { value: args[0] },
        "partitions" => {
            let columns = result
                .strip_prefix('(')
                .and_then(|r| r.strip_suffix(')'))
                .ok_or("expected `(name:type, …)` as a partition function's result")?;
            let output = split_top(columns)
                .into_iter()
                .map(|column| {
                    let (n, t) = column
                        .split_once(':')
                        .ok_or_else(|| format!("expected `name:type`, not `{column}`"))?;
                    Ok((n.trim().to_string(), wire(t)?))
                })
                .collect::<Result<Vec<_>, String>>()?;
            FunctionKind::Partitions { output }
        }
        other => return Err(format!("unknown kind of function `{other}`")),
    };
    Ok(FunctionDecl {
        index,
        name: name.to_string(),
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_line_is_read() {
        assert_eq!(
            parse_line(0, "scalar band(f64,decimal(15,2)) -> str").unwrap(),
            FunctionDecl {
                index: 0,
                name: "band".into(),
                kind: FunctionKind::Scalar {
                    args: vec![WireType::Float64, WireType::Decimal(15, 2)],
                    result: WireType::Utf8
                }
            }
        );
        assert!(matches!(
            parse_line(1, "flat words(str) -> str").unwrap().kind,
            FunctionKind::Flat { .. }
        ));
        assert!(matches!(
            parse_line(2, "reduce longest(str) -> str").unwrap().kind,
            FunctionKind::Reduce {
                value: WireType::Utf8
            }
        ));
        assert_eq!(
            parse_line(3, "partitions s() -> (rows:i64,band:str)")
                .unwrap()
                .kind,
            FunctionKind::Partitions {
                output: vec![
                    ("rows".into(), WireType::Int64),
                    ("band".into(), WireType::Utf8)
                ]
            }
        );
    }

    #[test]
    fn bad_lines_say_why() {
        assert!(
            parse_line(0, "scalar f(u8) -> str")
                .unwrap_err()
                .contains("u8")
        );
        assert!(parse_line(0, "window f(i64) -> i64").is_err());
        assert!(parse_line(0, "reduce f(i64,i64) -> i64").is_err());
        assert!(parse_line(0, "scalar f;drop(i64) -> i64").is_err());
    }
}
