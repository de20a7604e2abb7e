//! The CLI speaks to the cluster through `berth-proto` alone: wire formats
//! (the image chunk codec, sizes) live there. Only `berth dev`, which runs
//! a controller and an agent in-process, may use those crates.

use std::path::Path;

#[test]
fn only_berth_dev_uses_the_controller_and_agent_crates() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut stack = vec![src.clone()];
    let mut offenders = Vec::new();
    let mut files = 0;
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            files += 1;
            let rel = path
                .strip_prefix(&src)
                .unwrap()
                .to_string_lossy()
                .to_string();
            let text = std::fs::read_to_string(&path).unwrap();
            for krate in ["berth_agent", "berth_controller"] {
                if text.contains(krate) && rel != "commands/dev.rs" {
                    offenders.push(format!("{rel} uses {krate}"));
                }
            }
        }
    }
    assert!(files > 10, "read only {files} files");
    assert!(offenders.is_empty(), "{offenders:?}");
}
