//! `hooks.IP`: the image's shell-operator hooks on the first master.

use super::{schema, Known, Rules};

schema! {
    pub struct Hooks for Hooks {
        /// A rebuilt image runs its startup hooks again.
        image_digest: Known<String>,
        /// The `onStartup` hooks that ran, in order.
        startup: Known<Vec<String>>,
        /// The `schedule` bindings `sealer reconcile` runs.
        schedules: Known<Vec<String>>,
        /// The `kubernetes` bindings `sealer reconcile` watches.
        watches: Known<Vec<String>>,
    }
}

impl Rules for Hooks {}
