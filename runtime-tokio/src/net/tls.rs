//! TLS 1.3 for QUIC, authenticated by validator keys instead of a certificate authority.
//!
//! Each node presents a certificate self-signed (rcgen, `PKCS_ED25519`) with its Ed25519 validator
//! key. Both sides run the same check on the peer's certificate: parse it (webpki), take its
//! SubjectPublicKeyInfo, require an Ed25519 key, and require that key to be admitted: a member of
//! the current or next validator set, or of the set that just left while its grace lasts, as the
//! finalized chain says (`net::members`). The handshake signature is then checked against that
//! same key, so a peer proves it holds the validator's secret key. A stranger, a registered
//! validator not yet elected and one that left are refused during the handshake — unless the
//! node admits followers (`--max-followers` above 0, the default, or a full node): then any
//! Ed25519 key passes TLS, still proving it holds its secret key, and the hello decides whether
//! the peer is a validator of an admitted set or a follower (`net::followers`), which never
//! reaches consensus.
//!
//! Before a development genesis exists (dev mode only, see `handshake`), the allowed set is
//! "any Ed25519 key": dev keys are derived from public names, so there is nothing to authenticate
//! yet; the hello exchange binds each name to its key and the genesis then fixes the first sets.
//!
//! The certificate's serial number is random, drawn once per process: two processes holding one
//! validator key present different certificates, and `instance` (the certificate's hash) tells
//! them apart (`net/twins.rs`, ADR 0024). Nothing is authenticated by it; the key is.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use timed_core::crypto::{Keypair, PublicKey};
use tokio::sync::watch;

use crate::keys;
use crate::net::members::Members;

/// The ALPN protocol both sides must speak: `timed/` and the wire version
/// (`codec::WIRE_VERSION`), so that nodes of two formats refuse each other at the handshake.
pub const ALPN: &[u8] = b"timed/4";

/// Which process holds a validator key: the hash of the certificate it presents (the same on
/// every connection of one process, another in each process).
pub type Instance = [u8; 32];

/// The instance of a peer's certificate.
pub fn instance(cert: &CertificateDer<'_>) -> Instance {
    *blake3::hash(cert.as_ref()).as_bytes()
}

/// The name a client puts in its ClientHello; never used for authentication.
pub const SERVER_NAME: &str = "validator.timed";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot build the node certificate from the validator key: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("cannot configure TLS: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("cannot configure QUIC's TLS: {0}")]
    Quic(String),
}

/// Which peer keys may connect. Shared by the client and server verifiers; tightened once the
/// genesis is known, then following the validator sets after each stored batch of finalized
/// blocks (`Members::follow`, published by the consensus loop).
#[derive(Debug)]
pub struct PeerPolicy {
    /// `None`: any valid Ed25519 key (only before a development genesis exists). A watch, so
    /// that the links and dialers of peers that leave the sets learn it (`transport::read_loop`,
    /// `dial::follow_registry`).
    members: watch::Sender<Option<Arc<Members>>>,
    /// Any valid Ed25519 key passes TLS, and the hello decides what the peer is (a validator
    /// of an admitted set, or a follower while there is room): set on a node that admits
    /// followers (`net::followers`) and on a full node.
    open: bool,
}

impl Default for PeerPolicy {
    fn default() -> PeerPolicy {
        PeerPolicy {
            members: watch::channel(None).0,
            open: false,
        }
    }
}

impl PeerPolicy {
    pub fn any() -> Arc<PeerPolicy> {
        Arc::new(PeerPolicy::default())
    }

    /// A policy whose TLS check admits any key when `open` (the hello then decides), else only
    /// the admitted sets' keys.
    pub fn new(open: bool) -> Arc<PeerPolicy> {
        Arc::new(PeerPolicy {
            open,
            ..PeerPolicy::default()
        })
    }

    /// From now on, admit the keys of `members`' sets only.
    pub fn follow(&self, members: Members) {
        self.members.send_replace(Some(Arc::new(members)));
    }

    /// The sets admitted now; `None` before a genesis.
    pub fn members(&self) -> Option<Arc<Members>> {
        self.members.borrow().clone()
    }

    /// Told of every change of `members`.
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<Members>>> {
        self.members.subscribe()
    }

    /// Whether `key` may connect now.
    pub fn admits(&self, key: &PublicKey) -> bool {
        self.open
            || self
                .members
                .borrow()
                .as_ref()
                .is_none_or(|m| m.admitted(key).is_some())
    }
}

/// The validator key inside a peer's certificate, if the certificate is well formed and holds a
/// usable Ed25519 key.
pub fn peer_key(cert: &CertificateDer<'_>) -> Result<PublicKey, rustls::Error> {
    let parsed = webpki::EndEntityCert::try_from(cert)
        .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
    let spki = parsed.subject_public_key_info();
    let key = keys::key_from_spki(spki.as_ref()).ok_or_else(|| {
        rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(
            VerifyError("the certificate key is not Ed25519"),
        ))))
    })?;
    key.verifying_key().map_err(|_| {
        rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(
            VerifyError("the certificate key is not a usable Ed25519 key"),
        ))))
    })?;
    Ok(key)
}

#[derive(Debug)]
struct VerifyError(&'static str);

impl std::fmt::Display for VerifyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for VerifyError {}

/// One verifier for both directions.
#[derive(Debug)]
struct ValidatorVerifier {
    policy: Arc<PeerPolicy>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ValidatorVerifier {
    fn check(&self, cert: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        let key = peer_key(cert)?;
        if !self.policy.admits(&key) {
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ));
        }
        Ok(())
    }

    fn signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }
}

impl ServerCertVerifier for ValidatorVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls13RequiredForQuic,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

impl ClientCertVerifier for ValidatorVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls13RequiredForQuic,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certificate(
    key: &Keypair,
) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), TlsError> {
    let pkcs8 = PrivatePkcs8KeyDer::from(keys::pkcs8_der(key));
    let signing = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &rcgen::PKCS_ED25519)?;
    let mut params = rcgen::CertificateParams::new(vec![SERVER_NAME.to_string()])?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, hex::encode(key.public_key().0));
    // Without it rcgen derives the serial from the key, and two instances of one key would be
    // indistinguishable to their peers (`Instance`).
    params.serial_number = Some(rcgen::SerialNumber::from(rand::random::<u64>()));
    let cert = params.self_signed(&signing)?;
    Ok((cert.der().clone(), PrivateKeyDer::Pkcs8(pkcs8)))
}

fn transport() -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.keep_alive_interval(Some(std::time::Duration::from_millis(500)));
    // A dead peer is noticed within this; the dialer then redials.
    t.max_idle_timeout(Some(quinn::VarInt::from_u32(3_000).into()));
    t.max_concurrent_bidi_streams(4u32.into());
    t.max_concurrent_uni_streams(0u32.into());
    // Each connection carries data one way (see `net/transport.rs`), so no ACK rides on a data packet: by
    // default the receiver sends a packet of ACK alone for every second packet it gets, a third
    // of all packets at block time 0. Ask it to acknowledge every 16th, or after 25 ms.
    let mut acks = quinn::AckFrequencyConfig::default();
    acks.ack_eliciting_threshold(quinn::VarInt::from_u32(15))
        .max_ack_delay(Some(std::time::Duration::from_millis(25)));
    t.ack_frequency_config(Some(acks));
    Arc::new(t)
}

/// The QUIC server and client configurations of a node with validator key `key`.
pub fn quic_configs(
    key: &Keypair,
    policy: Arc<PeerPolicy>,
) -> Result<(quinn::ServerConfig, quinn::ClientConfig), TlsError> {
    let provider = provider();
    let verifier = Arc::new(ValidatorVerifier {
        policy,
        algorithms: provider.signature_verification_algorithms,
    });
    let (cert, private) = certificate(key)?;

    let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier.clone())
        .with_single_cert(vec![cert.clone()], private.clone_key())?;
    server.alpn_protocols = vec![ALPN.to_vec()];
    let server = quinn::crypto::rustls::QuicServerConfig::try_from(server)
        .map_err(|e| TlsError::Quic(e.to_string()))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(server));
    server.transport_config(transport());

    let mut client = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(vec![cert], private)?;
    client.alpn_protocols = vec![ALPN.to_vec()];
    let client = quinn::crypto::rustls::QuicClientConfig::try_from(client)
        .map_err(|e| TlsError::Quic(e.to_string()))?;
    let mut client = quinn::ClientConfig::new(Arc::new(client));
    client.transport_config(transport());
    Ok((server, client))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_alpn_names_the_wire_version() {
        let version = timed_core::codec::WIRE_VERSION.to_string();
        assert_eq!(ALPN, [b"timed/", version.as_bytes()].concat());
    }

    #[test]
    fn the_certificate_carries_the_validator_key() {
        let key = Keypair::insecure_from_name("validator1");
        let (cert, _) = certificate(&key).unwrap();
        assert_eq!(peer_key(&cert).unwrap(), key.public_key());
    }

    #[test]
    fn two_processes_with_one_key_present_two_instances() {
        let key = Keypair::insecure_from_name("validator1");
        let (a, _) = certificate(&key).unwrap();
        let (b, _) = certificate(&key).unwrap();
        assert_eq!(peer_key(&b).unwrap(), key.public_key());
        assert_ne!(instance(&a), instance(&b));
        assert_eq!(instance(&a), instance(&a.clone()));
    }

    #[test]
    fn the_policy_admits_any_key_before_a_genesis_then_the_sets_only() {
        let (keys, validators) = timed_core::validators::insecure_dev_validators(&[100, 100]);
        let stranger = Keypair::insecure_from_name("stranger").public_key();
        let policy = PeerPolicy::default();
        assert!(policy.admits(&keys[0].public_key()) && policy.admits(&stranger));
        let set = timed_core::validators::ValidatorSet::new(&validators).unwrap();
        policy.follow(Members::genesis(&set, Default::default()));
        assert!(policy.admits(&keys[0].public_key()) && policy.admits(&keys[1].public_key()));
        assert!(!policy.admits(&stranger));
    }
}
