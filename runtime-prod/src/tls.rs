//! TLS on the member's ports (client, peer, admin) with rustls, and its hot
//! reload.
//!
//! A [`TlsContext`] serves one port. It reads a certificate chain, its private
//! key and (optionally) a CA bundle from PEM files, and builds one rustls
//! server config and one client config that never change: the certificate
//! they present and the CA bundle they verify against sit behind a swappable
//! `Arc` (a [`rustls::server::ResolvesServerCert`], a client-certificate
//! verifier, and their client-side twins), so that [`TlsContext::reload`]
//! replaces the material for *new* handshakes while established connections
//! keep theirs and are never dropped.
//!
//! - **Reload**: [`TlsContext::watch`] polls the files' contents every
//!   `interval` on a glommio timer and reloads when they change; a SIGHUP
//!   ([`request_reload`], process-wide) forces a reload on the next second.
//!   New material is built and checked completely (the key matches the
//!   certificate, the bundle parses) before it replaces the old one; a bad
//!   file keeps the old material, logs an error naming the file and why, and
//!   shows in [`TlsContext::status`] (the member's `/health` and metrics)
//!   until a good file replaces it.
//! - **Handshake failures** (a client without a certificate when one is
//!   required, a certificate from another CA, a client speaking plain text)
//!   are counted by reason ([`failure_reason`]) in the context's status; the
//!   caller logs them with the remote address.
//! - **Streams**: [`Conn`] is a plain or TLS stream over a glommio TCP
//!   stream, for hyper ([`crate::http`]) and the peer transport.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme};

/// How long a TLS handshake on an accepted connection may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Bumped by every SIGHUP (see [`request_reload`]).
static RELOAD_GENERATION: AtomicU64 = AtomicU64::new(0);

/// Asks every [`TlsContext::watch`] task of this process to reload its files
/// now (within a second), changed or not. Called on SIGHUP.
pub fn request_reload() {
    RELOAD_GENERATION.fetch_add(1, Ordering::SeqCst);
}

/// The files of one port's TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain this port presents (PEM, leaf first).
    pub cert_file: PathBuf,
    /// The certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// The CA bundle (PEM) that certificates of the other side must chain to:
    /// clients' when `client_cert_auth` is on, servers' when this member dials
    /// (peers, other members' admin ports).
    pub ca_file: Option<PathBuf>,
    /// Refuse clients that do not present a certificate signed by `ca_file`.
    pub client_cert_auth: bool,
    /// Accept only client certificates that are also valid for server
    /// authentication (the peer port: members' certificates carry both key
    /// usages, client certificates only clientAuth, so a client certificate
    /// of the same CA cannot pose as a member).
    pub members_only: bool,
}

/// Why TLS material could not be loaded: the file and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsError {
    /// The file at fault (or the certificate file, for problems of the pair).
    pub file: PathBuf,
    /// What is wrong, and what to do.
    pub why: String,
}

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.file.display(), self.why)
    }
}

impl std::error::Error for TlsError {}

/// The material of one generation: what handshakes use.
struct Material {
    key: Arc<CertifiedKey>,
    roots: Option<Arc<RootCertStore>>,
    client_verifier: Option<Arc<dyn ClientCertVerifier>>,
    server_verifier: Option<Arc<dyn ServerCertVerifier>>,
    not_after_unix_s: Option<i64>,
}

impl std::fmt::Debug for Material {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Material").field("not_after_unix_s", &self.not_after_unix_s).finish_non_exhaustive()
    }
}

/// The swappable part, shared by the rustls configs' resolvers and verifiers.
#[derive(Debug)]
struct Current(RwLock<Arc<Material>>);

impl Current {
    fn get(&self) -> Arc<Material> {
        self.0.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    fn set(&self, material: Arc<Material>) {
        *self.0.write().unwrap_or_else(std::sync::PoisonError::into_inner) = material;
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError { file: path.to_path_buf(), why: format!("cannot read it: {e}") })
}

fn parse_certs(path: &Path, bytes: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Result<Vec<CertificateDer<'static>>, _> = CertificateDer::pem_slice_iter(bytes).collect();
    match certs {
        Ok(certs) if !certs.is_empty() => Ok(certs),
        Ok(_) => Err(TlsError {
            file: path.to_path_buf(),
            why: format!("no PEM certificate in it (expected {what} between -----BEGIN CERTIFICATE----- lines)"),
        }),
        Err(e) => Err(TlsError { file: path.to_path_buf(), why: format!("not valid PEM: {e}") }),
    }
}

/// The files' contents, read once per load so that a reload sees one version
/// of each.
struct Contents {
    cert: Vec<u8>,
    key: Vec<u8>,
    ca: Option<Vec<u8>>,
}

impl Contents {
    fn read(files: &TlsFiles) -> Result<Contents, TlsError> {
        Ok(Contents {
            cert: read_file(&files.cert_file)?,
            key: read_file(&files.key_file)?,
            ca: files.ca_file.as_deref().map(read_file).transpose()?,
        })
    }

    fn fingerprint(&self) -> u64 {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.cert.hash(&mut hasher);
        self.key.hash(&mut hasher);
        self.ca.hash(&mut hasher);
        hasher.finish()
    }
}

fn build(files: &TlsFiles, contents: &Contents) -> Result<Material, TlsError> {
    let provider = provider();
    let certs = parse_certs(&files.cert_file, &contents.cert, "the certificate chain, leaf first")?;
    let key = PrivateKeyDer::from_pem_slice(&contents.key).map_err(|e| TlsError {
        file: files.key_file.clone(),
        why: match e {
            rustls::pki_types::pem::Error::NoItemsFound => {
                "no PEM private key in it (expected -----BEGIN PRIVATE KEY-----, RSA PRIVATE KEY or EC PRIVATE KEY)"
                    .into()
            }
            other => format!("not a valid PEM private key: {other}"),
        },
    })?;
    let not_after_unix_s = not_after_unix_s(&certs[0]);
    let key = CertifiedKey::from_der(certs, key, &provider).map_err(|e| TlsError {
        file: files.key_file.clone(),
        why: format!("does not go with the certificate in {}: {e}", files.cert_file.display()),
    })?;
    let mut anchors = None;
    let (client_verifier, server_verifier) = match (&files.ca_file, &contents.ca) {
        (Some(ca_file), Some(ca)) => {
            let mut roots = RootCertStore::empty();
            for cert in parse_certs(ca_file, ca, "one or more CA certificates")? {
                roots.add(cert).map_err(|e| TlsError {
                    file: ca_file.clone(),
                    why: format!("a certificate in it is not a usable CA certificate: {e}"),
                })?;
            }
            let roots = Arc::new(roots);
            anchors = Some(roots.clone());
            let client = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
                .build()
                .map_err(|e| TlsError { file: ca_file.clone(), why: format!("cannot verify clients with it: {e}") })?;
            let server: Arc<dyn ServerCertVerifier> =
                WebPkiServerVerifier::builder_with_provider(roots, provider.clone()).build().map_err(|e| TlsError {
                    file: ca_file.clone(),
                    why: format!("cannot verify servers with it: {e}"),
                })?;
            (Some(client), Some(server))
        }
        _ => (None, None),
    };
    Ok(Material { key: Arc::new(key), roots: anchors, client_verifier, server_verifier, not_after_unix_s })
}

/// What a port's TLS is doing, for `/health` and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsStatus {
    /// The port: `client`, `peer` or `admin`.
    pub listener: &'static str,
    /// The certificate file.
    pub cert_file: PathBuf,
    /// When the certificate in use expires (Unix seconds), if it could be read.
    pub not_after_unix_s: Option<i64>,
    /// The last reload's failure, while the files still fail to load.
    pub error: Option<TlsError>,
    /// Successful reloads since start.
    pub reloads: u64,
    /// Failed reloads since start.
    pub reload_failures: u64,
    /// Refused or failed handshakes since start, by reason.
    pub handshake_failures: BTreeMap<&'static str, u64>,
}

#[derive(Debug, Default)]
struct Counters {
    /// The files' contents last tried.
    seen_fingerprint: u64,
    /// The files' contents of the material in use.
    applied_fingerprint: u64,
    error: Option<TlsError>,
    reloads: u64,
    reload_failures: u64,
    handshake_failures: BTreeMap<&'static str, u64>,
}

#[derive(Debug)]
struct Inner {
    listener: &'static str,
    files: TlsFiles,
    current: Arc<Current>,
    counters: Mutex<Counters>,
    server: Arc<ServerConfig>,
    client: Option<Arc<ClientConfig>>,
}

/// One port's TLS: its rustls configs and their reloadable material. Cheap to
/// clone, `Send + Sync`.
#[derive(Debug, Clone)]
pub struct TlsContext {
    inner: Arc<Inner>,
}

impl TlsContext {
    /// Loads `files` for the port named `listener` (`client`, `peer`, `admin`),
    /// offering `alpn` protocols to clients (`h2`, `http/1.1`; empty: none).
    pub fn load(listener: &'static str, files: TlsFiles, alpn: &[&[u8]]) -> Result<TlsContext, TlsError> {
        let contents = Contents::read(&files)?;
        let material = build(&files, &contents)?;
        if files.client_cert_auth && material.client_verifier.is_none() {
            return Err(TlsError {
                file: files.cert_file.clone(),
                why: "client_cert_auth needs ca_file, the CA bundle client certificates must chain to".into(),
            });
        }
        let current = Arc::new(Current(RwLock::new(Arc::new(material))));
        let versions = rustls::DEFAULT_VERSIONS;
        let builder = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)
            .map_err(|e| TlsError { file: files.cert_file.clone(), why: e.to_string() })?;
        let builder = if files.client_cert_auth {
            builder.with_client_cert_verifier(Arc::new(DynClientVerifier {
                current: current.clone(),
                members_only: files.members_only,
            }))
        } else {
            builder.with_no_client_auth()
        };
        let mut server = builder.with_cert_resolver(Arc::new(DynServerCert(current.clone())));
        server.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let client = if files.ca_file.is_some() {
            let config = ClientConfig::builder_with_provider(provider())
                .with_protocol_versions(versions)
                .map_err(|e| TlsError { file: files.cert_file.clone(), why: e.to_string() })?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(DynServerVerifier(current.clone())))
                .with_client_cert_resolver(Arc::new(DynClientCert(current.clone())));
            Some(Arc::new(config))
        } else {
            None
        };
        let fingerprint = contents.fingerprint();
        let counters =
            Counters { seen_fingerprint: fingerprint, applied_fingerprint: fingerprint, ..Counters::default() };
        Ok(TlsContext {
            inner: Arc::new(Inner {
                listener,
                files,
                current,
                counters: Mutex::new(counters),
                server: Arc::new(server),
                client,
            }),
        })
    }

    /// The port's name.
    pub fn listener(&self) -> &'static str {
        self.inner.listener
    }

    /// The files.
    pub fn files(&self) -> &TlsFiles {
        &self.inner.files
    }

    /// The server side: accepts connections on this port.
    pub fn acceptor(&self) -> futures_rustls::TlsAcceptor {
        futures_rustls::TlsAcceptor::from(self.inner.server.clone())
    }

    /// The client side, presenting this port's certificate and verifying the
    /// server against `ca_file` (`None` without a `ca_file`). For dialing peers
    /// and other members' admin ports.
    pub fn client_config(&self) -> Option<Arc<ClientConfig>> {
        self.inner.client.clone()
    }

    fn counters(&self) -> std::sync::MutexGuard<'_, Counters> {
        self.inner.counters.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Re-reads the files; when their contents changed since the last attempt
    /// (or `force`), builds new material and, if it is good, makes new
    /// handshakes use it. Returns whether new material is in use. A bad file
    /// keeps the old material; the error is logged, kept in the status until
    /// a reload succeeds, and returned.
    pub fn reload(&self, force: bool) -> Result<bool, TlsError> {
        let listener = self.inner.listener;
        let attempt = Contents::read(&self.inner.files).and_then(|contents| {
            let fingerprint = contents.fingerprint();
            let mut counters = self.counters();
            if !force && fingerprint == counters.applied_fingerprint {
                // Back to the files in use (after a file was briefly missing
                // or bad): nothing to load, and nothing wrong any more.
                counters.seen_fingerprint = fingerprint;
                if counters.error.take().is_some() {
                    tracing::info!(listener, "TLS files are back to the certificates in use");
                }
                return Ok(None);
            }
            if !force && fingerprint == counters.seen_fingerprint {
                // Tried already, and it failed: wait for another change.
                return Ok(None);
            }
            counters.seen_fingerprint = fingerprint;
            drop(counters);
            build(&self.inner.files, &contents).map(|material| Some((material, fingerprint)))
        });
        match attempt {
            Ok(None) => Ok(false),
            Ok(Some((material, fingerprint))) => {
                let not_after = material.not_after_unix_s;
                self.inner.current.set(Arc::new(material));
                let mut counters = self.counters();
                counters.applied_fingerprint = fingerprint;
                counters.reloads += 1;
                counters.error = None;
                tracing::info!(
                    listener,
                    cert_file = %self.inner.files.cert_file.display(),
                    not_after_unix_s = not_after,
                    "TLS certificates reloaded; new connections use them"
                );
                Ok(true)
            }
            Err(error) => {
                let mut counters = self.counters();
                // A file that cannot be read is retried every poll; count and
                // log it once per distinct error.
                if counters.error.as_ref() != Some(&error) || force {
                    counters.reload_failures += 1;
                    tracing::error!(
                        listener,
                        file = %error.file.display(),
                        "TLS reload failed, still serving the previous certificates: {}",
                        error.why
                    );
                }
                counters.error = Some(error.clone());
                Err(error)
            }
        }
    }

    /// Counts a failed handshake.
    pub fn count_handshake_failure(&self, reason: &'static str) {
        *self.counters().handshake_failures.entry(reason).or_default() += 1;
    }

    /// The port's TLS status.
    pub fn status(&self) -> TlsStatus {
        let material = self.inner.current.get();
        let counters = self.counters();
        TlsStatus {
            listener: self.inner.listener,
            cert_file: self.inner.files.cert_file.clone(),
            not_after_unix_s: material.not_after_unix_s,
            error: counters.error.clone(),
            reloads: counters.reloads,
            reload_failures: counters.reload_failures,
            handshake_failures: counters.handshake_failures.clone(),
        }
    }

    /// Reloads when the files change (polled every `interval`) or on SIGHUP
    /// ([`request_reload`]), forever. Spawn it on the port's executor.
    pub async fn watch(self, interval: Duration) {
        let tick = interval.min(Duration::from_secs(1));
        let mut generation = RELOAD_GENERATION.load(Ordering::SeqCst);
        let mut last_poll = Instant::now();
        loop {
            glommio::timer::sleep(tick).await;
            let now_generation = RELOAD_GENERATION.load(Ordering::SeqCst);
            if now_generation != generation {
                generation = now_generation;
                last_poll = Instant::now();
                tracing::info!(listener = self.inner.listener, "SIGHUP: reloading TLS certificates");
                let _ = self.reload(true);
            } else if last_poll.elapsed() >= interval {
                last_poll = Instant::now();
                let _ = self.reload(false);
            }
        }
    }
}

/// Accepts a TLS connection on `stream` within [`HANDSHAKE_TIMEOUT`]. A
/// failure is counted in `tls`'s status and returned with its reason.
pub async fn accept(tls: &TlsContext, stream: TcpStream) -> Result<Conn, (&'static str, io::Error)> {
    let handshake = async { tls.acceptor().accept(stream).await.map(|s| Conn::Tls(Box::new(s.into()))) };
    let timeout = async {
        glommio::timer::sleep(HANDSHAKE_TIMEOUT).await;
        Err(io::Error::new(io::ErrorKind::TimedOut, "the TLS handshake did not finish in time"))
    };
    futures_lite::future::or(handshake, timeout).await.map_err(|e| {
        let reason = failure_reason(&e);
        tls.count_handshake_failure(reason);
        (reason, e)
    })
}

/// Connects TLS over `stream` to `host` (a DNS name or an IP address), with
/// `config` (a [`TlsContext::client_config`]).
pub async fn connect(config: Arc<ClientConfig>, host: &str, stream: TcpStream) -> io::Result<Conn> {
    let name = ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']').to_string())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{host} is not a server name: {e}")))?;
    let stream = futures_rustls::TlsConnector::from(config).connect(name, stream).await?;
    Ok(Conn::Tls(Box::new(stream.into())))
}

/// A short reason for a failed handshake, for metrics labels and logs:
/// `no_certificate`, `unknown_ca` (not signed by a CA of the bundle),
/// `expired`, `not_a_member` (a client certificate on the peer port),
/// `bad_certificate`,
/// `alert_received`, `protocol` (not TLS, or not a TLS this end speaks),
/// `timeout` or `io`.
pub fn failure_reason(error: &io::Error) -> &'static str {
    use rustls::{CertificateError, Error};
    if let Some(tls) = error.get_ref().and_then(|e| e.downcast_ref::<Error>()) {
        return match tls {
            Error::NoCertificatesPresented => "no_certificate",
            // Not signed by a CA of the bundle (a CA of the same name with
            // another key shows as a bad signature).
            Error::InvalidCertificate(CertificateError::UnknownIssuer | CertificateError::BadSignature) => "unknown_ca",
            Error::InvalidCertificate(CertificateError::Expired | CertificateError::ExpiredContext { .. }) => "expired",
            // A client certificate on the peer port.
            Error::InvalidCertificate(
                CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. },
            ) => "not_a_member",
            Error::InvalidCertificate(_) => "bad_certificate",
            Error::AlertReceived(_) => "alert_received",
            _ => "protocol",
        };
    }
    match error.kind() {
        io::ErrorKind::TimedOut => "timeout",
        _ => "io",
    }
}

/// A connection: plain TCP or TLS over TCP.
pub enum Conn {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS, either side.
    Tls(Box<futures_rustls::TlsStream<TcpStream>>),
}

impl Conn {
    /// The TCP stream underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(stream) => stream,
            Conn::Tls(stream) => stream.get_ref().0,
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Conn::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
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

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(stream) => Pin::new(stream).poll_close(cx),
            Conn::Tls(stream) => Pin::new(stream.as_mut()).poll_close(cx),
        }
    }
}

// The resolvers and verifiers the rustls configs hold: each reads the current
// material at handshake time.

#[derive(Debug)]
struct DynServerCert(Arc<Current>);

impl ResolvesServerCert for DynServerCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.get().key.clone())
    }
}

#[derive(Debug)]
struct DynClientCert(Arc<Current>);

impl ResolvesClientCert for DynClientCert {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.get().key.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

fn no_verifier() -> rustls::Error {
    rustls::Error::General("no ca_file to verify the other side with".into())
}

#[derive(Debug)]
struct DynClientVerifier {
    current: Arc<Current>,
    members_only: bool,
}

impl DynClientVerifier {
    fn verifier(&self) -> Result<Arc<dyn ClientCertVerifier>, rustls::Error> {
        self.current.get().client_verifier.clone().ok_or_else(no_verifier)
    }

    /// For `members_only`: the certificate must also be one a member presents
    /// as a server (serverAuth usage, when it names usages at all).
    fn check_member(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), rustls::Error> {
        let material = self.current.get();
        let roots = material.roots.as_ref().ok_or_else(no_verifier)?;
        let cert = webpki::EndEntityCert::try_from(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))?;
        let algorithms = rustls::crypto::ring::default_provider().signature_verification_algorithms.all;
        cert.verify_for_usage(algorithms, &roots.roots, intermediates, now, webpki::KeyUsage::server_auth(), None, None)
            .map(|_| ())
            .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::InvalidPurpose))
    }
}

impl ClientCertVerifier for DynClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // Hints would borrow from material that a reload may replace; clients
        // then offer their certificate without them.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self.verifier()?.verify_client_cert(end_entity, intermediates, now)?;
        if self.members_only {
            self.check_member(end_entity, intermediates, now)?;
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verifier()?.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verifier()?.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.verifier().map(|v| v.supported_verify_schemes()).unwrap_or_default()
    }
}

#[derive(Debug)]
struct DynServerVerifier(Arc<Current>);

impl DynServerVerifier {
    fn verifier(&self) -> Result<Arc<dyn ServerCertVerifier>, rustls::Error> {
        self.0.get().server_verifier.clone().ok_or_else(no_verifier)
    }
}

impl ServerCertVerifier for DynServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.verifier()?.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verifier()?.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verifier()?.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.verifier().map(|v| v.supported_verify_schemes()).unwrap_or_default()
    }
}

/// A static client config from PEM files (for command-line tools): trusts
/// `ca_file`, presents `cert_file`/`key_file` when both are given.
pub fn client_config_from_files(
    ca_file: &Path,
    cert_and_key: Option<(&Path, &Path)>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let ca = read_file(ca_file)?;
    let mut roots = RootCertStore::empty();
    for cert in parse_certs(ca_file, &ca, "one or more CA certificates")? {
        roots
            .add(cert)
            .map_err(|e| TlsError { file: ca_file.to_path_buf(), why: format!("not a CA certificate: {e}") })?;
    }
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(rustls::DEFAULT_VERSIONS)
        .map_err(|e| TlsError { file: ca_file.to_path_buf(), why: e.to_string() })?
        .with_root_certificates(roots);
    let config = match cert_and_key {
        Some((cert_file, key_file)) => {
            let certs = parse_certs(cert_file, &read_file(cert_file)?, "the certificate chain, leaf first")?;
            let key = PrivateKeyDer::from_pem_slice(&read_file(key_file)?).map_err(|e| TlsError {
                file: key_file.to_path_buf(),
                why: format!("not a valid PEM private key: {e}"),
            })?;
            builder.with_client_auth_cert(certs, key).map_err(|e| TlsError {
                file: key_file.to_path_buf(),
                why: format!("does not go with the certificate in {}: {e}", cert_file.display()),
            })?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// The `notAfter` of a DER certificate, in Unix seconds (`None` if the
/// certificate cannot be read that far).
pub fn not_after_unix_s(cert: &[u8]) -> Option<i64> {
    // Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL,
    //   serialNumber, signature, issuer, validity SEQUENCE { notBefore, notAfter }, ... } ... }
    let (tag, certificate, _) = der_element(cert)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, mut tbs, _) = der_element(certificate)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, _, rest) = der_element(tbs)?;
    if tag == 0xa0 {
        tbs = rest;
    }
    // serialNumber, signature, issuer.
    for _ in 0..3 {
        tbs = der_element(tbs)?.2;
    }
    let (tag, validity, _) = der_element(tbs)?;
    if tag != 0x30 {
        return None;
    }
    let (_, _, rest) = der_element(validity)?;
    let (tag, not_after, _) = der_element(rest)?;
    let text = std::str::from_utf8(not_after).ok()?;
    let digits = text.strip_suffix('Z')?;
    let (year, rest) = match tag {
        // UTCTime: YYMMDDHHMMSSZ, years 1950-2049.
        0x17 if digits.len() == 12 => {
            let yy: i64 = digits[0..2].parse().ok()?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, &digits[2..])
        }
        // GeneralizedTime: YYYYMMDDHHMMSSZ.
        0x18 if digits.len() == 14 => (digits[0..4].parse().ok()?, &digits[4..]),
        _ => return None,
    };
    let field = |i: usize| -> Option<i64> { rest.get(i..i + 2)?.parse().ok() };
    let (month, day, hour, minute, second) = (field(0)?, field(2)?, field(4)?, field(6)?, field(8)?);
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// One DER element: its tag, contents and what follows it.
fn der_element(bytes: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *bytes.first()?;
    let first = *bytes.get(1)?;
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..count {
            len = (len << 8) | usize::from(*bytes.get(2 + i)?);
        }
        (len, 2 + count)
    };
    let end = header.checked_add(len)?;
    Some((tag, bytes.get(header..end)?, bytes.get(end..)?))
}

/// Seconds until `not_after_unix_s` from now (negative once expired).
pub fn seconds_until(not_after_unix_s: i64) -> i64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    not_after_unix_s - now
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_days_match_known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2038, 1, 19), 24_855);
    }

    fn self_signed(not_after: (i32, u8, u8)) -> (rcgen::CertifiedKey, String) {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let pem = key.serialize_pem();
        (rcgen::CertifiedKey { cert, key_pair: key }, pem)
    }

    #[test]
    fn not_after_is_read_from_utc_and_generalized_times() {
        // 2030 is written as UTCTime, 2060 as GeneralizedTime.
        let (a, _) = self_signed((2030, 6, 15));
        assert_eq!(not_after_unix_s(a.cert.der()), Some(days_from_civil(2030, 6, 15) * 86_400));
        let (b, _) = self_signed((2060, 1, 2));
        assert_eq!(not_after_unix_s(b.cert.der()), Some(days_from_civil(2060, 1, 2) * 86_400));
        assert_eq!(not_after_unix_s(b"\x30\x05garbage"), None);
        assert_eq!(not_after_unix_s(&[]), None);
    }

    fn write_pair(dir: &Path, name: &str, not_after: (i32, u8, u8)) -> TlsFiles {
        let (ck, key_pem) = self_signed(not_after);
        let cert_file = dir.join(format!("{name}.crt"));
        let key_file = dir.join(format!("{name}.key"));
        std::fs::write(&cert_file, ck.cert.pem()).unwrap();
        std::fs::write(&key_file, key_pem).unwrap();
        TlsFiles { cert_file, key_file, ca_file: None, client_cert_auth: false, members_only: false }
    }

    #[test]
    fn a_bad_file_keeps_the_old_material_until_a_good_one_replaces_it() {
        let dir = tempfile::tempdir().unwrap();
        let files = write_pair(dir.path(), "a", (2031, 1, 1));
        let tls = TlsContext::load("client", files.clone(), &[b"h2"]).unwrap();
        let first = tls.status().not_after_unix_s;
        assert_eq!(first, Some(days_from_civil(2031, 1, 1) * 86_400));
        assert_eq!(tls.reload(false), Ok(false), "unchanged files are not reloaded");
        // A file missing for a moment, then back as it was: the error clears.
        let kept = std::fs::read(&files.cert_file).unwrap();
        std::fs::remove_file(&files.cert_file).unwrap();
        let error = tls.reload(false).unwrap_err();
        assert!(error.why.starts_with("cannot read it"), "{error}");
        assert_eq!(tls.status().error, Some(error));
        std::fs::write(&files.cert_file, &kept).unwrap();
        assert_eq!(tls.reload(false), Ok(false));
        assert_eq!(tls.status().error, None);
        // A truncated certificate: refused, the old one stays.
        std::fs::write(&files.cert_file, "-----BEGIN CERTIFICATE-----\nAAAA\n").unwrap();
        let error = tls.reload(false).unwrap_err();
        assert_eq!(error.file, files.cert_file);
        assert!(error.why.contains("not valid PEM"), "{error}");
        let status = tls.status();
        assert_eq!(status.not_after_unix_s, first);
        assert_eq!(status.error.as_ref(), Some(&error));
        assert_eq!(status.reload_failures, 2);
        // A key of another certificate: refused, naming the key file.
        let other = write_pair(dir.path(), "b", (2032, 2, 2));
        std::fs::copy(&other.cert_file, &files.cert_file).unwrap();
        let error = tls.reload(false).unwrap_err();
        assert_eq!(error.file, files.key_file);
        assert!(error.why.contains("does not go with the certificate"), "{error}");
        // The matching key: accepted, the error clears.
        std::fs::copy(&other.key_file, &files.key_file).unwrap();
        assert_eq!(tls.reload(false), Ok(true));
        let status = tls.status();
        assert_eq!(status.not_after_unix_s, Some(days_from_civil(2032, 2, 2) * 86_400));
        assert_eq!(status.error, None);
        assert_eq!((status.reloads, status.reload_failures), (1, 3));
    }

    #[test]
    fn client_cert_auth_without_a_ca_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let files = TlsFiles { client_cert_auth: true, ..write_pair(dir.path(), "a", (2031, 1, 1)) };
        let error = TlsContext::load("client", files, &[]).unwrap_err();
        assert!(error.why.contains("client_cert_auth needs ca_file"), "{error}");
    }

    /// A CA and two leaves it signs: a member (serverAuth + clientAuth,
    /// `localhost`) and a client (clientAuth only), as PEM files in `dir`.
    fn ca_member_client(dir: &Path) -> (PathBuf, TlsFiles, (PathBuf, PathBuf)) {
        use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose as Eku, IsCa, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca.self_signed(&ca_key).unwrap();
        let leaf = |sans: Vec<String>, usages: Vec<Eku>, name: &str| {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(sans).unwrap();
            params.extended_key_usages = usages;
            let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
            let (cert_file, key_file) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
            std::fs::write(&cert_file, cert.pem()).unwrap();
            std::fs::write(&key_file, key.serialize_pem()).unwrap();
            (cert_file, key_file)
        };
        let ca_file = dir.join("ca.crt");
        std::fs::write(&ca_file, ca.pem()).unwrap();
        let (cert_file, key_file) = leaf(vec!["localhost".into()], vec![Eku::ServerAuth, Eku::ClientAuth], "member");
        let client = leaf(Vec::new(), vec![Eku::ClientAuth], "client");
        let member = TlsFiles {
            cert_file,
            key_file,
            ca_file: Some(ca_file.clone()),
            client_cert_auth: true,
            members_only: true,
        };
        (ca_file, member, client)
    }

    /// Runs a TLS handshake in memory; the server's error, if any.
    fn handshake(server: &TlsContext, client: Arc<ClientConfig>) -> Result<(), rustls::Error> {
        let mut server = rustls::ServerConnection::new(server.inner.server.clone()).unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let mut client = rustls::ClientConnection::new(client, name).unwrap();
        for _ in 0..20 {
            let mut bytes = Vec::new();
            client.write_tls(&mut bytes).unwrap();
            server.read_tls(&mut bytes.as_slice()).unwrap();
            server.process_new_packets()?;
            let mut bytes = Vec::new();
            server.write_tls(&mut bytes).unwrap();
            client.read_tls(&mut bytes.as_slice()).unwrap();
            client.process_new_packets()?;
            if !server.is_handshaking() && !client.is_handshaking() {
                return Ok(());
            }
        }
        panic!("the handshake did not finish");
    }

    #[test]
    fn the_peer_port_accepts_members_and_refuses_client_certificates_of_the_same_ca() {
        let dir = tempfile::tempdir().unwrap();
        let (ca_file, member, (client_cert, client_key)) = ca_member_client(dir.path());
        let peer = TlsContext::load("peer", member.clone(), &[]).unwrap();
        // Another member (the same certificate here) dials: accepted.
        assert_eq!(handshake(&peer, peer.client_config().unwrap()), Ok(()));
        // A client certificate of the cluster CA: refused on the peer port...
        let client = client_config_from_files(&ca_file, Some((&client_cert, &client_key))).unwrap();
        let refused = handshake(&peer, client.clone()).unwrap_err();
        let as_io = io::Error::new(io::ErrorKind::InvalidData, refused);
        assert_eq!(failure_reason(&as_io), "not_a_member");
        // ...and accepted where clients belong.
        let clients = TlsContext::load("client", TlsFiles { members_only: false, ..member }, &[b"h2"]).unwrap();
        assert_eq!(handshake(&clients, client), Ok(()));
        // No certificate at all.
        let anonymous = client_config_from_files(&ca_file, None).unwrap();
        let refused = handshake(&clients, anonymous).unwrap_err();
        assert_eq!(failure_reason(&io::Error::new(io::ErrorKind::InvalidData, refused)), "no_certificate");
    }
}
