//! Streaming files through fs-tools against the in-process server (`support`): a 64 MiB
//! file read and written in chunks, never whole; path errors before the first chunk; a
//! failure after data as an `Err` at the end; broken stdin streams resumed at the
//! server's count; a failing input abandons the write.

mod support;

use bytes::Bytes;
use futures::StreamExt;
use sandkit_core::{ByteStream, Error, FileErrorKind, SandboxProvider};
use sandkit_provider_modal::kill_argv;

use support::{BIG_BYTES, FLAKY_BYTES, Fnv, State, StdinRecord, big, id, serve};

/// Most a stdin message may carry.
const STDIN_CHUNK_BYTES: usize = 256 * 1024;

/// Chunk lengths of a stream and the hash of its bytes; `Err` items are returned apart.
async fn drain(mut stream: ByteStream) -> (Vec<usize>, Fnv, Vec<Error>) {
    let (mut lengths, mut hash, mut errors) = (Vec::new(), Fnv::default(), Vec::new());
    while let Some(item) = stream.next().await {
        match item {
            Ok(chunk) => {
                assert!(errors.is_empty(), "data after an error");
                lengths.push(chunk.len());
                hash.update(&chunk);
            }
            Err(error) => errors.push(error),
        }
    }
    (lengths, hash, errors)
}

/// `/big` as a caller's stream of 1 MiB pieces, made as they are taken.
fn big_source(bytes: usize) -> ByteStream {
    Box::pin(
        futures::stream::iter((0..bytes).step_by(1 << 20)).map(move |start| {
            Ok(Bytes::copy_from_slice(
                &big()[start..(start + (1 << 20)).min(bytes)],
            ))
        }),
    )
}

fn write_record(state: &State) -> (&String, &StdinRecord) {
    state
        .stdin
        .iter()
        .next()
        .expect("a stdin stream was opened")
}

#[tokio::test]
async fn a_large_read_streams_in_chunks_and_resumes_a_cut_stream() {
    let (provider, fake) = serve(State {
        stdio_chunk: Some(64 * 1024),
        cut_after: Some(10 << 20),
        ..Default::default()
    })
    .await;
    let stream = provider.read_file_stream(&id(), "/big").await.unwrap();
    let (lengths, hash, errors) = drain(stream).await;
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(lengths.iter().sum::<usize>(), BIG_BYTES);
    assert_eq!(hash, Fnv::of(big()));
    assert!(lengths.len() > 1, "one chunk");
    let largest = *lengths.iter().max().unwrap();
    assert!(largest < BIG_BYTES, "a chunk is the whole file");
    eprintln!(
        "read: {} chunks, largest {largest} bytes, smallest {}",
        lengths.len(),
        lengths.iter().min().unwrap()
    );
    let offsets = fake.state.lock().unwrap().stdio_offsets.clone();
    assert!(offsets.contains(&(10 << 20)), "{offsets:?}");
}

#[tokio::test]
async fn a_missing_path_fails_before_any_chunk() {
    let (provider, _fake) = serve(State::default()).await;
    match provider.read_file_stream(&id(), "/missing").await {
        Err(Error::FileOperation { path, kind }) => {
            assert_eq!(path, "/missing");
            assert_eq!(kind, FileErrorKind::NotFound);
        }
        Err(other) => panic!("expected a NotFound file error, got {other:?}"),
        Ok(_) => panic!("expected a NotFound file error, got a stream"),
    }
    // A path that exists streams.
    let (lengths, _, errors) =
        drain(provider.read_file_stream(&id(), "/hello").await.unwrap()).await;
    assert_eq!((lengths, errors.len()), (vec![2], 0));
}

#[tokio::test]
async fn a_failure_after_data_ends_the_stream_with_an_error() {
    let (provider, _fake) = serve(State {
        stdio_chunk: Some(64 * 1024),
        ..Default::default()
    })
    .await;
    let stream = provider.read_file_stream(&id(), "/flaky").await.unwrap();
    let (lengths, hash, errors) = drain(stream).await;
    assert_eq!(lengths.iter().sum::<usize>(), FLAKY_BYTES);
    assert_eq!(hash, Fnv::of(&big()[..FLAKY_BYTES]));
    match errors.as_slice() {
        [Error::FileOperation { path, kind }] => {
            assert_eq!(path, "/flaky");
            assert!(matches!(kind, FileErrorKind::Other(_)), "{kind:?}");
        }
        other => panic!("expected one file error at the end, got {other:?}"),
    }
    // The whole-buffer read fails too, never a short file.
    assert!(matches!(
        provider.read_file(&id(), "/flaky").await,
        Err(Error::FileOperation { .. })
    ));
}

#[tokio::test]
async fn a_large_write_streams_stdin_in_bounded_chunks() {
    let (provider, fake) = serve(State::default()).await;
    provider
        .write_file_stream(&id(), "/upload", big_source(BIG_BYTES))
        .await
        .unwrap();
    let state = fake.state.lock().unwrap();
    let (_, record) = write_record(&state);
    assert!(record.closed, "no end");
    assert_eq!(record.starts, [0]);
    assert_eq!(record.bytes, BIG_BYTES as u64);
    assert_eq!(record.hash, Fnv::of(big()));
    assert!(record.chunks.len() > 1, "one chunk");
    let largest = *record.chunks.iter().max().unwrap();
    assert!(largest <= STDIN_CHUNK_BYTES, "a chunk of {largest} bytes");
    eprintln!(
        "write: {} chunks, largest {largest} bytes",
        record.chunks.len()
    );
}

#[tokio::test]
async fn a_broken_stdin_stream_resumes_at_the_servers_count() {
    let cut = (3 << 20) + 12_345;
    let (provider, fake) = serve(State {
        stdin_cut_after: Some(cut),
        ..Default::default()
    })
    .await;
    let bytes = 8 << 20;
    provider
        .write_file_stream(&id(), "/upload", big_source(bytes))
        .await
        .unwrap();
    {
        let state = fake.state.lock().unwrap();
        let (_, record) = write_record(&state);
        assert_eq!(record.starts, [0, cut]);
        assert!(record.closed);
        assert_eq!(record.hash, Fnv::of(&big()[..bytes]));
    }

    // The whole-buffer write goes the same way.
    let (provider, fake) = serve(State {
        stdin_cut_after: Some(cut),
        ..Default::default()
    })
    .await;
    let contents = Bytes::from_static(&big()[..bytes]);
    provider
        .write_file(&id(), "/upload", contents)
        .await
        .unwrap();
    let state = fake.state.lock().unwrap();
    let (_, record) = write_record(&state);
    assert_eq!(record.starts, [0, cut]);
    assert_eq!(record.hash, Fnv::of(&big()[..bytes]));
}

#[tokio::test]
async fn a_helper_that_fails_at_once_reports_its_error() {
    let (provider, _fake) = serve(State::default()).await;
    match provider
        .write_file_stream(&id(), "/dir", big_source(BIG_BYTES))
        .await
    {
        Err(Error::FileOperation { path, kind }) => {
            assert_eq!(path, "/dir");
            assert_eq!(kind, FileErrorKind::IsADirectory);
        }
        other => panic!("expected IsADirectory, got {other:?}"),
    }
}

#[tokio::test]
async fn a_failing_input_abandons_the_write_and_stops_the_helper() {
    let (provider, fake) = serve(State::default()).await;
    let input: ByteStream = Box::pin(big_source(2 << 20).chain(futures::stream::once(async {
        Err(Error::provider("test", "the source broke"))
    })));
    let error = provider
        .write_file_stream(&id(), "/upload", input)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("the source broke"), "{error}");
    let state = fake.state.lock().unwrap();
    let (exec_id, record) = write_record(&state);
    assert!(!record.closed, "a broken input must not close stdin");
    assert_eq!(record.bytes, 2 << 20);
    assert!(
        state.execs.values().any(|argv| *argv == kill_argv(exec_id)),
        "the helper was not stopped"
    );
}
