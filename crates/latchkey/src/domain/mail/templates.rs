//! Mail templates: built in for every message in English and French, and
//! overridable file by file from a folder (which may also add languages).
//!
//! A message's template is plain text: header lines (`Subject:`, and
//! `Button:` for the label of its link in HTML), a blank line, then the
//! body. The HTML part is the body laid out by `layout.html` (a paragraph
//! that is only a link becomes a button), unless the folder has an
//! `LANG/KIND.html` of its own. Templates are MiniJinja; HTML is escaped.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use minijinja::{Environment, Value};

use super::MailKind;

/// Languages every message is written in.
pub const BUILT_IN: [&str; 2] = ["en", "fr"];
/// The language of last resort.
pub const DEFAULT_LANGUAGE: &str = "en";

macro_rules! built_in {
    ($($lang:literal / $kind:literal),* $(,)?) => {
        [$(
            (concat!($lang, "/", $kind, ".txt"), include_str!(concat!("templates/", $lang, "/", $kind, ".txt"))),
        )*]
    };
}

const TEXTS: [(&str, &str); 24] = built_in![
    "en" / "verify_email",
    "en" / "password_reset",
    "en" / "email_change",
    "en" / "email_change_requested",
    "en" / "email_changed",
    "en" / "password_changed",
    "en" / "new_device",
    "en" / "refresh_reuse",
    "en" / "account_disabled",
    "en" / "account_exists",
    "en" / "second_factor",
    "en" / "test",
    "fr" / "verify_email",
    "fr" / "password_reset",
    "fr" / "email_change",
    "fr" / "email_change_requested",
    "fr" / "email_changed",
    "fr" / "password_changed",
    "fr" / "new_device",
    "fr" / "refresh_reuse",
    "fr" / "account_disabled",
    "fr" / "account_exists",
    "fr" / "second_factor",
    "fr" / "test",
];
const LAYOUT: &str = include_str!("templates/layout.html");

/// Why the templates could not be loaded or a message rendered.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("cannot read mail template {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("mail template {name}: {error}")]
    Syntax {
        name: String,
        error: minijinja::Error,
    },
    #[error("mail template {name} has no `Subject:` line")]
    NoSubject { name: String },
}

/// A rendered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// The loaded templates and the languages they cover.
pub struct Templates {
    env: Environment<'static>,
    languages: BTreeSet<String>,
}

impl Templates {
    /// The built-in templates, with the files of `folder` (if any) over them.
    pub fn load(folder: Option<&Path>) -> Result<Self, TemplateError> {
        let mut env = Environment::new();
        let mut languages: BTreeSet<String> = BUILT_IN.iter().map(|l| l.to_string()).collect();
        let add = |env: &mut Environment<'static>, name: String, source: String| {
            env.add_template_owned(name.clone(), source)
                .map_err(|error| TemplateError::Syntax { name, error })
        };
        add(&mut env, "layout.html".into(), LAYOUT.into())?;
        for (name, source) in TEXTS {
            add(&mut env, name.into(), source.into())?;
        }
        if let Some(folder) = folder {
            for (name, source) in read_folder(folder)? {
                if let Some((lang, _)) = name.split_once('/') {
                    languages.insert(lang.to_string());
                }
                add(&mut env, name, source)?;
            }
        }
        Ok(Self { env, languages })
    }

    /// The best language for a user: their stored locale, else the
    /// request's `Accept-Language`, else English.
    pub fn pick(&self, stored: Option<&str>, accept_language: Option<&str>) -> String {
        stored
            .and_then(|tag| self.supported(tag))
            .or_else(|| accept_language.and_then(|h| self.negotiate(h)))
            .unwrap_or_else(|| DEFAULT_LANGUAGE.to_string())
    }

    /// The language of ours that `header` (an `Accept-Language` value)
    /// ranks highest, if any.
    pub fn negotiate(&self, header: &str) -> Option<String> {
        let mut ranked: Vec<(u16, usize, &str)> = header
            .split(',')
            .take(32)
            .enumerate()
            .filter_map(|(i, item)| {
                let mut parts = item.split(';');
                let tag = parts.next()?.trim();
                let weight = parts
                    .filter_map(|p| p.trim().strip_prefix("q="))
                    .find_map(|q| q.trim().parse::<f32>().ok())
                    .unwrap_or(1.0);
                let weight = (weight.clamp(0.0, 1.0) * 1000.0) as u16;
                (weight > 0 && !tag.is_empty()).then_some((weight, i, tag))
            })
            .collect();
        ranked.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        ranked
            .into_iter()
            .find_map(|(_, _, tag)| self.supported(tag))
    }

    /// Our language for a BCP 47 tag: the tag itself, else its primary subtag.
    pub fn supported(&self, tag: &str) -> Option<String> {
        let tag = tag.trim().to_ascii_lowercase().replace('_', "-");
        let primary = tag.split('-').next().unwrap_or_default().to_string();
        [tag, primary]
            .into_iter()
            .find(|candidate| self.languages.contains(candidate))
    }

    /// Renders `kind` in `lang` (English where the folder added a language
    /// without this message).
    pub fn render(
        &self,
        kind: MailKind,
        lang: &str,
        context: BTreeMap<&str, Value>,
    ) -> Result<Rendered, TemplateError> {
        let (lang, text_name) = [lang, DEFAULT_LANGUAGE]
            .into_iter()
            .map(|l| (l, format!("{l}/{}.txt", kind.as_str())))
            .find(|(_, name)| self.env.get_template(name).is_ok())
            .ok_or_else(|| TemplateError::NoSubject {
                name: kind.as_str().to_string(),
            })?;
        let syntax = |name: &str| {
            let name = name.to_string();
            move |error| TemplateError::Syntax { name, error }
        };
        let mut context = context;
        context.insert("lang", Value::from(lang));
        let ctx = Value::from(context.clone());
        let rendered = self
            .env
            .get_template(&text_name)
            .and_then(|t| t.render(&ctx))
            .map_err(syntax(&text_name))?;
        let (headers, body) = split_headers(&rendered);
        let subject = headers
            .get("subject")
            .cloned()
            .ok_or(TemplateError::NoSubject {
                name: text_name.clone(),
            })?;
        let text = format!("{}\n", body.trim());
        context.insert("subject", Value::from(subject.clone()));
        context.insert("text", Value::from(text.clone()));
        let html_name = format!("{lang}/{}.html", kind.as_str());
        let html = match self.env.get_template(&html_name) {
            Ok(own) => own
                .render(Value::from(context))
                .map_err(syntax(&html_name))?,
            Err(_) => {
                let button = headers.get("button").cloned().unwrap_or_default();
                context.insert("paragraphs", paragraphs(&text, &button));
                self.env
                    .get_template("layout.html")
                    .and_then(|t| t.render(Value::from(context)))
                    .map_err(syntax("layout.html"))?
            }
        };
        Ok(Rendered {
            subject,
            text,
            html,
        })
    }
}

/// The header lines (lower-case names) and the body after the blank line.
fn split_headers(rendered: &str) -> (BTreeMap<String, String>, &str) {
    let mut headers = BTreeMap::new();
    let mut rest = rendered;
    while let Some((line, after)) = rest.split_once('\n') {
        let Some((name, value)) = line.split_once(':').filter(|(n, _)| {
            !n.is_empty() && n.chars().all(|c| c.is_ascii_alphabetic() || c == '-')
        }) else {
            break;
        };
        // One line each: a value never carries a line break into a header.
        headers.insert(name.to_ascii_lowercase(), value.trim().to_string());
        rest = after;
    }
    (headers, rest)
}

/// The body as the layout's paragraphs: lines, or a lone link as a button.
fn paragraphs(text: &str, button: &str) -> Value {
    let items: Vec<Value> = text
        .split("\n\n")
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut item = BTreeMap::new();
            let lone_link = (p.starts_with("https://") || p.starts_with("http://"))
                && !p.contains(char::is_whitespace);
            if lone_link {
                item.insert("link", Value::from(p));
                item.insert("label", Value::from(button));
            } else {
                let lines: Vec<Value> = p.lines().map(Value::from).collect();
                item.insert("lines", Value::from(lines));
            }
            Value::from(item)
        })
        .collect();
    Value::from(items)
}

/// `layout.html` and every `LANG/KIND.txt|html` of the folder.
fn read_folder(folder: &Path) -> Result<Vec<(String, String)>, TemplateError> {
    let read_error = |path: &Path| {
        let path = path.display().to_string();
        move |error| TemplateError::Read { path, error }
    };
    let mut found = Vec::new();
    let layout = folder.join("layout.html");
    if layout.exists() {
        found.push((
            "layout.html".to_string(),
            std::fs::read_to_string(&layout).map_err(read_error(&layout))?,
        ));
    }
    for entry in std::fs::read_dir(folder).map_err(read_error(folder))? {
        let dir = entry.map_err(read_error(folder))?.path();
        let Some(lang) = dir.file_name().and_then(|n| n.to_str()).map(str::to_string) else {
            continue;
        };
        if !dir.is_dir() || !is_language_tag(&lang) {
            continue;
        }
        for file in std::fs::read_dir(&dir).map_err(read_error(&dir))? {
            let path = file.map_err(read_error(&dir))?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let known = MailKind::ALL.iter().any(|k| {
                name == format!("{}.txt", k.as_str()) || name == format!("{}.html", k.as_str())
            });
            if known {
                let source = std::fs::read_to_string(&path).map_err(read_error(&path))?;
                found.push((format!("{}/{name}", lang.to_ascii_lowercase()), source));
            }
        }
    }
    Ok(found)
}

/// A folder name that can be a language: `fr`, `pt-br`.
fn is_language_tag(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 16
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}
