//! `berth-agent --probe` prints the inventory the agent would report.

use std::process::Command;

#[test]
fn probe_reports_simulated_gpus_when_nvml_is_absent() {
    let out = Command::new(env!("CARGO_BIN_EXE_berth-agent"))
        .args([
            "--probe",
            "--name",
            "probe-node",
            "--fake-gpus",
            "2:A100-SXM4-80GB:80G,1:RTX-4090:24G",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let gpus = v["gpus"].as_array().unwrap();
    // What the scheduler counts beside GPUs: this host's CPUs and memory.
    assert!(v["cpus"].as_f64().unwrap() >= 1.0, "{v}");
    assert!(v["memory_bytes"].as_u64().unwrap() > 0, "{v}");
    if v["backend"] == "nvml" {
        // On a real GPU host the probe shows the real devices instead.
        assert!(gpus
            .iter()
            .all(|g| g["uuid"].as_str().unwrap().starts_with("GPU-")));
        return;
    }
    assert_eq!(v["backend"], "simulated");
    assert_eq!(gpus.len(), 3);
    assert_eq!(gpus[0]["model"], "A100-SXM4-80GB");
    assert_eq!(gpus[0]["memory_total_bytes"], 80u64 << 30);
    assert_eq!(gpus[2]["model"], "RTX-4090");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("NVML unavailable"),
        "the fallback is announced: {err}"
    );
}

#[test]
fn a_bad_gpu_spec_is_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_berth-agent"))
        .args(["--probe", "--fake-gpus", "two"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    if err.contains("NVML loaded") {
        return; // real GPUs: the simulated spec is never parsed
    }
    assert!(!out.status.success());
    assert!(err.contains("expected N or N:MODEL"), "{err}");
}
