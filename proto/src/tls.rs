//! Mutual TLS on every Berth link, and the cluster CA behind it.
//!
//! Every certificate names its holder's *role* in a URI subject alternative
//! name — `berth://controller/ID`, `berth://node/NAME`,
//! `berth://user/NAME/ROLE` — so a server learns who calls from the
//! handshake alone and each service accepts only the roles it serves. A DNS
//! name per role (`controller.berth`, `node.berth`) is what clients verify:
//! a node's certificate cannot pose as a controller to an agent or a user,
//! whatever address was dialled.
//!
//! Rejected: a role in the subject's CN (free text, easy to mis-parse), and
//! one certificate for the whole cluster (a stolen agent key would then be
//! a controller's).

use std::path::Path;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

use crate::{Error, Result};

/// The name clients verify on a controller's certificate.
pub const CONTROLLER_DOMAIN: &str = "controller.berth";
/// The name controllers and agents verify on an agent's certificate.
pub const NODE_DOMAIN: &str = "node.berth";

/// The name to verify when dialling node `name`'s agent: `NAME.node.berth`,
/// which only that node's certificate carries — or, for a node name that
/// cannot be a DNS name, `node.berth` (any node's).
pub fn node_domain(name: &str) -> String {
    let own = format!("{name}.{NODE_DOMAIN}");
    match rustls_pki_types::DnsName::try_from(own.as_str()) {
        Ok(_) => own,
        Err(_) => NODE_DOMAIN.to_string(),
    }
}

/// Certificates a node or controller gets: short enough that a stolen key
/// stops working on its own, long enough to survive a long weekend offline.
pub const NODE_CERT_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);
/// The CA outlives every certificate it signs.
const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Who holds a certificate, as its URI name says.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Peer {
    Controller(u64),
    Node(String),
    User { name: String, role: String },
}

impl Peer {
    pub fn uri(&self) -> String {
        match self {
            Peer::Controller(id) => format!("berth://controller/{id}"),
            Peer::Node(name) => format!("berth://node/{name}"),
            Peer::User { name, role } => format!("berth://user/{name}/{role}"),
        }
    }

    /// The peer a `berth://` URI names; `None` for anything else.
    pub fn from_uri(uri: &str) -> Option<Peer> {
        let rest = uri.strip_prefix("berth://")?;
        let parts: Vec<&str> = rest.split('/').collect();
        let ok = |s: &str| !s.is_empty();
        match parts.as_slice() {
            ["controller", id] => id.parse().ok().filter(|&i| i > 0).map(Peer::Controller),
            ["node", name] if ok(name) => Some(Peer::Node(name.to_string())),
            ["user", name, role] if ok(name) && ok(role) => Some(Peer::User {
                name: name.to_string(),
                role: role.to_string(),
            }),
            _ => None,
        }
    }

    /// The peer a (chain-verified) DER certificate names. Exactly one
    /// `berth://` URI must be present: two would make the role ambiguous.
    pub fn from_der(der: &[u8]) -> Option<Peer> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let san = cert.subject_alternative_name().ok()??;
        let mut peers = san.value.general_names.iter().filter_map(|n| match n {
            x509_parser::extensions::GeneralName::URI(u) => Peer::from_uri(u),
            _ => None,
        });
        let first = peers.next()?;
        peers.next().is_none().then_some(first)
    }

    /// The DNS name this role's servers present.
    fn domain(&self) -> Option<&'static str> {
        match self {
            Peer::Controller(_) => Some(CONTROLLER_DOMAIN),
            Peer::Node(_) => Some(NODE_DOMAIN),
            Peer::User { .. } => None,
        }
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Peer::Controller(id) => write!(f, "controller {id}"),
            Peer::Node(name) => write!(f, "node {name}"),
            Peer::User { name, role } => write!(f, "user {name} ({role})"),
        }
    }
}

fn tls_err(what: &str) -> impl Fn(rcgen::Error) -> Error + '_ {
    move |e| Error::Tls(format!("{what}: {e}"))
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| Error::Tls(format!("cannot read {}: {e}", path.display())))
}

/// Writes `path` through a temporary file renamed into place, so a reader
/// (a restarting agent) never sees half a key or certificate.
fn write(path: &Path, text: &str, secret: bool) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let err = |e: std::io::Error| Error::Tls(format!("cannot write {}: {e}", path.display()));
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if secret { 0o600 } else { 0o644 })
        .open(&tmp)
        .map_err(err)?;
    f.write_all(text.as_bytes()).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// The cluster's certificate authority: its certificate and signing key.
/// Controllers hold it (they sign joining nodes' requests); agents and
/// users hold only `ca.pem`.
pub struct Ca {
    pub cert_pem: String,
    key: KeyPair,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ca { .. }")
    }
}

impl Ca {
    pub fn generate(cluster: &str) -> Result<Ca> {
        let key = KeyPair::generate().map_err(tls_err("generating the CA key"))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(&format!("Berth CA {cluster}"));
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        validity(&mut params, CA_LIFETIME);
        let cert = params
            .self_signed(&key)
            .map_err(tls_err("signing the CA"))?;
        Ok(Ca {
            cert_pem: cert.pem(),
            key,
        })
    }

    /// `ca.pem` and `ca.key` in `dir`.
    pub fn load(dir: &Path) -> Result<Ca> {
        let cert_pem = read(&dir.join("ca.pem"))?;
        let key =
            KeyPair::from_pem(&read(&dir.join("ca.key"))?).map_err(tls_err("reading ca.key"))?;
        Ok(Ca { cert_pem, key })
    }

    pub fn save(&self, dir: &Path) -> Result<()> {
        write(&dir.join("ca.pem"), &self.cert_pem, false)?;
        write(&dir.join("ca.key"), &self.key.serialize_pem(), true)
    }

    fn issuer(&self) -> Result<Issuer<'static, &KeyPair>> {
        Issuer::from_ca_cert_pem(&self.cert_pem, &self.key).map_err(tls_err("reading ca.pem"))
    }

    /// A new key and a certificate for `peer`, valid for `lifetime`.
    /// `extra_names` (host names, IPs) let plain TLS tools verify too.
    pub fn issue(&self, peer: &Peer, extra_names: &[String], lifetime: Duration) -> Result<Tls> {
        let key = KeyPair::generate().map_err(tls_err("generating a key"))?;
        let params = leaf_params(peer, extra_names, lifetime)?;
        let cert = params
            .signed_by(&key, &self.issuer()?)
            .map_err(tls_err("signing a certificate"))?;
        Ok(Tls {
            ca_pem: self.cert_pem.clone(),
            cert_pem: Some(cert.pem()),
            key_pem: Some(key.serialize_pem()),
        })
    }

    /// Signs a node's certificate request for `peer`. Only the request's
    /// key is used: its names and extensions are the requester's to claim
    /// and the CA's to decide, so they are replaced.
    pub fn sign_request(&self, csr_pem: &str, peer: &Peer, lifetime: Duration) -> Result<String> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(tls_err("reading the certificate request"))?;
        let params = leaf_params(peer, &[], lifetime)?;
        let cert = params
            .signed_by(&csr.public_key, &self.issuer()?)
            .map_err(tls_err("signing the certificate request"))?;
        Ok(cert.pem())
    }
}

/// A fresh key and a certificate request for it: what a joining node sends.
/// Returns (key PEM, request PEM); the key never leaves the node.
pub fn new_request(peer: &Peer) -> Result<(String, String)> {
    let key = KeyPair::generate().map_err(tls_err("generating a key"))?;
    // A request carries only the key and whom it asks to be: the CA sets
    // validity, usages and names when it signs.
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(&peer.to_string());
    let csr = params
        .serialize_request(&key)
        .map_err(tls_err("making the certificate request"))?;
    let pem = csr
        .pem()
        .map_err(tls_err("encoding the certificate request"))?;
    Ok((key.serialize_pem(), pem))
}

fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Berth");
    dn.push(DnType::CommonName, cn);
    dn
}

/// Every certificate starts this long before it was made, for clocks that
/// disagree a little.
const CLOCK_SLACK: Duration = Duration::from_secs(3600);

fn validity(params: &mut CertificateParams, lifetime: Duration) {
    let now = SystemTime::now();
    params.not_before = (now - CLOCK_SLACK).into();
    params.not_after = (now + lifetime).into();
}

/// When a certificate ends, and the lifetime it was issued for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    pub not_after: SystemTime,
    pub lifetime: Duration,
}

impl Validity {
    /// When to renew it: at the start of its last third, as kubelet's
    /// rotation does.
    pub fn renew_at(&self) -> SystemTime {
        self.not_after - self.lifetime / 3
    }
}

fn leaf_params(
    peer: &Peer,
    extra_names: &[String],
    lifetime: Duration,
) -> Result<CertificateParams> {
    let mut params =
        CertificateParams::new(extra_names.to_vec()).map_err(tls_err("a certificate's names"))?;
    params.distinguished_name = dn(&peer.to_string());
    let uri = peer
        .uri()
        .try_into()
        .map_err(tls_err("a certificate's role"))?;
    params.subject_alt_names.push(SanType::URI(uri));
    if let Some(domain) = peer.domain() {
        let name = domain.try_into().map_err(tls_err("a certificate's name"))?;
        params.subject_alt_names.push(SanType::DnsName(name));
    }
    // A node's own name too, so whoever dials node X can insist on X's.
    if let Peer::Node(n) = peer {
        let own = node_domain(n);
        if own != NODE_DOMAIN {
            let name = own.try_into().map_err(tls_err("a certificate's name"))?;
            params.subject_alt_names.push(SanType::DnsName(name));
        }
    }
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, lifetime);
    Ok(params)
}

/// What one process presents and trusts: the CA, and its own certificate
/// and key (absent for a user's CLI, which authenticates with a token).
#[derive(Clone)]
pub struct Tls {
    pub ca_pem: String,
    pub cert_pem: Option<String>,
    pub key_pem: Option<String>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("peer", &self.peer())
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Trusts the CA in `ca_pem` and presents no certificate.
    pub fn ca_only(ca_pem: String) -> Tls {
        Tls {
            ca_pem,
            cert_pem: None,
            key_pem: None,
        }
    }

    /// `ca.pem`, and `cert.pem` + `key.pem` when both are there.
    pub fn load(dir: &Path) -> Result<Tls> {
        let ca_pem = read(&dir.join("ca.pem"))?;
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        if cert.exists() != key.exists() {
            return Err(Error::Tls(format!(
                "{} has only one of cert.pem and key.pem",
                dir.display()
            )));
        }
        let (cert_pem, key_pem) = if cert.exists() {
            (Some(read(&cert)?), Some(read(&key)?))
        } else {
            (None, None)
        };
        Ok(Tls {
            ca_pem,
            cert_pem,
            key_pem,
        })
    }

    /// Writes `ca.pem`, `cert.pem` and `key.pem` (owner-only) into `dir`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::Tls(format!("cannot create {}: {e}", dir.display())))?;
        write(&dir.join("ca.pem"), &self.ca_pem, false)?;
        if let (Some(c), Some(k)) = (&self.cert_pem, &self.key_pem) {
            write(&dir.join("key.pem"), k, true)?;
            write(&dir.join("cert.pem"), c, false)?;
        }
        Ok(())
    }

    /// Whom this process's own certificate names.
    pub fn peer(&self) -> Option<Peer> {
        Peer::from_der(&self.cert_der()?)
    }

    /// When this process's own certificate expires.
    pub fn not_after(&self) -> Option<SystemTime> {
        self.validity().map(|v| v.not_after)
    }

    /// This process's own certificate's end and lifetime (not counting
    /// the clock slack it starts with).
    pub fn validity(&self) -> Option<Validity> {
        let der = self.cert_der()?;
        let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
        let v = cert.validity();
        let at = |secs: i64| {
            u64::try_from(secs)
                .ok()
                .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s))
        };
        let (not_before, not_after) = (at(v.not_before.timestamp())?, at(v.not_after.timestamp())?);
        let span = not_after.duration_since(not_before).ok()?;
        let lifetime = span
            .checked_sub(CLOCK_SLACK)
            .filter(|l| !l.is_zero())
            .unwrap_or(span);
        Some(Validity {
            not_after,
            lifetime,
        })
    }

    /// This process's own certificate, DER.
    pub fn cert_der(&self) -> Option<Vec<u8>> {
        let pem = self.cert_pem.as_deref()?;
        let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
        Some(p.contents)
    }

    fn identity(&self) -> Option<Identity> {
        Some(Identity::from_pem(
            self.cert_pem.as_deref()?,
            self.key_pem.as_deref()?,
        ))
    }

    /// A server that presents this certificate and verifies clients'
    /// against the CA. `clients_optional`: clients without a certificate
    /// may connect (users, who authenticate with a token) — the controller's
    /// API; an agent requires one.
    pub fn server(&self, clients_optional: bool) -> Result<ServerTlsConfig> {
        let identity = self
            .identity()
            .ok_or_else(|| Error::Tls("a server needs a certificate and key".into()))?;
        Ok(ServerTlsConfig::new()
            .identity(identity)
            .client_ca_root(Certificate::from_pem(&self.ca_pem))
            .client_auth_optional(clients_optional)
            .timeout(Duration::from_secs(10)))
    }

    /// A client that trusts only the CA, expects the server to hold the
    /// certificate of `domain`'s role, and presents its own if it has one.
    pub fn client(&self, domain: &str) -> ClientTlsConfig {
        let c = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca_pem))
            .domain_name(domain)
            .timeout(Duration::from_secs(10));
        match self.identity() {
            Some(id) => c.identity(id),
            None => c,
        }
    }
}

/// A process's TLS that renewal may replace while it runs: every new
/// connection takes the current one.
#[derive(Clone, Debug)]
pub struct Current(std::sync::Arc<std::sync::RwLock<Tls>>);

impl Current {
    pub fn new(tls: Tls) -> Current {
        Current(std::sync::Arc::new(std::sync::RwLock::new(tls)))
    }

    pub fn get(&self) -> Tls {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set(&self, tls: Tls) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = tls;
    }
}

#[cfg(test)]
mod tests;
