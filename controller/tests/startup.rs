//! `berth-controller` refuses bad start-up input with a clear message.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One cluster CA for these tests (`tls init`), and its admin token.
fn tls() -> &'static (std::path::PathBuf, String) {
    static TLS: std::sync::OnceLock<(std::path::PathBuf, String)> = std::sync::OnceLock::new();
    TLS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep().join("tls");
        let out = Command::new(env!("CARGO_BIN_EXE_berth-controller"))
            .args(["tls", "init", "--out"])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (
            dir,
            String::from_utf8(out.stdout).unwrap().trim().to_string(),
        )
    })
}

fn controller() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_berth-controller"));
    c.env("BERTH_TLS_DIR", &tls().0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

#[test]
fn a_data_dir_that_is_a_file_is_refused() {
    let f = tempfile::NamedTempFile::new().unwrap();
    let out = controller()
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(f.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("opening data dir"), "{err}");
}

#[test]
fn a_second_controller_on_the_same_data_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = controller()
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !dir.path().join("controller.addr").exists() {
        assert!(Instant::now() < deadline, "first controller never came up");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = controller()
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let _ = first.kill();
    let _ = first.wait();
    assert!(
        !out.status.success(),
        "two writers on one sled log would corrupt it"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another controller"), "{err}");
}

/// Every file under `dir` with its contents, to prove nothing was touched.
fn snapshot(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

fn start_and_wait(dir: &std::path::Path, args: &[&str]) -> std::process::Child {
    let child = controller()
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !dir.join("controller.addr").exists() {
        assert!(Instant::now() < deadline, "controller never came up");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

#[test]
fn other_members_or_another_id_are_refused_and_nothing_is_touched() {
    let dir = tempfile::tempdir().unwrap();
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .to_string()
    };
    let (a, b, c) = (free(), free(), free());
    let peers = format!("1={a},2={b},3={c}");
    let mut first = start_and_wait(
        dir.path(),
        &["--id", "1", "--peers", &peers, "--listen", &a],
    );
    let _ = first.kill();
    let _ = first.wait();
    std::fs::remove_file(dir.path().join("controller.addr")).unwrap();
    let before = snapshot(dir.path());

    let other = format!("1={a},2={b},4={}", free());
    let out = controller()
        .args(["--id", "1", "--peers", &other, "--listen", &a])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("belongs to a cluster with members") && err.contains(&peers),
        "{err}"
    );
    assert!(
        snapshot(dir.path()) == before,
        "a refused start must not touch the data dir"
    );

    let out = controller()
        .args(["--id", "2", "--peers", &peers, "--listen", &b])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("belongs to controller 1"));
    assert!(snapshot(dir.path()) == before);
}

/// A log entry written in a newer log format than this controller reads
/// (a newer controller led for a while) stops it at start-up with what to
/// do, instead of being misread or skipped.
#[test]
fn a_log_entry_of_a_newer_format_stops_the_controller_with_what_to_do() {
    use berth_controller::raft::SledRaftStorage;
    use berth_controller::state::{format, Command};
    use berth_proto::v1::controller_service_client::ControllerServiceClient;
    use berth_proto::v1::ListMembersRequest;
    use raft::eraftpb::Entry;
    use raft::Storage as _;

    let dir = tempfile::tempdir().unwrap();
    let mut first = start_and_wait(dir.path(), &["--listen", "127.0.0.1:0"]);
    // Up, leading, and past its first entries (a new cluster's id).
    let addr = std::fs::read_to_string(dir.path().join("controller.addr")).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let applied = rt.block_on(async {
            let (dir, token) = tls();
            let dial = berth_proto::connect::Dial {
                tls: berth_proto::tls::Tls::load(dir).unwrap(),
                bearer: berth_proto::connect::Bearer::new(Some(token)).unwrap(),
            };
            let ch = dial.endpoint(&addr).ok()?.connect().await.ok()?;
            let mut c = ControllerServiceClient::with_interceptor(ch, dial.bearer.clone());
            let m = c.list_members(ListMembersRequest {}).await.ok()?;
            let m = m.into_inner().membership?;
            let me = m.members.iter().find(|x| x.id == m.self_id)?;
            (m.leader_id == m.self_id).then_some(me.applied)
        });
        if applied.is_some_and(|a| a >= 2) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the controller never applied its first entries"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = first.kill();
    let _ = first.wait();

    // What a newer controller would have committed next.
    let index = {
        let db = sled::open(dir.path().join("state.sled")).unwrap();
        let mut storage = SledRaftStorage::open(&db, dir.path()).unwrap();
        let mut hs = storage.hard_state().clone();
        let index = storage.last_index().unwrap() + 1;
        let mut data = format::encode_command(&Command::Init {
            cluster_id: "from-the-future".into(),
        });
        data[1] = format::VERSION + 1;
        let entry = Entry {
            index,
            term: hs.term,
            data: data.into(),
            ..Default::default()
        };
        let mut batch = sled::Batch::default();
        storage.append(&mut batch, &[entry]).unwrap();
        hs.commit = index;
        storage.set_hard_state(&mut batch, hs).unwrap();
        storage.persist(batch, true).unwrap();
        db.flush().unwrap();
        index
    };
    std::fs::remove_file(dir.path().join("controller.addr")).unwrap();

    let mut again = controller()
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = again.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = again.kill();
            panic!("the controller kept running on a log it cannot read");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut again.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(70), "{err}");
    let want = format!(
        "log entry {index} is in log format version {}, but this berth-controller",
        format::VERSION + 1
    );
    assert!(err.contains(&want), "{err}");
    assert!(
        err.contains("upgrade it to the release the other controllers run"),
        "{err}"
    );
}
