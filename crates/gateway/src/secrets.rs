//! Resolving secret references. Errors name the reference, never the value.

use taskgate_policy::{Secret, SecretRef};

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("{0} is not set")]
    MissingEnv(String),
    #[error("cannot read {0}: {1}")]
    File(String, std::io::Error),
    #[error("{0} is empty")]
    Empty(String),
}

/// Reads a secret from the environment or a file; a file's trailing newline
/// is not part of the secret.
pub fn resolve(reference: &SecretRef) -> Result<Secret, SecretError> {
    let value = match reference {
        SecretRef::Env(name) => std::env::var(name)
            .map_err(|_| SecretError::MissingEnv(format!("environment variable {name}")))?,
        SecretRef::File(path) => std::fs::read_to_string(path)
            .map_err(|e| SecretError::File(format!("file {}", path.display()), e))?
            .trim_end_matches(['\n', '\r'])
            .to_owned(),
    };
    if value.is_empty() {
        return Err(SecretError::Empty(reference.to_string()));
    }
    Ok(Secret::new(value))
}
