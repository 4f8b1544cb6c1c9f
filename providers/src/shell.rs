//! Quoting for the POSIX shell on the hosts: every value placed in a remote command line goes through
//! [`quote`], even values validated earlier.

/// `s` as one shell word: single-quoted, with embedded single quotes closed, escaped and reopened.
pub fn quote(s: &str) -> String {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./=:@,+%".contains(&b)) {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_what_the_shell_would_interpret() {
        assert_eq!(quote("plain-value_1.2"), "plain-value_1.2");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("$(reboot)"), "'$(reboot)'");
        assert_eq!(quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn quoted_values_come_back_unchanged_from_a_real_shell() {
        for s in ["a b", "$(id)", "it's", "`x`", "a\nb", "*", "; rm -rf /tmp/x", "\\"] {
            let out =
                std::process::Command::new("sh").arg("-c").arg(format!("printf %s {}", quote(s))).output().unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), s);
        }
    }
}
