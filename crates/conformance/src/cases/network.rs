//! Network policy, proven: a sandbox that should not reach the network tries to reach a
//! TCP listener this process opens on every address of the host.
//!
//! The probe is a POSIX `sh` script that tries every client it finds in the sandbox
//! (`wget` and `nc` from busybox, `curl`, and bash's `/dev/tcp` on a Debian host), each
//! bounded by `timeout` where that exists, against 127.0.0.1 and every other local IPv4
//! address of the host (the Docker bridge gateway among them). The listener's count of
//! accepted connections is the verdict, whatever the clients print. A probe that finds no
//! client at all only passes when the sandbox has no interface besides `lo`.
//!
//! When the provider runs sandboxes on this machine with egress allowed by default, the
//! same probe first runs in a sandbox without a policy and must get through: that proves
//! the probe can see a connection, so its silence under a policy means something.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result, bail, ensure};
use sandkit_core::{EgressDefault, ExecRequest, NetworkPolicy, SandboxId, SandboxSpec, Transport};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use crate::case::{Cx, expect_unsupported, show};

const PROBE: &str = r#"
port=$1; shift
tools=""
have() { command -v "$1" >/dev/null 2>&1; }
bounded() { if have timeout; then timeout 5 "$@"; else "$@"; fi; }
for tool in wget nc curl bash; do have "$tool" && tools="$tools $tool"; done
for addr in "$@"; do
  if have wget; then bounded wget -q -T 3 -O /dev/null "http://$addr:$port/" >/dev/null 2>&1 && echo "CONNECTED wget $addr"; fi
  if have nc; then printf 'x' | bounded nc -w 3 "$addr" "$port" >/dev/null 2>&1 && echo "CONNECTED nc $addr"; fi
  if have curl; then bounded curl -s -m 3 -o /dev/null "http://$addr:$port/" >/dev/null 2>&1 && echo "CONNECTED curl $addr"; fi
  if have bash; then bounded bash -c "exec 3<>/dev/tcp/$addr/$port" >/dev/null 2>&1 && echo "CONNECTED bash $addr"; fi
done
echo "TOOLS$tools"
ifaces=""
if [ -r /proc/net/dev ]; then
  while IFS=: read -r name rest; do
    case "$rest" in *[0-9]*) ifaces="$ifaces $(echo $name)";; esac
  done < /proc/net/dev
fi
echo "IFACES$ifaces"
"#;

/// A TCP listener on every host address that counts connections and answers each with a
/// minimal HTTP response (so HTTP clients finish quickly).
struct Listener {
    port: u16,
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Listener {
    async fn open() -> Result<Self> {
        let listener = TcpListener::bind("0.0.0.0:0")
            .await
            .context("opening the probe listener")?;
        let port = listener.local_addr()?.port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&accepted);
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let _ = stream
                        .write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")
                        .await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Ok(Self {
            port,
            accepted,
            task,
        })
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// 127.0.0.1 and the host's other local IPv4 addresses, from the kernel's routing table.
fn host_addresses() -> Vec<Ipv4Addr> {
    let mut addresses = BTreeSet::from([Ipv4Addr::LOCALHOST]);
    // fib_trie lists each local address on a line followed by "/32 host LOCAL".
    if let Ok(trie) = std::fs::read_to_string("/proc/net/fib_trie") {
        let lines: Vec<&str> = trie.lines().collect();
        for pair in lines.windows(2) {
            if pair[1].contains("/32 host LOCAL")
                && let Some(address) = pair[0]
                    .rsplit(' ')
                    .next()
                    .and_then(|a| a.parse::<Ipv4Addr>().ok())
                && !address.is_loopback()
            {
                addresses.insert(address);
            }
        }
    }
    addresses.into_iter().collect()
}

struct ProbeResult {
    /// Connections the listener accepted during the probe.
    accepted: usize,
    /// What the probe printed.
    stdout: String,
}

impl ProbeResult {
    fn tools(&self) -> Vec<&str> {
        self.line("TOOLS")
    }

    fn interfaces(&self) -> Vec<&str> {
        self.line("IFACES")
    }

    fn line(&self, prefix: &str) -> Vec<&str> {
        self.stdout
            .lines()
            .find_map(|line| line.strip_prefix(prefix))
            .map(|rest| rest.split_whitespace().collect())
            .unwrap_or_default()
    }

    fn connected(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .filter(|line| line.starts_with("CONNECTED"))
            .collect()
    }
}

async fn probe(cx: &Cx, id: &SandboxId) -> Result<ProbeResult> {
    let listener = Listener::open().await?;
    let mut argv = vec![
        "sh".to_owned(),
        "-c".to_owned(),
        PROBE.to_owned(),
        "probe".to_owned(),
        listener.port.to_string(),
    ];
    argv.extend(host_addresses().iter().map(ToString::to_string));
    let output = cx.run(id, ExecRequest::new(argv)).await?;
    ensure!(
        output.status.success(),
        "the network probe itself failed with {}: {}",
        output.status,
        show(&output.stderr)
    );
    // Let connections still in flight land before counting.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    Ok(ProbeResult {
        accepted: listener.accepted(),
        stdout: output.stdout_lossy(),
    })
}

/// Proves that a sandbox created with `policy` cannot reach the host.
async fn expect_blocked(cx: Cx, policy: NetworkPolicy) -> Result<()> {
    let caps = cx.caps();
    if caps.transport == Transport::Local && caps.egress_default == EgressDefault::AllowAll {
        let open = cx.sandbox().await?;
        let control = probe(&cx, &open).await?;
        ensure!(
            control.accepted > 0,
            "the probe could not reach this host even from a sandbox without a network policy \
             (clients found:{:?}), so it cannot prove blocking",
            control.tools()
        );
    }
    let spec: SandboxSpec = cx.spec().network(policy.clone());
    let id = cx.create(&spec).await?.id;
    let result = probe(&cx, &id).await?;
    ensure!(
        result.accepted == 0 && result.connected().is_empty(),
        "with network policy {policy:?}, the sandbox reached the host ({} connections accepted; {:?})",
        result.accepted,
        result.connected()
    );
    let interfaces = result.interfaces();
    if result.tools().is_empty() && interfaces.iter().any(|name| *name != "lo") {
        bail!(
            "the sandbox has no network client to attempt a connection with, and interfaces {interfaces:?} \
             besides lo, so blocking is not proven"
        );
    }
    Ok(())
}

pub(crate) async fn network_block_all_blocks_egress(cx: Cx) -> Result<()> {
    expect_blocked(cx, NetworkPolicy::BlockAll).await
}

pub(crate) async fn network_block_all_unsupported(cx: Cx) -> Result<()> {
    let spec = cx.spec().network(NetworkPolicy::BlockAll);
    expect_unsupported(cx.provider().create(&spec).await, "block-all network")
}

/// TEST-NET-1 (RFC 5737): never a real destination, never a host address.
fn cidr_allowlist() -> NetworkPolicy {
    NetworkPolicy::AllowList {
        cidrs: vec!["192.0.2.0/24".into()],
        domains: Vec::new(),
    }
}

fn domain_allowlist() -> NetworkPolicy {
    NetworkPolicy::AllowList {
        cidrs: Vec::new(),
        domains: vec!["conformance.invalid".into()],
    }
}

pub(crate) async fn network_cidr_allowlist_blocks_others(cx: Cx) -> Result<()> {
    expect_blocked(cx, cidr_allowlist()).await
}

pub(crate) async fn network_cidr_allowlist_unsupported(cx: Cx) -> Result<()> {
    let spec = cx.spec().network(cidr_allowlist());
    expect_unsupported(cx.provider().create(&spec).await, "a CIDR allowlist")
}

pub(crate) async fn network_domain_allowlist_blocks_others(cx: Cx) -> Result<()> {
    expect_blocked(cx, domain_allowlist()).await
}

pub(crate) async fn network_domain_allowlist_unsupported(cx: Cx) -> Result<()> {
    let spec = cx.spec().network(domain_allowlist());
    expect_unsupported(cx.provider().create(&spec).await, "a domain allowlist")
}
