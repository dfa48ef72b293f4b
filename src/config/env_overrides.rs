//! `GALLEY_*` environment overrides: each names a key path with `__` between
//! levels, is typed by the value it replaces, and a value that then fails to
//! deserialize is reported against the variable that set it.

use super::ConfigError;

/// The overrides applied so far, remembered by key so that a value rejected
/// later, when the merged tree is deserialized, is blamed on its variable.
#[derive(Default)]
pub(super) struct Overrides {
    /// (key path such as `cql.consistency`, the variable that set it)
    applied: Vec<(String, String)>,
}

impl Overrides {
    /// Replaces the value at the key path `rest` names (the variable's name
    /// without its prefix) by `raw`, typed like the value it replaces.
    pub(super) fn apply(
        &mut self,
        tree: &mut toml::Value,
        var: &str,
        rest: &str,
        raw: &str,
    ) -> Result<(), ConfigError> {
        let env_err = |message: String| ConfigError::Env {
            var: var.to_string(),
            message,
        };
        if !rest.contains("__") {
            return Err(env_err(
                "is not a galley setting; nested keys are joined with `__`, \
                 for example GALLEY_KAFKA__BROKERS"
                    .into(),
            ));
        }
        let path: Vec<String> = rest.split("__").map(|p| p.to_ascii_lowercase()).collect();
        let key = path.join(".");
        let mut node = tree;
        for (depth, part) in path.iter().enumerate() {
            let table = node
                .as_table_mut()
                .ok_or_else(|| env_err(format!("`{key}` is not a galley setting")))?;
            let slot = table
                .get_mut(part.as_str())
                .ok_or_else(|| env_err(format!("`{key}` is not a galley setting")))?;
            if depth + 1 == path.len() {
                *slot = typed_like(slot, raw).map_err(|m| env_err(format!("`{key}`: {m}")))?;
                self.applied.push((key, var.to_string()));
                return Ok(());
            }
            node = slot;
        }
        Err(env_err(format!("`{key}` is not a galley setting")))
    }

    /// Turns a failure to deserialize the merged tree into an error naming the
    /// key and, since the file's values had already deserialized, the
    /// variable whose value is at fault.
    pub(super) fn blame(&self, err: serde_path_to_error::Error<toml::de::Error>) -> ConfigError {
        let key = err.path().to_string();
        let message = err.into_inner().message().to_string();
        let culprit = self
            .applied
            .iter()
            .rev()
            .find(|(set, _)| names_or_contains(set, &key));
        match culprit {
            Some((_, var)) => ConfigError::Env {
                var: var.clone(),
                message: format!("`{key}`: {message}"),
            },
            None => ConfigError::Invalid { key, message },
        }
    }
}

/// Whether `key` is the setting `set` or lies inside it (`api.tokens` holds
/// `api.tokens[1].name`).
fn names_or_contains(set: &str, key: &str) -> bool {
    key.strip_prefix(set)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.') || rest.starts_with('['))
}

/// Parses an environment string as the same TOML type as the value it replaces.
fn typed_like(existing: &toml::Value, raw: &str) -> Result<toml::Value, String> {
    use toml::Value;
    match existing {
        Value::String(_) => Ok(Value::String(raw.to_string())),
        Value::Integer(_) => raw
            .trim()
            .parse::<i64>()
            .map(Value::Integer)
            .map_err(|_| format!("`{raw}` is not an integer")),
        Value::Float(_) => raw
            .trim()
            .parse::<f64>()
            .map(Value::Float)
            .map_err(|_| format!("`{raw}` is not a number")),
        Value::Boolean(_) => match raw.trim() {
            "true" | "1" => Ok(Value::Boolean(true)),
            "false" | "0" => Ok(Value::Boolean(false)),
            _ => Err(format!("`{raw}` is not true or false")),
        },
        Value::Array(_) => {
            let trimmed = raw.trim();
            if trimmed.starts_with('[') {
                let doc: toml::Table = toml::from_str(&format!("v = {trimmed}"))
                    .map_err(|e| format!("`{raw}` is not a TOML array: {e}"))?;
                doc.get("v")
                    .cloned()
                    .ok_or_else(|| format!("`{raw}` is not a TOML array"))
            } else {
                Ok(Value::Array(
                    trimmed
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(|s| Value::String(s.to_string()))
                        .collect(),
                ))
            }
        }
        Value::Datetime(_) | Value::Table(_) => {
            Err("is a section, not a value; name one of its keys".into())
        }
    }
}
