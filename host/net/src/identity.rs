//! A validator's network identity: an ed25519 key, presented in TLS as a self-signed
//! certificate. Only the key matters: peers are recognised by the public key in the
//! certificate, compared against the keys registered in genesis.

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// PKCS#8 v1 wrapping of an ed25519 seed (RFC 8410 §7): a fixed prefix, then the 32 bytes.
const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];
/// The ed25519 algorithm identifier (OID 1.3.101.112).
const ED25519_OID: &str = "1.3.101.112";

pub struct Identity {
    pub public: [u8; 32],
    pub cert: CertificateDer<'static>,
    pkcs8: Vec<u8>,
}

impl Identity {
    pub fn from_secret(secret: &[u8; 32]) -> anyhow::Result<Identity> {
        let public = ed25519_dalek::SigningKey::from_bytes(secret)
            .verifying_key()
            .to_bytes();
        let pkcs8 = [ED25519_PKCS8_PREFIX.as_slice(), secret].concat();
        let key = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
            &PrivatePkcs8KeyDer::from(pkcs8.clone()),
            &rcgen::PKCS_ED25519,
        )?;
        let params = rcgen::CertificateParams::new(vec!["gridledger-validator".to_string()])?;
        let cert = params.self_signed(&key)?;
        Ok(Identity {
            public,
            cert: cert.der().clone(),
            pkcs8,
        })
    }

    pub fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.pkcs8.clone()))
    }
}

/// The ed25519 public key a certificate carries, if it carries one.
pub fn certificate_key(cert: &CertificateDer<'_>) -> Option<[u8; 32]> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let spki = parsed.public_key();
    if spki.algorithm.algorithm.to_id_string() != ED25519_OID {
        return None;
    }
    spki.subject_public_key.data.as_ref().try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_certificate_carries_the_key() {
        let id = Identity::from_secret(&[7; 32]).unwrap();
        assert_eq!(certificate_key(&id.cert), Some(id.public));
        assert_eq!(certificate_key(&CertificateDer::from(vec![1, 2, 3])), None);
    }
}
