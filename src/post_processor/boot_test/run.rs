//! The boot test: the amazon-ebs builder's own steps, over a ledger and journal of the boot
//! test's own (so that `imgbuild cleanup` finishes the job after `kill -9`): network, key pair,
//! security group, launch from the new AMI, SSH and first boot, the checks (a `shell`
//! provisioner with the boot test's `timeout`), then teardown on every path. A failed test
//! records the artifact's AMIs in the ledger (`deregister_on_failure`), so that the same teardown
//! deregisters them and deletes their snapshots.
//!
//! It is not dropped at Ctrl-C (the chain runner awaits it as it is): the steps see the
//! cancellation and stop, and the teardown runs; only a second Ctrl-C (`abort`) skips that.

use std::sync::Mutex;

use super::{BootTestConfig, UserData};
use crate::artifact::Artifact;
use crate::aws::wait::Polling;
use crate::aws::Aws;
use crate::builder::amazon::adapter::journal_name;
use crate::builder::amazon::config::AmazonEbsConfig;
use crate::builder::amazon::ids::ImageId;
use crate::builder::amazon::keys::TempKey;
use crate::builder::amazon::plan::{self, Ingress};
use crate::builder::amazon::public_ip;
use crate::builder::amazon::step::first_boot::FirstBoot;
use crate::builder::amazon::step::launch::{launch, user_data, Launch};
use crate::builder::amazon::step::{self, protected_snapshots, start_ledger, Env};
use crate::builder::amazon::{teardown, BuildError};
use crate::communicator::ssh::Communicator;
use crate::interact::Interact;
use crate::ledger::{default_journal_dir, lock, Journal, Ledger, Undo};
use crate::post_processor::context::PpContext;
use crate::post_processor::error::PpError;
use crate::provisioner::runtime::{BeforeProvisioning, ProvisionContext, ProvisionError};
use crate::provisioner::{PreparedProvisioner, ProvisionerConfig};
use crate::timeline::Timeline;

/// The builder's configuration with the boot test's overrides: the instance is launched as the
/// build's was (instance type, subnet, user data, `launch_block_device_mappings`, IAM profile,
/// metadata options, spot, SSH settings), since an image that boots only with them is judged on
/// the launch production makes; what the build made for itself and teardown removed (its
/// temporary key pair and security group) is made anew, and its `run_tags` are not copied.
pub fn boot_config(builder: &AmazonEbsConfig, c: &BootTestConfig) -> AmazonEbsConfig {
    let mut cfg = builder.clone();
    if let Some(t) = &c.instance_type {
        cfg.run.instance_type = t.clone();
    }
    if let Some(s) = &c.subnet_id {
        cfg.run.subnet_id = Some(s.clone());
        cfg.run.subnet_filter = None;
    }
    if let Some(u) = &c.ssh_username {
        cfg.ssh.ssh_username = u.clone();
    }
    if let Some(t) = c.ssh_timeout {
        cfg.ssh.ssh_timeout = t;
    }
    if !c.security_group_ids.is_empty() {
        cfg.run.security_group_ids = c.security_group_ids.clone();
        cfg.run.security_group_filter = None;
    }
    if let (Some(k), Some(f)) = (&c.ssh_keypair_name, &c.ssh_private_key_file) {
        cfg.ssh.ssh_keypair_name = Some(k.clone());
        cfg.ssh.ssh_private_key_file = Some(f.into());
    }
    if let Some(w) = c.wait_for_boot {
        cfg.wait_for_boot = w;
    }
    // The user data is the builder's, as production launches the image with what it needs to
    // boot; the boot test's own replaces it.
    match &c.user_data {
        Some(UserData::Text(t)) => {
            cfg.run.user_data = Some(t.clone());
            cfg.run.user_data_file = None;
        }
        Some(UserData::File(f)) => {
            cfg.run.user_data = None;
            cfg.run.user_data_file = Some(f.clone());
        }
        None => {}
    }
    cfg
}

/// Runs the boot test of `input`'s AMI in the build region.
pub async fn run(
    c: &BootTestConfig,
    input: &Artifact,
    ctx: &PpContext<'_>,
    target: &str,
) -> Result<(), PpError> {
    if input.null {
        ctx.say(target, "the null builder made no AMI: nothing to boot");
        return Ok(());
    }
    let (Some(aws), Some(builder)) = (ctx.aws, ctx.amazon) else {
        return Err(PpError::Other(
            "boot-test needs an amazon-ebs build (it boots the AMI the build made)".into(),
        ));
    };
    let cfg = boot_config(builder, c);
    if cfg.ssh.communicator != Communicator::Ssh {
        return Err(PpError::Other(
            "boot-test runs its checks over SSH, but this build has \"communicator\": \"none\"; set \"communicator\": \"ssh\" in the builder".into(),
        ));
    }
    let region = aws.region.clone();
    let Some(ami) = input.amis.get(&region) else {
        let have: Vec<&String> = input.amis.keys().collect();
        return Err(PpError::Other(format!(
            "boot-test boots the AMI of the build region {region}, and the artifact has none (its AMIs are in: {have:?}; skip_save_build_region?)"
        )));
    };
    let polling = Polling::resolve(
        cfg.access.aws_polling,
        std::env::var("AWS_POLL_DELAY_SECONDS").ok().as_deref(),
        std::env::var("AWS_MAX_ATTEMPTS").ok().as_deref(),
    )
    .map_err(PpError::Other)?;
    let ledger = open_ledger(ctx, &cfg)?;
    let interact = Interact::quiet(ctx.build_name);
    // The boot test is one phase of the build's timeline (its post-processor's); the steps it
    // reuses mark their own phases on this one, which nobody reports.
    let timeline = Timeline::start();
    let env = Env {
        name: ctx.build_name,
        cfg: &cfg,
        run_id: ctx.run_id,
        ledger: &ledger,
        ui: ctx.ui,
        polling,
        cancel: ctx.cancel,
        interact: &interact,
        timeline: &timeline,
        aws: Some(aws),
    };
    ctx.say(
        target,
        &format!("booting {ami} in {region} and running the checks"),
    );
    let mut booted = false;
    let result = test(
        &env,
        aws,
        &region,
        &ImageId(ami.clone()),
        c,
        input,
        &mut booted,
    )
    .await;
    let failed = matches!(&result, Err(e) if !e.is_cancelled());
    let mut deregistered = Vec::new();
    // A reused AMI is not this build's to remove (it may be delivered already).
    if failed && booted && c.deregister_on_failure && input.reused {
        ctx.say(
            target,
            "deregister_on_failure: the AMI was reused from an earlier build, so it is kept",
        );
    }
    if failed && booted && c.deregister_on_failure && !input.reused {
        for (r, id) in &input.amis {
            let undo = Undo::DeregisterImage {
                region: r.clone(),
                id: id.clone(),
            };
            if env.record(undo, None).is_ok() {
                deregistered.push(format!("{id} ({r})"));
            }
        }
    }
    let say = |m: String| ctx.say(target, &m);
    let protected = protected_snapshots(&cfg);
    let left = teardown::run(aws, &ledger, false, polling, &protected, ctx.abort, &say).await;
    let _ = lock(&ledger).finish(left.is_empty(), result.is_ok());
    let journal = lock(&ledger)
        .journal_path()
        .map(|p| p.display().to_string());
    let done = Done {
        ami,
        region: &region,
        deregistered,
        left,
        journal,
        ssh_timeout: cfg.ssh.ssh_timeout,
    };
    report(result, done, ctx, target)
}

/// How the boot test ended, for its report.
struct Done<'a> {
    ami: &'a str,
    region: &'a str,
    /// The AMIs recorded for `deregister_on_failure`, as `ami-... (region)`.
    deregistered: Vec<String>,
    /// What teardown could not remove, with why.
    left: teardown::Failures,
    journal: Option<String>,
    ssh_timeout: std::time::Duration,
}

/// The boot test's result as the chain sees it: passed (a line), or the error with the check's
/// output, what `deregister_on_failure` did and what was left behind.
fn report(
    result: Result<(), BuildError>,
    d: Done<'_>,
    ctx: &PpContext<'_>,
    target: &str,
) -> Result<(), PpError> {
    let ami = d.ami;
    let left_text = if d.left.is_empty() {
        String::new()
    } else {
        let items: Vec<String> = d
            .left
            .iter()
            .map(|(u, why)| format!("{} ({why})", u.describe()))
            .collect();
        format!(
            "; left behind: {} (run `imgbuild cleanup`; journal {})",
            items.join(", "),
            d.journal.unwrap_or_default()
        )
    };
    // For pipelines (`-machine-readable`): `boot-test,RESULT,REGION,AMI[,MESSAGE]`.
    let (outcome, message) = match &result {
        Ok(()) => ("passed", String::new()),
        Err(e) if e.is_cancelled() => ("cancelled", String::new()),
        Err(e) => ("failed", describe(e, d.ssh_timeout)),
    };
    let mut data = vec![outcome, d.region, ami];
    if !message.is_empty() {
        data.push(&message);
    }
    ctx.ui.record(ctx.build_name, "boot-test", &data);
    match result {
        Ok(()) if d.left.is_empty() => {
            ctx.say(
                target,
                &format!("boot test passed: {ami} booted and its checks passed"),
            );
            Ok(())
        }
        Ok(()) => Err(PpError::Other(format!(
            "the boot test of {ami} passed{left_text}"
        ))),
        Err(e) if e.is_cancelled() && d.left.is_empty() => Err(PpError::Cancelled),
        Err(e) if e.is_cancelled() => Err(PpError::Other(format!(
            "boot test cancelled (interrupted){left_text}"
        ))),
        Err(e) => {
            let gone = match (d.deregistered.is_empty(), d.left.is_empty()) {
                (true, _) => String::new(),
                (false, true) => format!(
                    "\n  deregister_on_failure: deregistered {} and deleted their snapshots",
                    d.deregistered.join(", ")
                ),
                (false, false) => format!(
                    "\n  deregister_on_failure: tried to deregister {}",
                    d.deregistered.join(", ")
                ),
            };
            let text = format!(
                "boot test of {ami} in {} failed: {}{gone}{left_text}",
                d.region,
                describe(&e, d.ssh_timeout)
            );
            // Every AMI of the artifact is gone: the build keeps nothing.
            if !d.deregistered.is_empty() && d.left.is_empty() {
                Err(PpError::ImageRemoved(text))
            } else {
                Err(PpError::Other(text))
            }
        }
    }
}

/// The boot test's own journal (`<run id>.<build>.boot-test`) and ledger.
fn open_ledger(ctx: &PpContext<'_>, cfg: &AmazonEbsConfig) -> Result<Mutex<Ledger>, PpError> {
    let dir = default_journal_dir();
    let name = journal_name(ctx.run_id, &format!("{}.boot-test", ctx.build_name));
    let journal = Journal::create(&dir, &name).map_err(|e| {
        PpError::Other(format!(
            "cannot create the boot test's journal in {} (set IMGBUILD_JOURNAL_DIR to a writable directory): {e}",
            dir.display()
        ))
    })?;
    start_ledger(journal, ctx.run_id, ctx.build_name, cfg)
        .map_err(|e| PpError::Other(format!("writing the boot test's journal: {e}")))
}

/// What failed, in the words of the boot test: a check's failure with its output, or what the
/// wait for the instance (bounded by `ssh_timeout`) last saw.
fn describe(e: &BuildError, ssh_timeout: std::time::Duration) -> String {
    if let BuildError::Provision(p) = e {
        if let Some(f) = p.failure() {
            return format!("a check failed: {f}");
        }
        if let ProvisionError::Connect(_) = **p {
            return format!(
                "the instance did not let SSH in within ssh_timeout ({}): {p}",
                crate::duration::go(ssh_timeout)
            );
        }
        if let ProvisionError::Before(_) = **p {
            return format!("the instance did not finish first boot: {p}");
        }
    }
    e.to_string()
}

/// The steps of the boot test; `booted` turns true once an instance of the AMI runs (a failure
/// from then on is the image's).
async fn test(
    env: &Env<'_>,
    aws: &Aws,
    region: &str,
    ami: &ImageId,
    c: &BootTestConfig,
    input: &Artifact,
    booted: &mut bool,
) -> Result<(), BuildError> {
    let cfg = env.cfg;
    // Read before anything is made (a `user_data_file` gone since the build fails here).
    let user_data = user_data(&cfg.run)?;
    let ec2 = aws.ec2(region);
    let net = step::network::network(env, &ec2, region).await?;
    let key = step::key_pair::key_pair(env, &ec2, region).await?;
    let ingress = match plan::ingress(cfg) {
        Some(Ingress::PublicIp) => Some(
            step::security_group::public_address(
                env,
                region,
                std::env::var(public_ip::URL_ENV).ok(),
            )
            .await?,
        ),
        other => other,
    };
    let groups = step::security_group::security_groups(env, &ec2, region, &net, ingress).await?;
    let mut run_tags = env.run_tags();
    run_tags.insert("Name".into(), "imgbuild boot test".into());
    let volume_tags = env.run_tags();
    // A spot boot-test instance (the builder's spot_price) carries the run's tags on its request.
    let l = Launch {
        ami,
        key_name: key.name.as_ref(),
        groups: &groups,
        net: &net,
        user_data,
        run_tags: &run_tags,
        volume_tags: &volume_tags,
        spot_tags: &run_tags,
    };
    let launched = launch(env, &ec2, region, l).await?;
    *booted = true;
    env.pause_point("boot_test").await?;
    let host = step::host::host(env, &ec2, region, &launched.id, &launched.instance).await?;
    let mut build_data = input.build_data.clone();
    build_data.insert("ID".into(), launched.id.to_string());
    build_data.insert("Host".into(), host.clone());
    let checks = [PreparedProvisioner {
        index: 0,
        kind: "boot-test".into(),
        pause_before: None,
        max_retries: 0,
        timeout: Some(c.timeout),
        config: ProvisionerConfig::Shell(c.checks.clone()),
        definition: serde_json::Value::Null,
    }];
    let first_boot = FirstBoot {
        timeout: cfg.ssh.ssh_timeout,
    };
    let private_key = key.temp.as_ref().map(TempKey::private_openssh);
    let pctx = ProvisionContext {
        build_name: env.name,
        build_type: "amazon-ebs",
        host,
        port: cfg.ssh.ssh_port,
        ssh: &cfg.ssh,
        private_key,
        provisioners: &checks,
        error_cleanup: None,
        build_data,
        ui: env.ui,
        timeline: env.timeline,
        before: cfg
            .wait_for_boot
            .then_some(&first_boot as &dyn BeforeProvisioning),
    };
    step::provision::provision(env, &ec2, region, &launched.id, &pctx).await
}
