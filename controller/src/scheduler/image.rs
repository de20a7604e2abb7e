//! Image references as Docker resolves them, for locality checks.

use std::collections::HashSet;

/// Whether a node's image set satisfies a reference: a tag ("busybox" means
/// "busybox:latest", as in docker), a full id, or an id prefix of 12+ hex digits.
pub fn has_image(images: &HashSet<String>, reference: &str) -> bool {
    holds(images, &normalize_image(reference))
}

/// `has_image` for a reference already passed through `normalize_image`.
pub fn holds(images: &HashSet<String>, r: &str) -> bool {
    images.contains(r) || (is_id_prefix(r) && images.iter().any(|i| id_matches(i, r)))
}

/// A full id, or an id prefix of 12+ hex digits (with or without "sha256:").
fn is_id_prefix(r: &str) -> bool {
    let hex = r.strip_prefix("sha256:").unwrap_or(r);
    hex.len() >= 12 && hex.chars().all(|c| c.is_ascii_hexdigit())
}

/// Whether image id `id` ("sha256:...") is what the normalised reference `r` names.
pub fn id_matches(id: &str, r: &str) -> bool {
    let hex = r.strip_prefix("sha256:").unwrap_or(r);
    id == r
        || (is_id_prefix(r)
            && id
                .strip_prefix("sha256:")
                .is_some_and(|h| h.starts_with(hex)))
}

/// Docker's short forms: no tag means `:latest`; `docker.io/library/` is implied.
pub fn normalize_image(reference: &str) -> String {
    let r = reference
        .strip_prefix("docker.io/library/")
        .or_else(|| reference.strip_prefix("docker.io/"))
        .unwrap_or(reference);
    if r.starts_with("sha256:") || r.contains('@') {
        return r.to_string();
    }
    let last = r.rsplit('/').next().unwrap_or(r);
    // A tag is present, or the reference is an id prefix, not a repository name.
    let tagged = last.contains(':');
    let id_prefix = r.len() >= 12 && r.chars().all(|c| c.is_ascii_hexdigit());
    if tagged || id_prefix {
        r.to_string()
    } else {
        format!("{r}:latest")
    }
}
