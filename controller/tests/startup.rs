//! `berth-controller` refuses bad start-up input with a clear message.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn controller() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_berth-controller"));
    c.stdin(Stdio::null())
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
