//! The `cinema` command. `cinema up` supervises a whole installation on one
//! machine the way systemd would on a real one.

pub mod accounts;
pub mod library;
pub mod ready;
pub mod tap;
pub mod up;
