//! The configuration file of `timed run` (TOML): reading it into the command line, and writing a
//! commented one for `timed init`.
//!
//! Its keys are the long flags of `timed run` (and the global `--log-format`), spelt the same
//! (`http-idle-timeout = "10s"`), and taken from the command-line definition itself, so a flag
//! added to `run` is a key at once and the file cannot drift from the flags. Reading a file means
//! turning each key that the command line does not give into `--key=value` and appending it: a
//! flag given on the command line overrides the file, and every value goes through the very
//! parser its flag uses. A value is checked here first, though, so that an unknown key or a bad
//! value is one error naming the file, the key and what is allowed (not a flag the operator never
//! typed).
//!
//! Relative paths in the file (`genesis`, `key`, `data-dir`: the flags whose value hint is a path)
//! are relative to the file's own folder, so `timed run --config /etc/timed/timed.toml` works
//! from any working directory.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{Arg, Command, ValueHint};

/// The subcommand a configuration file configures.
pub const SUBCOMMAND: &str = "run";
/// The flag that names the file.
pub const FLAG: &str = "config";
/// The file `timed init` writes.
pub const FILE_NAME: &str = "timed.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {reason}")]
    Syntax { path: String, reason: String },
    #[error(
        "config file {path}: unknown key {key:?}{hint}; the keys are the flags of `timed run`: {known}"
    )]
    UnknownKey {
        path: String,
        key: String,
        hint: String,
        known: String,
    },
    #[error("config file {path}: key {key:?} = {value}: {reason}; allowed: {allowed}")]
    BadValue {
        path: String,
        key: String,
        value: String,
        reason: String,
        allowed: String,
    },
    #[error("--config needs a file name (timed run --config timed.toml)")]
    NoFile,
}

/// The flags a file may set: those of `run` and the root's global ones, less help, version, the
/// `--config` flag itself and hidden test aids.
pub fn keys(root: &Command) -> Vec<&Arg> {
    let run = root
        .find_subcommand(SUBCOMMAND)
        .expect("the run subcommand");
    let globals = root.get_arguments().filter(|a| a.is_global_set());
    run.get_arguments()
        .chain(globals)
        .filter(|a| !a.is_hide_set() && a.get_long().is_some_and(|l| l != FLAG))
        .filter(|a| a.get_action().takes_values())
        .collect()
}

fn long(arg: &Arg) -> &str {
    arg.get_long().unwrap_or_default()
}

/// `args` (the process's, program name first) with the settings of the file that `--config`
/// names appended as flags, for those flags `args` does not give. Unchanged when the subcommand is
/// not `run` or no `--config` is given.
pub fn apply(args: Vec<OsString>, root: &Command) -> Result<Vec<OsString>, ConfigError> {
    if subcommand(&args, root) != Some(SUBCOMMAND) {
        return Ok(args);
    }
    let Some(file) = flag_value(&args, FLAG)? else {
        return Ok(args);
    };
    let file = PathBuf::from(file);
    let table = read(&file)?;
    let base = file.parent().unwrap_or(Path::new("")).to_path_buf();
    let known = keys(root);
    let mut extra = Vec::new();
    for (key, value) in &table {
        let arg = find(&known, key, &file)?;
        if given(&args, key) {
            continue;
        }
        for v in values(arg, key, value, &file)? {
            check(arg, &v).map_err(|(reason, allowed)| ConfigError::BadValue {
                path: file.display().to_string(),
                key: key.clone(),
                value: value.to_string(),
                reason,
                allowed,
            })?;
            let v = relative_to(&base, arg, v);
            let mut flag = OsString::from(format!("--{key}="));
            flag.push(v);
            extra.push(flag);
        }
    }
    Ok(args.into_iter().chain(extra).collect())
}

fn read(file: &Path) -> Result<toml::Table, ConfigError> {
    let path = file.display().to_string();
    let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
        path: path.clone(),
        source,
    })?;
    text.parse::<toml::Table>()
        .map_err(|e| ConfigError::Syntax {
            path,
            reason: e.to_string().trim().replace('\n', " "),
        })
}

fn find<'a>(known: &[&'a Arg], key: &str, file: &Path) -> Result<&'a Arg, ConfigError> {
    if let Some(arg) = known.iter().find(|a| long(a) == key) {
        return Ok(arg);
    }
    let names: Vec<&str> = known.iter().map(|a| long(a)).collect();
    let near = names.iter().find(|n| {
        n.replace('-', "_") == key.replace('-', "_") || n.contains(key) || key.contains(**n)
    });
    Err(ConfigError::UnknownKey {
        path: file.display().to_string(),
        key: key.to_string(),
        hint: near.map_or_else(String::new, |n| format!(" (did you mean {n:?}?)")),
        known: names.join(", "),
    })
}

/// The first word of `args` that is not a flag or a flag's value: the subcommand, if any.
fn subcommand<'a>(args: &'a [OsString], root: &Command) -> Option<&'a str> {
    let mut words = args.iter().skip(1);
    while let Some(w) = words.next() {
        let w = w.to_str()?;
        let Some(name) = w.strip_prefix("--") else {
            return (!w.starts_with('-')).then_some(w);
        };
        let takes_value = root
            .get_arguments()
            .find(|a| a.get_long() == Some(name))
            .is_some_and(|a| a.get_action().takes_values());
        if takes_value {
            words.next();
        }
    }
    None
}

/// The value of `--name VALUE` or `--name=VALUE` in `args`.
fn flag_value(args: &[OsString], name: &str) -> Result<Option<OsString>, ConfigError> {
    let bare = format!("--{name}");
    let joined = format!("--{name}=");
    for (i, a) in args.iter().enumerate() {
        let text = a.to_string_lossy();
        if text == bare {
            return args
                .get(i + 1)
                .cloned()
                .map(Some)
                .ok_or(ConfigError::NoFile);
        }
        if let Some(v) = text.strip_prefix(&joined) {
            return Ok(Some(v.into()));
        }
    }
    Ok(None)
}

/// Whether the command line gives `--key` (the flags of `run` are long only).
fn given(args: &[OsString], key: &str) -> bool {
    let bare = format!("--{key}");
    let joined = format!("--{key}=");
    args.iter().any(|a| {
        let t = a.to_string_lossy();
        t == bare || t.starts_with(&joined)
    })
}

/// The values of one key, as the command line would give them: a list only for a flag that
/// takes several (split at the flag's delimiter when written as one string).
fn values(
    arg: &Arg,
    key: &str,
    value: &toml::Value,
    file: &Path,
) -> Result<Vec<String>, ConfigError> {
    let many = matches!(arg.get_action(), clap::ArgAction::Append);
    let bad = |reason: &str| ConfigError::BadValue {
        path: file.display().to_string(),
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.to_string(),
        allowed: allowed(arg),
    };
    let one = |v: &toml::Value| match v {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Float(f) => Ok(f.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        _ => Err(bad("expected a string or a number")),
    };
    match value {
        toml::Value::Array(items) if many => items.iter().map(one).collect(),
        toml::Value::Array(_) => Err(bad("this key takes one value, not a list")),
        v => {
            let text = one(v)?;
            Ok(match arg.get_value_delimiter() {
                Some(d) if many => text
                    .split(d)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect(),
                _ => vec![text],
            })
        }
    }
}

/// Runs the flag's own parser on `value` (a command of that one flag parses `--key=value`): on
/// error, why and what the flag allows.
fn check(arg: &Arg, value: &str) -> Result<(), (String, String)> {
    let one = Command::new("timed")
        .no_binary_name(true)
        .arg(arg.clone().required(false).global(false));
    one.try_get_matches_from([format!("--{}={value}", long(arg))])
        .map(|_| ())
        .map_err(|e| {
            let reason = std::error::Error::source(&e)
                .map(ToString::to_string)
                .unwrap_or_else(|| {
                    let text = e.to_string();
                    let first = text.lines().next().unwrap_or_default();
                    first.trim_start_matches("error: ").to_string()
                });
            (reason, allowed(arg))
        })
}

/// What a key takes, in words: its choices, else its placeholder and the flag's default.
fn allowed(arg: &Arg) -> String {
    let choices: Vec<String> = arg
        .get_possible_values()
        .iter()
        .map(|p| p.get_name().to_string())
        .collect();
    if !choices.is_empty() {
        return format!("one of {}", choices.join(", "));
    }
    let name = arg
        .get_value_names()
        .and_then(|n| n.first())
        .map_or_else(|| long(arg).to_uppercase(), |n| n.to_string());
    let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
    let first = help
        .split(". ")
        .next()
        .unwrap_or_default()
        .trim_end_matches('.');
    match arg.get_default_values().first() {
        Some(d) => format!(
            "{name} ({first}), e.g. the default {:?}",
            d.to_string_lossy()
        ),
        None => format!("{name} ({first})"),
    }
}

fn is_path(arg: &Arg) -> bool {
    matches!(
        arg.get_value_hint(),
        ValueHint::FilePath | ValueHint::DirPath | ValueHint::AnyPath
    )
}

/// A relative path of the file, made relative to the file's folder.
fn relative_to(base: &Path, arg: &Arg, value: String) -> OsString {
    if is_path(arg) && Path::new(&value).is_relative() && !base.as_os_str().is_empty() {
        return base.join(value).into_os_string();
    }
    value.into()
}

/// A value `timed init` writes for a key, as TOML text; `active: false` writes it commented out
/// (an example where the flag has no default).
pub struct Preset {
    pub key: &'static str,
    pub toml: String,
    pub active: bool,
}

/// A configuration file with every key: each flag's help as a comment, then the key with its
/// preset or default value (commented out where there is neither, with its placeholder).
pub fn template(root: &Command, presets: &[Preset]) -> String {
    let mut out = String::from(
        "# The configuration of `timed run --config FILE`. Each key is a flag of `timed run`\n\
         # (see `timed run --help`); a flag given on the command line overrides the key.\n\
         # Relative paths are relative to this file's folder.\n",
    );
    for arg in keys(root) {
        let key = long(arg);
        out.push('\n');
        let help = arg
            .get_long_help()
            .or(arg.get_help())
            .map(|h| h.to_string())
            .unwrap_or_default();
        for line in wrap(&help, 96) {
            out.push_str(format!("# {line}").trim_end());
            out.push('\n');
        }
        let preset = presets.iter().find(|p| p.key == key);
        let default = arg.get_default_values().first();
        let line = match (preset, default) {
            (Some(p), _) => format!("{}{key} = {}", if p.active { "" } else { "# " }, p.toml),
            (None, Some(d)) => format!("{key} = {}", toml_text(&d.to_string_lossy())),
            (None, None) => {
                let name = arg.get_value_names().and_then(|n| n.first());
                format!("# {key} = {}", name.map_or("", |n| n.as_str()))
            }
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// A default as TOML: a whole number bare, anything else a string.
fn toml_text(value: &str) -> String {
    if value.parse::<i64>().is_ok() {
        value.to_string()
    } else {
        toml::Value::String(value.to_string()).to_string()
    }
}

/// `text` in lines of at most `width` characters, its own line breaks kept.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    for para in text.lines() {
        let mut line = String::new();
        for word in para.split_whitespace() {
            if !line.is_empty() && line.len() + 1 + word.len() > width {
                lines.push(std::mem::take(&mut line));
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli() -> Command {
        Command::new("timed")
            .arg(
                Arg::new("log-format")
                    .long("log-format")
                    .global(true)
                    .value_parser(["text", "json"])
                    .default_value("text"),
            )
            .subcommand(
                Command::new("run")
                    .arg(Arg::new("config").long("config"))
                    .arg(
                        Arg::new("data-dir")
                            .long("data-dir")
                            .value_hint(ValueHint::DirPath),
                    )
                    .arg(
                        Arg::new("peers")
                            .long("peers")
                            .action(clap::ArgAction::Append)
                            .value_delimiter(','),
                    )
                    .arg(
                        Arg::new("http-rate-limit")
                            .long("http-rate-limit")
                            .value_parser(clap::value_parser!(u32))
                            .default_value("200"),
                    ),
            )
    }

    fn args(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    fn with_file(text: &str, words: &[&str]) -> Result<Vec<String>, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.toml");
        std::fs::write(&file, text).unwrap();
        let mut a = args(words);
        a.push("--config".into());
        a.push(file.clone().into());
        let out = apply(a, &cli())?;
        let dir = dir.path().display().to_string();
        Ok(out
            .iter()
            .skip(words.len() + 2)
            .map(|s| s.to_string_lossy().replace(&dir, "DIR"))
            .collect())
    }

    #[test]
    fn the_file_fills_the_flags_the_command_line_does_not_give() {
        let text = "data-dir = \"d\"\nhttp-rate-limit = 5\npeers = [\"a:1\", \"b:2\"]\nlog-format = \"json\"\n";
        let got = with_file(text, &["timed", "run", "--http-rate-limit=7"]).unwrap();
        assert_eq!(
            got,
            [
                "--data-dir=DIR/d",
                "--log-format=json",
                "--peers=a:1",
                "--peers=b:2"
            ]
        );
        let got = with_file("peers = \"a:1,b:2\"\n", &["timed", "run", "--peers", "c:3"]).unwrap();
        assert!(got.is_empty());
        let got = with_file(
            "peers = \"a:1,b:2\"\n",
            &["timed", "--log-format", "json", "run"],
        )
        .unwrap();
        assert_eq!(got, ["--peers=a:1", "--peers=b:2"]);
    }

    #[test]
    fn an_unknown_key_or_a_bad_value_names_the_file_and_the_key() {
        let e = with_file("peer = [\"a:1\"]\n", &["timed", "run"])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("t.toml: unknown key \"peer\" (did you mean \"peers\"?)"),
            "{e}"
        );
        assert!(
            e.contains("data-dir, peers, http-rate-limit, log-format"),
            "{e}"
        );
        let e = with_file("http-rate-limit = \"lots\"\n", &["timed", "run"])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("key \"http-rate-limit\" = \"lots\": invalid digit"),
            "{e}"
        );
        assert!(e.contains("e.g. the default \"200\""), "{e}");
        let e = with_file("log-format = \"xml\"\n", &["timed", "run"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("allowed: one of text, json"), "{e}");
        let e = with_file("data-dir = [\"a\"]\n", &["timed", "run"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("one value, not a list"), "{e}");
        let e = with_file("data-dir = \n", &["timed", "run"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("is not valid TOML"), "{e}");
    }

    #[test]
    fn other_subcommands_ignore_the_file() {
        let a = args(&["timed", "keygen", "--config", "/nonexistent"]);
        assert_eq!(apply(a.clone(), &cli()).unwrap(), a);
    }

    #[test]
    fn the_template_reads_back_with_its_defaults() {
        let presets = [Preset {
            key: "data-dir",
            toml: "\"data\"".into(),
            active: true,
        }];
        let text = template(&cli(), &presets);
        assert!(text.contains("\ndata-dir = \"data\"\n"), "{text}");
        assert!(text.contains("\n# peers = \n"), "{text}");
        assert!(text.contains("\nhttp-rate-limit = 200\n"), "{text}");
        assert!(text.contains("\nlog-format = \"text\"\n"), "{text}");
        let got = with_file(&text, &["timed", "run"]).unwrap();
        assert_eq!(
            got,
            [
                "--data-dir=DIR/data",
                "--http-rate-limit=200",
                "--log-format=text"
            ]
        );
    }
}
