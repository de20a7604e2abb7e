//! Sizes as docker writes them (`--shm-size 8g`, `-m 512m`, GPU memory
//! `80G`): a whole number with an optional b, k, m, g or t unit (binary
//! multiples, case-insensitive, a trailing b allowed: "gb"). One parser
//! for the CLI, the agent's simulated GPUs and job files. And docker's
//! `--ulimit` names, which are limits too.

use crate::{Error, Result};

/// The limits docker's `--ulimit NAME=SOFT[:HARD]` takes (Linux rlimits):
/// one list for the CLI's parsing and the controller's own check.
pub const ULIMITS: [&str; 16] = [
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
    "as",
];

pub fn parse(s: &str) -> Result<u64> {
    let t = s.trim().to_ascii_lowercase();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let n: u64 = num.parse().map_err(|_| {
        Error::Size(format!(
            "{s:?} is not a size: expected one like 64m, 8g or 1073741824"
        ))
    })?;
    let mult: u64 = match unit {
        "" | "b" => 1,
        "k" | "kb" => 1 << 10,
        "m" | "mb" => 1 << 20,
        "g" | "gb" => 1 << 30,
        "t" | "tb" => 1 << 40,
        _ => {
            return Err(Error::Size(format!(
                "{s:?}: unknown unit {unit:?}; use b, k, m, g or t"
            )))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| Error::Size(format!("{s:?} is too large")))
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_read_like_docker() {
        use super::parse;
        assert_eq!(parse("64m").unwrap(), 64 << 20);
        assert_eq!(parse("8G").unwrap(), 8 << 30);
        assert_eq!(parse("80gb").unwrap(), 80 << 30);
        assert_eq!(parse(" 512 ").unwrap(), 512);
        assert!(parse("8x")
            .unwrap_err()
            .to_string()
            .contains("unknown unit"));
        assert!(parse("lots")
            .unwrap_err()
            .to_string()
            .contains("not a size"));
        assert!(parse("99999999999t")
            .unwrap_err()
            .to_string()
            .contains("too large"));
    }
}
