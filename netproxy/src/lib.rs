//! Routing of server traffic and the https proxy for servers' web UIs (leader-only services).
//!
//! Not built yet: the networking issue fills this crate in. It registers its services with the
//! leader services supervisor in `skiff-nodeagent`.
