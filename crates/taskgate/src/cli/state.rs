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
/// directory only its owner can enter (0700). The modes are set on every
/// write, not only at creation: a file or folder that already existed with
/// looser ones is tightened before anything secret goes in.
pub fn write_private(path: &std::path::Path, contents: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot make {} private", dir.display()))?;
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.set_permissions(fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot make {} private", path.display()))?;
    // Emptied only once it is private.
    file.set_len(0)?;
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn an_existing_loose_file_and_folder_are_made_private() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("state");
        fs::create_dir(&folder).unwrap();
        fs::set_permissions(&folder, fs::Permissions::from_mode(0o755)).unwrap();
        let file = folder.join("login.json");
        fs::write(&file, "old").unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&file, "secret").unwrap();
        let mode = |p: &std::path::Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&file), 0o600);
        assert_eq!(mode(&folder), 0o700);
        assert_eq!(fs::read_to_string(&file).unwrap(), "secret");
    }
}
