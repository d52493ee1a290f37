//! A small certificate authority, for `ember cluster local --tls` and for
//! tests: one self-signed CA that issues server certificates.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};

use crate::AuthError;

/// A self-signed certificate authority.
pub struct CertificateAuthority {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate issued by a [`CertificateAuthority`], with its key, both
/// PEM. It serves TLS for the names it was issued for and identifies its
/// holder as a client (mutual TLS).
pub struct IssuedCertificate {
    /// The certificate.
    pub certificate_pem: String,
    /// Its private key; keep it secret.
    pub private_key_pem: String,
}

impl std::fmt::Debug for IssuedCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCertificate")
            .field("private_key_pem", &"****")
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// A new CA whose certificate is named `common_name`.
    pub fn generate(common_name: &str) -> Result<Self, AuthError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, common_name);
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        Ok(Self { issuer })
    }

    /// The CA's certificate, PEM: what peers trust (`--tls-ca`).
    pub fn certificate_pem(&self) -> String {
        self.issuer.pem()
    }

    /// Issues a certificate for `names` (host names or IP addresses).
    pub fn issue(&self, names: &[String]) -> Result<IssuedCertificate, AuthError> {
        self.issue_with(names, |_| {})
    }

    /// Issues a certificate for `names` after `adjust` has changed its
    /// parameters (validity dates, for example).
    pub fn issue_with(
        &self,
        names: &[String],
        adjust: impl FnOnce(&mut CertificateParams),
    ) -> Result<IssuedCertificate, AuthError> {
        let mut params = CertificateParams::new(names.to_vec())?;
        let mut name = DistinguishedName::new();
        name.push(
            DnType::CommonName,
            names.first().map(String::as_str).unwrap_or("ember"),
        );
        params.distinguished_name = name;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        adjust(&mut params);
        let key = KeyPair::generate()?;
        let certificate = params.signed_by(&key, &self.issuer)?;
        Ok(IssuedCertificate {
            certificate_pem: certificate.pem(),
            private_key_pem: key.serialize_pem(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issues_pem_certificates_and_keys() {
        let ca = CertificateAuthority::generate("Ember test CA").unwrap();
        assert!(
            ca.certificate_pem()
                .starts_with("-----BEGIN CERTIFICATE-----")
        );
        let issued = ca.issue(&["localhost".into(), "127.0.0.1".into()]).unwrap();
        assert!(issued.certificate_pem.contains("BEGIN CERTIFICATE"));
        assert!(issued.private_key_pem.contains("PRIVATE KEY"));
        assert!(!format!("{issued:?}").contains("PRIVATE"));
    }
}
