//! The https path: a fake Latchkey behind TLS with a certificate from a
//! private root made here (rcgen). Trusted through `http_client`, discovery,
//! keys and the feed work; with the default client, which does not know the
//! root, the verifier refuses to start.

use std::sync::Arc;

use latchkey_verify::{SigningAlg, Verifier};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

use crate::support::{FakeLatchkey, Signer, claims, eventually};

/// A private root, and a server configuration whose certificate for
/// `localhost` it signed.
fn private_pki() -> (String, Arc<rustls::ServerConfig>) {
    let mut root = CertificateParams::new(Vec::<String>::new()).unwrap();
    root.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    root.distinguished_name
        .push(DnType::CommonName, "Latchkey test root");
    let root = CertifiedIssuer::self_signed(root, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &root)
        .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
        )
        .unwrap();
    (root.pem(), Arc::new(config))
}

#[tokio::test]
async fn over_https_a_custom_root_is_trusted_and_an_unknown_one_refused() {
    let signer = Signer::generate(SigningAlg::EdDSA, "tls-1");
    let (root_pem, tls) = private_pki();
    let fake = FakeLatchkey::spawn_tls(&[&signer], tls).await;
    assert!(fake.issuer.starts_with("https://localhost:"));

    let trusting = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(root_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let verifier = fake.builder().http_client(trusting).build().await.unwrap();
    let good = claims(&fake.issuer, "u1", "s1");
    assert_eq!(verifier.verify(&signer.sign(&good)).await.unwrap(), good);
    fake.state.revoke_session("u1", "s1");
    eventually("the revocation arrives over https", || async {
        verifier.verify(&signer.sign(&good)).await.is_err()
    })
    .await;
    assert!(fake.feed_requests() > 0);

    // The default client trusts the public roots only.
    let refused = Verifier::builder(&fake.issuer).build().await;
    let error = format!(
        "{:?}",
        refused.expect_err("an untrusted certificate is refused")
    );
    assert!(
        error.to_lowercase().contains("certificate"),
        "the error names the certificate: {error}"
    );
}
