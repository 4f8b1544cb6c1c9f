//! `balancer.IP`: a node's API balancer (lvscare), a virtual server sent to the masters that answer.

use super::{schema, Known, Rules};

schema! {
    pub struct Balancer for Balancer {
        virtual_server: Known<String>,
        /// `IP:6443` of every master: one added or removed is an update of every node's.
        real_servers: Vec<String>,
    }
}

impl Rules for Balancer {}
