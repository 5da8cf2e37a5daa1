//! How imgbuild talks to the machine being built. Only SSH exists (or no communicator at all);
//! WinRM is not supported.

pub mod ssh;
