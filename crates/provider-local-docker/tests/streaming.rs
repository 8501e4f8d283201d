//! Streamed files and archives on the Docker Engine (`read_file_stream`,
//! `write_file_stream`, `download_archive_stream`, `upload_archive_stream`), through the
//! standard layers. Needs the engine `scripts/docker-engine.sh` starts.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use sandkit_core::layers::{self, LayerOptions};
use sandkit_core::{
    ByteStream, Error, ExecRequest, FileErrorKind, SandboxId, SandboxProvider, SandboxProviderExt,
    SandboxSpec,
};
use sandkit_provider_local_docker::{LocalDockerConfig, LocalDockerProvider};

const TEST_IMAGE: &str = "sandkit-test-busybox:latest";
const SIZE: u64 = 64 << 20;
/// Odd on purpose: chunks never line up with tar blocks.
const CHUNK: usize = (1 << 20) - 7;

async fn provider() -> Arc<dyn SandboxProvider> {
    let bare = LocalDockerProvider::connect(LocalDockerConfig::default())
        .await
        .unwrap_or_else(|e| panic!("no Docker Engine ({e}); run scripts/docker-engine.sh"));
    layers::standard(Arc::new(bare), LayerOptions::default())
}

/// Terminates the sandbox when the test ends, whatever happened.
struct Guard(Arc<dyn SandboxProvider>, SandboxId);

impl Drop for Guard {
    fn drop(&mut self) {
        let provider = Arc::clone(&self.0);
        let id = self.1.clone();
        let _ = std::thread::spawn(move || {
            tokio::runtime::Runtime::new()
                .expect("runtime")
                .block_on(async { provider.terminate(&id).await })
        })
        .join();
    }
}

async fn sandbox(provider: &Arc<dyn SandboxProvider>) -> (SandboxId, Guard) {
    let spec = SandboxSpec::new()
        .image(TEST_IMAGE)
        .lifetime_secs(300)
        .tag("suite", "local-docker-streaming");
    let info = provider.create(&spec).await.expect("create");
    (info.id.clone(), Guard(Arc::clone(provider), info.id))
}

/// 64-bit FNV-1a, fed chunk by chunk.
#[derive(Clone, Copy)]
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }

    fn update(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// `SIZE` pseudo-random bytes in `CHUNK`-sized pieces, made as they are asked for, and
/// the hash of all of them.
fn contents() -> (ByteStream, u64) {
    let mut hash = Fnv::new();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next_chunk = move |len: usize| {
        let mut chunk = Vec::with_capacity(len);
        while chunk.len() < len {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.extend_from_slice(&state.to_le_bytes()[..(len - chunk.len()).min(8)]);
        }
        chunk
    };
    let mut chunks = Vec::new();
    let mut left = SIZE as usize;
    while left > 0 {
        let chunk = next_chunk(left.min(CHUNK));
        hash.update(&chunk);
        left -= chunk.len();
        chunks.push(Bytes::from(chunk));
    }
    let stream = futures::stream::iter(chunks.into_iter().map(Ok));
    (Box::pin(stream), hash.0)
}

#[tokio::test]
async fn a_64_mib_file_streams_in_and_out_intact() {
    let provider = provider().await;
    let (id, _guard) = sandbox(&provider).await;
    let (stream, expected) = contents();
    provider
        .write_file_stream(&id, "deep/er/big.bin", stream)
        .await
        .expect("write_file_stream");
    let stat = provider.stat(&id, "deep/er/big.bin").await.expect("stat");
    assert_eq!(stat.size_bytes, SIZE);
    let size = provider
        .run(&id, ExecRequest::new(["wc", "-c", "deep/er/big.bin"]))
        .await
        .expect("wc");
    assert!(size.stdout_lossy().contains(&SIZE.to_string()), "{size:?}");

    let mut stream = provider
        .read_file_stream(&id, "deep/er/big.bin")
        .await
        .expect("read_file_stream");
    let (mut hash, mut total, mut largest) = (Fnv::new(), 0u64, 0usize);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.expect("chunk");
        largest = largest.max(chunk.len());
        total += chunk.len() as u64;
        hash.update(&chunk);
    }
    assert_eq!(total, SIZE);
    assert_eq!(hash.0, expected, "the contents changed on the way");
    assert!(largest <= 16 << 20, "a chunk of {largest} bytes");
}

#[tokio::test]
async fn reading_a_missing_path_or_a_directory_fails_before_any_chunk() {
    let provider = provider().await;
    let (id, _guard) = sandbox(&provider).await;
    provider.make_dir(&id, "a-dir").await.expect("make_dir");
    for (path, kind) in [
        ("missing.bin", FileErrorKind::NotFound),
        ("a-dir", FileErrorKind::IsADirectory),
        ("/", FileErrorKind::IsADirectory),
    ] {
        match provider.read_file_stream(&id, path).await {
            Err(Error::FileOperation {
                path: shown,
                kind: got,
            }) => {
                assert_eq!(shown, path);
                assert_eq!(got, kind, "{path}");
            }
            Err(other) => panic!("{path}: expected a file error, got {other:?}"),
            Ok(_) => panic!("{path}: a stream came back instead of an error"),
        }
    }
    // A symlink to a file reads as the file; to a directory, as a directory.
    provider
        .write_file(&id, "target.txt", Bytes::from_static(b"through the link"))
        .await
        .expect("write_file");
    let linked = provider
        .run(
            &id,
            ExecRequest::new(["sh", "-c", "ln -s target.txt link && ln -s a-dir dirlink"]),
        )
        .await
        .expect("ln");
    assert!(linked.status.success(), "{linked:?}");
    let mut stream = provider
        .read_file_stream(&id, "link")
        .await
        .expect("read through a link");
    let mut read = Vec::new();
    while let Some(chunk) = stream.next().await {
        read.extend_from_slice(&chunk.expect("chunk"));
    }
    assert_eq!(read, b"through the link");
    assert!(matches!(
        provider.read_file_stream(&id, "dirlink").await,
        Err(Error::FileOperation {
            kind: FileErrorKind::IsADirectory,
            ..
        })
    ));
}

#[tokio::test]
async fn a_failing_source_stream_is_the_error_and_writes_nothing() {
    let provider = provider().await;
    let (id, _guard) = sandbox(&provider).await;
    let failing: ByteStream = Box::pin(futures::stream::iter(vec![
        Ok(Bytes::from(vec![1u8; 12 << 20])),
        Err(Error::Unavailable {
            message: "the source was cut".to_owned(),
        }),
    ]));
    let result = provider.write_file_stream(&id, "cut.bin", failing).await;
    assert!(
        matches!(result, Err(Error::Unavailable { .. })),
        "{result:?}"
    );
    assert!(matches!(
        provider.stat(&id, "cut.bin").await,
        Err(Error::FileOperation {
            kind: FileErrorKind::NotFound,
            ..
        })
    ));
}

#[tokio::test]
async fn archives_stream_both_ways_and_bad_ids_are_not_found() {
    let provider = provider().await;
    let (id, _guard) = sandbox(&provider).await;
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data) in [("a.txt", &b"alpha"[..]), ("sub/b.txt", &b"beta"[..])] {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        builder.append_data(&mut header, name, data).unwrap();
    }
    let archive = Bytes::from(builder.into_inner().unwrap());
    // Sent in small pieces.
    let pieces: Vec<_> = archive
        .chunks(100)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    provider
        .upload_archive_stream(&id, "unpacked", Box::pin(futures::stream::iter(pieces)))
        .await
        .expect("upload_archive_stream");
    assert_eq!(
        provider
            .read_file(&id, "unpacked/sub/b.txt")
            .await
            .expect("read"),
        "beta"
    );
    let mut stream = provider
        .download_archive_stream(&id, "unpacked")
        .await
        .expect("download_archive_stream");
    let mut downloaded = Vec::new();
    while let Some(chunk) = stream.next().await {
        downloaded.extend_from_slice(&chunk.expect("chunk"));
    }
    let mut names: Vec<String> = tar::Archive::new(&downloaded[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "unpacked/",
            "unpacked/a.txt",
            "unpacked/sub/",
            "unpacked/sub/b.txt"
        ]
    );
    assert!(matches!(
        provider.download_archive_stream(&id, "nope").await,
        Err(Error::FileOperation {
            kind: FileErrorKind::NotFound,
            ..
        })
    ));

    let alias = SandboxId(format!("{id}/../{id}"));
    assert!(matches!(
        provider.read_file_stream(&alias, "unpacked/a.txt").await,
        Err(Error::NotFound { .. })
    ));
    let empty: ByteStream = Box::pin(futures::stream::empty());
    assert!(matches!(
        provider.write_file_stream(&alias, "x", empty).await,
        Err(Error::NotFound { .. })
    ));
}
