//! The one integration test binary: the CLI as a user runs it, against a real EC2 emulator
//! (moto server) and a real OpenSSH sshd on 127.0.0.1.

// First: the skip macro (`world_or_skip!`) is visible only in modules declared after it.
#[macro_use]
mod support;

mod ansible_tests;
mod boot_pp_tests;
mod boot_tests;
mod build_tests;
mod cfn_tests;
mod cleanup_tests;
mod cli_tests;
mod cloud_sg_tests;
mod cloud_tests;
mod completion_tests;
mod config_mgmt_tests;
mod fault_tests;
mod fix_tests;
mod hcl_gaps_tests;
mod hcl_json_tests;
mod hcl_params_tests;
mod hcl_tests;
mod leniency_tests;
mod nightly_tests;
mod null_tests;
mod pp_tests;
mod provision_tests;
mod readme_tests;
mod ready_tests;
mod records_tests;
mod reuse_tests;
mod security_tests;
mod sg_tests;
mod spot_tests;
mod ssh_tests;
mod timeline_tests;
mod ui_tests;
mod waits_tests;
mod web_worker_tests;
mod world_tests;
