use super::*;

#[test]
fn roles_round_trip_through_uris() {
    for p in [
        Peer::Controller(3),
        Peer::Node("gpu-a".into()),
        Peer::User {
            name: "alice".into(),
            role: "admin".into(),
        },
    ] {
        assert_eq!(Peer::from_uri(&p.uri()), Some(p));
    }
}

#[test]
fn malformed_role_uris_name_nobody() {
    for bad in [
        "berth://controller/0",
        "berth://controller/x",
        "berth://node/",
        "berth://node/a/b",
        "berth://user/alice",
        "berth://user//admin",
        "https://node/a",
        "berth://root/1",
    ] {
        assert_eq!(Peer::from_uri(bad), None, "{bad}");
    }
}

#[test]
fn issued_certificates_name_their_holder() {
    let ca = Ca::generate("test").unwrap();
    let node = ca
        .issue(
            &Peer::Node("gpu-a".into()),
            &["10.0.0.5".into()],
            NODE_CERT_LIFETIME,
        )
        .unwrap();
    assert_eq!(node.peer(), Some(Peer::Node("gpu-a".into())));
    let left = node
        .not_after()
        .unwrap()
        .duration_since(SystemTime::now())
        .unwrap();
    assert!(left > NODE_CERT_LIFETIME - Duration::from_secs(60));
}

#[test]
fn a_signed_request_gets_the_role_the_ca_chose_not_the_one_asked() {
    let ca = Ca::generate("test").unwrap();
    // The request claims to be a controller; the CA signs it as the node
    // its join token allows.
    let (_key, csr) = new_request(&Peer::Controller(1)).unwrap();
    let cert = ca
        .sign_request(&csr, &Peer::Node("gpu-b".into()), NODE_CERT_LIFETIME)
        .unwrap();
    let tls = Tls {
        ca_pem: ca.cert_pem.clone(),
        cert_pem: Some(cert),
        key_pem: None,
    };
    assert_eq!(tls.peer(), Some(Peer::Node("gpu-b".into())));
}

#[test]
fn ca_and_identities_survive_a_save_and_load() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::generate("test").unwrap();
    ca.save(dir.path()).unwrap();
    let again = Ca::load(dir.path()).unwrap();
    let tls = again
        .issue(&Peer::Controller(2), &[], NODE_CERT_LIFETIME)
        .unwrap();
    tls.save(&dir.path().join("c2")).unwrap();
    let loaded = Tls::load(&dir.path().join("c2")).unwrap();
    assert_eq!(loaded.peer(), Some(Peer::Controller(2)));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("c2/key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "keys are owner-only");
}
