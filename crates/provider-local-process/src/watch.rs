//! Watching a directory: checked and resolved here, watched by the agent in the
//! sandbox's own view of its files.

use std::path::PathBuf;

use sandkit_core::{Error, FileErrorKind, FileEvents, FileKind, Result, SandboxId};

use crate::provider::{LocalProcessProvider, blocking};

impl LocalProcessProvider {
    /// [`sandkit_core::SandboxProvider::watch`].
    pub(crate) async fn watch_dir(
        &self,
        id: &SandboxId,
        path: &str,
        recursive: bool,
    ) -> Result<FileEvents> {
        let (record, layout) = self.live(id).await?;
        let fs = self.files_of(id, "watch").await?;
        let relative = fs.relative(path)?;
        let shown = path.to_owned();
        match blocking(move || fs.kind_following(&shown)).await? {
            FileKind::Directory => {}
            _ => return Err(Error::file(path, FileErrorKind::NotADirectory)),
        }
        let seen: PathBuf = layout.seen_root(&record).join(relative);
        layout
            .agent()
            .watch(seen.display().to_string(), recursive, path.to_owned())
            .await
    }
}
