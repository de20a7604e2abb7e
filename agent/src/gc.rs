//! Image GC's choice, pure: which images may go, least recently used
//! first. Never one that a live or queued job needs (the controller sends
//! those references) and never one a container uses, running or stopped
//! (its logs and `docker start` still need it; docker refuses anyway).

use berth_proto::image_ref;

use crate::runtime::ImageUsage;

#[derive(Debug, Default, PartialEq)]
pub struct Choice {
    /// Removal order: least recently used first (then biggest first).
    pub candidates: Vec<ImageUsage>,
    pub kept_in_use: u32,
    pub kept_needed: u32,
}

pub fn choose(usage: Vec<ImageUsage>, keep: &[String]) -> Choice {
    let mut choice = Choice::default();
    for u in usage {
        if keep
            .iter()
            .any(|r| image_ref::names(&u.image.id, &u.image.tags, r))
        {
            choice.kept_needed += 1;
        } else if u.containers > 0 {
            choice.kept_in_use += 1;
        } else {
            choice.candidates.push(u);
        }
    }
    choice.candidates.sort_by_key(|u| {
        (
            u.last_used_ms,
            std::cmp::Reverse(u.image.size_bytes),
            u.image.id.clone(),
        )
    });
    choice
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::v1::ImageInfo;

    fn img(tag: &str, id: &str, last_used_ms: i64, containers: u32) -> ImageUsage {
        ImageUsage {
            image: ImageInfo {
                id: id.into(),
                tags: vec![tag.into()],
                size_bytes: 10,
                created_at: 0,
                exposed_ports: Vec::new(),
            },
            last_used_ms,
            containers,
        }
    }

    #[test]
    fn least_recently_used_first_never_needed_or_used_ones() {
        let usage = vec![
            img("new:1", "sha256:aaaaaaaaaaaaaaaa", 300, 0),
            img("old:1", "sha256:bbbbbbbbbbbbbbbb", 100, 0),
            img("train:2", "sha256:cccccccccccccccc", 50, 0),
            img("notebook:1", "sha256:dddddddddddddddd", 10, 1),
            img("mid:1", "sha256:eeeeeeeeeeeeeeee", 200, 0),
        ];
        // Jobs name their image in docker's short forms, or by id prefix.
        let keep = vec!["train:2".to_string(), "eeeeeeeeeeee".to_string()];
        let c = choose(usage, &keep);
        let order: Vec<&str> = c
            .candidates
            .iter()
            .map(|u| u.image.tags[0].as_str())
            .collect();
        assert_eq!(order, vec!["old:1", "new:1"]);
        assert_eq!((c.kept_needed, c.kept_in_use), (2, 1));
    }
}
