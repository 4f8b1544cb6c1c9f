//! Quoting for the POSIX shell on the hosts: every value placed in a remote command line goes through
//! [`quote`], even values validated earlier.

/// `s` as one shell word: single-quoted, with embedded single quotes closed, escaped and reopened.
pub fn quote(s: &str) -> String {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./=:@,+%".contains(&b)) {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Builtins and reserved words that change the shell running them (its directory, options, variables,
/// traps, functions, aliases, limits, jobs), steer its control flow, or run text of their own.
const SHELL_CHANGING: &[&str] = &[
    ".",
    "alias",
    "bg",
    "bind",
    "break",
    "builtin",
    "caller",
    "case",
    "cd",
    "command",
    "compgen",
    "complete",
    "compopt",
    "continue",
    "coproc",
    "declare",
    "dirs",
    "disown",
    "do",
    "done",
    "elif",
    "else",
    "enable",
    "esac",
    "eval",
    "exec",
    "exit",
    "export",
    "fc",
    "fg",
    "fi",
    "for",
    "function",
    "getopts",
    "hash",
    "history",
    "if",
    "in",
    "jobs",
    "kill",
    "let",
    "local",
    "logout",
    "mapfile",
    "popd",
    "pushd",
    "read",
    "readarray",
    "readonly",
    "return",
    "select",
    "set",
    "shift",
    "shopt",
    "source",
    "suspend",
    "then",
    "time",
    "trap",
    "typeset",
    "ulimit",
    "umask",
    "unalias",
    "unset",
    "until",
    "wait",
    "while",
    "[[",
    "]]",
];

/// One token of a command, as far as [`leaves_shell_as_is`] reads it.
enum Token {
    /// A word after quote removal; `literal`: it was written with plain characters only, unquoted.
    Word { text: String, literal: bool },
    /// `>`, `>>` or `<` (its target is the next word), or `N>&M` / `<&M` (no target word).
    Redirect { target_follows: bool },
    /// `;`, a line break, `&&`, `||` or `|`: a new command begins.
    Separator,
}

type Chars<'a> = std::iter::Peekable<std::str::Chars<'a>>;

/// The word being read: its text so far, and whether it is still plain and unquoted.
type Word = Option<(String, bool)>;

fn end_word(word: &mut Word, out: &mut Vec<Token>) {
    if let Some((text, literal)) = word.take() {
        out.push(Token::Word { text, literal });
    }
}

/// The tokens of `command`, or `None` at anything [`leaves_shell_as_is`] does not admit.
fn tokens(command: &str) -> Option<Vec<Token>> {
    let mut out = Vec::new();
    let mut word: Word = None;
    let mut chars = command.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => end_word(&mut word, &mut out),
            '\n' | ';' => {
                end_word(&mut word, &mut out);
                out.push(Token::Separator);
            }
            '&' | '|' => {
                end_word(&mut word, &mut out);
                // `&&`, `||` and `|`; a background job (`&`), `&>` and `|&` are not admitted.
                if chars.next_if_eq(&c).is_none() && (c == '&' || chars.peek() == Some(&'&')) {
                    return None;
                }
                out.push(Token::Separator);
            }
            '>' | '<' => redirect(c, &mut chars, &mut word, &mut out)?,
            '#' if word.is_none() => while chars.next_if(|&c| c != '\n').is_some() {},
            '\'' | '"' => quoted(c, &mut chars, word.get_or_insert_with(Default::default))?,
            '\\' => {
                let w = word.get_or_insert_with(Default::default);
                w.1 = false;
                w.0.push(chars.next()?);
            }
            '$' => {
                word.get_or_insert_with(Default::default).1 = false;
                expansion(&mut chars)?;
            }
            // Command substitution, subshells, groups, brace expansion, function definitions.
            '`' | '(' | ')' | '{' | '}' => return None,
            c => {
                let w = word.get_or_insert_with(|| (String::new(), true));
                w.0.push(c);
                w.1 &= c.is_ascii_alphanumeric() || "_./+-:".contains(c);
            }
        }
    }
    end_word(&mut word, &mut out);
    Some(out)
}

/// A redirection that begins with `c` (`>` or `<`); a word of digits right before is the descriptor
/// redirected, not a word.
fn redirect(c: char, chars: &mut Chars<'_>, word: &mut Word, out: &mut Vec<Token>) -> Option<()> {
    if matches!(&word, Some((w, true)) if w.bytes().all(|b| b.is_ascii_digit())) {
        *word = None;
    }
    end_word(word, out);
    if c == '>' {
        chars.next_if_eq(&'>');
    }
    match chars.peek() {
        Some('&') => {
            chars.next();
            chars.next_if(char::is_ascii_digit)?;
            while chars.next_if(char::is_ascii_digit).is_some() {}
            // The descriptor ends the word: `>&1-` moves (closes) it, `>&1#` names a file.
            if chars.peek().is_some_and(|c| !" \t\n;&|".contains(*c)) {
                return None;
            }
            out.push(Token::Redirect { target_follows: false });
        }
        // Here-documents and strings, `<>`, `>|` and process substitution.
        Some('<' | '>' | '|' | '(') => return None,
        _ => out.push(Token::Redirect { target_follows: true }),
    }
    Some(())
}

/// The rest of a string quoted with `quote` (`'` or `"`) into `word`; in double quotes, `$` may only read
/// a parameter.
fn quoted(quote: char, chars: &mut Chars<'_>, word: &mut (String, bool)) -> Option<()> {
    word.1 = false;
    loop {
        match chars.next()? {
            c if c == quote => return Some(()),
            '\\' if quote == '"' => word.0.push(chars.next()?),
            '$' if quote == '"' => expansion(chars)?,
            '`' if quote == '"' => return None,
            c => word.0.push(c),
        }
    }
}

/// Takes what follows a `$` when it only reads a parameter: `$NAME`, `${NAME}`, `$1`, `$?` and the like.
/// Anything else (`$(`, `$((`, `${x:=y}`, `$'...'`) is `None`.
fn expansion(chars: &mut Chars<'_>) -> Option<()> {
    let special = |c: &char| c.is_ascii_digit() || "?#@*$!-".contains(*c);
    let braced = chars.next_if_eq(&'{').is_some();
    if chars.next_if(special).is_none() {
        chars.next_if(|c| c.is_ascii_alphabetic() || *c == '_')?;
        while chars.next_if(|c| c.is_ascii_alphanumeric() || *c == '_').is_some() {}
    }
    (!braced || chars.next_if_eq(&'}').is_some()).then_some(())
}

/// Whether `command`, evaluated by a bash, leaves that bash as it was: simple commands of programs and of
/// builtins that change nothing, joined by `;`, line breaks, `&&`, `||` and `|`, with plain redirections;
/// each command's name a plain word, not an assignment; no expansion but reading a parameter. Such a
/// command needs no subshell of its own to keep `cd`, `exit`, `exec`, `set -e`, variables, traps and
/// functions away from what runs after it, and a host saves a process on it. The check is by what the
/// text shows and admits less than it could: anything else gets its subshell, as every command did before.
pub fn leaves_shell_as_is(command: &str) -> bool {
    let Some(tokens) = tokens(command) else { return false };
    let (mut starts, mut target, mut printf) = (true, false, false);
    for token in tokens {
        match token {
            Token::Separator if target => return false,
            Token::Separator => (starts, printf) = (true, false),
            Token::Redirect { .. } if target => return false,
            Token::Redirect { target_follows } => target = target_follows,
            Token::Word { .. } if target => target = false,
            Token::Word { text, literal } if starts => {
                // Negation; quoted, a program of that name.
                if text == "!" {
                    continue;
                }
                let plain = literal && !text.contains('=') || text == "[";
                if !plain || SHELL_CHANGING.contains(&text.as_str()) {
                    return false;
                }
                (starts, printf) = (false, text == "printf");
            }
            // `printf -v NAME` assigns a variable.
            Token::Word { text, .. } if printf && text.starts_with("-v") => return false,
            Token::Word { .. } => {}
        }
    }
    !target
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

    #[test]
    fn commands_that_leave_the_shell_as_is() {
        for c in [
            "mkdir -p /var/lib/bench-b && echo step-1 >> /var/lib/bench-b/steps",
            "hostname",
            "modprobe br_netfilter; sysctl -w net.ipv4.ip_forward=1 2>&1 | tail -1",
            "echo \"$HOME/x\" '$(not run)' ${PATH} $1 $? > /tmp/f # a comment (with parens)",
            "! grep -q x /etc/hosts || [ -f /etc/hosts ]",
            "printf '%s\\n' a > /etc/x",
            "cat <&0 >&2",
            "",
        ] {
            assert!(leaves_shell_as_is(c), "{c}");
        }
        // A real bash agrees: its directory, options, traps, functions and variables are as they were
        // (those bash itself keeps changing aside), after commands that touch only a temporary directory.
        let dir = tempfile::tempdir().unwrap();
        for c in [
            "mkdir -p d && echo step-1 >> d/steps",
            "echo \"$HOME\" '$(not run)' ${PATH} $1 $? > f # a comment (with parens)",
            "! grep -q x f || [ -f f ] && printf '%s\\n' a >> f; false",
            "cat < f | wc -l >&2",
        ] {
            assert!(leaves_shell_as_is(c), "{c}");
            // `$-` outside the substitution, which does not inherit `-e`. The descriptors listed are the
            // substitution's own, inherited from the shell: the shell's own list races with it closing its
            // end of the substitution's pipe (a loaded machine saw a descriptor come and go).
            let vars = "compgen -v | grep -vxE 'a|_|BASH_.*|BASHPID|PIPESTATUS|RANDOM|SRANDOM|EPOCH.*|LINENO|SECONDS' | while read -r n; do declare -p \"$n\"; done";
            let state = format!("$-$(pwd; shopt; umask; trap -p; declare -f; ls /proc/$BASHPID/fd; {vars})");
            let script = format!(
                "a=\"{state}\"; {c}\nb=\"{state}\"; [ \"$a\" = \"$b\" ] || diff <(echo \"$a\") <(echo \"$b\") >&2"
            );
            let out = std::process::Command::new("bash")
                .current_dir(dir.path())
                .args(["--norc", "-c", &script])
                .output()
                .unwrap();
            assert!(out.status.success(), "{c}: {}", String::from_utf8_lossy(&out.stderr));
        }
    }

    #[test]
    fn commands_that_need_a_subshell_of_their_own() {
        for c in [
            "cd /tmp && ls",
            "exit 3",
            "set -e; false",
            "X=1",
            "X=1 env",
            "export X=1",
            "f() { :; }",
            "{ cd /; }",
            "(cd /)",
            "echo $(cd /)",
            "echo `cd /`",
            "echo ${X:=1}",
            "echo $((X=1))",
            "sleep 9 &",
            "cat <<EOF\nx\nEOF",
            "'cd' /",
            "\\cd /",
            "$CMD /",
            "c? /",
            "echo a >",
            "echo 'unterminated",
            "printf -v X %s y",
            "if true; then cd /; fi",
            "true | read x",
            "exec > /tmp/log",
            ". /etc/profile",
            "source x",
            "trap 'echo' EXIT",
            "echo >&-",
            "cat < <(ls)",
            "ls |& cat",
            "ls &> /dev/null",
            "echo a >&1#; cd /",
            "true 3>&1-; echo x",
            "kill $BASHPID",
        ] {
            assert!(!leaves_shell_as_is(c), "{c}");
        }
    }
}
