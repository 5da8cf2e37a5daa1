//! The `amazon-ebs` builder: launch an instance from a source AMI, provision it over SSH (through
//! [`crate::provisioner::runtime`]), stop it, create an AMI from it, copy and share the AMI, and
//! record every resource it creates in the build's [`crate::ledger::Ledger`] so that teardown
//! removes whatever is not the product.
//!
//! - [`config`]: the typed template options, one file per section;
//! - [`plan`]: pure decisions (source image choice, SSH address, security group rule);
//! - [`public_ip`]: this machine's public address (the temporary security group's default);
//! - [`keys`]: the temporary key, generated locally;
//! - [`ids`]: ID newtypes (instance, image, snapshot, key pair, security group, region);
//! - [`ec2`]: the EC2 seam, the calls the steps make (a trait, implemented for the SDK client);
//! - [`step`]: one file per step, in Packer's order, each with typed inputs and outputs;
//! - [`steps`]: the build as a script ([`Ctx::run`]), calling the steps in order;
//! - [`build_data`]: the build's generated data (`{{ build `SourceAMI` }}`), typed;
//! - [`error`]: the build's error;
//! - [`reuse`]: finding an AMI that already carries the build's fingerprint;
//! - [`teardown`]: undoing the ledger;
//! - [`sweep`]: finding what earlier runs left (by run-id tag, client token, name), for
//!   `imgbuild cleanup`.
//!
//! What it shares with cleanup, the post-processors and the orchestrator lives below it: AWS
//! access, clients, errors and waits in [`crate::aws`], the [`crate::artifact::Artifact`], the
//! ledger lock in [`crate::ledger`], durations in [`crate::duration`].

pub mod adapter;
pub mod build_data;
pub mod config;
pub mod ec2;
pub mod error;
pub mod ids;
pub mod keys;
pub mod plan;
pub mod public_ip;
pub mod reuse;
pub mod step;
pub mod steps;
pub mod sweep;
pub mod teardown;
pub mod waits;

pub use config::AmazonEbsConfig;
pub use error::BuildError;
pub use steps::Ctx;
