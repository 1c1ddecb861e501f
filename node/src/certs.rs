//! `lockstep certs init`: a CA, member certificates and client certificates
//! for a development or small production cluster, generated with rcgen.
//!
//! The directory gets `ca.crt` and `ca.key` (the cluster CA), `member-N.crt`
//! and `member-N.key` for each member (serverAuth and clientAuth, so one
//! certificate serves a member's client, peer and admin ports and is the
//! client certificate it presents to other members), and `NAME.crt` /
//! `NAME.key` for each client (clientAuth, common name `NAME`). Member
//! certificates name `localhost`, `127.0.0.1` and `::1` plus every `--host`.
//! Keys are ECDSA P-256, written with mode 0600; existing files are never
//! overwritten unless asked to.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose};

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertsOptions {
    /// The directory to write into (created, mode 0700, if missing).
    pub dir: PathBuf,
    /// Member certificates to make: `member-1` … `member-N`.
    pub members: u64,
    /// Host names and IP addresses every member certificate names, besides
    /// `localhost`, `127.0.0.1` and `::1`.
    pub hosts: Vec<String>,
    /// Client certificates to make, by common name.
    pub clients: Vec<String>,
    /// Validity of member and client certificates, in days.
    pub days: u32,
    /// Validity of the CA certificate, in days.
    pub ca_days: u32,
    /// Overwrite existing files.
    pub force: bool,
}

impl CertsOptions {
    /// Defaults for `dir`: three members, one client named `client`, one year
    /// (the CA ten years).
    pub fn new(dir: PathBuf) -> CertsOptions {
        CertsOptions {
            dir,
            members: 3,
            hosts: Vec::new(),
            clients: vec!["client".into()],
            days: 365,
            ca_days: 3650,
            force: false,
        }
    }
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertsReport {
    /// The directory.
    pub dir: PathBuf,
    /// The files, in the order written.
    pub files: Vec<PathBuf>,
}

impl CertsReport {
    /// The CA bundle.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
}

/// The certificate and key files of member `id` in `dir`.
pub fn member_files(dir: &Path, id: u64) -> (PathBuf, PathBuf) {
    (dir.join(format!("member-{id}.crt")), dir.join(format!("member-{id}.key")))
}

/// The certificate and key files of client `name` in `dir`.
pub fn client_files(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")))
}

fn validity(params: &mut CertificateParams, days: u32) {
    let now = time::OffsetDateTime::now_utc();
    // An hour of slack for clocks a little behind.
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(i64::from(days));
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && !name.starts_with('.')
}

/// Generates the CA, member and client certificates into `options.dir`.
///
/// # Errors
/// A file that exists (without `force`), a bad host or client name, or an I/O
/// error, as a message naming the file.
pub fn init(options: &CertsOptions) -> Result<CertsReport, String> {
    if options.members == 0 || options.members > 1000 {
        return Err(format!("--members {}: must be between 1 and 1000", options.members));
    }
    for name in &options.clients {
        if !valid_name(name) {
            return Err(format!("--client {name:?}: use letters, digits, '-', '_' and '.'"));
        }
    }
    let dir = &options.dir;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut planned = vec![dir.join("ca.crt"), dir.join("ca.key")];
    for id in 1..=options.members {
        let (cert, key) = member_files(dir, id);
        planned.extend([cert, key]);
    }
    for name in &options.clients {
        let (cert, key) = client_files(dir, name);
        planned.extend([cert, key]);
    }
    if !options.force {
        if let Some(existing) = planned.iter().find(|p| p.exists()) {
            return Err(format!(
                "{} exists; choose another --dir, or pass --force to replace every file (existing clients and members \
                 then need the new CA)",
                existing.display()
            ));
        }
    }
    let err = |e: rcgen::Error| format!("generating certificates: {e}");

    let ca_key = KeyPair::generate().map_err(err)?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    // A name of its own, so that two CAs (an old and a new one during a
    // rotation) are told apart by name, not only by key.
    let serial = time::OffsetDateTime::now_utc().unix_timestamp_nanos() as u64 ^ u64::from(std::process::id());
    ca.distinguished_name.push(DnType::CommonName, format!("lockstep cluster CA {serial:016x}"));
    ca.distinguished_name.push(DnType::OrganizationName, "lockstep");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    validity(&mut ca, options.ca_days);
    let ca_cert = ca.self_signed(&ca_key).map_err(err)?;

    let mut report = CertsReport { dir: dir.clone(), files: Vec::new() };
    write(&dir.join("ca.crt"), &ca_cert.pem(), 0o644, &mut report)?;
    write(&dir.join("ca.key"), &ca_key.serialize_pem(), 0o600, &mut report)?;

    let mut sans: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    for host in &options.hosts {
        if !sans.contains(host) {
            sans.push(host.clone());
        }
    }
    for id in 1..=options.members {
        let key = KeyPair::generate().map_err(err)?;
        let mut params =
            CertificateParams::new(sans.clone()).map_err(|e| format!("--host: not a host name or IP address: {e}"))?;
        params.distinguished_name.push(DnType::CommonName, format!("member-{id}"));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        validity(&mut params, options.days);
        let cert = params.signed_by(&key, &ca_cert, &ca_key).map_err(err)?;
        let (cert_file, key_file) = member_files(dir, id);
        write(&cert_file, &cert.pem(), 0o644, &mut report)?;
        write(&key_file, &key.serialize_pem(), 0o600, &mut report)?;
    }
    for name in &options.clients {
        let key = KeyPair::generate().map_err(err)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        params.distinguished_name.push(DnType::CommonName, name.as_str());
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        validity(&mut params, options.days);
        let cert = params.signed_by(&key, &ca_cert, &ca_key).map_err(err)?;
        let (cert_file, key_file) = client_files(dir, name);
        write(&cert_file, &cert.pem(), 0o644, &mut report)?;
        write(&key_file, &key.serialize_pem(), 0o600, &mut report)?;
    }
    Ok(report)
}

/// Writes `text` to `path` with `mode` (replacing the file: a key's mode is
/// set when it is created, never widened afterwards).
fn write(path: &Path, text: &str, mode: u32, report: &mut CertsReport) -> Result<(), String> {
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    report.files.push(path.to_path_buf());
    Ok(())
}

/// The text `lockstep certs init` prints: the files, a member's `tls:` section
/// and the etcdctl and `lockstep cluster` flags.
pub fn summary(options: &CertsOptions, report: &CertsReport) -> String {
    let dir = report.dir.display();
    let names: Vec<String> =
        report.files.iter().filter_map(|f| f.file_name().map(|n| n.to_string_lossy().into_owned())).collect();
    let client = options.clients.first().map_or("client", String::as_str);
    let mut out = format!("wrote {dir}: {} (keys with mode 0600)\n\n", names.join(" "));
    out.push_str("member N's config (each member its own member-N.crt and member-N.key):\n");
    out.push_str("tls:\n");
    for (port, auth) in [("client", true), ("peer", false), ("admin", true)] {
        out.push_str(&format!("  {port}:\n"));
        out.push_str(&format!("    cert_file: {dir}/member-N.crt\n"));
        out.push_str(&format!("    key_file: {dir}/member-N.key\n"));
        out.push_str(&format!("    ca_file: {dir}/ca.crt\n"));
        if auth {
            out.push_str("    client_cert_auth: true\n");
        }
    }
    out.push_str(&format!(
        "\nclients:\n  etcdctl --endpoints https://127.0.0.1:2379 --cacert {dir}/ca.crt --cert {dir}/{client}.crt --key \
         {dir}/{client}.key member list\n  lockstep cluster members --endpoints https://127.0.0.1:8080 --cacert \
         {dir}/ca.crt --cert {dir}/{client}.crt --key {dir}/{client}.key\n"
    ));
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn init_writes_a_ca_members_and_clients_with_private_keys() {
        let dir = tempfile::tempdir().unwrap();
        let mut options = CertsOptions::new(dir.path().join("certs"));
        options.members = 2;
        options.hosts = vec!["node1.example.com".into(), "10.0.0.1".into()];
        options.clients = vec!["client".into(), "root".into()];
        let report = init(&options).unwrap();
        let names: Vec<String> =
            report.files.iter().map(|f| f.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(
            names,
            [
                "ca.crt",
                "ca.key",
                "member-1.crt",
                "member-1.key",
                "member-2.crt",
                "member-2.key",
                "client.crt",
                "client.key",
                "root.crt",
                "root.key"
            ]
        );
        for file in &report.files {
            let mode = std::fs::metadata(file).unwrap().permissions().mode() & 0o777;
            let expected = if file.extension().unwrap() == "key" { 0o600 } else { 0o644 };
            assert_eq!(mode, expected, "{}", file.display());
        }
        // The member certificate is one a server and a client accept.
        let files = lockstep_runtime::tls::TlsFiles {
            cert_file: dir.path().join("certs/member-1.crt"),
            key_file: dir.path().join("certs/member-1.key"),
            ca_file: Some(report.ca_file()),
            client_cert_auth: true,
            members_only: true,
        };
        let tls = lockstep_runtime::tls::TlsContext::load("peer", files, &[]).unwrap();
        let left = lockstep_runtime::tls::seconds_until(tls.status().not_after_unix_s.unwrap());
        assert!((364 * 86_400..=365 * 86_400).contains(&left), "{left}");
        // A second run refuses to overwrite; --force replaces.
        let again = init(&options).unwrap_err();
        assert!(again.contains("ca.crt exists"), "{again}");
        options.force = true;
        init(&options).unwrap();
        assert!(init(&CertsOptions { clients: vec!["../x".into()], ..options.clone() }).is_err());
    }
}
