//! TLS 1.3 for QUIC with mutual authentication against the validator set: both sides present
//! a certificate, and the verifiers accept it only if its key is a validator's network key
//! from genesis (no certificate authorities, no names). The handshake signature is checked
//! with the key in the certificate, so a peer must hold the key it claims.
//! One crypto provider, chosen explicitly: `ring`.

use crate::identity::{Identity, certificate_key};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};
use std::collections::HashMap;
use std::sync::Arc;

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Accepts exactly the validators' network keys.
#[derive(Debug)]
pub struct ValidatorVerifier {
    keys: HashMap<[u8; 32], u16>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ValidatorVerifier {
    pub fn new(keys: HashMap<[u8; 32], u16>, provider: &CryptoProvider) -> ValidatorVerifier {
        ValidatorVerifier {
            keys,
            algorithms: provider.signature_verification_algorithms,
        }
    }

    /// The validator index behind a certificate.
    pub fn identify(&self, cert: &CertificateDer<'_>) -> Result<u16, Error> {
        let key = certificate_key(cert).ok_or(Error::InvalidCertificate(
            rustls::CertificateError::BadEncoding,
        ))?;
        self.keys
            .get(&key)
            .copied()
            .ok_or(Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            ))
    }

    fn tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }
}

impl ServerCertVerifier for ValidatorVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let index = self.identify(end_entity)?;
        // Whoever we dial must be a validator (an observer key never serves), and the one we
        // meant when the name says which (`validator-N`, as this crate dials): holding some
        // admitted key is not enough to stand in for a given validator.
        let meant = match server_name {
            ServerName::DnsName(n) => n
                .as_ref()
                .strip_prefix("validator-")
                .and_then(|i| i.parse::<u16>().ok()),
            _ => None,
        };
        if index >= crate::requests::OBSERVER_BASE || meant.is_some_and(|m| m != index) {
            return Err(Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName,
            ));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        Err(Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.tls13(message, cert, dss)
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
    ) -> Result<ClientCertVerified, Error> {
        self.identify(end_entity)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        Err(Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

pub fn server_config(
    id: &Identity,
    verifier: Arc<ValidatorVerifier>,
) -> anyhow::Result<rustls::ServerConfig> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![id.cert.clone()], id.private_key())?;
    cfg.alpn_protocols = vec![crate::ALPN.to_vec()];
    Ok(cfg)
}

pub fn client_config(
    id: &Identity,
    verifier: Arc<ValidatorVerifier>,
) -> anyhow::Result<rustls::ClientConfig> {
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(vec![id.cert.clone()], id.private_key())?;
    cfg.alpn_protocols = vec![crate::ALPN.to_vec()];
    Ok(cfg)
}
