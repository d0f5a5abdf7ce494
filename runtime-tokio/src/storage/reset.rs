//! `timed reset`: deleting a node's chain data (the database and the write-ahead log) so that it
//! fetches the chain again from its peers, while keeping what makes it this validator and keeps
//! it safe: the key file and the double-sign guard file (`guard.rs`), which both live outside
//! the data directory, and the genesis the directory is bound to.
//!
//! The guard is what makes a reset safe: the node restarted on an empty directory still knows the
//! last point it signed, watches the network for its key's signatures first, and signs nothing at
//! or below that point (CometBFT's `unsafe-reset-all` resets its signing state instead, hence its
//! name; this reset has no such mode).
//!
//! A running node holds a lock on its database; the reset refuses while it is held.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use crate::storage::guard;

/// The files of the chain data, in the data directory: redb, the WAL and the WAL's temporary
/// (left by a crash mid-prune).
pub const CHAIN_FILES: [&str; 3] = ["timed.redb", "wal.log", "wal.log.tmp"];

#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    #[error("{0} is not a directory: give the node's --data-dir")]
    NotADirectory(String),
    #[error(
        "{0} holds no chain data (no {files}): nothing to reset; is it the node's --data-dir?",
        files = CHAIN_FILES.join(", ")
    )]
    Nothing(String),
    #[error(
        "a timed process is running on {0} (it holds the database's lock): stop it first \
         (systemctl stop timed, or SIGTERM)"
    )]
    Running(String),
    #[error("cannot delete {path}: {source}")]
    Delete { path: String, source: io::Error },
    #[error("cannot open {path} to check that no node runs on it: {source}")]
    Open { path: String, source: io::Error },
}

/// What a reset of one data directory deletes and keeps.
pub struct Plan {
    pub delete: Vec<PathBuf>,
    pub keep: Vec<String>,
}

/// What resetting `data_dir` would do; `key` is the validator's key file, if it has one (a
/// development validator's guard is beside its data directory instead).
pub fn plan(data_dir: &Path, key: Option<&Path>) -> Result<Plan, ResetError> {
    let shown = data_dir.display().to_string();
    if !data_dir.is_dir() {
        return Err(ResetError::NotADirectory(shown));
    }
    let delete: Vec<PathBuf> = CHAIN_FILES
        .iter()
        .map(|f| data_dir.join(f))
        .filter(|p| p.exists())
        .collect();
    if delete.is_empty() {
        return Err(ResetError::Nothing(shown));
    }
    let mut keep = Vec::new();
    let genesis = data_dir.join("genesis.json");
    if genesis.exists() {
        keep.push(format!(
            "{} (the genesis this directory is bound to; delete it too only to join another chain)",
            genesis.display()
        ));
    }
    match key {
        Some(k) => {
            keep.push(format!("{} (the validator key)", k.display()));
            keep.push(guard_line(&guard::path_for_key(k)));
        }
        None => {
            let dev = guard::path_for_data_dir(data_dir);
            if dev.exists() {
                keep.push(guard_line(&dev));
            }
            keep.push(
                "the validator key and its double-sign guard (KEY.last_signed, beside the key \
                 file): outside the data directory, never touched"
                    .into(),
            );
        }
    }
    Ok(Plan { delete, keep })
}

fn guard_line(path: &Path) -> String {
    let state = if path.exists() { "" } else { ", not there yet" };
    format!(
        "{} (the double-sign guard: the last point signed{state})",
        path.display()
    )
}

/// Deletes the plan's files, after checking that no node holds the database.
pub fn execute(plan: &Plan) -> Result<(), ResetError> {
    if let Some(db) = plan.delete.iter().find(|p| p.ends_with(CHAIN_FILES[0])) {
        not_running(db)?;
    }
    for path in &plan.delete {
        std::fs::remove_file(path).map_err(|source| ResetError::Delete {
            path: path.display().to_string(),
            source,
        })?;
    }
    Ok(())
}

/// A running node's redb holds a whole-file lock on the database (redb's writer lock): taking it
/// here fails while the node runs. Released when `file` closes.
fn not_running(db: &Path) -> Result<(), ResetError> {
    let file = File::open(db).map_err(|source| ResetError::Open {
        path: db.display().to_string(),
        source,
    })?;
    match file.try_lock() {
        Ok(()) => Ok(()),
        Err(std::fs::TryLockError::WouldBlock) => Err(ResetError::Running(
            db.parent().unwrap_or(db).display().to_string(),
        )),
        Err(std::fs::TryLockError::Error(source)) => Err(ResetError::Open {
            path: db.display().to_string(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reset_deletes_the_chain_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("v1");
        std::fs::create_dir(&data).unwrap();
        for f in ["timed.redb", "wal.log", "genesis.json", "notes.txt"] {
            std::fs::write(data.join(f), b"x").unwrap();
        }
        std::fs::write(dir.path().join("v1.last_signed"), b"g").unwrap();
        let plan = plan(&data, None).unwrap();
        assert_eq!(plan.delete, [data.join("timed.redb"), data.join("wal.log")]);
        assert!(plan.keep[0].contains("genesis.json"));
        assert!(plan.keep[1].contains("v1.last_signed"));
        execute(&plan).unwrap();
        assert!(!data.join("timed.redb").exists() && !data.join("wal.log").exists());
        for f in ["genesis.json", "notes.txt"] {
            assert!(data.join(f).exists());
        }
        assert!(dir.path().join("v1.last_signed").exists());
        assert!(matches!(
            super::plan(&data, None),
            Err(ResetError::Nothing(_))
        ));
    }
}
