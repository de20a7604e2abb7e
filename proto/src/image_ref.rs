//! Image references as Docker resolves them: shared by the scheduler (which
//! host holds what) and the agents (is the image here yet).

/// Docker's short forms: no tag means `:latest`; `docker.io/library/` is implied.
/// Where `berth build` puts the Dockerfile in the context it sends (as
/// docker's CLI does with a `-f` outside the context); the builder checks
/// it is the one the controller vetted.
pub const BUILD_DOCKERFILE: &str = ".berth.Dockerfile";

pub fn normalize(reference: &str) -> String {
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

/// A full id, or an id prefix of 12+ hex digits (with or without "sha256:").
pub fn is_id_prefix(r: &str) -> bool {
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

/// Whether an image with `id` and `tags` is what `reference` names.
pub fn names(id: &str, tags: &[String], reference: &str) -> bool {
    let r = normalize(reference);
    tags.iter().any(|t| normalize(t) == r) || id_matches(id, &r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_short_forms() {
        assert_eq!(normalize("busybox"), "busybox:latest");
        assert_eq!(normalize("docker.io/library/busybox:1"), "busybox:1");
        assert_eq!(normalize("localhost:5000/a/b"), "localhost:5000/a/b:latest");
        assert_eq!(normalize("0123456789ab"), "0123456789ab");
        let id = "sha256:0123456789abcdef";
        assert!(names(id, &[], "0123456789ab"));
        assert!(names(id, &["x:1".into()], "x:1"));
        assert!(!names(id, &["x:1".into()], "x"));
    }
}
