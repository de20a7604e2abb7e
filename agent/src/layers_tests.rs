use super::*;

use std::io::Read;

fn hex(c: char) -> String {
    format!("sha256:{}", c.to_string().repeat(64))
}

#[test]
fn chain_ids_follow_the_oci_rule() {
    let (a, b) = (hex('a'), hex('b'));
    let chains = chain_ids(&[a.clone(), b.clone()]);
    assert_eq!(chains[0], a);
    let want = format!("sha256:{:x}", Sha256::digest(format!("{a} {b}").as_bytes()));
    assert_eq!(chains[1], want);
    assert!(chain_ids(&[]).is_empty());
}

#[test]
fn only_layers_whose_chain_is_there_and_not_needed_elsewhere_are_skipped() {
    let (a, b, c) = (hex('a'), hex('b'), hex('c'));
    let diffs = vec![a.clone(), b.clone(), a.clone(), c.clone()];
    let chains = chain_ids(&diffs);
    // The receiver has the first two chains (a shared base), not the rest.
    let has: HashSet<String> = chains[..2].iter().cloned().collect();
    let skip = skip_paths(&diffs, &has);
    // a is needed again at position 2, whose chain is missing: kept.
    assert_eq!(
        skip,
        HashSet::from([format!("blobs/sha256/{}", "b".repeat(64))])
    );
    assert!(skip_paths(&diffs, &HashSet::new()).is_empty());
}

/// An archive shaped like `docker save`'s, with a long name (GNU 'L') and
/// a PAX header in it.
fn archive() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, path, data).unwrap();
    };
    add("oci-layout", b"{}");
    add(
        &format!("blobs/sha256/{}", "b".repeat(64)),
        &vec![1u8; 70_000],
    );
    add(
        &format!("blobs/sha256/{}", "c".repeat(64)),
        &vec![2u8; 1_000],
    );
    add(&format!("long/{}/name", "d".repeat(120)), b"long");
    let mut b = b;
    let mut h = tar::Header::new_ustar();
    h.set_size(5);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_pax_extensions([("comment", b"pax here".as_slice())])
        .unwrap();
    b.append_data(&mut h, "manifest.json", &b"[{}]\n"[..])
        .unwrap();
    b.into_inner().unwrap()
}

fn entries(data: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut a = tar::Archive::new(data);
    a.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = e.path().unwrap().display().to_string();
            let mut body = Vec::new();
            e.read_to_end(&mut body).unwrap();
            (name, body)
        })
        .collect()
}

#[test]
fn the_filter_drops_whole_entries_and_passes_the_rest_byte_for_byte() {
    let input = archive();
    let skip = HashSet::from([format!("blobs/sha256/{}", "b".repeat(64))]);
    for piece in [1, 7, 511, 512, 4096, 1 << 20] {
        let mut f = TarFilter::new(Plan {
            paths: skip.clone(),
            ..Plan::default()
        });
        let mut out = Vec::new();
        for p in input.chunks(piece) {
            out.extend_from_slice(&f.push(p).unwrap());
        }
        out.extend_from_slice(&f.finish().unwrap());
        let names: Vec<String> = entries(&out).into_iter().map(|e| e.0).collect();
        assert_eq!(
            names,
            vec![
                "oci-layout".to_string(),
                format!("blobs/sha256/{}", "c".repeat(64)),
                format!("long/{}/name", "d".repeat(120)),
                "manifest.json".to_string(),
            ],
            "pieces of {piece}"
        );
        assert_eq!(out.len() as u64 + f.skipped, input.len() as u64);
    }
    // Nothing to skip: the very same bytes.
    let mut f = TarFilter::new(Plan::default());
    let mut out = f.push(&input).unwrap().to_vec();
    out.extend_from_slice(&f.finish().unwrap());
    assert_eq!(out, input);
}

#[test]
fn a_cut_archive_is_an_error() {
    let input = archive();
    let mut f = TarFilter::new(Plan::default());
    f.push(&input[..2000]).unwrap();
    assert!(f.finish().is_err());
}

/// `<v1 id>/json` of the workload image's only layer, as Docker 20.10's
/// `docker save` wrote it, with that layer's diff id (= its chain id).
const V1_ID: &str = "3dbbdd312b87b402d268db3b557671a3d0085db6d77c3b85452c8222dec33294";
const V1_JSON: &str = r#"{"id":"3dbbdd312b87b402d268db3b557671a3d0085db6d77c3b85452c8222dec33294","comment":"Imported from -","created":"2026-11-22T18:52:01.606574583Z","container_config":{"Hostname":"","Domainname":"","User":"","AttachStdin":false,"AttachStdout":false,"AttachStderr":false,"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":null,"Cmd":null,"Image":"","Volumes":null,"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":null},"docker_version":"20.10.24+dfsg1","config":{"Hostname":"","Domainname":"","User":"","AttachStdin":false,"AttachStdout":false,"AttachStderr":false,"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":["PATH=/usr/local/bin:/usr/bin:/bin:/sbin"],"Cmd":["/bin/sh"],"Image":"","Volumes":null,"WorkingDir":"/workspace","Entrypoint":null,"OnBuild":null,"Labels":{"berth.workload.inputs":"af1c130eded2c49e"}},"architecture":"amd64","os":"linux"}"#;
const V1_CHAIN: &str = "sha256:c4d16fb9bf37a52544a00ebb72bb62d7938d7d25974273ea753fec8ebb4a2755";

#[test]
fn a_legacy_layer_directory_is_placed_by_its_v1_id() {
    let other = hex('e');
    let chains = vec![other.clone(), V1_CHAIN.to_string()];
    assert_eq!(
        legacy_chain(V1_ID, V1_JSON.as_bytes(), &chains),
        Some(V1_CHAIN.to_string())
    );
    // No candidate hashes to the id: not placed (and so never skipped).
    assert_eq!(legacy_chain(V1_ID, V1_JSON.as_bytes(), &[other]), None);
    assert_eq!(legacy_chain(V1_ID, b"not json", &chains), None);
}

#[test]
fn the_filter_leaves_out_a_legacy_layer_the_receiver_has() {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, path, data).unwrap();
    };
    add(&format!("{V1_ID}/VERSION"), b"1.0");
    add(&format!("{V1_ID}/json"), V1_JSON.as_bytes());
    add(&format!("{V1_ID}/layer.tar"), &vec![3u8; 50_000]);
    add("manifest.json", b"[]");
    let input = b.into_inner().unwrap();
    let plan = |have: &[&str]| Plan {
        chains: vec![V1_CHAIN.to_string()],
        have: have.iter().map(|s| s.to_string()).collect(),
        ..Plan::default()
    };
    for (have, kept) in [(vec![V1_CHAIN], 3), (vec![], 4)] {
        let mut f = TarFilter::new(plan(&have));
        let mut out = Vec::new();
        for p in input.chunks(300) {
            out.extend_from_slice(&f.push(p).unwrap());
        }
        out.extend_from_slice(&f.finish().unwrap());
        let names: Vec<String> = entries(&out).into_iter().map(|e| e.0).collect();
        assert_eq!(names.len(), kept, "{names:?}");
        assert!(names.contains(&format!("{V1_ID}/json")));
    }
}

mod fuzz {
    //! Property tests of the tar filter on what a peer may send: arbitrary
    //! archives cut anywhere, and arbitrary bytes.
    use super::*;
    use proptest::prelude::*;

    fn build(files: &[(String, Vec<u8>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, path, data.as_slice()).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn files() -> impl Strategy<Value = Vec<(String, Vec<u8>)>> {
        proptest::collection::vec(
            (
                // Short names and ones past ustar's 100 bytes (GNU long names).
                prop_oneof!["[a-z]{1,12}", "[a-z]{101,140}"],
                proptest::collection::vec(any::<u8>(), 0..3000),
            ),
            1..6,
        )
        .prop_map(|v| {
            v.into_iter()
                .enumerate()
                .map(|(i, (n, d))| (format!("f{i}/{n}"), d))
                .collect()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever the pieces, exactly the skipped entries are left out
        /// and the others arrive byte for byte.
        #[test]
        fn any_archive_any_cut(files in files(), piece in 1usize..2000, skip_mask in any::<u8>()) {
            let input = build(&files);
            let skip: HashSet<String> = files
                .iter()
                .enumerate()
                .filter(|(i, _)| skip_mask & (1 << i) != 0)
                .map(|(_, f)| f.0.clone())
                .collect();
            let mut f = TarFilter::new(Plan { paths: skip.clone(), ..Plan::default() });
            let mut out = Vec::new();
            for p in input.chunks(piece) {
                out.extend_from_slice(&f.push(p).unwrap());
            }
            out.extend_from_slice(&f.finish().unwrap());
            let kept: Vec<(String, Vec<u8>)> =
                files.iter().filter(|f| !skip.contains(&f.0)).cloned().collect();
            prop_assert_eq!(entries(&out), kept);
            prop_assert_eq!(out.len() as u64 + f.skipped, input.len() as u64);
        }

        /// Bytes from a broken or hostile peer give an error or a result,
        /// never a panic or an endless loop.
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..4096), piece in 1usize..700) {
            let mut f = TarFilter::new(Plan {
                paths: HashSet::from(["x".to_string()]),
                ..Plan::default()
            });
            for p in data.chunks(piece) {
                if f.push(p).is_err() {
                    return Ok(());
                }
            }
            let _ = f.finish();
        }
    }
}
