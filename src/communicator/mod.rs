//! Communicators: how imgbuild talks to the machine it provisions.

pub mod ssh;
