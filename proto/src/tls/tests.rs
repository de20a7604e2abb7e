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
    let v = node.validity().unwrap();
    assert!(
        v.lifetime.abs_diff(NODE_CERT_LIFETIME) < Duration::from_secs(2),
        "{v:?}"
    );
    assert_eq!(v.renew_at(), v.not_after - v.lifetime / 3);
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

#[test]
fn a_node_certificate_names_its_node_for_dns_checks() {
    assert_eq!(node_domain("gpu-a"), "gpu-a.node.berth");
    assert_eq!(node_domain("gpu_07.rack2"), "gpu_07.rack2.node.berth");
    // Not a DNS name: dialling falls back to any node's name.
    assert_eq!(node_domain("-bad"), NODE_DOMAIN);
    let ca = Ca::generate("test").unwrap();
    let tls = ca
        .issue(&Peer::Node("gpu-a".into()), &[], NODE_CERT_LIFETIME)
        .unwrap();
    let der = tls.cert_der().unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    let names: Vec<String> = cert
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
            _ => None,
        })
        .collect();
    assert!(names.contains(&"node.berth".to_string()), "{names:?}");
    assert!(names.contains(&"gpu-a.node.berth".to_string()), "{names:?}");
}
