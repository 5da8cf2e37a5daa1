//! The seam between the builder and provisioning: once the source instance runs and its SSH
//! address is known, the builder hands over here; this connects (waiting for SSH, with reasons)
//! and runs the build's provisioners in order, then returns. The builder goes on to stop the
//! instance and create the image.
//!
//! STATUS: the SSH communicator and the provisioners' runtime are being written (issue 3). Until
//! they land, a build whose communicator is `none` passes through here, and any other build fails
//! with [`ProvisionError::NotImplemented`] (so the builder's teardown path runs and is tested).

use std::collections::BTreeMap;

use crate::communicator::ssh::{Communicator, SshConfig};
use crate::template::prepare::PreparedProvisioner;

/// Everything provisioning needs from the builder.
pub struct ProvisionContext<'a> {
    pub build_name: &'a str,
    pub build_type: &'a str,
    /// The address to connect to (from `ssh_host` or the instance, per `ssh_interface`).
    pub host: String,
    pub port: u16,
    pub ssh: &'a SshConfig,
    /// The temporary key pair's private key (OpenSSH or PEM text), when imgbuild created one.
    /// Never logged or printed.
    pub private_key: Option<&'a str>,
    pub provisioners: &'a [PreparedProvisioner],
    pub error_cleanup: Option<&'a PreparedProvisioner>,
    /// `{{build `Key`}}` values: ID, Host, Port, User, SourceAMI, BuildRegion, ...
    pub build_data: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("{0}")]
    NotImplemented(String),
    #[error("cancelled")]
    Cancelled,
}

impl std::fmt::Debug for ProvisionContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProvisionContext")
            .field("build_name", &self.build_name)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("private_key", &self.private_key.map(|_| "<sensitive>"))
            .finish_non_exhaustive()
    }
}

/// Connects and runs the provisioners. `cancel` resolves when the build is cancelled.
pub async fn run(
    ctx: &ProvisionContext<'_>,
    cancel: tokio::sync::watch::Receiver<bool>,
) -> Result<(), ProvisionError> {
    let _ = cancel;
    if ctx.ssh.communicator == Communicator::None {
        return Ok(());
    }
    Err(ProvisionError::NotImplemented(format!(
        "connecting over SSH to {}:{} and running {} provisioner(s) is not implemented yet",
        ctx.host,
        ctx.port,
        ctx.provisioners.len()
    )))
}
