//! Plans and state as text for people (`human`, `markdown` for pull-request comments) and for programs
//! (`json`). Rendering is separate from
//! planning: the same immutable plan feeds both.

pub mod human;
pub mod json;
pub mod markdown;
pub mod progress;
