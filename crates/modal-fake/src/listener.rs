//! The listening socket every mode serves on, and the handle that stops it.
//!
//! One port serves both services. Modal clients are handed router URLs that say `https`:
//! Go and JS then connect in plaintext because the control plane is on localhost, while
//! Python speaks TLS without verifying the certificate. So each connection is sniffed: a
//! TLS ClientHello (first byte `0x16`) gets a TLS session, anything else is served as
//! plaintext HTTP/2. The certificate is a throw-away self-signed one, or, for clients that
//! verify it, one issued by a throw-away CA whose certificate is written to a file.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_stream::wrappers::ReceiverStream;
use tonic::body::Body;
use tonic::transport::server::Connected;

use crate::error::{Error, Result};

/// The first byte of a TLS record carrying a handshake.
const TLS_HANDSHAKE: u8 = 0x16;
/// How long a new connection may take to send its first byte or finish a TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP/2 windows as Modal's clients configure them, so large transfers are not throttled.
const WINDOW_BYTES: u32 = 64 * 1024 * 1024;

/// A connection: plaintext or TLS.
pub(crate) enum Conn {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl Connected for Conn {
    type ConnectInfo = ();

    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Conn::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Conn::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Conn::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            Conn::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            Conn::Tls(stream) => Pin::new(stream.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(stream) => stream.is_write_vectored(),
            Conn::Tls(stream) => stream.is_write_vectored(),
        }
    }
}

/// The names the TLS certificate is valid for: how clients on this machine dial it.
const CERTIFICATE_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// A TLS acceptor with a fresh certificate for [`CERTIFICATE_NAMES`]: self-signed, or,
/// with `ca_file`, issued by a fresh CA whose certificate (PEM) is written there, so a
/// client trusting that file verifies the server.
fn tls_acceptor(ca_file: Option<&Path>) -> Result<TlsAcceptor> {
    let tls = |error: rcgen::Error| Error::Tls(error.to_string());
    let names: Vec<String> = CERTIFICATE_NAMES
        .iter()
        .map(|&name| name.to_owned())
        .collect();
    let key = rcgen::KeyPair::generate().map_err(tls)?;
    let params = rcgen::CertificateParams::new(names).map_err(tls)?;
    let cert = match ca_file {
        None => params.self_signed(&key).map_err(tls)?,
        Some(path) => {
            let ca_key = rcgen::KeyPair::generate().map_err(tls)?;
            let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(tls)?;
            ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            ca.key_usages = vec![
                rcgen::KeyUsagePurpose::KeyCertSign,
                rcgen::KeyUsagePurpose::CrlSign,
            ];
            ca.distinguished_name
                .push(rcgen::DnType::CommonName, "modal-fake throw-away CA");
            let ca_cert = ca.self_signed(&ca_key).map_err(tls)?;
            std::fs::write(path, ca_cert.pem()).map_err(|error| {
                Error::Tls(format!(
                    "writing the CA certificate to {}: {error}",
                    path.display()
                ))
            })?;
            let issuer = rcgen::Issuer::new(ca, ca_key);
            params.signed_by(&key, &issuer).map_err(tls)?
        }
    };
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| Error::Tls(error.to_string()))?
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key)
        .map_err(|error| Error::Tls(error.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Accepts connections forever, handing each to the server once its kind is known.
async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    ready: mpsc::Sender<io::Result<Conn>>,
) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Usually out of file descriptors: wait instead of spinning.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        let ready = ready.clone();
        tokio::spawn(async move {
            let conn = tokio::time::timeout(HANDSHAKE_TIMEOUT, classify(stream, acceptor)).await;
            match conn {
                Ok(Ok(conn)) => {
                    let _ = ready.send(Ok(conn)).await;
                }
                Ok(Err(error)) => tracing::debug!(%error, "connection dropped before serving"),
                Err(_) => tracing::debug!("connection sent nothing in time"),
            }
        });
    }
}

async fn classify(stream: TcpStream, acceptor: TlsAcceptor) -> io::Result<Conn> {
    let mut first = [0u8; 1];
    let read = stream.peek(&mut first).await?;
    if read == 1 && first[0] == TLS_HANDSHAKE {
        Ok(Conn::Tls(Box::new(acceptor.accept(stream).await?)))
    } else {
        Ok(Conn::Plain(stream))
    }
}

/// Runs when a server stops, after it stopped serving (e.g. terminating sandboxes).
pub(crate) type Cleanup = BoxFuture<'static, ()>;

/// A running server. Stop it with [`ServerHandle::shutdown`]; dropping it stops serving
/// too, but skips the mode's cleanup (such as terminating the emulator's sandboxes).
pub struct ServerHandle {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::result::Result<(), tonic::transport::Error>>>,
    accept: JoinHandle<()>,
    cleanup: Option<Cleanup>,
}

impl std::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl ServerHandle {
    /// The address the server listens on (with the real port when port 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL clients use as `MODAL_SERVER_URL`, e.g. `http://127.0.0.1:40123`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops serving, waits for in-flight calls to finish, then runs the mode's cleanup.
    pub async fn shutdown(mut self) -> Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.accept.abort();
        let served = match self.server.take() {
            // Long polls and streams of clients that stay connected would hold the
            // graceful shutdown forever; give them a moment, then stop anyway.
            Some(server) => match tokio::time::timeout(Duration::from_secs(5), server).await {
                Ok(Ok(Ok(()))) => Ok(()),
                Ok(Ok(Err(error))) => Err(Error::Server(error.to_string())),
                Ok(Err(join)) => Err(Error::Server(join.to_string())),
                Err(_) => Ok(()),
            },
            None => Ok(()),
        };
        if let Some(cleanup) = self.cleanup.take() {
            cleanup.await;
        }
        served
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.accept.abort();
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// Binds `addr`; the real port is known from the listener before serving starts.
pub(crate) async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })
}

/// The address clients should dial for `listener`: a wildcard bind is reached on loopback.
pub(crate) fn dial_addr(listener: &TcpListener) -> Result<SocketAddr> {
    let mut local = listener.local_addr().map_err(|source| Error::Bind {
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        source,
    })?;
    if local.ip().is_unspecified() {
        local.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    Ok(local)
}

/// Serves `service` on `listener` until the handle shuts it down; `ca_file`, see
/// [`tls_acceptor`].
pub(crate) async fn serve<S>(
    listener: TcpListener,
    service: S,
    cleanup: Option<Cleanup>,
    ca_file: Option<&Path>,
) -> Result<ServerHandle>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let local = dial_addr(&listener)?;
    let acceptor = tls_acceptor(ca_file)?;
    let (ready_tx, ready_rx) = mpsc::channel(64);
    let accept = tokio::spawn(accept_loop(listener, acceptor, ready_tx));
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let server = tonic::transport::Server::builder()
        .initial_connection_window_size(Some(WINDOW_BYTES))
        .initial_stream_window_size(Some(WINDOW_BYTES))
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .serve_with_incoming_shutdown(service, ReceiverStream::new(ready_rx), async move {
            let _ = stop_rx.await;
        });
    let server = tokio::spawn(server);
    Ok(ServerHandle {
        addr: local,
        stop: Some(stop_tx),
        server: Some(server),
        accept,
        cleanup,
    })
}
