//! The TOML layer: reads the file into raw values by setting name, refuses
//! unknown keys with a suggestion, and looks merged values up for parsing.

use std::collections::BTreeMap;
use std::path::Path;

use super::args::SettingsArgs;
use super::database_url::redact_url;
use super::{ConfigError, LIST_SETTINGS};

/// One setting's raw text from the file or the command line.
pub(super) enum Raw {
    One(String),
    Many(Vec<String>),
}

pub(super) type Layer = BTreeMap<&'static str, Raw>;

pub(super) fn setting_names() -> impl Iterator<Item = &'static str> {
    let names = SettingsArgs::default().values().map(|(name, _)| name);
    names.into_iter()
}

pub(super) fn read_file(path: &Path) -> Result<Layer, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| match error.kind() {
        std::io::ErrorKind::NotFound => ConfigError::FileNotFound {
            path: path.to_owned(),
        },
        _ => ConfigError::FileUnreadable {
            path: path.to_owned(),
            error,
        },
    })?;
    parse_file(path, &text)
}

/// The settings a file's text holds, by name; `path` names it in errors.
pub(super) fn parse_file(path: &Path, text: &str) -> Result<Layer, ConfigError> {
    let table: toml::Table = toml::from_str(text).map_err(|error| ConfigError::FileSyntax {
        path: path.to_owned(),
        detail: syntax_detail(text, &error),
    })?;
    table
        .into_iter()
        .map(|(key, value)| file_entry(path, key, value))
        .collect()
}

/// Position and message only: the parser's own rendering quotes the line,
/// which may hold the master key or a database password.
pub(super) fn syntax_detail(text: &str, error: &toml::de::Error) -> String {
    let Some(start) = error.span().map(|span| span.start.min(text.len())) else {
        return error.message().to_owned();
    };
    let before = text.get(..start).unwrap_or_default();
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("line {line}, column {column}: {}", error.message())
}

pub(super) fn file_entry(
    path: &Path,
    key: String,
    value: toml::Value,
) -> Result<(&'static str, Raw), ConfigError> {
    let Some(name) = setting_names().find(|name| *name == key) else {
        let suggestion = closest_setting(&key);
        return Err(ConfigError::UnknownKey {
            path: path.to_owned(),
            key,
            suggestion,
        });
    };
    let is_list = LIST_SETTINGS.contains(&name);
    let wrong_type = || ConfigError::WrongType {
        path: path.to_owned(),
        setting: name,
        expected: if is_list {
            "a string or an array of strings"
        } else {
            "a string or an integer"
        },
    };
    let raw = match value {
        toml::Value::String(s) => Raw::One(s),
        toml::Value::Integer(i) if !is_list => Raw::One(i.to_string()),
        toml::Value::Array(items) if is_list => Raw::Many(
            items
                .into_iter()
                .map(|item| item.as_str().map(str::to_owned).ok_or_else(wrong_type))
                .collect::<Result<_, _>>()?,
        ),
        _ => return Err(wrong_type()),
    };
    Ok((name, raw))
}

/// Suggests the setting a misspelt key probably meant, including keys
/// written as environment variable names.
pub(super) fn closest_setting(key: &str) -> Option<&'static str> {
    let lower = key.to_ascii_lowercase().replace('-', "_");
    let key = lower.strip_prefix("latchkey_").unwrap_or(&lower);
    setting_names()
        .map(|name| (strsim::levenshtein(key, name), name))
        .filter(|(distance, _)| *distance <= 2)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, name)| name)
}

pub(super) fn did_you_mean(suggestion: Option<&'static str>) -> String {
    suggestion
        .map(|s| format!(" (did you mean `{s}`?)"))
        .unwrap_or_default()
}

pub(super) fn env_name(setting: &str) -> String {
    format!("LATCHKEY_{}", setting.to_ascii_uppercase())
}

pub(super) fn flag_name(setting: &str) -> String {
    format!("--{}", setting.replace('_', "-"))
}

/// A value as it may be shown in errors and `Debug`.
pub(super) fn shown(setting: &str, value: &str) -> String {
    match setting {
        "master_key" | "metrics_token" => "[redacted]".to_owned(),
        "database_url" | "smtp_url" => redact_url(value),
        _ => value.to_owned(),
    }
}

/// Looks settings up in the merged layer and parses them, naming the
/// setting in every error.
pub(super) struct Reader<'a>(pub(super) &'a Layer);

impl Reader<'_> {
    pub(super) fn opt<T>(
        &self,
        setting: &'static str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        let invalid = |value: &str, reason| ConfigError::Invalid {
            setting,
            value: shown(setting, value),
            reason,
        };
        match self.0.get(setting) {
            None => Ok(None),
            Some(Raw::One(text)) => parse(text.trim())
                .map(Some)
                .map_err(|reason| invalid(text, reason)),
            Some(Raw::Many(_)) => Err(invalid("[…]", "expected a single value".to_owned())),
        }
    }

    /// Overwrites `target` (a default) when the setting is given.
    pub(super) fn set<T>(
        &self,
        setting: &'static str,
        target: &mut T,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<(), ConfigError> {
        if let Some(value) = self.opt(setting, parse)? {
            *target = value;
        }
        Ok(())
    }

    /// A list: comma-separated text, or an array from the file; absent = empty.
    pub(super) fn list<T>(
        &self,
        setting: &'static str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Vec<T>, ConfigError> {
        let items: Vec<&str> = match self.0.get(setting) {
            None => Vec::new(),
            Some(Raw::One(text)) => text
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect(),
            Some(Raw::Many(items)) => items.iter().map(|s| s.trim()).collect(),
        };
        items
            .into_iter()
            .map(|item| {
                parse(item).map_err(|reason| ConfigError::Invalid {
                    setting,
                    value: item.to_owned(),
                    reason,
                })
            })
            .collect()
    }
}
