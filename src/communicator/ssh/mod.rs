//! The SSH communicator: its configuration (`config`, Packer 1.6.6's option names and defaults)
//! and an async facade over the blocking `ssh2` crate.
//!
//! * [`Session::connect`] waits for SSH (bounded by `ssh_timeout`, short retry interval,
//!   cancellable at once) and reports why it is still waiting ([`ConnectEvent`], [`WaitReason`]).
//! * [`Session::exec`] streams stdout and stderr line by line and tells exit status, exit signal
//!   and a lost connection apart ([`ExitOutcome`]).
//! * [`Session::upload_file`], [`Session::upload_dir`] and [`Session::download`] move files as
//!   tar streams over one channel.
//!
//! Each session is owned by one thread of its own; no libssh2 call runs on a runtime thread.

mod bastion;
pub mod config;
mod conn;
mod connect;
mod error;
mod exec;
pub mod hostkey;
mod options;
mod pump;
mod reason;
mod session;
mod transfer;

pub use config::{Communicator, KeyPairType, SshBastion, SshConfig};
pub use connect::ConnectEvent;
pub use error::{Endpoint, Libssh2Code, SshError};
pub use exec::{shell_quote, ExecOptions, ExitOutcome, Stream};
pub use hostkey::HostKeyFingerprint;
pub use options::{
    private_key_type, Auth, BastionOptions, ConnectOptions, KeyType, RetrySchedule, Secret,
};
pub use reason::{AuthMethod, WaitReason};
pub use session::Session;
pub use transfer::{ProgressFn, TransferProgress, TransferStats, UploadSource};
