//! A separate "host" on this machine: a network namespace joined to the
//! root namespace by a veth pair (10.213.N.1 on this side, 10.213.N.2 in
//! it), so a process in it can be cut off silently with `iptables -j DROP`
//! — packets vanish, no reset — as a real partition does. Removed on drop.
//! Needs root, as the tests' second dockerd does.

use std::process::Command;

pub struct Netns {
    pub name: String,
    /// This side's address: controllers listen here to be reachable from it.
    pub host_ip: String,
    /// The namespace's address.
    pub ns_ip: String,
    pub host_if: String,
    /// The namespace's end of the link (its only interface but lo).
    pub ns_if: String,
}

fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{} must be installed (iproute2, iptables): {e}", args[0]));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Netns {
    pub fn new() -> Netns {
        let seed = std::process::id()
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos();
        // A subnet no other test of this run holds.
        let n = (0..254)
            .map(|i| (seed.wrapping_add(i * 7919)) % 250 + 2)
            .find(|n| {
                !std::path::Path::new(&format!("/sys/class/net/bh{n}")).exists()
                    && !std::path::Path::new(&format!("/run/netns/bns{n}")).exists()
            })
            .expect("a free veth name");
        let ns = Netns {
            name: format!("bns{n}"),
            host_ip: format!("10.213.{n}.1"),
            ns_ip: format!("10.213.{n}.2"),
            host_if: format!("bh{n}"),
            ns_if: format!("bn{n}"),
        };
        let inner = ns.ns_if.clone();
        run(&["ip", "netns", "add", &ns.name]);
        run(&[
            "ip",
            "link",
            "add",
            &ns.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &inner,
        ]);
        run(&["ip", "link", "set", &inner, "netns", &ns.name]);
        run(&[
            "ip",
            "addr",
            "add",
            &format!("{}/30", ns.host_ip),
            "dev",
            &ns.host_if,
        ]);
        run(&["ip", "link", "set", &ns.host_if, "up"]);
        let ip = |args: &[&str]| {
            run(&[&["ip", "netns", "exec", &ns.name, "ip"], args].concat());
        };
        ip(&["addr", "add", &format!("{}/30", ns.ns_ip), "dev", &inner]);
        ip(&["link", "set", &inner, "up"]);
        ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip netns exec NAME program`: a command that runs in the namespace.
    pub fn command(&self, program: &std::path::Path) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// A silent partition: every packet in or out of the namespace is dropped.
    pub fn cut(&self) {
        for chain in ["INPUT", "OUTPUT"] {
            run(&[
                "ip", "netns", "exec", &self.name, "iptables", "-A", chain, "-j", "DROP",
            ]);
        }
    }

    /// Makes `other` reachable from this namespace and back, through the
    /// root namespace (a routed network between two hosts): default routes
    /// out of both, and forwarding between their links (docker's FORWARD
    /// policy drops the rest). Undone when either is dropped.
    pub fn route_to(&self, other: &Netns) {
        for ns in [self, other] {
            run(&[
                "ip",
                "netns",
                "exec",
                &ns.name,
                "ip",
                "route",
                "replace",
                "default",
                "via",
                &ns.host_ip,
            ]);
        }
        run(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        for (a, b) in [(self, other), (other, self)] {
            let rule = [
                "FORWARD", "-i", &a.host_if, "-o", &b.host_if, "-j", "ACCEPT",
            ];
            run(&[&["iptables", "-I"][..], &rule[..]].concat());
        }
    }

    pub fn heal(&self) {
        for chain in ["INPUT", "OUTPUT"] {
            run(&["ip", "netns", "exec", &self.name, "iptables", "-F", chain]);
        }
    }
}

impl Default for Netns {
    fn default() -> Netns {
        Netns::new()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Forwarding rules that name this link (`route_to`), however many.
        for dir in ["-i", "-o"] {
            loop {
                let rules = Command::new("iptables").args(["-S", "FORWARD"]).output();
                let Ok(rules) = rules else { break };
                let text = String::from_utf8_lossy(&rules.stdout).to_string();
                let Some(rule) = text.lines().find(|l| {
                    l.contains(&format!("{dir} {} ", self.host_if)) && l.contains("ACCEPT")
                }) else {
                    break;
                };
                let args: Vec<&str> = rule.split_whitespace().skip(1).collect();
                let deleted = Command::new("iptables")
                    .arg("-D")
                    .args(&args)
                    .status()
                    .is_ok_and(|s| s.success());
                if !deleted {
                    break;
                }
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
    }
}
