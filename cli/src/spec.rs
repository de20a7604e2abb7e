//! docker-shaped flag parsing (-v, -p, -e, --shm-size). Everything is checked
//! here, before any request is sent, so a typo creates nothing.

use anyhow::{bail, Context, Result};
use berth_proto::v1::{ArrayRange, Mount, PortMapping};

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

/// `-p [IP:]HOST:CONTAINER[/tcp|udp]`.
pub fn port(s: &str) -> Result<PortMapping> {
    let (addr, protocol) = match s.rsplit_once('/') {
        Some((a, p @ ("tcp" | "udp"))) => (a, p),
        Some((_, p)) => bail!("-p {s:?}: protocol {p:?} must be tcp or udp"),
        None => (s, "tcp"),
    };
    let parts: Vec<&str> = addr.split(':').collect();
    let (host_ip, host, ctr) = match parts.as_slice() {
        [host, ctr] => ("", *host, *ctr),
        [ip, host, ctr] => (*ip, *host, *ctr),
        _ => bail!("-p {s:?}: expected HOST:CONTAINER, e.g. -p 16006:6006"),
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
        host_port: num(host, "host")?,
        container_port: num(ctr, "container")?,
        protocol: protocol.to_string(),
    })
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
        assert!(port("80").is_err());
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
                    prop_assert!((1..=65535).contains(&p.host_port));
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
