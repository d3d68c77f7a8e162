//! TLS configuration: reading the certificate and key files into a rustls `ServerConfig`
//! (once per server, never per connection), swapping it on reload, and describing a
//! finished handshake in mod_ssl's terms for the environ; and saying why a handshake
//! failed in plain words, from a fixed set of reasons (a metrics label per reason,
//! never per error text), with at most one log line a minute ([`HandshakeFailures`]),
//! so that a scanner cannot flood the log.
//!
//! The session I/O itself (handshake, encryption of responses) is in `transport.rs`.

use std::fmt::Write as _;
use std::io;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use rustls::crypto::ring as provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ServerSessionMemoryCache, WebPkiClientVerifier};
use rustls::{
    AlertDescription, PeerIncompatible, ProtocolVersion, RootCertStore, ServerConfig,
    ServerConnection,
};

use crate::engine::errors::is_disconnect;

/// Whether clients must, may or may not present a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyClient {
    None,
    Optional,
    Required,
}

/// The TLS settings, as given (file names are read by [`build_config`]).
#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub certificate: String,
    pub private_key: String,
    pub certificate_chain: Option<String>,
    pub private_key_password: Option<String>,
    pub ca_certificate: Option<String>,
    pub verify_client: VerifyClient,
    /// Only TLS 1.3 (`ssl_min_version = 1.3`); otherwise 1.2 and 1.3.
    pub tls13_only: bool,
    /// Offer HTTP/2 (`http2`): ALPN `h2` before `http/1.1`.
    pub http2: bool,
}

/// Reads every file the settings name and builds the configuration shared by all the
/// connections of the TLS listeners. Errors name the setting at fault.
pub fn build_config(s: &TlsSettings) -> Result<Arc<ServerConfig>, String> {
    let mut chain = read_certs("ssl_certificate", &s.certificate)?;
    if let Some(path) = &s.certificate_chain {
        chain.extend(read_certs("ssl_certificate_chain", path)?);
    }
    let key = read_key(&s.private_key, s.private_key_password.as_deref())?;
    let provider = Arc::new(provider::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = if s.tls13_only {
        &[&rustls::version::TLS13]
    } else {
        &[&rustls::version::TLS12, &rustls::version::TLS13]
    };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| format!("ssl_min_version: {e}"))?;
    // Read (and so checked) even when not asked for: a bad file is said at start.
    let roots = match &s.ca_certificate {
        None => None,
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for cert in read_certs("ssl_ca_certificate", path)? {
                roots
                    .add(cert)
                    .map_err(|e| format!("ssl_ca_certificate: {path}: {e}"))?;
            }
            Some((path, roots))
        }
    };
    let builder = match (roots, s.verify_client) {
        (_, VerifyClient::None) => builder.with_no_client_auth(),
        (None, _) => {
            return Err(
                "ssl_verify_client needs ssl_ca_certificate (the CA that signs \
                        client certificates)"
                    .into(),
            )
        }
        (Some((path, roots)), mode) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if mode == VerifyClient::Optional {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder.with_client_cert_verifier(
                verifier
                    .build()
                    .map_err(|e| format!("ssl_ca_certificate: {path}: {e}"))?,
            )
        }
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| {
        format!(
            "ssl_private_key: {} does not fit ssl_certificate {}: {e}",
            s.private_key, s.certificate
        )
    })?;
    // The client picks from its own preference list (RFC 7301); one that offers both
    // and prefers h2 gets it.
    config.alpn_protocols = if s.http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    // Resumption both ways: session IDs (TLS 1.2) and tickets (both versions).
    config.session_storage = ServerSessionMemoryCache::new(4096);
    config.ticketer = provider::Ticketer::new().map_err(|e| format!("TLS session tickets: {e}"))?;
    Ok(Arc::new(config))
}

fn read_file(setting: &str, path: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{setting}: cannot read {path}: {e}"))
}

fn read_certs(setting: &str, path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read_file(setting, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{setting}: {path}: not a PEM certificate file: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{setting}: {path}: no PEM certificate in it"));
    }
    for cert in &certs {
        if let Err(e) = x509_parser::parse_x509_certificate(cert) {
            return Err(format!("{setting}: {path}: unreadable certificate: {e}"));
        }
    }
    Ok(certs)
}

/// A PEM private key: PKCS#8 (also encrypted, with `password`), PKCS#1 or SEC1.
fn read_key(path: &str, password: Option<&str>) -> Result<PrivateKeyDer<'static>, String> {
    const S: &str = "ssl_private_key";
    let pem = read_file(S, path)?;
    let text = String::from_utf8_lossy(&pem);
    if text.contains("Proc-Type: 4,ENCRYPTED") {
        return Err(format!(
            "{S}: {path}: legacy OpenSSL key encryption is not supported; convert the key \
             with `openssl pkcs8 -topk8 -v2 aes256` (encrypted PKCS#8) and give \
             ssl_private_key_password"
        ));
    }
    if let Some(start) = text.find("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
        let Some(password) = password else {
            return Err(format!(
                "{S}: {path} is encrypted: ssl_private_key_password is needed"
            ));
        };
        use pkcs8::der::Decode as _;
        let (_, doc) = pkcs8::Document::from_pem(&text[start..])
            .map_err(|e| format!("{S}: {path}: unreadable encrypted key: {e}"))?;
        let info = pkcs8::EncryptedPrivateKeyInfo::from_der(doc.as_bytes())
            .map_err(|e| format!("{S}: {path}: unreadable encrypted key: {e}"))?;
        let plain = info.decrypt(password).map_err(|e| {
            format!("ssl_private_key_password: cannot decrypt {path} (wrong password?): {e}")
        })?;
        return Ok(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            plain.as_bytes().to_vec(),
        )));
    }
    PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| format!("{S}: {path}: no PEM private key (PKCS#8, PKCS#1 or SEC1) in it: {e}"))
}

/// What the TLS listeners share: the current configuration, replaced on reload.
pub struct TlsAcceptor {
    settings: TlsSettings,
    config: RwLock<Arc<ServerConfig>>,
}

impl std::fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsAcceptor")
            .field("settings", &self.settings)
            .finish()
    }
}

impl TlsAcceptor {
    pub fn new(settings: TlsSettings) -> Result<TlsAcceptor, String> {
        let config = build_config(&settings)?;
        Ok(TlsAcceptor {
            settings,
            config: RwLock::new(config),
        })
    }

    /// Reads the files again; new connections get the new configuration, open ones keep
    /// theirs. On error the old configuration stays and the error says why.
    pub fn reload(&self) -> Result<(), String> {
        let config = build_config(&self.settings)?;
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = config;
        Ok(())
    }

    /// A server session for a new connection.
    pub fn session(&self) -> Result<ServerConnection, rustls::Error> {
        let config = self
            .config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        ServerConnection::new(config)
    }
}

/// The mod_ssl variables of a finished handshake, in the order they are set.
pub fn environ_of(conn: &ServerConnection) -> Vec<(&'static str, String)> {
    let mut env = Vec::with_capacity(16);
    env.push(("HTTPS", "on".to_string()));
    let protocol = match conn.protocol_version() {
        Some(ProtocolVersion::TLSv1_3) => "TLSv1.3",
        Some(ProtocolVersion::TLSv1_2) => "TLSv1.2",
        _ => "",
    };
    env.push(("SSL_PROTOCOL", protocol.to_string()));
    if let Some(suite) = conn.negotiated_cipher_suite() {
        env.push(("SSL_CIPHER", openssl_cipher_name(suite.suite()).to_string()));
    }
    if let Some(sni) = conn.server_name() {
        env.push(("SSL_TLS_SNI", sni.to_string()));
    }
    match conn.peer_certificates().and_then(|c| c.first()) {
        Some(cert) => {
            env.push(("SSL_CLIENT_VERIFY", "SUCCESS".to_string()));
            client_cert_vars(cert, &mut env);
        }
        None => env.push(("SSL_CLIENT_VERIFY", "NONE".to_string())),
    }
    env
}

/// OpenSSL's names for rustls's suites, which are what mod_ssl (and so applications)
/// show in SSL_CIPHER.
fn openssl_cipher_name(suite: rustls::CipherSuite) -> &'static str {
    use rustls::CipherSuite as C;
    match suite {
        C::TLS13_AES_256_GCM_SHA384 => "TLS_AES_256_GCM_SHA384",
        C::TLS13_AES_128_GCM_SHA256 => "TLS_AES_128_GCM_SHA256",
        C::TLS13_CHACHA20_POLY1305_SHA256 => "TLS_CHACHA20_POLY1305_SHA256",
        C::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 => "ECDHE-ECDSA-AES256-GCM-SHA384",
        C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 => "ECDHE-ECDSA-AES128-GCM-SHA256",
        C::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 => "ECDHE-ECDSA-CHACHA20-POLY1305",
        C::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => "ECDHE-RSA-AES256-GCM-SHA384",
        C::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => "ECDHE-RSA-AES128-GCM-SHA256",
        C::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => "ECDHE-RSA-CHACHA20-POLY1305",
        _ => suite.as_str().unwrap_or("UNKNOWN"),
    }
}

fn client_cert_vars(der: &CertificateDer<'_>, env: &mut Vec<(&'static str, String)>) {
    env.push(("SSL_CLIENT_CERT", pem_certificate(der)));
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return;
    };
    env.push(("SSL_CLIENT_M_VERSION", (cert.version().0 + 1).to_string()));
    env.push(("SSL_CLIENT_M_SERIAL", serial_hex(cert.raw_serial())));
    env.push(("SSL_CLIENT_S_DN", rfc2253(cert.subject())));
    env.push(("SSL_CLIENT_I_DN", rfc2253(cert.issuer())));
    for (key, value) in [
        ("SSL_CLIENT_S_DN_CN", cn(cert.subject())),
        ("SSL_CLIENT_I_DN_CN", cn(cert.issuer())),
    ] {
        if let Some(v) = value {
            env.push((key, v));
        }
    }
    let validity = cert.validity();
    env.push((
        "SSL_CLIENT_V_START",
        asn1_time(validity.not_before.timestamp()),
    ));
    env.push((
        "SSL_CLIENT_V_END",
        asn1_time(validity.not_after.timestamp()),
    ));
    let remain = (validity.not_after.timestamp() - now_secs()).max(0) / 86_400;
    env.push(("SSL_CLIENT_V_REMAIN", remain.to_string()));
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn cn(name: &x509_parser::x509::X509Name<'_>) -> Option<String> {
    let cn = name.iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}

/// The serial number as OpenSSL prints it: upper-case hex of its magnitude.
fn serial_hex(raw: &[u8]) -> String {
    let mut bytes = raw;
    while bytes.len() > 1 && bytes[0] == 0 {
        bytes = &bytes[1..];
    }
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02X}");
    }
    s
}

/// A distinguished name as mod_ssl gives it (OpenSSL's RFC 2253 form: the most
/// specific attribute first, `,` between them, specials escaped).
pub fn rfc2253(name: &x509_parser::x509::X509Name<'_>) -> String {
    use x509_parser::oid_registry as oids;
    let mut out = String::new();
    for rdn in name.iter().collect::<Vec<_>>().into_iter().rev() {
        for (i, attr) in rdn.iter().enumerate() {
            if !out.is_empty() {
                out.push(if i == 0 { ',' } else { '+' });
            }
            let oid = attr.attr_type();
            let short = [
                (oids::OID_X509_COMMON_NAME, "CN"),
                (oids::OID_X509_COUNTRY_NAME, "C"),
                (oids::OID_X509_LOCALITY_NAME, "L"),
                (oids::OID_X509_STATE_OR_PROVINCE_NAME, "ST"),
                (oids::OID_X509_ORGANIZATION_NAME, "O"),
                (oids::OID_X509_ORGANIZATIONAL_UNIT, "OU"),
                (oids::OID_PKCS9_EMAIL_ADDRESS, "emailAddress"),
                (oids::OID_DOMAIN_COMPONENT, "DC"),
                (oids::OID_X509_SERIALNUMBER, "serialNumber"),
            ]
            .iter()
            .find(|(o, _)| o == oid)
            .map(|(_, s)| s.to_string())
            .unwrap_or_else(|| oid.to_id_string());
            out.push_str(&short);
            out.push('=');
            match attr.as_str() {
                Ok(v) => escape_dn_value(v, &mut out),
                Err(_) => {
                    // Not a string type: RFC 2253 gives the DER value in hex after '#'.
                    out.push('#');
                    for b in attr.attr_value().data.iter() {
                        let _ = write!(out, "{b:02X}");
                    }
                }
            }
        }
    }
    out
}

fn escape_dn_value(v: &str, out: &mut String) {
    let last = v.chars().count().saturating_sub(1);
    for (i, c) in v.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
}

/// A certificate time as OpenSSL prints it (`Dec  2 05:32:08 2026 GMT`).
fn asn1_time(t: i64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{} {:>2} {:02}:{:02}:{:02} {} GMT",
        MONTHS[(m - 1) as usize],
        d,
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        y
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn pem_certificate(der: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = Vec::with_capacity(der.len().div_ceil(3) * 4);
    for chunk in der.chunks(3) {
        let n = chunk.len();
        let v = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= n {
                b64.push(ALPHABET[(v >> (18 - 6 * i) & 63) as usize]);
            } else {
                b64.push(b'=');
            }
        }
    }
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// Why handshakes fail: (metrics label, plain words), in the order of the
/// `tls_handshake_failures` figure of `engine::stats`. Only ever appended to.
pub const HANDSHAKE_FAILURES: [(&str, &str); 7] = [
    ("no_shared_version", "no shared protocol version"),
    ("no_shared_cipher", "no shared cipher suite"),
    (
        "no_shared_algorithm",
        "no shared key exchange or signature algorithm",
    ),
    ("bad_certificate", "client certificate refused"),
    ("not_tls", "not a TLS handshake"),
    ("peer_closed", "closed by the client"),
    ("other", "other errors"),
];
const NO_SHARED_VERSION: usize = 0;
const NO_SHARED_CIPHER: usize = 1;
const NO_SHARED_ALGORITHM: usize = 2;
const BAD_CERTIFICATE: usize = 3;
pub const NOT_TLS: usize = 4;
const PEER_CLOSED: usize = 5;
const OTHER: usize = 6;

/// The error a TLS session gives for a first record that is neither a TLS handshake nor
/// an HTTP request (binary bytes, a scanner's probe, SSL 2.0).
#[derive(Debug)]
pub struct NotAHandshake;

impl std::fmt::Display for NotAHandshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not a TLS handshake")
    }
}

impl std::error::Error for NotAHandshake {}

/// Why a handshake failed with `e`: the index of its reason in [`HANDSHAKE_FAILURES`],
/// and a sentence in plain words for the log.
pub fn handshake_failure(e: &io::Error) -> (usize, String) {
    let inner = e.get_ref();
    if inner.is_some_and(|i| i.is::<NotAHandshake>()) {
        return (NOT_TLS, "the first bytes are not a TLS handshake".into());
    }
    let Some(err) = inner.and_then(|i| i.downcast_ref::<rustls::Error>()) else {
        if is_disconnect(e) {
            return (
                PEER_CLOSED,
                format!("the client closed the connection ({e})"),
            );
        }
        return (OTHER, e.to_string());
    };
    use rustls::Error as E;
    match err {
        E::PeerIncompatible(p) => {
            use PeerIncompatible as P;
            match p {
                P::NoCipherSuitesInCommon => (
                    NO_SHARED_CIPHER,
                    "the client offers no cipher suite the server has".into(),
                ),
                // A client without these extensions speaks TLS 1.1 or older.
                P::SupportedVersionsExtensionRequired
                | P::SignatureAlgorithmsExtensionRequired
                | P::Tls12NotOffered
                | P::Tls12NotOfferedOrEnabled
                | P::ServerDoesNotSupportTls12Or13 => (
                    NO_SHARED_VERSION,
                    "the client offers no TLS version the server accepts (TLS 1.2 or 1.3; \
                     TLS 1.3 only with ssl_min_version = 1.3)"
                        .into(),
                ),
                _ => (
                    NO_SHARED_ALGORITHM,
                    "no key exchange group or signature scheme in common".into(),
                ),
            }
        }
        E::NoCertificatesPresented => (
            BAD_CERTIFICATE,
            "the client sent no certificate (ssl_verify_client = required)".into(),
        ),
        E::InvalidCertificate(c) => {
            let text = format!("{c:?}");
            if text.contains("UnsupportedCertVersion") {
                // webpki takes X.509 v3 only; OpenSSL's `x509 -req` without extensions
                // makes v1 certificates (see docs/https.md for a v3 one).
                (
                    BAD_CERTIFICATE,
                    "client certificate is X.509 v1; only v3 is accepted".into(),
                )
            } else {
                (
                    BAD_CERTIFICATE,
                    format!("client certificate refused: {err}"),
                )
            }
        }
        E::AlertReceived(a) => {
            let why = match a {
                AlertDescription::UnknownCA
                | AlertDescription::BadCertificate
                | AlertDescription::CertificateUnknown => {
                    "the client does not trust the server's certificate"
                }
                AlertDescription::ProtocolVersion => "the client wants another TLS version",
                AlertDescription::HandshakeFailure | AlertDescription::InsufficientSecurity => {
                    "the client found nothing acceptable in the server's offer"
                }
                _ => "the client gave up",
            };
            (PEER_CLOSED, format!("{why} (alert {a:?})"))
        }
        _ => (OTHER, err.to_string()),
    }
}

/// How long failed handshakes are gathered into one log line.
pub const FAILURE_SUMMARY_INTERVAL: Duration = Duration::from_secs(60);

/// Says failed handshakes at most once a [`FAILURE_SUMMARY_INTERVAL`]: the first
/// failure after a quiet interval at once (in its own words), the ones that follow it
/// within the interval in one summary at its end.
#[derive(Debug, Default)]
pub struct HandshakeFailures {
    /// When the last line was said; `None` once an interval passed without failures.
    said: Option<Instant>,
    /// Failures since then, by reason.
    counts: [u64; HANDSHAKE_FAILURES.len()],
    /// The last of them, in words, with its client.
    last: String,
}

impl HandshakeFailures {
    /// A failure at `now`: the line to log at once, if any.
    pub fn failed(
        &mut self,
        now: Instant,
        reason: usize,
        detail: &str,
        peer: &str,
    ) -> Option<String> {
        let line = format!("TLS handshake with {peer} failed: {detail}");
        match self.said {
            Some(at) if now.duration_since(at) < FAILURE_SUMMARY_INTERVAL => {
                self.counts[reason] += 1;
                self.last = line;
                None
            }
            _ => {
                self.said = Some(now);
                Some(line)
            }
        }
    }

    /// Called every tick: the summary of the failures gathered, once the interval since
    /// the last line has passed.
    pub fn summary(&mut self, now: Instant) -> Option<String> {
        let at = self.said?;
        if now.duration_since(at) < FAILURE_SUMMARY_INTERVAL {
            return None;
        }
        let total: u64 = self.counts.iter().sum();
        if total == 0 {
            self.said = None;
            return None;
        }
        let parts: Vec<String> = self
            .counts
            .iter()
            .zip(HANDSHAKE_FAILURES)
            .filter(|(n, _)| **n > 0)
            .map(|(n, (_, words))| format!("{n} {words}"))
            .collect();
        let s = if total == 1 { "" } else { "s" };
        let line = format!(
            "{total} more TLS handshake{s} failed in the last minute: {}; the last: {}",
            parts.join(", "),
            self.last
        );
        self.counts = Default::default();
        self.said = Some(now);
        Some(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_failures_are_said_at_most_once_a_minute() {
        let mut log = HandshakeFailures::default();
        let t0 = Instant::now();
        let first = log.failed(t0, NOT_TLS, "the first bytes are not a TLS handshake", "a");
        assert_eq!(
            first.as_deref(),
            Some("TLS handshake with a failed: the first bytes are not a TLS handshake")
        );
        for i in 1..=12u64 {
            let reason = if i <= 9 {
                NO_SHARED_VERSION
            } else {
                NO_SHARED_CIPHER
            };
            let at = t0 + Duration::from_secs(i);
            assert_eq!(log.failed(at, reason, "why", "b"), None);
        }
        assert_eq!(log.summary(t0 + Duration::from_secs(59)), None);
        let line = log.summary(t0 + FAILURE_SUMMARY_INTERVAL).unwrap();
        assert_eq!(
            line,
            "12 more TLS handshakes failed in the last minute: 9 no shared protocol \
             version, 3 no shared cipher suite; the last: TLS handshake with b failed: why"
        );
        // A quiet minute: nothing to say, and the next failure is said at once.
        let later = t0 + 2 * FAILURE_SUMMARY_INTERVAL;
        assert_eq!(log.summary(later), None);
        assert!(log.failed(later, OTHER, "x", "c").is_some());
    }

    #[test]
    fn handshake_failures_in_plain_words() {
        let wrap = |e: rustls::Error| io::Error::new(io::ErrorKind::InvalidData, e);
        let (reason, words) = handshake_failure(&wrap(rustls::Error::PeerIncompatible(
            PeerIncompatible::SignatureAlgorithmsExtensionRequired,
        )));
        assert_eq!(HANDSHAKE_FAILURES[reason].0, "no_shared_version");
        assert!(!words.contains("Extension"), "{words}");
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert_eq!(
            HANDSHAKE_FAILURES[handshake_failure(&reset).0].0,
            "peer_closed"
        );
        let e = wrap(rustls::Error::NoCertificatesPresented);
        assert_eq!(
            HANDSHAKE_FAILURES[handshake_failure(&e).0].0,
            "bad_certificate"
        );
    }

    #[test]
    fn times_print_as_openssl_does() {
        assert_eq!(asn1_time(0), "Jan  1 00:00:00 1970 GMT");
        // 2026-12-02 05:32:08 UTC
        assert_eq!(asn1_time(1_796_189_528), "Dec  2 05:32:08 2026 GMT");
        assert_eq!(asn1_time(951_782_400), "Feb 29 00:00:00 2000 GMT");
    }

    #[test]
    fn serials_lose_their_sign_byte() {
        assert_eq!(serial_hex(&[0x00, 0x9a, 0x01]), "9A01");
        assert_eq!(serial_hex(&[0x00]), "00");
        assert_eq!(serial_hex(&[0x12, 0x00]), "1200");
        // Whole bytes, as OpenSSL prints them: a leading zero digit stays.
        assert_eq!(serial_hex(&[0x0c, 0x9f]), "0C9F");
    }

    #[test]
    fn base64_pads_like_pem() {
        let pem = pem_certificate(b"ab");
        assert!(pem.contains("\nYWI=\n"), "{pem}");
        let pem = pem_certificate(b"abc");
        assert!(pem.contains("\nYWJj\n"), "{pem}");
        let pem = pem_certificate(b"a");
        assert!(pem.contains("\nYQ==\n"), "{pem}");
    }

    #[test]
    fn dn_values_are_escaped() {
        let mut out = String::new();
        escape_dn_value(" a,b+c ", &mut out);
        assert_eq!(out, "\\ a\\,b\\+c\\ ");
    }

    #[test]
    fn missing_files_name_the_setting() {
        let s = TlsSettings {
            certificate: "/nonexistent/cert.pem".into(),
            private_key: "/nonexistent/key.pem".into(),
            certificate_chain: None,
            private_key_password: None,
            ca_certificate: None,
            verify_client: VerifyClient::None,
            tls13_only: false,
            http2: false,
        };
        let e = build_config(&s).unwrap_err();
        assert!(e.starts_with("ssl_certificate: cannot read"), "{e}");
    }
}
