//! Secret values masked in SQL text before the UI shows it.
//!
//! A statement can carry credentials in its text: `CREATE EXTERNAL TABLE
//! … OPTIONS ('s3.secret_access_key' '…')`, `SET s3.session_token = '…'`.
//! Every string literal that follows a key naming a secret (a word or a
//! quoted key containing `secret`, `password`, `token` or `credential`,
//! with an optional `=` between) is shown as `'****'`. Masking too much is
//! harmless here; showing a secret is not.

/// What a masked literal shows.
pub const MASKED: &str = "****";

/// Words in a key that make its value a secret.
const SECRET_WORDS: &[&str] = &["secret", "password", "token", "credential"];

fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_WORDS.iter().any(|word| key.contains(word))
}

/// `sql` with the values of secret keys replaced by [`MASKED`].
pub fn mask_sql_secrets(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    // The key the next literal would be the value of.
    let mut key: Option<String> = None;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\'' {
            let mut literal = String::new();
            let mut closed = false;
            while let Some(ch) = chars.next() {
                if ch == '\'' {
                    if chars.peek() == Some(&'\'') {
                        chars.next();
                        literal.push_str("''");
                        continue;
                    }
                    closed = true;
                    break;
                }
                literal.push(ch);
            }
            let secret = key.as_deref().is_some_and(is_secret_key);
            out.push('\'');
            out.push_str(if secret { MASKED } else { &literal });
            if closed {
                out.push('\'');
            }
            // A quoted key (`OPTIONS ('key' 'value')`) names the next
            // literal; a masked value names nothing.
            key = (!secret).then_some(literal);
        } else if c.is_alphanumeric() || c == '_' || c == '.' {
            let mut word = String::from(c);
            while let Some(&next) = chars.peek() {
                if next.is_alphanumeric() || next == '_' || next == '.' {
                    word.push(next);
                    chars.next();
                } else {
                    break;
                }
            }
            out.push_str(&word);
            key = Some(word);
        } else {
            out.push(c);
            if !(c.is_whitespace() || c == '=' || c == '"') {
                key = None;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_options_and_set_values() {
        let sql = "CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION 's3://b/t/' \
                   OPTIONS ('s3.access_key_id' 'AKID', 's3.secret_access_key' 'top''secret', \
                   's3.bucket.b.session_token' 'tok')";
        let masked = mask_sql_secrets(sql);
        assert!(masked.contains("'s3.access_key_id' 'AKID'"), "{masked}");
        assert!(masked.contains("'s3.secret_access_key' '****'"), "{masked}");
        assert!(
            masked.contains("'s3.bucket.b.session_token' '****'"),
            "{masked}"
        );
        assert!(!masked.contains("top"), "{masked}");
        let masked = mask_sql_secrets("SET s3.secret_access_key = 'abc'");
        assert_eq!(masked, "SET s3.secret_access_key = '****'");
    }

    #[test]
    fn leaves_ordinary_statements_alone() {
        let sql = "SELECT 'token' AS word, count(*) FROM t WHERE name = 'x' -- it's";
        // `'token'` is a value here, but masking the literal after it would
        // be harmless; nothing follows it but a comma.
        assert_eq!(mask_sql_secrets(sql), sql);
        assert_eq!(
            mask_sql_secrets("SELECT 'unterminated"),
            "SELECT 'unterminated"
        );
    }
}
