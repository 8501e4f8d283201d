//! Attacks from inside the sandbox on what the host holds: `/etc/shadow`, a TCP listener on
//! the host's loopback, an abstract Unix socket in the host's network namespace.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Result, bail, ensure};
use sandkit_core::{ExecOutput, ExecRequest, SandboxId};
use tokio::io::AsyncWriteExt;

use super::note;
use crate::case::{Cx, show, skip};

/// How long one probe command may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(60);

async fn probe(cx: &Cx, id: &SandboxId, script: &str) -> Result<ExecOutput> {
    probe_as(cx, id, script, None).await
}

async fn probe_as(cx: &Cx, id: &SandboxId, script: &str, user: Option<&str>) -> Result<ExecOutput> {
    let mut request = ExecRequest::new(["sh", "-c", script]);
    request.user = user.map(str::to_owned);
    match tokio::time::timeout(PROBE_TIMEOUT, cx.run(id, request)).await {
        Ok(output) => output,
        Err(_) => bail!("the probe did not end within {PROBE_TIMEOUT:?}"),
    }
}

pub(crate) async fn host_shadow_unreadable(cx: Cx) -> Result<()> {
    let host = match std::fs::read("/etc/shadow") {
        Ok(bytes) if !bytes.is_empty() => bytes,
        Ok(_) => return Err(skip("the host's /etc/shadow is empty: nothing to compare")),
        Err(error) => {
            return Err(skip(format!(
                "the host's /etc/shadow is not readable by this test ({error}): nothing to compare"
            )));
        }
    };
    let id = cx.sandbox().await?;
    // Also as the sandbox's root, with a container root's capabilities, where there is one.
    if cx.provider().capabilities().exec_run_as_user {
        let output = probe_as(&cx, &id, "cat /etc/shadow", Some("root")).await?;
        ensure!(
            output.stdout != host,
            "`cat /etc/shadow` as root inside returned the host's /etc/shadow"
        );
        host_keys_unreadable_as_root(&cx, &id).await?;
    }
    let output = probe(&cx, &id, "cat /etc/shadow").await?;
    ensure!(
        output.stdout != host,
        "`cat /etc/shadow` inside returned the host's /etc/shadow ({} bytes)",
        host.len()
    );
    // Lines with a password field (not `*`, `!` or empty) must not appear either.
    let host_text = String::from_utf8_lossy(&host);
    let inside = output.stdout_lossy();
    let leaked: Vec<&str> = host_text
        .lines()
        .filter(|line| line.split(':').nth(1).is_some_and(|hash| hash.len() > 2))
        .filter(|line| inside.lines().any(|l| l == *line))
        .map(|line| line.split(':').next().unwrap_or(""))
        .collect();
    ensure!(
        leaked.is_empty(),
        "`cat /etc/shadow` inside shows the host's password lines for {leaked:?}"
    );
    note(
        &cx,
        format!(
            "inside /etc/shadow: exit {}, {} bytes (host: {} bytes)",
            output.status,
            output.stdout.len(),
            host.len()
        ),
    );
    Ok(())
}

/// The host's TLS private keys (`/etc/ssl/private`, readable by root only) stay out of
/// reach of the sandbox's root.
async fn host_keys_unreadable_as_root(cx: &Cx, id: &SandboxId) -> Result<()> {
    let Ok(keys) = std::fs::read_dir("/etc/ssl/private") else {
        return Ok(());
    };
    for key in keys.flatten() {
        let Ok(contents) = std::fs::read(key.path()) else {
            continue;
        };
        let path = key.path().display().to_string();
        let output = probe_as(cx, id, &format!("cat '{path}'"), Some("root")).await?;
        ensure!(
            contents.is_empty() || output.stdout != contents,
            "`cat {path}` as root inside returned the host's key"
        );
        note(
            cx,
            format!("as root inside, {path}: exit {}", output.status),
        );
    }
    Ok(())
}

/// Tries `127.0.0.1:port` with every tool the sandbox has; prints `probe:<tool>` for each
/// one that ran.
fn tcp_probe(port: u16) -> String {
    format!(
        r#"
if command -v python3 >/dev/null 2>&1; then
  echo probe:python3
  python3 -c 'import socket,sys
try:
    s = socket.create_connection(("127.0.0.1", {port}), timeout=5)
    s.settimeout(5)
    print("connected", s.recv(200).decode("latin-1"))
except Exception as e:
    print("refused", e)' 2>&1
fi
if command -v bash >/dev/null 2>&1; then
  echo probe:bash
  bash -c 'exec 3<>/dev/tcp/127.0.0.1/{port} && echo connected && head -c 200 <&3' 2>&1 &
  pid=$!; i=0; while kill -0 $pid 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
  kill $pid 2>/dev/null; wait $pid 2>/dev/null
fi
if command -v nc >/dev/null 2>&1; then
  echo probe:nc
  nc -w 3 127.0.0.1 {port} </dev/null 2>&1 | head -c 200
  echo
elif command -v busybox >/dev/null 2>&1; then
  echo probe:busybox-nc
  busybox nc -w 3 127.0.0.1 {port} </dev/null 2>&1 | head -c 200
  echo
fi
if [ -r /proc/net/tcp ]; then
  echo probe:proc-net-tcp
  cat /proc/net/tcp
fi
exit 0
"#
    )
}

pub(crate) async fn host_loopback_unreachable(cx: Cx) -> Result<()> {
    let token = uuid::Uuid::new_v4().simple().to_string();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let server = {
        let accepted = Arc::clone(&accepted);
        let token = token.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                accepted.fetch_add(1, Ordering::SeqCst);
                let _ = stream.write_all(format!("{token}\n").as_bytes()).await;
            }
        })
    };
    let id = cx.sandbox().await?;
    let output = probe(&cx, &id, &tcp_probe(port)).await;
    server.abort();
    let output = output?;
    let text = output.stdout_lossy();
    let ran: Vec<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("probe:"))
        .collect();
    // /proc/net/tcp lists listeners of the sandbox's network namespace: `0100007F:PORT`
    // in state 0A (listen) means the host's loopback is the sandbox's.
    let listed = format!("0100007F:{port:04X} 00000000:0000 0A");
    let connected_by_tool = ran.iter().any(|t| !t.starts_with("proc-"));
    note(
        &cx,
        format!(
            "probes run: {ran:?}; listener accepted {} connection(s)",
            accepted.load(Ordering::SeqCst)
        ),
    );
    ensure!(
        !text.contains(&token),
        "a probe inside read the token from the host's 127.0.0.1:{port}: {}",
        show(&output.stdout)
    );
    ensure!(
        accepted.load(Ordering::SeqCst) == 0,
        "the host's listener on 127.0.0.1:{port} accepted a connection from inside"
    );
    ensure!(
        !text.contains(&listed),
        "the host's listener 127.0.0.1:{port} is listed in the sandbox's /proc/net/tcp: it shares the host's network namespace"
    );
    ensure!(
        connected_by_tool,
        "no connection probe could run inside (no python3, bash, nc or busybox), so nothing was proven; stdout {}, stderr {}",
        show(&output.stdout),
        show(&output.stderr)
    );
    Ok(())
}

#[cfg(not(target_os = "linux"))]
pub(crate) async fn host_abstract_socket_unreachable(_cx: Cx) -> Result<()> {
    Err(skip("abstract Unix sockets exist on Linux only"))
}

#[cfg(target_os = "linux")]
pub(crate) async fn host_abstract_socket_unreachable(cx: Cx) -> Result<()> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixListener};

    let name = format!("sandkit-security-{}", uuid::Uuid::new_v4().simple());
    let address = SocketAddr::from_abstract_name(name.as_bytes())?;
    let listener = UnixListener::bind_addr(&address)?;
    listener.set_nonblocking(true)?;
    let id = cx.sandbox().await?;
    let script = format!(
        r#"
if command -v python3 >/dev/null 2>&1; then
  echo probe:python3
  python3 -c 'import socket
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.connect("\0{name}")
    print("connected")
except Exception as e:
    print("refused", e)' 2>&1
fi
if [ -r /proc/net/unix ]; then
  echo probe:proc-net-unix
  cat /proc/net/unix
fi
exit 0
"#
    );
    let output = probe(&cx, &id, &script).await?;
    let mut connections = 0;
    while listener.accept().is_ok() {
        connections += 1;
    }
    let text = output.stdout_lossy();
    let ran: Vec<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("probe:"))
        .collect();
    note(
        &cx,
        format!("probes run: {ran:?}; host socket accepted {connections} connection(s)"),
    );
    ensure!(
        connections == 0 && !text.lines().any(|l| l == "connected"),
        "a process inside connected to the host's abstract socket @{name}"
    );
    ensure!(
        !text.contains(&format!("@{name}")),
        "the host's abstract socket @{name} is listed in the sandbox's /proc/net/unix: it shares the host's network namespace"
    );
    ensure!(
        !ran.is_empty(),
        "no probe could run inside (no python3 and no readable /proc/net/unix), so nothing was proven; stdout {}, stderr {}",
        show(&output.stdout),
        show(&output.stderr)
    );
    Ok(())
}
