//! Reading a `/metrics` endpoint as Prometheus does: over HTTPS, verified
//! against the cluster CA, parsed by the Prometheus project's OpenMetrics
//! parser (`tests/scripts/scrape_metrics.py`).

use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// Scrapes `addr`, verifying its certificate for `server_name`; the
/// parsed exposition as JSON (`status`, and `families` for a 200).
pub fn scrape_metrics(addr: &str, server_name: &str, ca: &Path, token: Option<&str>) -> Value {
    https_get(addr, server_name, ca, token, "/metrics")
}

/// GET `path` over HTTPS as `scrape_metrics` does; `status` and `body`
/// for anything but `/metrics`.
pub fn https_get(
    addr: &str,
    server_name: &str,
    ca: &Path,
    token: Option<&str>,
    path: &str,
) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/scrape_metrics.py");
    let mut cmd = Command::new("python3");
    cmd.arg(script).arg(addr).arg(server_name).arg(ca);
    cmd.arg(token.unwrap_or("")).arg(path);
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "the scrape or the OpenMetrics parser failed (pip install prometheus-client?): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The samples of family `name`, which must have type `kind`.
pub fn metric_family<'a>(m: &'a Value, name: &str, kind: &str) -> &'a Vec<Value> {
    let f = &m["families"][name];
    assert_eq!(f["type"], kind, "family {name}: {f}");
    f["samples"].as_array().unwrap()
}

/// The sample named `sample` whose labels include `labels`.
pub fn metric_sample<'a>(
    samples: &'a [Value],
    sample: &str,
    labels: &[(&str, &str)],
) -> Option<&'a Value> {
    samples
        .iter()
        .find(|s| s["name"] == sample && labels.iter().all(|(k, v)| s["labels"][*k] == *v))
}
