//! Shared set-up of the end-to-end tests, one module per purpose:
//! [`support::world`] (the whole stack of real binaries), [`support::events`]
//! (waiting for what the bus says), [`support::speech`],
//! [`support::director`], [`support::processes`], [`support::certs`] and
//! [`support::measure`] (benchmark figures). Everything is re-exported here:
//! tests call `tests::next`, `tests::World`.
#![allow(clippy::unwrap_used)]

pub mod hub;
pub mod webdriver;

pub mod support {
    pub mod certs;
    pub mod director;
    pub mod eval;
    pub mod events;
    pub mod measure;
    pub mod processes;
    pub mod speech;
    pub mod turns;
    pub mod world;
}

pub use support::certs::*;
pub use support::director::*;
pub use support::events::*;
pub use support::measure::*;
pub use support::processes::*;
pub use support::speech::*;
pub use support::world::*;
