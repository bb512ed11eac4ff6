//! The CLI's own state: connection strings of tasks requested on this
//! machine, each in a file only its owner can read, so `task url` can show
//! one again after the one-time answer has scrolled away.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::PathBuf;

use anyhow::Context;

/// `$TASKGATE_STATE_DIR`, else `$XDG_STATE_HOME/taskgate`, else
/// `~/.local/state/taskgate`.
fn state_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("TASKGATE_STATE_DIR") {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME") {
        return Ok(PathBuf::from(dir).join("taskgate"));
    }
    let home =
        std::env::var_os("HOME").context("cannot find a state directory: HOME is not set")?;
    Ok(PathBuf::from(home).join(".local/state/taskgate"))
}

fn task_file(task_id: &str) -> anyhow::Result<PathBuf> {
    if !task_id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        anyhow::bail!("{task_id:?} is not a task id");
    }
    Ok(state_dir()?.join("tasks").join(task_id))
}

/// `$TASKGATE_CONFIG_DIR`, else `$XDG_CONFIG_HOME/taskgate`, else
/// `~/.config/taskgate`: where `taskgate login` keeps its token.
pub fn config_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("TASKGATE_CONFIG_DIR") {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CONFIG_HOME") {
        return Ok(PathBuf::from(dir).join("taskgate"));
    }
    let home =
        std::env::var_os("HOME").context("cannot find a config directory: HOME is not set")?;
    Ok(PathBuf::from(home).join(".config/taskgate"))
}

/// Saves a task's connection string with mode 0600 in a 0700 directory.
pub fn save_connection_string(task_id: &str, url: &str) -> anyhow::Result<PathBuf> {
    let path = task_file(task_id)?;
    write_private(&path, &format!("{url}\n"))?;
    Ok(path)
}

/// Writes `contents` to `path` readable by its owner only (0600), in a
/// directory only its owner can enter (0700).
pub fn write_private(path: &std::path::Path, contents: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    Ok(())
}

pub fn load_connection_string(task_id: &str) -> anyhow::Result<String> {
    let path = task_file(task_id)?;
    let text = fs::read_to_string(&path).with_context(|| {
        format!(
            "no connection string for {task_id} on this machine ({} is missing): the token is shown only to the machine that requested the task",
            path.display()
        )
    })?;
    Ok(text.trim().to_owned())
}
