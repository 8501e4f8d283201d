//! Watching a directory: what happens under it, as a stream of events
//! (`SandboxProvider::watch`).

use std::pin::Pin;

use futures::Stream;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::Result;

/// What happened to a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FileEventKind {
    /// It appeared (created, or moved in from outside the watch).
    Created,
    /// Its contents were written.
    Modified,
    /// It went away (deleted, or moved out of the watch).
    Deleted,
    /// It was renamed within the watch; the old path is in [`FileEvent::from`].
    Renamed,
}

/// One change under a watched directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FileEvent {
    /// What happened.
    pub kind: FileEventKind,
    /// The path, relative to the watched directory (`sub/file.txt`).
    pub path: String,
    /// For [`FileEventKind::Renamed`], the path it had before (relative too).
    pub from: Option<String>,
    /// Whether the path is a directory.
    pub is_dir: bool,
}

/// Events as they happen, until the stream is dropped (which ends the watch) or the
/// sandbox ends (which ends the stream).
pub type FileEvents = Pin<Box<dyn Stream<Item = Result<FileEvent>> + Send>>;
