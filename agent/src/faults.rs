//! Faults the end-to-end tests inject into a real agent process: a disk
//! that reads as (nearly) full, image exports damaged in flight or paced
//! slow enough to cut mid-way. Read from the environment once, and only
//! when the `fault-injection` feature is compiled in — the test suite
//! builds its binaries with it (`tests/run.sh`); a release build has no
//! such hook and reads no such variable.

/// Free bytes to report instead of the disk's (`BERTH_FAULT_DISK_FREE`).
pub fn disk_free() -> Option<u64> {
    injected().disk_free
}

/// Whether exports of `reference` are damaged in flight
/// (`BERTH_FAULT_CORRUPT_EXPORT`: a reference, or `*` for every one).
pub fn corrupts_exports_of(reference: &str) -> bool {
    #[cfg(test)]
    if tests::corrupting().is_some_and(|r| r == "*" || r == reference) {
        return true;
    }
    injected()
        .corrupt_exports
        .as_deref()
        .is_some_and(|r| r == "*" || r == reference)
}

/// A cap on this agent's export rate in bytes per second
/// (`BERTH_FAULT_EXPORT_BPS`), so a test can cut a transfer mid-way
/// without a huge image.
pub fn export_pace() -> Option<f64> {
    injected().export_bps
}

#[derive(Debug, Default)]
struct Injected {
    disk_free: Option<u64>,
    corrupt_exports: Option<String>,
    export_bps: Option<f64>,
}

#[cfg(feature = "fault-injection")]
fn injected() -> &'static Injected {
    static ONCE: std::sync::OnceLock<Injected> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        let var = |k: &str| std::env::var(k).ok();
        let injected = Injected {
            disk_free: var("BERTH_FAULT_DISK_FREE").and_then(|v| v.parse().ok()),
            corrupt_exports: var("BERTH_FAULT_CORRUPT_EXPORT"),
            export_bps: var("BERTH_FAULT_EXPORT_BPS")
                .and_then(|v| v.parse().ok())
                .filter(|b: &f64| *b > 0.0),
        };
        if injected.disk_free.is_some()
            || injected.corrupt_exports.is_some()
            || injected.export_bps.is_some()
        {
            tracing::warn!(?injected, "fault injection is on (a test build)");
        }
        injected
    })
}

#[cfg(not(feature = "fault-injection"))]
fn injected() -> &'static Injected {
    static NONE: Injected = Injected {
        disk_free: None,
        corrupt_exports: None,
        export_bps: None,
    };
    &NONE
}

/// The unit tests' seam: damage the exports of one reference in this process.
#[cfg(test)]
pub mod tests {
    static CORRUPT: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

    pub fn corrupt_exports_of(reference: &str) {
        *CORRUPT.lock().unwrap_or_else(|p| p.into_inner()) = Some(reference.to_string());
    }

    pub(super) fn corrupting() -> Option<String> {
        CORRUPT.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
