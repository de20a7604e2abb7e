//! One file per verb.

pub mod build;
pub mod commit;
pub mod controller;
pub mod cp;
pub mod dashboard;
pub mod dev;
pub mod events;
pub mod exec;
pub mod explain;
pub mod image;
pub mod images;
pub mod inspect;
pub mod logs;
pub mod node;
pub mod nodes;
pub mod policy;
pub mod ps;
pub mod quota;
pub mod run;
pub mod stop;
pub mod submit;
pub mod token;
pub mod top;
pub mod update;
pub mod usage;
pub mod wait;
