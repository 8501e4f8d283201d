use super::*;

/// A sandbox whose root is a fresh directory, named `/` (container paths) or by its host
/// path (plain processes).
fn sandbox(container: bool) -> (tempfile::TempDir, SandboxFs, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap().join("root");
    std::fs::create_dir_all(root.join("work")).unwrap();
    let fd = rustix::fs::open(
        &root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .unwrap();
    let (seen, workdir) = if container {
        (PathBuf::from("/"), PathBuf::from("/work"))
    } else {
        (root.clone(), root.join("work"))
    };
    (dir, SandboxFs::new(fd, seen, workdir), root)
}

fn kind(result: Result<impl std::fmt::Debug>) -> FileErrorKind {
    match result {
        Err(Error::FileOperation { kind, .. }) => kind,
        other => panic!("expected a file error, got {other:?}"),
    }
}

#[test]
fn relative_paths_resolve_against_the_workdir() {
    let (_dir, fs, _) = sandbox(true);
    assert_eq!(fs.relative("a/b").unwrap(), Path::new("work/a/b"));
    assert_eq!(fs.relative("../x").unwrap(), Path::new("x"));
    assert_eq!(fs.relative("./a/./b/..").unwrap(), Path::new("work/a"));
    assert_eq!(fs.relative("/tmp/x").unwrap(), Path::new("tmp/x"));
}

#[test]
fn dot_dot_stays_at_a_container_root_and_is_refused_without_one() {
    let (_dir, container, _) = sandbox(true);
    assert_eq!(container.relative("/../../etc").unwrap(), Path::new("etc"));
    let (_dir, plain, root) = sandbox(false);
    assert_eq!(
        kind(plain.relative("../../x")),
        FileErrorKind::OutsideSandbox
    );
    assert_eq!(
        kind(plain.relative("/etc/passwd")),
        FileErrorKind::OutsideSandbox
    );
    let sneaky = format!("{}/../root/x", root.display());
    assert_eq!(kind(plain.relative(&sneaky)), FileErrorKind::OutsideSandbox);
}

#[test]
fn nul_bytes_and_overlong_paths_are_typed_errors() {
    let (_dir, fs, _) = sandbox(true);
    assert!(matches!(kind(fs.read("a\0b")), FileErrorKind::Other(_)));
    assert!(matches!(
        kind(fs.write(&"a/".repeat(3000), b"x")),
        FileErrorKind::Other(_)
    ));
}

#[test]
fn symlinks_resolve_inside_the_root() {
    let (_dir, fs, root) = sandbox(true);
    std::os::unix::fs::symlink("/etc", root.join("work/etc")).unwrap();
    std::os::unix::fs::symlink("../../../../..", root.join("work/up")).unwrap();
    // `/etc` is the sandbox's own, which does not exist: the host's is never reached.
    assert_eq!(kind(fs.read("etc/passwd")), FileErrorKind::NotFound);
    fs.write("up/escaped", b"inside").unwrap();
    assert_eq!(std::fs::read(root.join("escaped")).unwrap(), b"inside");
    assert_eq!(fs.stat("etc").unwrap().kind, FileKind::Symlink);
    fs.remove("etc", false).unwrap();
    assert!(Path::new("/etc/passwd").exists());
}

#[test]
fn fifos_and_kernel_files_are_refused_at_once() {
    let (_dir, fs, root) = sandbox(true);
    rustix::fs::mknodat(
        rustix::fs::CWD,
        root.join("work/fifo"),
        FileType::Fifo,
        Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    assert!(matches!(kind(fs.read("fifo")), FileErrorKind::Other(_)));
    assert!(matches!(
        kind(fs.pack_archive("fifo")),
        FileErrorKind::Other(_)
    ));
    assert!(kind(fs.write("fifo", b"x")) != FileErrorKind::NotFound);
    std::os::unix::fs::symlink("/proc/self/status", root.join("work/status")).unwrap();
    // Resolved inside the root: there is no /proc there.
    assert_eq!(kind(fs.read("status")), FileErrorKind::NotFound);
}

#[test]
fn archives_round_trip_and_refuse_escapes() {
    let (_dir, fs, root) = sandbox(true);
    fs.write("tree/a.txt", b"a").unwrap();
    fs.write("tree/sub/b.bin", &[0xff, 0x00]).unwrap();
    std::os::unix::fs::symlink("/", root.join("work/tree/to-root")).unwrap();
    let archive = fs.pack_archive("tree").unwrap();
    fs.unpack_archive("copy", &archive[..], Trust::Upload)
        .unwrap();
    assert_eq!(fs.read("copy/tree/sub/b.bin").unwrap(), &[0xff, 0x00][..]);
    assert_eq!(
        fs.stat("copy/tree/to-root").unwrap().kind,
        FileKind::Symlink
    );

    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(1);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    // `append_data` refuses `..`, so write the name into the header by hand.
    header.as_gnu_mut().unwrap().name[..7].copy_from_slice(b"../evil");
    header.set_cksum();
    builder.append(&header, &b"x"[..]).unwrap();
    let evil = builder.into_inner().unwrap();
    assert_eq!(
        kind(fs.unpack_archive("copy", &evil[..], Trust::Upload)),
        FileErrorKind::OutsideSandbox
    );
    assert!(!root.join("work/evil").exists());
}

#[test]
fn an_archive_writing_through_its_own_symlink_stays_inside() {
    let (dir, fs, root) = sandbox(true);
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let mut builder = tar::Builder::new(Vec::new());
    let mut link = tar::Header::new_gnu();
    link.set_entry_type(tar::EntryType::Symlink);
    link.set_size(0);
    builder.append_link(&mut link, "l", &outside).unwrap();
    let mut body = tar::Header::new_gnu();
    body.set_size(3);
    body.set_mode(0o644);
    body.set_entry_type(tar::EntryType::Regular);
    builder
        .append_data(&mut body, "l/pwned", &b"bad"[..])
        .unwrap();
    let archive = builder.into_inner().unwrap();
    // The symlink's target, taken inside the root, does not exist: refused.
    assert_eq!(
        kind(fs.unpack_archive("up", &archive[..], Trust::Upload)),
        FileErrorKind::NotFound
    );
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    // Once it exists inside, the write lands there.
    let inside = root.join(outside.strip_prefix("/").unwrap());
    std::fs::create_dir_all(&inside).unwrap();
    fs.unpack_archive("up", &archive[..], Trust::Upload)
        .unwrap();
    assert_eq!(std::fs::read(inside.join("pwned")).unwrap(), b"bad");
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
}
