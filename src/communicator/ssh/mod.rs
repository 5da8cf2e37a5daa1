//! The SSH communicator: its configuration (`config`), with Packer 1.6.6's option names and
//! defaults.

pub mod config;

pub use config::{Communicator, KeyPairType, SshBastion, SshConfig};
