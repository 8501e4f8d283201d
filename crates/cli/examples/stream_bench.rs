//! Streams a large file into and out of a sandbox through the provider stream API
//! (`write_file_stream`, `read_file_stream`) on each provider, measuring throughput and the
//! peak resident memory of the process doing the copy, next to `docker cp` of the same file
//! into and out of a container of the same run.
//!
//! Each copy runs in a child process of its own (this program again, with `--child`), so
//! its peak RSS (`VmHWM` of `/proc/self/status`) is the copy's alone. The sandbox is created
//! by the parent and found by the child by id.
//!
//! ```sh
//! scripts/docker-engine.sh
//! cargo run --release -p sandkit-cli --example stream_bench -- --size-mib 1024
//! ```
//!
//! Targets: under 64 MiB peak RSS on every provider; on local-docker, at least 0.9x the
//! throughput of `docker cp`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use futures::StreamExt;
use sandkit::{ByteStream, SandboxId, SandboxProvider, SandboxSpec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The image local-docker sandboxes start from (built by `scripts/docker-engine.sh`).
const DOCKER_IMAGE: &str = "sandkit-test-busybox:latest";
/// Chunk size of the local side of every copy.
const CHUNK: usize = 256 << 10;
/// The file inside the sandbox (relative to its working directory).
const REMOTE: &str = "stream-bench.bin";
const RSS_TARGET_MIB: f64 = 64.0;
const THROUGHPUT_TARGET: f64 = 0.9;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

struct Options {
    size_mib: u64,
    providers: Vec<String>,
    runs: usize,
    dir: PathBuf,
}

fn parse_options() -> Result<Options, BoxError> {
    let mut options = Options {
        size_mib: 1024,
        providers: vec!["local-docker".to_owned(), "local-process".to_owned()],
        runs: 2,
        dir: std::env::temp_dir(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--size-mib" => options.size_mib = value()?.parse()?,
            "--providers" => options.providers = value()?.split(',').map(str::to_owned).collect(),
            "--runs" => options.runs = value()?.parse::<usize>()?.max(1),
            "--dir" => options.dir = PathBuf::from(value()?),
            "--help" | "-h" => {
                println!(
                    "stream_bench [--size-mib N (1024)] [--providers a,b (local-docker,local-process)] \
                     [--runs N (2, best kept)] [--dir DIR (temp dir, for the local files)]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument `{other}`").into()),
        }
    }
    Ok(options)
}

/// This process's peak resident memory, in KiB.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0)
}

/// What one copy measured.
#[derive(Debug, Clone, Copy)]
struct Measured {
    secs: f64,
    peak_rss_mib: Option<f64>,
}

// ---------------------------------------------------------------------------------------
// The child: one copy through the provider stream API.
// ---------------------------------------------------------------------------------------

/// `--child PROVIDER in|out ID LOCAL`: prints `secs peak_rss_kib bytes`.
async fn child(args: &[String]) -> Result<(), BoxError> {
    let [provider_name, direction, id, local] = args else {
        return Err("--child PROVIDER in|out ID LOCAL".into());
    };
    let provider = open(provider_name).await?;
    let id = SandboxId::from(id.as_str());
    let local = Path::new(local);
    let started = Instant::now();
    let bytes = match direction.as_str() {
        "in" => copy_in(&provider, &id, local).await?,
        "out" => copy_out(&provider, &id, local).await?,
        other => return Err(format!("direction `{other}`").into()),
    };
    let secs = started.elapsed().as_secs_f64();
    println!("{secs} {} {bytes}", peak_rss_kib());
    Ok(())
}

async fn open(name: &str) -> Result<Arc<dyn SandboxProvider>, BoxError> {
    Ok(sandkit::open(name).await?)
}

/// A local file as a stream of `CHUNK`-sized pieces.
fn file_stream(file: tokio::fs::File) -> ByteStream {
    Box::pin(futures::stream::try_unfold(file, |mut file| async move {
        let mut chunk = BytesMut::with_capacity(CHUNK);
        while chunk.len() < CHUNK {
            let read =
                file.read_buf(&mut chunk)
                    .await
                    .map_err(|e| sandkit::Error::Unavailable {
                        message: format!("reading the local file: {e}"),
                    })?;
            if read == 0 {
                break;
            }
        }
        Ok((!chunk.is_empty()).then(|| (chunk.freeze(), file)))
    }))
}

async fn copy_in(
    provider: &Arc<dyn SandboxProvider>,
    id: &SandboxId,
    local: &Path,
) -> Result<u64, BoxError> {
    let file = tokio::fs::File::open(local).await?;
    let size = file.metadata().await?.len();
    provider
        .write_file_stream(id, REMOTE, file_stream(file))
        .await?;
    Ok(size)
}

async fn copy_out(
    provider: &Arc<dyn SandboxProvider>,
    id: &SandboxId,
    local: &Path,
) -> Result<u64, BoxError> {
    let mut stream = provider.read_file_stream(id, REMOTE).await?;
    let file = tokio::fs::File::create(local).await?;
    let mut writer = tokio::io::BufWriter::with_capacity(CHUNK, file);
    let mut bytes = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        writer.write_all(&chunk).await?;
        bytes += chunk.len() as u64;
    }
    writer.shutdown().await?;
    Ok(bytes)
}

// ---------------------------------------------------------------------------------------
// The parent: sandboxes, children, docker cp, the table.
// ---------------------------------------------------------------------------------------

/// Runs one child copy and reads what it measured.
fn run_child(
    provider: &str,
    direction: &str,
    id: &SandboxId,
    local: &Path,
) -> Result<Measured, BoxError> {
    let output = Command::new(std::env::current_exe()?)
        .arg("--child")
        .args([provider, direction, id.as_str()])
        .arg(local)
        .output()?;
    if !output.status.success() {
        return Err(format!(
            "{provider} copy {direction} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )
        .into());
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let fields: Vec<&str> = text.split_whitespace().collect();
    let [secs, rss_kib, _bytes] = fields[..] else {
        return Err(format!("unexpected child output: {text}").into());
    };
    Ok(Measured {
        secs: secs.parse()?,
        peak_rss_mib: Some(rss_kib.parse::<f64>()? / 1024.0),
    })
}

/// `docker cp FROM TO`, timed.
fn docker_cp(from: &str, to: &str) -> Result<Measured, BoxError> {
    let started = Instant::now();
    let output = Command::new("docker").args(["cp", from, to]).output()?;
    if !output.status.success() {
        return Err(format!(
            "docker cp {from} {to}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )
        .into());
    }
    Ok(Measured {
        secs: started.elapsed().as_secs_f64(),
        peak_rss_mib: None,
    })
}

/// Writes `size` bytes of a non-repeating pattern (not sparse, not all zeros).
fn make_source(path: &Path, size: u64) -> Result<(), BoxError> {
    use std::io::Write;
    let mut file = std::io::BufWriter::with_capacity(CHUNK, std::fs::File::create(path)?);
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut block = vec![0u8; CHUNK];
    let mut left = size;
    while left > 0 {
        for word in block.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes()[..word.len()]);
        }
        let n = left.min(CHUNK as u64) as usize;
        file.write_all(&block[..n])?;
        left -= n as u64;
    }
    file.flush()?;
    Ok(())
}

/// Whether two files have the same contents.
fn same_contents(a: &Path, b: &Path) -> Result<bool, BoxError> {
    use std::io::Read;
    let (mut a, mut b) = (std::fs::File::open(a)?, std::fs::File::open(b)?);
    if a.metadata()?.len() != b.metadata()?.len() {
        return Ok(false);
    }
    let (mut x, mut y) = (vec![0u8; CHUNK], vec![0u8; CHUNK]);
    loop {
        let n = a.read(&mut x)?;
        if n == 0 {
            return Ok(true);
        }
        b.read_exact(&mut y[..n])?;
        if x[..n] != y[..n] {
            return Ok(false);
        }
    }
}

/// The best (fastest) of `runs` measurements.
fn best(
    runs: usize,
    mut once: impl FnMut() -> Result<Measured, BoxError>,
) -> Result<Measured, BoxError> {
    let mut kept: Option<Measured> = None;
    for _ in 0..runs {
        let measured = once()?;
        let peak = match (kept.and_then(|k| k.peak_rss_mib), measured.peak_rss_mib) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        kept = Some(match kept {
            Some(k) if k.secs <= measured.secs => Measured {
                peak_rss_mib: peak,
                ..k
            },
            _ => Measured {
                peak_rss_mib: peak,
                ..measured
            },
        });
    }
    Ok(kept.expect("at least one run"))
}

struct Row {
    provider: String,
    direction: &'static str,
    ours: Measured,
    docker: Measured,
}

async fn parent(options: Options) -> Result<(), BoxError> {
    let size = options.size_mib << 20;
    let mib = options.size_mib as f64;
    let source = options
        .dir
        .join(format!("sandkit-stream-bench-{}.src", std::process::id()));
    let back = options
        .dir
        .join(format!("sandkit-stream-bench-{}.out", std::process::id()));
    eprintln!(
        "making a {} MiB source file at {}",
        options.size_mib,
        source.display()
    );
    make_source(&source, size)?;

    // The docker cp baseline, in and out, through one container of the same image.
    let docker_provider = open("local-docker").await?;
    let baseline_spec = SandboxSpec::new()
        .image(DOCKER_IMAGE)
        .lifetime_secs(3600)
        .build()?;
    let baseline = docker_provider.create(&baseline_spec).await?;
    let container = baseline.id.as_str().to_owned();
    let measured = (|| -> Result<(Measured, Measured), BoxError> {
        let cp_in = best(options.runs, || {
            docker_cp(
                &source.to_string_lossy(),
                &format!("{container}:/docker-cp.bin"),
            )
        })?;
        let cp_out = best(options.runs, || {
            let _ = std::fs::remove_file(&back);
            docker_cp(
                &format!("{container}:/docker-cp.bin"),
                &back.to_string_lossy(),
            )
        })?;
        Ok((cp_in, cp_out))
    })();
    let _ = docker_provider.terminate(&baseline.id).await;
    let (cp_in, cp_out) = measured?;
    if !same_contents(&source, &back)? {
        return Err("docker cp gave back different contents".into());
    }

    let mut rows = Vec::new();
    for name in &options.providers {
        let provider = open(name).await?;
        let mut spec = SandboxSpec::new().lifetime_secs(3600);
        if name == "local-docker" {
            spec = spec.image(DOCKER_IMAGE);
        }
        let info = provider.create(&spec.build()?).await?;
        eprintln!("{name}: sandbox {}", info.id);
        let result = (|| -> Result<(Measured, Measured), BoxError> {
            let ours_in = best(options.runs, || run_child(name, "in", &info.id, &source))?;
            let ours_out = best(options.runs, || {
                let _ = std::fs::remove_file(&back);
                run_child(name, "out", &info.id, &back)
            })?;
            if !same_contents(&source, &back)? {
                return Err(format!("{name} gave back different contents").into());
            }
            Ok((ours_in, ours_out))
        })();
        let _ = provider.terminate(&info.id).await;
        let (ours_in, ours_out) = result?;
        rows.push(Row {
            provider: name.clone(),
            direction: "in",
            ours: ours_in,
            docker: cp_in,
        });
        rows.push(Row {
            provider: name.clone(),
            direction: "out",
            ours: ours_out,
            docker: cp_out,
        });
    }
    let _ = std::fs::remove_file(&source);
    let _ = std::fs::remove_file(&back);

    println!(
        "\n{} MiB per copy, best of {} run(s); peak RSS of the copying process (target < {RSS_TARGET_MIB} MiB); \
         throughput against `docker cp` of the same file (target >= {THROUGHPUT_TARGET}x on local-docker)\n",
        options.size_mib, options.runs
    );
    println!(
        "| provider | direction | stream API s | stream API MiB/s | peak RSS MiB | docker cp s | docker cp MiB/s | ratio |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    let mut misses = Vec::new();
    for row in &rows {
        let ratio = row.docker.secs / row.ours.secs;
        let rss = row.ours.peak_rss_mib.unwrap_or(f64::NAN);
        println!(
            "| {} | {} | {:.2} | {:.0} | {:.1} | {:.2} | {:.0} | {:.2}x |",
            row.provider,
            row.direction,
            row.ours.secs,
            mib / row.ours.secs,
            rss,
            row.docker.secs,
            mib / row.docker.secs,
            ratio
        );
        if rss >= RSS_TARGET_MIB {
            misses.push(format!(
                "{} {}: peak RSS {rss:.1} MiB",
                row.provider, row.direction
            ));
        }
        if row.provider == "local-docker" && ratio < THROUGHPUT_TARGET {
            misses.push(format!(
                "{} {}: {ratio:.2}x docker cp",
                row.provider, row.direction
            ));
        }
    }
    if misses.is_empty() {
        println!("\nevery target met");
    } else {
        println!("\ntargets missed: {}", misses.join("; "));
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        return child(&args[2..]).await;
    }
    parent(parse_options()?).await
}
