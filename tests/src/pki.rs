//! Certificates for the TLS tests, minted with rcgen at test time: a CA,
//! server and client certificates (SPIFFE IDs, DNS names, CNs), an expired
//! one, one from another CA, one with two SPIFFE IDs. Each is written as PEM
//! files into a temporary directory, as an operator would deploy them.

use std::path::{Path, PathBuf};

use anyhow::Result;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, SanType,
    date_time_ymd,
};

/// A certificate authority.
#[derive(Debug)]
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its key, as PEM, and where they were written.
#[derive(Debug, Clone)]
pub struct Leaf {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PEM (PKCS#8).
    pub key_pem: String,
    /// The certificate file.
    pub cert_file: PathBuf,
    /// The key file.
    pub key_file: PathBuf,
}

/// What names a leaf carries.
#[derive(Debug, Clone, Default)]
pub struct Names {
    /// `spiffe://` (or other) URI SANs.
    pub uris: Vec<String>,
    /// DNS (or IP) SANs.
    pub dns: Vec<String>,
    /// The subject CN.
    pub cn: Option<String>,
    /// Already expired (not after 2020-01-01).
    pub expired: bool,
}

impl Names {
    /// One SPIFFE ID.
    pub fn spiffe(id: &str) -> Names {
        Names {
            uris: vec![id.to_owned()],
            ..Names::default()
        }
    }

    /// DNS (or IP) names.
    pub fn dns(names: &[&str]) -> Names {
        Names {
            dns: names.iter().map(|n| (*n).to_owned()).collect(),
            ..Names::default()
        }
    }
}

impl Ca {
    /// A new self-signed CA named `name`.
    pub fn new(name: &str) -> Result<Ca> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        Ok(Ca {
            issuer: CertifiedIssuer::self_signed(params, KeyPair::generate()?)?,
        })
    }

    /// The CA certificate, PEM.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// Writes the CA certificate to `dir/<name>.pem`.
    pub fn write(&self, dir: &Path, name: &str) -> Result<PathBuf> {
        let path = dir.join(format!("{name}.pem"));
        std::fs::write(&path, self.pem())?;
        Ok(path)
    }

    /// A leaf with `names`, signed by this CA, written to
    /// `dir/<file>.pem` and `dir/<file>.key`.
    pub fn leaf(&self, dir: &Path, file: &str, names: Names) -> Result<Leaf> {
        let mut params = CertificateParams::new(names.dns.clone())?;
        for uri in &names.uris {
            params
                .subject_alt_names
                .push(SanType::URI(uri.as_str().try_into()?));
        }
        params.distinguished_name = rcgen::DistinguishedName::new();
        if let Some(cn) = &names.cn {
            params.distinguished_name.push(DnType::CommonName, cn);
        }
        if names.expired {
            params.not_before = date_time_ymd(2019, 1, 1);
            params.not_after = date_time_ymd(2020, 1, 1);
        }
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        let leaf = Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_file: dir.join(format!("{file}.pem")),
            key_file: dir.join(format!("{file}.key")),
        };
        leaf.write()?;
        Ok(leaf)
    }
}

impl Leaf {
    /// (Re)writes the files, each replaced at once (written aside, then
    /// renamed), as certificate managers do.
    pub fn write(&self) -> Result<()> {
        for (path, text) in [
            (&self.cert_file, &self.cert_pem),
            (&self.key_file, &self.key_pem),
        ] {
            let aside = path.with_extension("tmp");
            std::fs::write(&aside, text)?;
            std::fs::rename(&aside, path)?;
        }
        Ok(())
    }

    /// The certificate and key as a tonic client identity.
    pub fn identity(&self) -> tonic::transport::Identity {
        tonic::transport::Identity::from_pem(&self.cert_pem, &self.key_pem)
    }
}
