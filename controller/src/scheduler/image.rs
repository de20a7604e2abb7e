//! Image references as Docker resolves them, for locality checks.

use std::collections::HashSet;

pub use berth_proto::image_ref::{id_matches, is_id_prefix, normalize as normalize_image};

/// Whether a node's image set satisfies a reference: a tag ("busybox" means
/// "busybox:latest", as in docker), a full id, or an id prefix of 12+ hex digits.
pub fn has_image(images: &HashSet<String>, reference: &str) -> bool {
    holds(images, &normalize_image(reference))
}

/// `has_image` for a reference already passed through `normalize_image`.
pub fn holds(images: &HashSet<String>, r: &str) -> bool {
    images.contains(r) || (is_id_prefix(r) && images.iter().any(|i| id_matches(i, r)))
}
