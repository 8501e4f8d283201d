//! File operations: round trips of every size, directories, errors by kind, archives.

use std::io::Read;

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use sandkit_core::{DirEntry, Error, FileErrorKind, FileKind, SandboxId};

use crate::case::{Cx, expect_not_found, expect_unsupported, show, skip};
use crate::cases::exec::{join, noise};

/// The file error `result` must be, by kind.
fn expect_file_error<T>(
    result: sandkit_core::Result<T>,
    path: &str,
    wanted: &[FileErrorKind],
) -> Result<()> {
    match result {
        Err(Error::FileOperation { kind, .. }) if wanted.contains(&kind) => Ok(()),
        Err(error) => bail!(
            "`{path}`: expected a file error of kind {wanted:?}, got {} error: {error}",
            error.kind()
        ),
        Ok(_) => {
            bail!("`{path}`: expected a file error of kind {wanted:?}, but the call succeeded")
        }
    }
}

async fn write(cx: &Cx, id: &SandboxId, path: &str, contents: impl Into<Bytes>) -> Result<()> {
    cx.provider()
        .write_file(id, path, contents.into())
        .await
        .map_err(|error| anyhow::anyhow!("write_file `{path}`: {error}"))
}

async fn read(cx: &Cx, id: &SandboxId, path: &str) -> Result<Bytes> {
    cx.provider()
        .read_file(id, path)
        .await
        .map_err(|error| anyhow::anyhow!("read_file `{path}`: {error}"))
}

async fn round_trip(cx: Cx, path: &str, contents: Bytes) -> Result<()> {
    let id = cx.sandbox().await?;
    write(&cx, &id, path, contents.clone()).await?;
    let back = read(&cx, &id, path).await?;
    ensure!(
        back == contents,
        "read back {} bytes, wrote {}; first difference at byte {:?}",
        back.len(),
        contents.len(),
        back.iter().zip(contents.iter()).position(|(a, b)| a != b)
    );
    let stat = cx
        .provider()
        .stat(&id, path)
        .await
        .map_err(|error| anyhow::anyhow!("stat `{path}`: {error}"))?;
    ensure!(stat.kind == FileKind::File, "stat says {:?}", stat.kind);
    ensure!(
        stat.size_bytes == contents.len() as u64,
        "stat says {} bytes, wrote {}",
        stat.size_bytes,
        contents.len()
    );
    Ok(())
}

pub(crate) async fn file_text_round_trip(cx: Cx) -> Result<()> {
    round_trip(
        cx,
        "notes.txt",
        Bytes::from_static("line one\nzwei — drei ✓\n".as_bytes()),
    )
    .await
}

pub(crate) async fn file_binary_round_trip(cx: Cx) -> Result<()> {
    let bytes: Vec<u8> = (0..1024).flat_map(|_| 0..=255u8).collect();
    round_trip(cx, "binary.bin", Bytes::from(bytes)).await
}

pub(crate) async fn file_zero_length(cx: Cx) -> Result<()> {
    round_trip(cx, "empty", Bytes::new()).await
}

pub(crate) async fn file_64mib(cx: Cx) -> Result<()> {
    round_trip(cx, "large.bin", noise(64 * 1024 * 1024, 64)).await
}

pub(crate) async fn file_nested_directories(cx: Cx) -> Result<()> {
    let id = cx.sandbox().await?;
    write(&cx, &id, "a/b/c/deep.txt", "deep").await?;
    ensure!(
        read(&cx, &id, "a/b/c/deep.txt").await? == "deep",
        "nested file content changed"
    );
    let stat = cx
        .provider()
        .stat(&id, "a/b")
        .await
        .map_err(|e| anyhow::anyhow!("stat a/b: {e}"))?;
    ensure!(
        stat.kind == FileKind::Directory,
        "`a/b` is {:?}, expected a directory",
        stat.kind
    );
    let entries = cx
        .provider()
        .list_dir(&id, "a/b")
        .await
        .map_err(|e| anyhow::anyhow!("list_dir a/b: {e}"))?;
    let names: Vec<_> = entries.iter().map(|e| (e.name.as_str(), e.kind)).collect();
    ensure!(
        names == [("c", FileKind::Directory)],
        "list_dir a/b gave {names:?}"
    );
    Ok(())
}

pub(crate) async fn file_read_missing_is_not_found(cx: Cx) -> Result<()> {
    let id = cx.sandbox().await?;
    expect_file_error(
        cx.provider().read_file(&id, "no-such-file").await,
        "no-such-file",
        &[FileErrorKind::NotFound],
    )?;
    expect_file_error(
        cx.provider().read_file(&id, "no-such-dir/file").await,
        "no-such-dir/file",
        &[FileErrorKind::NotFound],
    )
}

pub(crate) async fn file_read_directory_is_a_directory(cx: Cx) -> Result<()> {
    let id = cx.sandbox().await?;
    cx.provider()
        .make_dir(&id, "a-directory")
        .await
        .map_err(|e| anyhow::anyhow!("make_dir: {e}"))?;
    expect_file_error(
        cx.provider().read_file(&id, "a-directory").await,
        "a-directory",
        &[FileErrorKind::IsADirectory],
    )
}

pub(crate) async fn file_permission_denied(cx: Cx) -> Result<()> {
    let id = cx.sandbox().await?;
    write(&cx, &id, "locked.txt", "secret").await?;
    cx.sh(&id, "chmod 000 locked.txt").await?;
    match cx.provider().read_file(&id, "locked.txt").await {
        Err(Error::FileOperation {
            kind: FileErrorKind::PermissionDenied,
            ..
        }) => Ok(()),
        Ok(_) => Err(skip(
            "file operations here run with privileges that bypass permission bits (a mode-000 file \
             was readable, as for root), so PermissionDenied cannot be provoked",
        )),
        Err(error) => bail!(
            "reading a mode-000 file: expected PermissionDenied, got {} error: {error}",
            error.kind()
        ),
    }
}

pub(crate) async fn file_overwrite_truncates(cx: Cx) -> Result<()> {
    let id = cx.sandbox().await?;
    write(&cx, &id, "overwritten.txt", vec![b'x'; 10_000]).await?;
    write(&cx, &id, "overwritten.txt", "short").await?;
    let back = read(&cx, &id, "overwritten.txt").await?;
    ensure!(
        back == "short",
        "after overwriting with 5 bytes, read {} bytes ({})",
        back.len(),
        show(&back)
    );
    Ok(())
}

pub(crate) async fn file_list_dir(cx: Cx) -> Result<()> {
    let id = cx.sandbox().await?;
    write(&cx, &id, "listing/b.txt", "bbb").await?;
    write(&cx, &id, "listing/a.txt", "a").await?;
    cx.provider()
        .make_dir(&id, "listing/sub")
        .await
        .map_err(|e| anyhow::anyhow!("make_dir: {e}"))?;
    let entries = cx
        .provider()
        .list_dir(&id, "listing")
        .await
        .map_err(|e| anyhow::anyhow!("list_dir: {e}"))?;
    let files: Vec<DirEntry> = entries
        .iter()
        .filter(|e| e.kind == FileKind::File)
        .cloned()
        .collect();
    let names: Vec<_> = entries.iter().map(|e| (e.name.as_str(), e.kind)).collect();
    ensure!(
        names
            == [
                ("a.txt", FileKind::File),
                ("b.txt", FileKind::File),
                ("sub", FileKind::Directory)
            ],
        "list_dir gave {names:?}, expected a.txt, b.txt, sub sorted by name"
    );
    let sizes: Vec<_> = files.iter().map(|e| e.size_bytes).collect();
    ensure!(sizes == [1, 3], "sizes were {sizes:?}, expected [1, 3]");
    expect_file_error(
        cx.provider().list_dir(&id, "no-such-dir").await,
        "no-such-dir",
        &[FileErrorKind::NotFound],
    )?;
    expect_file_error(
        cx.provider().list_dir(&id, "listing/a.txt").await,
        "listing/a.txt",
        &[FileErrorKind::NotADirectory],
    )
}

pub(crate) async fn file_stat(cx: Cx) -> Result<()> {
    let id = cx.sandbox().await?;
    write(&cx, &id, "stat-me.txt", "12345").await?;
    cx.sh(
        &id,
        "chmod 640 stat-me.txt && mkdir -p stat-dir && ln -s stat-me.txt stat-link",
    )
    .await?;
    let file = cx
        .provider()
        .stat(&id, "stat-me.txt")
        .await
        .map_err(|e| anyhow::anyhow!("stat file: {e}"))?;
    ensure!(
        file.kind == FileKind::File && file.size_bytes == 5,
        "file stat was {file:?}"
    );
    ensure!(
        file.mode & 0o777 == 0o640,
        "mode was {:o}, expected 640",
        file.mode & 0o777
    );
    let dir = cx
        .provider()
        .stat(&id, "stat-dir")
        .await
        .map_err(|e| anyhow::anyhow!("stat dir: {e}"))?;
    ensure!(
        dir.kind == FileKind::Directory,
        "directory stat was {dir:?}"
    );
    let link = cx
        .provider()
        .stat(&id, "stat-link")
        .await
        .map_err(|e| anyhow::anyhow!("stat link: {e}"))?;
    ensure!(
        link.kind == FileKind::Symlink,
        "stat must not follow a final symlink; got {link:?}"
    );
    expect_file_error(
        cx.provider().stat(&id, "no-such-path").await,
        "no-such-path",
        &[FileErrorKind::NotFound],
    )
}

pub(crate) async fn file_make_dir(cx: Cx) -> Result<()> {
    let id = cx.sandbox().await?;
    cx.provider()
        .make_dir(&id, "m/n/o")
        .await
        .map_err(|e| anyhow::anyhow!("make_dir m/n/o: {e}"))?;
    cx.provider()
        .make_dir(&id, "m/n/o")
        .await
        .map_err(|e| anyhow::anyhow!("make_dir of an existing directory must be Ok: {e}"))?;
    cx.sh(&id, "test -d m/n/o")
        .await
        .context("a command does not see the new directory")?;
    write(&cx, &id, "plain-file", "x").await?;
    expect_file_error(
        cx.provider().make_dir(&id, "plain-file").await,
        "plain-file",
        &[FileErrorKind::AlreadyExists, FileErrorKind::NotADirectory],
    )
}

pub(crate) async fn file_remove(cx: Cx) -> Result<()> {
    let id = cx.sandbox().await?;
    write(&cx, &id, "gone.txt", "x").await?;
    cx.provider()
        .remove(&id, "gone.txt", false)
        .await
        .map_err(|e| anyhow::anyhow!("remove file: {e}"))?;
    expect_file_error(
        cx.provider().stat(&id, "gone.txt").await,
        "gone.txt",
        &[FileErrorKind::NotFound],
    )?;
    write(&cx, &id, "tree/inner/file.txt", "x").await?;
    expect_file_error(
        cx.provider().remove(&id, "tree", false).await,
        "tree",
        &[FileErrorKind::DirectoryNotEmpty],
    )?;
    cx.provider()
        .remove(&id, "tree", true)
        .await
        .map_err(|e| anyhow::anyhow!("remove recursive: {e}"))?;
    expect_file_error(
        cx.provider().stat(&id, "tree").await,
        "tree",
        &[FileErrorKind::NotFound],
    )?;
    cx.provider()
        .make_dir(&id, "empty-dir")
        .await
        .map_err(|e| anyhow::anyhow!("make_dir: {e}"))?;
    cx.provider()
        .remove(&id, "empty-dir", false)
        .await
        .map_err(|e| anyhow::anyhow!("remove empty dir: {e}"))?;
    expect_file_error(
        cx.provider().remove(&id, "never-existed", false).await,
        "never-existed",
        &[FileErrorKind::NotFound],
    )
}

pub(crate) async fn file_shared_with_exec(cx: Cx) -> Result<()> {
    let info = cx.create(&cx.spec()).await?;
    let id = &info.id;
    write(&cx, id, "from-api.txt", "written by the API").await?;
    let seen = cx.sh(id, "cat from-api.txt").await?;
    ensure!(seen == "written by the API", "a command read {seen:?}");
    cx.sh(id, "printf 'written by a command' > from-exec.txt")
        .await?;
    ensure!(
        read(&cx, id, "from-exec.txt").await? == "written by a command",
        "relative read differs"
    );
    let absolute = join(&info.workdir, "from-exec.txt");
    ensure!(
        read(&cx, id, &absolute).await? == "written by a command",
        "the absolute path {absolute} reads differently from the relative one"
    );
    Ok(())
}

pub(crate) async fn files_unsupported(cx: Cx) -> Result<()> {
    let id = cx.sandbox().await?;
    let p = cx.provider();
    expect_unsupported(p.read_file(&id, "f").await, "read_file")?;
    expect_unsupported(
        p.write_file(&id, "f", Bytes::from_static(b"x")).await,
        "write_file",
    )?;
    expect_unsupported(p.stat(&id, "f").await, "stat")?;
    expect_unsupported(p.list_dir(&id, ".").await, "list_dir")?;
    expect_unsupported(p.make_dir(&id, "d").await, "make_dir")?;
    expect_unsupported(p.remove(&id, "f", false).await, "remove")
}

pub(crate) async fn files_after_terminate_not_found(cx: Cx) -> Result<()> {
    let id = cx.terminated_sandbox().await?;
    expect_not_found(
        cx.provider().read_file(&id, "x").await,
        "read_file on a terminated sandbox",
    )?;
    expect_not_found(
        cx.provider()
            .write_file(&id, "x", Bytes::from_static(b"x"))
            .await,
        "write_file on a terminated sandbox",
    )
}

pub(crate) async fn initial_files_from_spec(cx: Cx) -> Result<()> {
    let spec = cx.spec().file("init/hello.txt", "placed before start");
    let id = cx.create(&spec).await?.id;
    let seen = cx.sh(&id, "cat init/hello.txt").await?;
    ensure!(
        seen == "placed before start",
        "the initial file reads {seen:?}"
    );
    Ok(())
}

pub(crate) async fn initial_files_unsupported(cx: Cx) -> Result<()> {
    let spec = cx.spec().file("init/hello.txt", "x");
    expect_unsupported(
        cx.provider().create(&spec).await,
        "a spec with initial files",
    )
}

fn archive(entries: &[(&str, &[u8])], dirs: &[&str]) -> Result<Bytes> {
    let mut builder = tar::Builder::new(Vec::new());
    for dir in dirs {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(0o755);
        header.set_size(0);
        builder.append_data(&mut header, dir, std::io::empty())?;
    }
    for (path, contents) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o644);
        header.set_size(contents.len() as u64);
        builder.append_data(&mut header, path, *contents)?;
    }
    Ok(Bytes::from(builder.into_inner()?))
}

pub(crate) async fn batch_archive_round_trip(cx: Cx) -> Result<()> {
    let id = cx.sandbox().await?;
    let binary: Vec<u8> = (0..=255u8).collect();
    let tar = archive(
        &[("tree/a.txt", b"alpha"), ("tree/sub/b.bin", &binary)],
        &["tree/", "tree/sub/", "tree/empty/"],
    )?;
    cx.provider()
        .upload_archive(&id, "upload", tar)
        .await
        .map_err(|e| anyhow::anyhow!("upload_archive: {e}"))?;
    let seen = cx
        .sh(&id, "cat upload/tree/a.txt && test -d upload/tree/empty")
        .await?;
    ensure!(
        seen == "alpha",
        "after upload, upload/tree/a.txt reads {seen:?}"
    );
    let downloaded = cx
        .provider()
        .download_archive(&id, "upload/tree")
        .await
        .map_err(|e| anyhow::anyhow!("download_archive: {e}"))?;
    let mut found = std::collections::BTreeMap::new();
    let mut reader = tar::Archive::new(downloaded.as_ref());
    for entry in reader.entries().context("reading the downloaded archive")? {
        let mut entry = entry.context("reading an entry of the downloaded archive")?;
        let path = entry
            .path()?
            .to_string_lossy()
            .trim_end_matches('/')
            .to_owned();
        let mut contents = Vec::new();
        entry.read_to_end(&mut contents)?;
        found.insert(path, contents);
    }
    // Entries may or may not carry the directory's own name as a prefix.
    let find = |relative: &str| {
        found
            .iter()
            .find(|(path, _)| *path == relative || path.ends_with(&format!("/{relative}")))
            .map(|(_, contents)| contents.clone())
    };
    ensure!(
        find("a.txt").as_deref() == Some(&b"alpha"[..]),
        "download lacks a.txt: {:?}",
        found.keys()
    );
    ensure!(
        find("sub/b.bin").as_deref() == Some(&binary[..]),
        "download lacks sub/b.bin: {:?}",
        found.keys()
    );
    ensure!(
        find("empty").is_some(),
        "download lacks the empty directory: {:?}",
        found.keys()
    );
    Ok(())
}

pub(crate) async fn batch_transfer_unsupported(cx: Cx) -> Result<()> {
    let id = cx.sandbox().await?;
    let tar = archive(&[("a.txt", b"a")], &[])?;
    expect_unsupported(
        cx.provider().upload_archive(&id, "up", tar).await,
        "upload_archive",
    )?;
    expect_unsupported(
        cx.provider().download_archive(&id, ".").await,
        "download_archive",
    )
}
