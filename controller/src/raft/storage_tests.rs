use raft::Storage;

use super::*;

fn entry(index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        data: format!("cmd-{index}").into_bytes().into(),
        ..Default::default()
    }
}

fn open(dir: &std::path::Path) -> SledRaftStorage {
    // A dropped sled Db releases its file lock when its flusher thread
    // ends, which on a loaded machine can be a moment after the drop.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let db = loop {
        match sled::open(dir.join("db")) {
            Ok(db) => break db,
            Err(e)
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            Err(e) => panic!("{e}"),
        }
    };
    SledRaftStorage::open(&db, dir).unwrap()
}

fn append(s: &mut SledRaftStorage, ents: &[Entry]) {
    let mut b = sled::Batch::default();
    s.append(&mut b, ents).unwrap();
    s.persist(b, true).unwrap();
}

#[test]
fn empty_storage_reads_like_a_new_log() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    assert_eq!((s.first_index().unwrap(), s.last_index().unwrap()), (1, 0));
    assert_eq!(s.term(0).unwrap(), 0);
    assert!(!s.is_initialized());
    assert!(matches!(
        s.snapshot(0, 0),
        Err(raft::Error::Store(
            StorageError::SnapshotTemporarilyUnavailable
        ))
    ));
}

#[test]
fn append_overwrites_conflicting_suffix_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = open(dir.path());
        s.initialize(&[1, 2, 3]).unwrap();
        append(
            &mut s,
            &[entry(1, 1), entry(2, 1), entry(3, 1), entry(4, 1)],
        );
        // A new leader at term 2 rewrites from index 3.
        append(&mut s, &[entry(3, 2)]);
        let mut b = sled::Batch::default();
        let hs = HardState {
            term: 2,
            vote: 3,
            commit: 2,
            ..Default::default()
        };
        s.set_hard_state(&mut b, hs).unwrap();
        s.persist(b, true).unwrap();
        assert_eq!(
            s.last_index().unwrap(),
            3,
            "index 4 of the old term is gone"
        );
    }
    let s = open(dir.path());
    assert!(s.is_initialized());
    assert_eq!(s.conf_state().voters, vec![1, 2, 3]);
    assert_eq!((s.first_index().unwrap(), s.last_index().unwrap()), (1, 3));
    assert_eq!(s.term(3).unwrap(), 2);
    assert_eq!(s.initial_state().unwrap().hard_state.vote, 3);
    let ents = s
        .entries(1, 4, None, GetEntriesContext::empty(false))
        .unwrap();
    assert_eq!(
        ents.iter().map(|e| (e.index, e.term)).collect::<Vec<_>>(),
        vec![(1, 1), (2, 1), (3, 2)]
    );
}

#[test]
fn entries_respect_max_size_but_return_at_least_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path());
    append(&mut s, &(1..=10).map(|i| entry(i, 1)).collect::<Vec<_>>());
    let one = s
        .entries(1, 11, Some(1), GetEntriesContext::empty(false))
        .unwrap();
    assert_eq!(one.len(), 1);
    let size = entry(1, 1).write_to_bytes().unwrap().len() as u64;
    let three = s
        .entries(1, 11, Some(size * 3), GetEntriesContext::empty(false))
        .unwrap();
    assert_eq!(three.len(), 3);
    assert_eq!(
        s.entries(4, 11, None, GetEntriesContext::empty(false))
            .unwrap()
            .len(),
        7
    );
}

#[test]
fn compaction_keeps_a_snapshot_and_the_term_before_first() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = open(dir.path());
        s.initialize(&[1]).unwrap();
        append(
            &mut s,
            &(1..=10).map(|i| entry(i, 1 + i / 5)).collect::<Vec<_>>(),
        );
        s.compact(6, b"state@6".to_vec()).unwrap();
        assert_eq!(s.first_index().unwrap(), 7);
        assert!(matches!(
            s.term(5),
            Err(raft::Error::Store(StorageError::Compacted))
        ));
        assert!(matches!(
            s.entries(5, 8, None, GetEntriesContext::empty(false)),
            Err(raft::Error::Store(StorageError::Compacted))
        ));
    }
    let s = open(dir.path());
    assert_eq!((s.first_index().unwrap(), s.last_index().unwrap()), (7, 10));
    assert_eq!(
        s.term(6).unwrap(),
        2,
        "the snapshot keeps the term of its index"
    );
    let snap = s.snapshot(6, 2).unwrap();
    assert_eq!(snap.get_metadata().index, 6);
    assert_eq!(&snap.data[..], b"state@6");
    assert_eq!(snap.get_metadata().get_conf_state().voters, vec![1]);
    assert!(
        s.snapshot(8, 2).is_err(),
        "a snapshot older than asked is not offered"
    );
}

#[test]
fn applying_a_snapshot_replaces_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path());
    append(&mut s, &[entry(1, 1), entry(2, 1)]);
    let mut snap = Snapshot {
        data: b"leader-state".to_vec().into(),
        ..Default::default()
    };
    snap.mut_metadata().index = 50;
    snap.mut_metadata().term = 4;
    snap.mut_metadata().mut_conf_state().voters = vec![1, 2, 3];
    s.apply_snapshot(snap).unwrap();
    assert_eq!(
        (s.first_index().unwrap(), s.last_index().unwrap()),
        (51, 50)
    );
    assert_eq!(s.term(50).unwrap(), 4);
    assert_eq!(s.hard_state().commit, 50);
    assert_eq!(s.conf_state().voters, vec![1, 2, 3]);
    append(&mut s, &[entry(51, 4)]);
    drop(s);
    let s = open(dir.path());
    assert_eq!(
        (s.first_index().unwrap(), s.last_index().unwrap()),
        (51, 51)
    );
}

#[test]
fn the_compacted_prefix_is_purged_in_slices() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path());
    s.initialize(&[1]).unwrap();
    append(
        &mut s,
        &(1..=5_000).map(|i| entry(i, 1)).collect::<Vec<_>>(),
    );
    s.compact(4_500, b"state".to_vec()).unwrap();
    assert_eq!(s.first_index().unwrap(), 4_501, "dead at once");
    let on_disk = |s: &SledRaftStorage| s.tree.range(entry_key(0)..=entry_key(u64::MAX)).count();
    assert_eq!(on_disk(&s), 5_000, "deleted later, not in the compaction");
    s.purge_some().unwrap();
    assert_eq!(on_disk(&s), 3_000);
    s.purge_some().unwrap();
    s.purge_some().unwrap();
    assert_eq!(on_disk(&s), 500, "only the live suffix is left");
    s.purge_some().unwrap();
    assert_eq!(on_disk(&s), 500);
    assert_eq!(
        s.entries(4_501, 5_001, None, GetEntriesContext::empty(false))
            .unwrap()
            .len(),
        500
    );
}
