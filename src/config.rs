//! Declarative configs: a TOML file, then command-line flags, then `--set a.b=c` overrides,
//! deserialised into a typed struct that rejects unknown keys. Every error names the key.

use std::path::Path;

use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// Reads `file` (if any) into a TOML table.
pub fn read_table(file: &Path) -> Result<toml::Table> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| Error::file(file, format!("cannot read config: {e}")))?;
    text.parse::<toml::Table>()
        .map_err(|e| Error::file(file, format!("invalid TOML: {e}")))
}

/// Applies one `a.b.c=value` override. The value is parsed as a TOML literal (`0.1`, `true`,
/// `[1, 2]`, `"x"`); anything that is not valid TOML is taken as a plain string.
pub fn apply_set(table: &mut toml::Table, assignment: &str) -> Result<()> {
    let (key, raw) = assignment.split_once('=').ok_or_else(|| {
        Error::Config(format!(
            "--set `{assignment}` must look like key=value (e.g. --set lr=0.05)"
        ))
    })?;
    let key = key.trim();
    if key.is_empty() || key.split('.').any(str::is_empty) {
        return Err(Error::Config(format!("--set `{assignment}`: empty key")));
    }
    let value = parse_value(raw.trim());
    set_path(table, key, value)
}

fn parse_value(raw: &str) -> toml::Value {
    format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

/// Sets `value` at dotted `key`, creating intermediate tables.
pub fn set_path(table: &mut toml::Table, key: &str, value: toml::Value) -> Result<()> {
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().expect("non-empty key");
    let mut current = table;
    for (i, part) in parts.iter().enumerate() {
        let entry = current
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = entry.as_table_mut().ok_or_else(|| {
            Error::Config(format!(
                "cannot set `{key}`: `{}` is not a table",
                parts[..=i].join(".")
            ))
        })?;
    }
    current.insert(last.to_string(), value);
    Ok(())
}

/// Deserialises a table into `T`, turning serde's message into one that names the section.
pub fn from_table<T: DeserializeOwned>(table: toml::Table, what: &str) -> Result<T> {
    let text = toml::to_string(&table).map_err(|e| Error::Config(e.to_string()))?;
    toml::from_str::<T>(&text).map_err(|e| {
        Error::Config(
            format!("{what}: {}", e.message().trim_end().replace('\n', " "))
                + &span_hint(&text, &e),
        )
    })
}

fn span_hint(text: &str, e: &toml::de::Error) -> String {
    match e.span() {
        Some(span) => {
            let line_start = text[..span.start].rfind('\n').map_or(0, |i| i + 1);
            let line_end = text[span.start..]
                .find('\n')
                .map_or(text.len(), |i| span.start + i);
            // The line holding the offending key, and the table it sits in.
            let section = text[..line_start]
                .lines()
                .rev()
                .find(|l| l.starts_with('['))
                .map(|l| format!(" in {l}"))
                .unwrap_or_default();
            format!(" (at `{}`{section})", text[line_start..line_end].trim())
        }
        None => String::new(),
    }
}

/// Loads a typed config: file → flag table → `--set` overrides.
/// Puts every value of `over` into `base`, descending into tables present in both: a flag such
/// as `--data` (`data.path`) changes that one key and keeps the file's other `[data]` keys.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

pub fn load<T: DeserializeOwned>(
    file: Option<&Path>,
    flags: toml::Table,
    sets: &[String],
    what: &str,
) -> Result<(T, toml::Table)> {
    let mut table = match file {
        Some(f) => read_table(f)?,
        None => toml::Table::new(),
    };
    let overridden = !flags.is_empty() || !sets.is_empty();
    merge(&mut table, flags);
    for s in sets {
        apply_set(&mut table, s)?;
    }
    let typed = from_table(table.clone(), what).map_err(|e| match (file, e) {
        (Some(f), Error::Config(msg)) => {
            let source = if overridden {
                " (from the file or a command-line flag)"
            } else {
                ""
            };
            Error::file(f, format!("{msg}{source}"))
        }
        (_, e) => e,
    })?;
    Ok((typed, table))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_change_one_key_of_a_table_and_keep_the_rest() {
        let mut base: toml::Table =
            toml::from_str("[data]\npath = \"a\"\ntrain_holdout = 5000\n").unwrap();
        let mut flags = toml::Table::new();
        set_path(&mut flags, "data.path", "b".into()).unwrap();
        merge(&mut base, flags);
        let data = base["data"].as_table().unwrap();
        assert_eq!(data["path"].as_str(), Some("b"));
        assert_eq!(data["train_holdout"].as_integer(), Some(5000));
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        lr: f64,
        #[serde(default)]
        milestones: Vec<usize>,
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        name: String,
        inner: Inner,
    }

    #[test]
    fn set_overrides_and_unknown_keys() {
        let mut t: toml::Table = "name = 'a'\n[inner]\nlr = 0.1\n".parse().unwrap();
        apply_set(&mut t, "inner.lr=0.5").unwrap();
        apply_set(&mut t, "inner.milestones=[3, 4]").unwrap();
        apply_set(&mut t, "name=hello world").unwrap();
        let o: Outer = from_table(t.clone(), "test").unwrap();
        assert_eq!(o.inner.lr, 0.5);
        assert_eq!(o.inner.milestones, vec![3, 4]);
        assert_eq!(o.name, "hello world");

        apply_set(&mut t, "inner.lrr=1").unwrap();
        let err = from_table::<Outer>(t, "test").unwrap_err().to_string();
        assert!(err.contains("lrr") && err.contains("lr"), "{err}");
        assert!(apply_set(&mut toml::Table::new(), "novalue").is_err());
    }
}
