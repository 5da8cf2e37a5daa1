//! How imgbuild talks to the machine being built. Only SSH exists (or no communicator at all);
//! WinRM is not supported.
//!
//! This module holds the configuration (Packer's communicator options, embedded in the builder
//! object); the connection itself comes later.

pub mod ssh;
