//! docker-shaped flag parsing (-v, -p, -e, --shm-size). Everything is checked
//! here, before any request is sent, so a typo creates nothing.

use anyhow::{bail, Context, Result};
use berth_proto::v1::{ArrayRange, Mount, PortMapping, Ulimit};

/// `-v SRC:DST[:ro|rw]`. SRC must be an absolute host path (a relative one
/// would mean different things on different hosts).
pub fn mount(s: &str) -> Result<Mount> {
    let parts: Vec<&str> = s.split(':').collect();
    let (source, target, read_only) = match parts.as_slice() {
        [src, dst] => (*src, *dst, false),
        [src, dst, "ro"] => (*src, *dst, true),
        [src, dst, "rw"] => (*src, *dst, false),
        [_, _, opt] => bail!("-v {s:?}: unknown option {opt:?}; use ro or rw"),
        _ => bail!("-v {s:?}: expected SRC:DST[:ro], e.g. -v /data/imagenet:/data:ro"),
    };
    if !source.starts_with('/') {
        bail!(
            "-v {s:?}: the host path {source:?} must be absolute (named volumes are not supported)"
        );
    }
    if !target.starts_with('/') || target == "/" {
        bail!("-v {s:?}: the container path {target:?} must be absolute and not /");
    }
    Ok(Mount {
        source: source.to_string(),
        target: target.to_string(),
        read_only,
    })
}

/// `--array START-END[%MAX]` or `--array N` (one task, index N), as Slurm.
pub fn array(s: &str) -> Result<ArrayRange> {
    let usage = || format!("--array {s:?}: expected START-END[%MAX_RUNNING], e.g. 0-99%8");
    let (range, cap) = match s.split_once('%') {
        Some((r, c)) => (r, Some(c)),
        None => (s, None),
    };
    let (start, end) = match range.split_once('-') {
        Some((a, b)) => (a, b),
        None => (range, range),
    };
    let start: u32 = start.trim().parse().with_context(usage)?;
    let end: u32 = end.trim().parse().with_context(usage)?;
    if end < start {
        bail!("--array {s:?}: the end ({end}) is before the start ({start})");
    }
    let max_running = match cap {
        Some(c) => {
            let c: u32 = c.trim().parse().with_context(usage)?;
            if c == 0 {
                bail!("--array {s:?}: %0 would never run a task; use %1 or more");
            }
            c
        }
        None => 0,
    };
    Ok(ArrayRange {
        start,
        end,
        max_running,
    })
}

/// `-p [IP:]HOST:CONTAINER[/tcp|udp]`, or `-p CONTAINER` and
/// `-p IP::CONTAINER`: Berth picks the host port (host_port 0).
pub fn port(s: &str) -> Result<PortMapping> {
    let (addr, protocol) = match s.rsplit_once('/') {
        Some((a, p @ ("tcp" | "udp"))) => (a, p),
        Some((_, p)) => bail!("-p {s:?}: protocol {p:?} must be tcp or udp"),
        None => (s, "tcp"),
    };
    let parts: Vec<&str> = addr.split(':').collect();
    let (host_ip, host, ctr) = match parts.as_slice() {
        [ctr] => ("", "", *ctr),
        [host, ctr] => ("", *host, *ctr),
        [ip, host, ctr] => (*ip, *host, *ctr),
        _ => bail!("-p {s:?}: expected [HOST:]CONTAINER, e.g. -p 16006:6006 or -p 6006"),
    };
    let num = |p: &str, what: &str| -> Result<u32> {
        let n: u32 = p
            .parse()
            .with_context(|| format!("-p {s:?}: {what} port {p:?} is not a number"))?;
        if !(1..=65535).contains(&n) {
            bail!("-p {s:?}: {what} port {n} is out of range 1..65535");
        }
        Ok(n)
    };
    if !host_ip.is_empty() && host_ip.parse::<std::net::IpAddr>().is_err() {
        bail!("-p {s:?}: {host_ip:?} is not an IP address");
    }
    Ok(PortMapping {
        host_ip: host_ip.to_string(),
        // Empty: Berth picks one from the cluster's --host-ports range.
        host_port: if host.is_empty() {
            0
        } else {
            num(host, "host")?
        },
        container_port: num(ctr, "container")?,
        protocol: protocol.to_string(),
    })
}

/// `--ulimit NAME=SOFT[:HARD]` as docker reads it: one number sets both;
/// -1 (or "unlimited") is no limit.
pub fn ulimit(s: &str) -> Result<Ulimit> {
    use berth_proto::size::ULIMITS as NAMES;
    let Some((name, values)) = s.split_once('=') else {
        bail!("--ulimit {s:?}: expected NAME=SOFT[:HARD], e.g. --ulimit memlock=-1 or nofile=65536:65536");
    };
    if !NAMES.contains(&name) {
        bail!(
            "--ulimit {s:?}: unknown limit {name:?}; one of {}",
            NAMES.join(", ")
        );
    }
    let num = |v: &str| -> Result<i64> {
        if v == "unlimited" {
            return Ok(-1);
        }
        let n: i64 = v.parse().map_err(|_| {
            anyhow::anyhow!("--ulimit {s:?}: {v:?} is not a number (use -1 for unlimited)")
        })?;
        if n < -1 {
            bail!("--ulimit {s:?}: {n} is below -1 (unlimited)");
        }
        Ok(n)
    };
    let (soft, hard) = match values.split_once(':') {
        Some((a, b)) => (num(a)?, num(b)?),
        None => (num(values)?, num(values)?),
    };
    if hard != -1 && (soft == -1 || soft > hard) {
        bail!("--ulimit {s:?}: the soft limit is above the hard one");
    }
    Ok(Ulimit {
        name: name.to_string(),
        soft,
        hard,
    })
}

/// `--env-file FILE` as docker reads it: `KEY=VALUE` lines, a bare `KEY`
/// passes the local value (skipped when unset), `#` comments and blank
/// lines ignored, no quote processing.
pub fn env_file(path: &str) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--env-file {path}: cannot read it"))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once('=') {
            Some(("", _)) => bail!("--env-file {path}:{}: a variable needs a name", n + 1),
            Some(_) => out.push(line.to_string()),
            None => {
                if line.contains(char::is_whitespace) {
                    bail!(
                        "--env-file {path}:{}: {line:?} has whitespace in its name",
                        n + 1
                    );
                }
                if let Ok(v) = std::env::var(line) {
                    out.push(format!("{line}={v}"));
                }
            }
        }
    }
    Ok(out)
}

/// `--label KEY=VALUE` (a bare KEY is an empty value, as docker's).
pub fn label(s: &str) -> Result<(String, String)> {
    let (k, v) = s.split_once('=').unwrap_or((s, ""));
    if k.is_empty() {
        bail!("--label {s:?}: expected KEY=VALUE");
    }
    Ok((k.to_string(), v.to_string()))
}

/// `--gpus N`, `--gpus all` or `--gpus count=N` (docker's forms without
/// device ids): (whole GPUs, all of one host).
pub fn gpus(s: &str) -> Result<(u32, bool)> {
    let v = s.trim_matches('"');
    let v = v.strip_prefix("count=").unwrap_or(v);
    if v == "all" {
        return Ok((0, true));
    }
    if v.starts_with("device=") {
        bail!("--gpus {s:?}: Berth chooses the GPUs; ask for a number (--gpus 2) or all, and --gpu-model for a kind");
    }
    let n: u32 = v
        .parse()
        .map_err(|_| anyhow::anyhow!("--gpus {s:?}: give a number of GPUs or all"))?;
    Ok((n, false))
}

/// `--expose PORT[/tcp|udp]`.
pub fn expose(s: &str) -> Result<String> {
    let (port, proto) = s.split_once('/').unwrap_or((s, "tcp"));
    let n: u32 = port
        .parse()
        .map_err(|_| anyhow::anyhow!("--expose {s:?}: expected PORT[/tcp|udp], e.g. 8888"))?;
    if !(1..=65535).contains(&n) {
        bail!("--expose {s:?}: port {n} is out of range 1..65535");
    }
    if proto != "tcp" && proto != "udp" {
        bail!("--expose {s:?}: protocol {proto:?} must be tcp or udp");
    }
    Ok(format!("{n}/{proto}"))
}

/// `--shm-size` as docker reads it: a number with an optional b/k/m/g unit
/// (binary multiples), no more than 1 TiB.
pub fn size(s: &str) -> Result<u64> {
    size_of("--shm-size", s, 1 << 40)
}

/// A size flag (`flag` names it in errors), as `--shm-size`, up to `max`.
pub fn size_of(flag: &str, s: &str, max: u64) -> Result<u64> {
    let bytes = berth_proto::size::parse(s).map_err(|e| anyhow::anyhow!("{flag} {e}"))?;
    if bytes == 0 || bytes > max {
        bail!("{flag} {s:?}: must be between 1 byte and {}g", max >> 30);
    }
    Ok(bytes)
}

/// `--memory` (`-m`), as docker reads it: a size, up to 1 PiB.
pub fn memory(s: &str) -> Result<u64> {
    size_of("--memory", s, 1 << 50)
}

/// `memory` as a clap value parser.
pub fn memory_arg(s: &str) -> std::result::Result<u64, String> {
    memory(s).map_err(|e| e.to_string())
}

/// `--cpus` as docker reads it: a decimal number of CPUs (1.5), as
/// billionths of a CPU.
pub fn cpus(s: &str) -> Result<u64> {
    let n: f64 = s
        .trim()
        .parse()
        .ok()
        .filter(|n: &f64| n.is_finite())
        .with_context(|| format!("--cpus {s:?}: expected a number of CPUs like 2 or 0.5"))?;
    if !(0.01..=4096.0).contains(&n) {
        bail!("--cpus {s:?}: must be between 0.01 and 4096 (leave it out for no limit)");
    }
    Ok((n * 1e9).round() as u64)
}

/// `-e KEY=VALUE`, or `-e KEY` to pass the local value on, as docker does.
pub fn env(s: &str) -> Result<Option<String>> {
    match s.split_once('=') {
        Some(("", _)) => bail!("-e {s:?}: the variable name is empty"),
        Some(_) => Ok(Some(s.to_string())),
        None if s.is_empty() => bail!("-e: empty"),
        None => Ok(std::env::var(s).ok().map(|v| format!("{s}={v}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays() {
        let a = array("0-99%8").unwrap();
        assert_eq!((a.start, a.end, a.max_running), (0, 99, 8));
        let a = array("5").unwrap();
        assert_eq!((a.start, a.end, a.max_running), (5, 5, 0));
        assert!(array("9-3")
            .unwrap_err()
            .to_string()
            .contains("before the start"));
        assert!(array("0-9%0").is_err());
        assert!(array("a-b").unwrap_err().to_string().contains("START-END"));
    }

    #[test]
    fn mounts() {
        let m = mount("/data:/data:ro").unwrap();
        assert!(m.read_only && m.source == "/data");
        assert!(!mount("/a:/b").unwrap().read_only);
        assert!(mount("data:/data").is_err());
        assert!(mount("/a").is_err());
        assert!(mount("/a:/b:rx").is_err());
        assert!(mount("/a:rel").is_err());
    }

    #[test]
    fn ulimits_env_files_labels_and_gpus_parse_as_docker_reads_them() {
        let u = ulimit("memlock=-1").unwrap();
        assert_eq!((u.name.as_str(), u.soft, u.hard), ("memlock", -1, -1));
        let u = ulimit("nofile=1024:65536").unwrap();
        assert_eq!((u.soft, u.hard), (1024, 65536));
        assert!(ulimit("nofile=abc")
            .unwrap_err()
            .to_string()
            .contains("not a number"));
        assert!(ulimit("files=1")
            .unwrap_err()
            .to_string()
            .contains("unknown limit"));
        assert!(ulimit("nofile=10:5").is_err());
        assert!(ulimit("nofile").is_err());
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("env");
        std::fs::write(
            &f,
            "# comment\nA=1\n\nB=two words\nBERTH_SURELY_UNSET_VAR\n",
        )
        .unwrap();
        assert_eq!(
            env_file(f.to_str().unwrap()).unwrap(),
            vec!["A=1", "B=two words"]
        );
        assert!(env_file("/no/such/file")
            .unwrap_err()
            .to_string()
            .contains("cannot read"));
        assert_eq!(
            label("team=vision").unwrap(),
            ("team".into(), "vision".into())
        );
        assert_eq!(gpus("all").unwrap(), (0, true));
        assert_eq!(gpus("2").unwrap(), (2, false));
        assert_eq!(gpus("count=4").unwrap(), (4, false));
        assert!(gpus("device=1").is_err() && gpus("many").is_err());
        assert_eq!(expose("8888").unwrap(), "8888/tcp");
        assert!(expose("0").is_err() && expose("53/sctp").is_err());
    }

    #[test]
    fn ports() {
        let p = port("16006:6006").unwrap();
        assert_eq!(
            (p.host_port, p.container_port, p.protocol.as_str()),
            (16006, 6006, "tcp")
        );
        let p = port("127.0.0.1:8080:80/udp").unwrap();
        assert_eq!(
            (p.host_ip.as_str(), p.protocol.as_str()),
            ("127.0.0.1", "udp")
        );
        // A container port alone (or IP::PORT): Berth picks the host port.
        assert_eq!(port("80").unwrap().host_port, 0);
        assert_eq!(port("80").unwrap().container_port, 80);
        assert_eq!(port("127.0.0.1::80").unwrap().host_port, 0);
        assert!(port(":80").is_ok_and(|p| p.host_port == 0));
        assert!(port("x:80").is_err());
        assert!(port("70000:80").is_err());
        assert!(port("1:80/sctp").is_err());
        assert!(port("nothost:1:80").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(size("64m").unwrap(), 64 << 20);
        assert_eq!(size("8G").unwrap(), 8 << 30);
        assert_eq!(size("1024").unwrap(), 1024);
        assert!(size("lots").is_err());
        assert!(size("1x").is_err());
        assert!(size("0").is_err());
        assert!(size("-1g").is_err());
    }

    mod fuzz {
        //! Whatever a user types, the parsers answer without panicking,
        //! and what they accept is what the server will be sent.
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn mounts_never_smuggle_a_colon(s in "[/a-z:.]{0,40}(:ro|:rw)?") {
                if let Ok(m) = mount(&s) {
                    prop_assert!(!m.source.contains(':') && !m.target.contains(':'));
                    prop_assert!(m.source.starts_with('/') && m.target.starts_with('/'));
                    prop_assert!(m.target != "/");
                }
            }

            #[test]
            fn ports_are_in_range_or_refused(s in "([0-9.]{0,15}:)?[0-9]{0,6}:[0-9]{0,6}(/tcp|/udp|/sctp)?") {
                if let Ok(p) = port(&s) {
                    // 0: Berth picks it.
                    prop_assert!(p.host_port <= 65535);
                    prop_assert!((1..=65535).contains(&p.container_port));
                    prop_assert!(p.protocol == "tcp" || p.protocol == "udp");
                }
            }

            #[test]
            fn sizes_are_bounded_or_refused(s in "[0-9]{0,16}(\\.[0-9]{1,3})?[bkmgtBKMGT]?") {
                if let Ok(n) = size(&s) {
                    prop_assert!(n <= 1 << 40);
                }
            }

            #[test]
            fn any_text_gets_an_answer(s in ".{0,60}") {
                let _ = (mount(&s), port(&s), size(&s), array(&s), cpus(&s), memory(&s), env(&s));
            }
        }
    }
}
