//! What the daemon itself says: a node's containers, `docker inspect`,
//! a container's environment, and clean-up.

use std::process::Command;

use serde_json::Value;

/// Containers of a node, as Docker itself lists them.
pub fn docker_containers(node: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--no-trunc",
            "--filter",
            &format!("label=berth.node={node}"),
        ])
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

pub fn docker_inspect(container: &str) -> Value {
    docker_inspect_opt(container).unwrap_or_else(|| panic!("docker inspect {container}"))
}

/// `docker inspect`, or `None` when the container does not exist (any more).
pub fn docker_inspect_opt(container: &str) -> Option<Value> {
    let out = Command::new("docker")
        .args(["inspect", container])
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| serde_json::from_slice::<Value>(&out.stdout).unwrap()[0].clone())
}

/// The value of `KEY` in a container's environment.
pub fn container_env(inspect: &Value, key: &str) -> Option<String> {
    inspect["Config"]["Env"]
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .find_map(|e| e.strip_prefix(&format!("{key}=")).map(String::from))
}

/// Removes every container of `node` from the machine's daemon (what a
/// lost host's would be: gone with it).
pub fn remove_node_containers(node: &str) {
    let ids = docker_containers(node);
    if !ids.is_empty() {
        let _ = Command::new("docker")
            .args(["rm", "-f"])
            .args(&ids)
            .output();
    }
}
