//! Node label constraints (`--constraint zone=a`, `rack!=r9`): part of what
//! a job is, checked by the scheduler and re-checked by the state machine
//! when a placement applies.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Constraint {
    Eq(String, String),
    Ne(String, String),
}

impl Constraint {
    /// Parses "key=value" or "key!=value".
    pub fn parse(s: &str) -> Option<Constraint> {
        if let Some((k, v)) = s.split_once("!=") {
            return (!k.is_empty()).then(|| Constraint::Ne(k.into(), v.into()));
        }
        let (k, v) = s.split_once('=')?;
        (!k.is_empty()).then(|| Constraint::Eq(k.into(), v.into()))
    }

    pub fn holds(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Constraint::Eq(k, v) => labels.get(k) == Some(v),
            Constraint::Ne(k, v) => labels.get(k) != Some(v),
        }
    }
}
