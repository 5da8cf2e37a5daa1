//! The `cloudformation-update` post-processor (imgbuild's own): hands the new AMI to a
//! CloudFormation stack, the step every nightly pipeline otherwise glues together with the AWS
//! CLI, `jq` and `cut -d:`.
//!
//! For each stack (one, or one per region with `stacks`): `UpdateStack` with the previous
//! template, `parameter` set to the artifact's AMI ID in the stack's region, and every other
//! parameter of the stack kept with `UsePreviousValue`. With `wait` (the default) it then polls
//! the stack until the update ends (every second on the shared stack poller, or on the fixed
//! schedule of `aws_polling`), printing each new stack event as a progress line:
//!
//! - `UPDATE_COMPLETE`: success;
//! - "No updates are to be performed" (the stack already uses this AMI): success, and said so;
//! - `UPDATE_ROLLBACK_COMPLETE`, `UPDATE_ROLLBACK_FAILED`, any other end state: failure, naming
//!   the resources that failed and CloudFormation's reasons.
//!
//! A failure never removes the AMI: the build fails (exit 1), the AMI is reported as kept, and
//! the error says how to retry the update by hand.
//!
//! Credentials are the builder's (profile, keys, `assume_role`); the endpoint is
//! `custom_endpoint_cloudformation`, else `AWS_ENDPOINT_URL_CLOUDFORMATION` or
//! `AWS_ENDPOINT_URL` (through aws-config), else AWS's.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_sdk_cloudformation::types::{Capability, Parameter, Stack};

use super::ami_outputs::primary_ami;
use super::context::PpContext;
use super::error::{CfnError, PpError};
use crate::artifact::Artifact;
use crate::aws::wait::{self, Polling, Probe, Schedule};
use crate::aws::{Api, ApiError};
use crate::checks::{error_at, flag, is_deferred, opt_string, strings_at};
use crate::duration::human as human_duration;
use crate::template::decode::{Dx, Obj};

/// The capabilities `UpdateStack` accepts.
pub const CAPABILITIES: &[&str] = &[
    "CAPABILITY_IAM",
    "CAPABILITY_NAMED_IAM",
    "CAPABILITY_AUTO_EXPAND",
];

/// How long to wait for an update by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// At most this many pages of stack events are read per poll.
const MAX_EVENT_PAGES: usize = 20;

/// How often a stack's events are read while its status stays the same (a new status, and
/// the end of the update, read them at once).
const EVENTS_EVERY: Duration = Duration::from_secs(3);

/// Which stacks to update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stacks {
    /// `stack_name` (and `region`, default the build region).
    One {
        name: String,
        region: Option<String>,
    },
    /// `stacks`: region -> stack name; each gets the AMI of its region.
    PerRegion(BTreeMap<String, String>),
}

/// `cloudformation-update`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudFormationConfig {
    pub stacks: Stacks,
    /// `parameter`: the stack parameter that receives the AMI ID.
    pub parameter: String,
    /// `capabilities`: `CAPABILITY_IAM`, `CAPABILITY_NAMED_IAM`, `CAPABILITY_AUTO_EXPAND`.
    pub capabilities: Vec<String>,
    /// `wait` (default true): wait for the update to end.
    pub wait: bool,
    /// `timeout` (default 30m): the longest wait for one stack.
    pub timeout: Duration,
    /// `custom_endpoint_cloudformation`.
    pub custom_endpoint: Option<String>,
}

impl CloudFormationConfig {
    /// Decodes a `cloudformation-update` post-processor whose common keys the caller has taken.
    pub fn decode(mut obj: Obj, dx: &mut Dx) -> CloudFormationConfig {
        let o = &mut obj;
        let stacks = decode_stacks(o, dx);
        let parameter = decode_parameter(o, dx);
        let mut capabilities = Vec::new();
        for c in strings_at(o, dx, "capabilities").unwrap_or_default() {
            if CAPABILITIES.contains(&c.value.as_str()) {
                capabilities.push(c.value);
            } else {
                let d = dx.error(
                    c.span,
                    &c.path,
                    format!("unknown capability \"{}\"", c.value),
                );
                d.notes.push(format!(
                    "help: CloudFormation knows {}",
                    CAPABILITIES.join(", ")
                ));
            }
        }
        let wait = flag(o, dx, "wait").unwrap_or(true);
        let timeout = match o.duration(dx, "timeout") {
            Some(d) if d.is_zero() => {
                error_at(
                    o,
                    dx,
                    "timeout",
                    "`timeout` must be longer than 0s",
                    Some("e.g. \"30m\"; use \"wait\": false not to wait at all"),
                );
                DEFAULT_TIMEOUT
            }
            Some(d) => d,
            None => DEFAULT_TIMEOUT,
        };
        let custom_endpoint = opt_string(o, dx, "custom_endpoint_cloudformation");
        obj.finish(dx);
        CloudFormationConfig {
            stacks,
            parameter,
            capabilities,
            wait,
            timeout,
            custom_endpoint,
        }
    }
}

/// `stack_name` (with `region`) or `stacks` (one stack per region), exactly one of them.
fn decode_stacks(o: &mut Obj, dx: &mut Dx) -> Stacks {
    let stack_name = opt_string(o, dx, "stack_name");
    let stacks = o.string_map(dx, "stacks");
    let region = opt_string(o, dx, "region");
    match (stack_name, stacks) {
        (Some(_), Some(_)) => {
            error_at(
                o,
                dx,
                "stacks",
                "`stack_name` and `stacks` cannot both be set",
                Some("use `stack_name` for the stack of one region, `stacks` for one stack per region"),
            );
            Stacks::PerRegion(BTreeMap::new())
        }
        (Some(name), None) => Stacks::One { name, region },
        (None, Some(map)) => {
            if map.is_empty() {
                error_at(
                    o,
                    dx,
                    "stacks",
                    "`stacks` must name at least one stack",
                    Some("e.g. \"stacks\": {\"us-east-1\": \"web_worker\", \"eu-west-1\": \"web_worker\"}"),
                );
            }
            for (r, n) in &map {
                if r.trim().is_empty() || n.trim().is_empty() {
                    error_at(
                        o,
                        dx,
                        "stacks",
                        "`stacks` maps a region to a stack name; neither may be empty",
                        None,
                    );
                    break;
                }
            }
            if region.is_some() {
                error_at(
                    o,
                    dx,
                    "region",
                    "`region` has no meaning with `stacks` (its keys are the regions)",
                    None,
                );
            }
            Stacks::PerRegion(map)
        }
        (None, None) => {
            error_at(
                o,
                dx,
                "stack_name",
                "`cloudformation-update` needs `stack_name` or `stacks`",
                Some("e.g. \"stack_name\": \"web_worker\", or \"stacks\": {\"us-east-1\": \"web_worker\"}"),
            );
            Stacks::One {
                name: String::new(),
                region,
            }
        }
    }
}

/// `parameter`: the stack parameter that takes the AMI ID (required, a parameter name).
fn decode_parameter(o: &mut Obj, dx: &mut Dx) -> String {
    match opt_string(o, dx, "parameter") {
        Some(p) => {
            if !is_deferred(&p) && !is_parameter_name(&p) {
                error_at(
                    o,
                    dx,
                    "parameter",
                    format!("`parameter` \"{p}\" is not a CloudFormation parameter name"),
                    Some("parameter names are letters and digits, e.g. \"WorkerAMI\""),
                );
            }
            p
        }
        None => {
            error_at(
                o,
                dx,
                "parameter",
                "`cloudformation-update` needs `parameter`: the stack parameter that takes the AMI ID",
                Some("e.g. \"parameter\": \"WorkerAMI\""),
            );
            String::new()
        }
    }
}

/// True for a CloudFormation parameter name (alphanumeric, at most 255 characters).
pub fn is_parameter_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 255 && s.chars().all(|c| c.is_ascii_alphanumeric())
}

/// What the AMI of a failed update means for the user: it exists, and this is how to retry.
fn retry_hint(stack: &str, region: &str, parameter: &str, ami: &str, others: &[String]) -> String {
    let mut cmd = format!(
        "aws cloudformation update-stack --region {region} --stack-name {stack} --use-previous-template --parameters ParameterKey={parameter},ParameterValue={ami}"
    );
    for k in others {
        cmd.push_str(&format!(" ParameterKey={k},UsePreviousValue=true"));
    }
    format!("the AMI {ami} ({region}) exists and was kept; retry the stack update with: {cmd}")
}

/// One stack event, as far as progress lines and failure reasons need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackEvent {
    pub id: String,
    pub logical_id: String,
    pub resource_type: String,
    pub status: String,
    pub reason: Option<String>,
}

impl StackEvent {
    fn from_sdk(e: &aws_sdk_cloudformation::types::StackEvent) -> StackEvent {
        StackEvent {
            id: e.event_id().unwrap_or_default().to_string(),
            logical_id: e.logical_resource_id().unwrap_or_default().to_string(),
            resource_type: e.resource_type().unwrap_or_default().to_string(),
            status: e
                .resource_status()
                .map(|s| s.as_str().to_string())
                .unwrap_or_default(),
            reason: e
                .resource_status_reason()
                .filter(|r| !r.is_empty())
                .map(str::to_string),
        }
    }

    /// The progress line: `LaunchTemplate (AWS::EC2::LaunchTemplate): UPDATE_FAILED: reason`.
    pub fn line(&self) -> String {
        let mut s = format!(
            "{} ({}): {}",
            self.logical_id, self.resource_type, self.status
        );
        if let Some(r) = &self.reason {
            s.push_str(": ");
            s.push_str(r);
        }
        s
    }

    fn is_stack(&self) -> bool {
        self.resource_type == "AWS::CloudFormation::Stack"
    }
}

/// The events of `page` (newest first, as DescribeStackEvents returns them) that come after
/// the event `stop_at`; and whether `stop_at` was found (so older pages need not be read).
pub fn take_new(page: &[StackEvent], stop_at: Option<&str>) -> (Vec<StackEvent>, bool) {
    let mut out = Vec::new();
    for e in page {
        if Some(e.id.as_str()) == stop_at {
            return (out, true);
        }
        out.push(e.clone());
    }
    (out, false)
}

/// Why an update failed, from its events (oldest first): each resource that failed with
/// CloudFormation's reason; resources only cancelled because another failed are left out when
/// a real reason exists. Empty when the events name no failed resource.
pub fn failure_reasons(events: &[StackEvent]) -> Vec<String> {
    let failed: Vec<&StackEvent> = events
        .iter()
        .filter(|e| !e.is_stack() && e.status.ends_with("_FAILED"))
        .collect();
    let cancelled = |e: &&StackEvent| {
        e.reason
            .as_deref()
            .is_some_and(|r| r.to_ascii_lowercase().contains("cancelled"))
    };
    let real: Vec<&StackEvent> = failed.iter().copied().filter(|e| !cancelled(e)).collect();
    let chosen = if real.is_empty() { failed } else { real };
    let mut out: Vec<String> = Vec::new();
    for e in chosen {
        let line = format!(
            "{} ({}) {}: {}",
            e.logical_id,
            e.resource_type,
            e.status,
            e.reason.as_deref().unwrap_or("no reason given")
        );
        if !out.contains(&line) {
            out.push(line);
        }
    }
    out
}

/// Where a stack status leaves an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Done,
    Pending,
    Failed,
}

/// `UPDATE_COMPLETE` is done; any `*_IN_PROGRESS` (including the cleanup phases) is pending;
/// everything else (`UPDATE_ROLLBACK_COMPLETE`, `UPDATE_ROLLBACK_FAILED`, `UPDATE_FAILED`, ...)
/// ends the update without it being applied.
pub fn phase(status: &str) -> Phase {
    if status == "UPDATE_COMPLETE" {
        Phase::Done
    } else if status.ends_with("_IN_PROGRESS") {
        Phase::Pending
    } else {
        Phase::Failed
    }
}

/// True for CloudFormation's answer to an update that changes nothing.
pub fn is_no_update(e: &ApiError) -> bool {
    e.message.contains("No updates are to be performed")
}

/// The stack's status, status reason and parameter keys.
async fn describe(
    cf: &aws_sdk_cloudformation::Client,
    stack: &str,
) -> Result<(String, Option<String>, Vec<String>), ApiError> {
    let out = cf.describe_stacks().stack_name(stack).send().await.api()?;
    let s = out
        .stacks()
        .first()
        .ok_or_else(|| ApiError::msg("DescribeStacks returned no stack"))?;
    let (status, reason) = status_of(s)?;
    let keys = s
        .parameters()
        .iter()
        .filter_map(|p| p.parameter_key().map(str::to_string))
        .collect();
    Ok((status, reason, keys))
}

/// A stack's status and status reason.
fn status_of(s: &Stack) -> Result<(String, Option<String>), ApiError> {
    let status = s
        .stack_status()
        .map(|s| s.as_str().to_string())
        .ok_or_else(|| ApiError::msg("DescribeStacks returned a stack without a status"))?;
    Ok((status, s.stack_status_reason().map(str::to_string)))
}

/// The id of the stack's newest event (the first of the first page).
async fn newest_event(
    cf: &aws_sdk_cloudformation::Client,
    stack: &str,
) -> Result<Option<String>, ApiError> {
    let page = cf
        .describe_stack_events()
        .stack_name(stack)
        .send()
        .await
        .api()?;
    Ok(page
        .stack_events()
        .first()
        .and_then(|e| e.event_id())
        .map(str::to_string))
}

/// The events after `stop_at`, oldest first (at most [`MAX_EVENT_PAGES`] pages).
async fn events_after(
    cf: &aws_sdk_cloudformation::Client,
    stack: &str,
    stop_at: Option<&str>,
) -> Result<Vec<StackEvent>, ApiError> {
    let mut out = Vec::new();
    let mut pages = cf
        .describe_stack_events()
        .stack_name(stack)
        .into_paginator()
        .send();
    for _ in 0..MAX_EVENT_PAGES {
        let Some(page) = pages.try_next().await.api()? else {
            break;
        };
        let events: Vec<StackEvent> = page
            .stack_events()
            .iter()
            .map(StackEvent::from_sdk)
            .collect();
        let (new, found) = take_new(&events, stop_at);
        out.extend(new);
        if found {
            break;
        }
    }
    out.reverse();
    Ok(out)
}

/// The stacks to update: (region, stack name, AMI).
fn targets(
    c: &CloudFormationConfig,
    input: &Artifact,
    ctx: &PpContext<'_>,
) -> Result<Vec<(String, String, String)>, PpError> {
    let have = input.amis.keys().cloned().collect::<Vec<_>>().join(", ");
    let no_ami = |stack: &String, region: &String| CfnError::NoAmi {
        stack: stack.clone(),
        region: region.clone(),
        have: have.clone(),
    };
    let mut out = Vec::new();
    match &c.stacks {
        Stacks::One { name, region } => {
            let name = ctx.render("stack_name", name, input, None)?;
            match region {
                Some(r) => {
                    let r = ctx.render("region", r, input, None)?;
                    let ami = input.amis.get(&r).ok_or_else(|| no_ami(&name, &r))?;
                    out.push((r, name, ami.clone()));
                }
                None => {
                    let build_region = input
                        .build_data
                        .get("BuildRegion")
                        .cloned()
                        .unwrap_or_default();
                    let ami = primary_ami(input).ok_or_else(|| CfnError::NoPrimaryAmi {
                        region: build_region.clone(),
                        have: have.clone(),
                    })?;
                    // The region of that AMI (the build region, or the only copy).
                    let region = input
                        .amis
                        .iter()
                        .find(|(_, a)| a.as_str() == ami)
                        .map(|(r, _)| r.clone())
                        .unwrap_or(build_region);
                    out.push((region, name, ami.to_string()));
                }
            }
        }
        Stacks::PerRegion(map) => {
            for (r, n) in map {
                let r = ctx.render("stacks", r, input, None)?;
                let n = ctx.render("stacks", n, input, None)?;
                let ami = input.amis.get(&r).ok_or_else(|| no_ami(&n, &r))?;
                out.push((r, n, ami.clone()));
            }
        }
    }
    Ok(out)
}

/// Runs `cloudformation-update` on the artifact.
pub async fn run(
    c: &CloudFormationConfig,
    input: &Artifact,
    ctx: &PpContext<'_>,
    target: &str,
) -> Result<(), PpError> {
    if input.null {
        ctx.say(target, "the null builder made no AMI: no stack to update");
        return Ok(());
    }
    let aws = ctx.aws.ok_or(CfnError::NoAws)?;
    let parameter = ctx.render("parameter", &c.parameter, input, None)?;
    let stacks = targets(c, input, ctx)?;
    let endpoint = match &c.custom_endpoint {
        Some(e) => Some(ctx.render("custom_endpoint_cloudformation", e, input, None)?),
        None => None,
    };
    let mut failures = Vec::new();
    for (region, stack, ami) in &stacks {
        let cf = aws.cloudformation(region, endpoint.as_deref());
        let update = StackUpdate {
            stack,
            region,
            parameter: &parameter,
            ami,
            endpoint: endpoint.as_deref(),
        };
        if let Err(e) = update_one(c, ctx, target, &cf, &update).await {
            // With several stacks, each failure is shown when it happens (the next stack is
            // still updated); the build's error lists them all.
            if stacks.len() > 1 {
                ctx.ui.error(&format!("==> {target}: {e}"));
            }
            failures.push(e);
        }
    }
    match failures.len() {
        0 => Ok(()),
        1 => Err(failures.remove(0)),
        n => Err(PpError::Other(format!(
            "{n} stack updates failed: {}",
            failures
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        ))),
    }
}

/// One stack's update: which stack, in which region, and the parameter value it gets.
struct StackUpdate<'a> {
    stack: &'a str,
    region: &'a str,
    parameter: &'a str,
    ami: &'a str,
    /// `custom_endpoint_cloudformation`, rendered.
    endpoint: Option<&'a str>,
}

/// Updates one stack: checks that it has the parameter, starts the update (every other
/// parameter kept) and, with `wait`, waits for it to end.
async fn update_one(
    c: &CloudFormationConfig,
    ctx: &PpContext<'_>,
    target: &str,
    cf: &aws_sdk_cloudformation::Client,
    u: &StackUpdate<'_>,
) -> Result<(), PpError> {
    let &StackUpdate {
        stack,
        region,
        parameter,
        ami,
        ..
    } = u;
    let (status, _, keys) =
        describe(cf, stack)
            .await
            .map_err(|source| CfnError::DescribeStack {
                stack: stack.to_string(),
                region: region.to_string(),
                source,
            })?;
    if !keys.iter().any(|k| k == parameter) {
        return Err(CfnError::NoSuchParameter {
            stack: stack.to_string(),
            region: region.to_string(),
            parameter: parameter.to_string(),
            known: if keys.is_empty() {
                "none".into()
            } else {
                keys.join(", ")
            },
        }
        .into());
    }
    let others: Vec<String> = keys.into_iter().filter(|k| k != parameter).collect();
    // The newest event before the update: the events after it are this update's.
    let before = newest_event(cf, stack)
        .await
        .map_err(|source| CfnError::DescribeStack {
            stack: stack.to_string(),
            region: region.to_string(),
            source,
        })?;
    ctx.say(
        target,
        &format!(
            "Updating stack {stack} ({region}, {status}): {parameter}={ami}{}",
            if others.is_empty() {
                String::new()
            } else {
                format!(", keeping {}", others.join(", "))
            }
        ),
    );
    let hint = retry_hint(stack, region, parameter, ami, &others);
    let failed = |source: ApiError| {
        PpError::Other(format!(
            "{}; {hint}",
            CfnError::UpdateStack {
                stack: stack.to_string(),
                region: region.to_string(),
                ami: ami.to_string(),
                source,
            }
            .to_string()
            .trim_end_matches('.')
        ))
    };
    match start_update(c, cf, u, &others).await {
        Ok(_) => {}
        Err(e) if is_no_update(&e) => {
            ctx.say(
                target,
                &format!(
                    "Stack {stack} ({region}) already uses {ami} as {parameter}: no updates are to be performed"
                ),
            );
            return Ok(());
        }
        Err(e) => return Err(failed(e)),
    }
    if !c.wait {
        ctx.say(
            target,
            &format!(
                "Update of stack {stack} ({region}) started; not waiting for it (wait: false)"
            ),
        );
        return Ok(());
    }
    wait_update(c, ctx, target, cf, u, before, &hint).await
}

/// Sends `UpdateStack`: the previous template, `parameter` set to the AMI, every other
/// parameter kept with `UsePreviousValue`.
async fn start_update(
    c: &CloudFormationConfig,
    cf: &aws_sdk_cloudformation::Client,
    u: &StackUpdate<'_>,
    others: &[String],
) -> Result<(), ApiError> {
    let &StackUpdate {
        stack,
        parameter,
        ami,
        ..
    } = u;
    // The SDK retries a request that failed on the way (throttling, 5xx); the token makes
    // CloudFormation see a retry as the same update rather than a second one.
    let token = format!("imgbuild-{}", uuid::Uuid::new_v4());
    let mut req = cf
        .update_stack()
        .stack_name(stack)
        .client_request_token(token)
        .use_previous_template(true)
        .parameters(
            Parameter::builder()
                .parameter_key(parameter)
                .parameter_value(ami)
                .build(),
        );
    for k in others {
        req = req.parameters(
            Parameter::builder()
                .parameter_key(k)
                .use_previous_value(true)
                .build(),
        );
    }
    for cap in &c.capabilities {
        req = req.capabilities(Capability::from(cap.as_str()));
    }
    req.send().await.api().map(|_| ())
}

/// Waits (bounded by `timeout`, cancellable) for a started update to end, printing each new
/// stack event; a failed or timed-out update names CloudFormation's reasons and how to retry.
async fn wait_update(
    c: &CloudFormationConfig,
    ctx: &PpContext<'_>,
    target: &str,
    cf: &aws_sdk_cloudformation::Client,
    u: &StackUpdate<'_>,
    before: Option<String>,
    hint: &str,
) -> Result<(), PpError> {
    let &StackUpdate {
        stack,
        region,
        parameter,
        ami,
        ..
    } = u;
    ctx.say(
        target,
        &format!(
            "Waiting for stack {stack} ({region}) to be UPDATE_COMPLETE (at most {}; an interrupt stops the wait, not the update)",
            human_duration(c.timeout)
        ),
    );
    let started = Instant::now();
    let seen = &Mutex::new(Seen {
        last_event: before,
        events: Vec::new(),
        read: None,
    });
    let polling = Polling::resolve(
        ctx.amazon.and_then(|a| a.access.aws_polling),
        std::env::var("AWS_POLL_DELAY_SECONDS").ok().as_deref(),
        std::env::var("AWS_MAX_ATTEMPTS").ok().as_deref(),
    )
    .map_err(PpError::Other)?;
    // `aws_polling` (or the environment) sets the pace; the limit is the post-processor's.
    let fixed = polling.schedule(c.timeout);
    let schedule = Schedule {
        initial: fixed.initial,
        cap: fixed.cap,
        limit: c.timeout,
        origin: "the post-processor's `timeout`",
    };
    let what = format!("stack {stack} ({region})");
    let progress = |m: String| ctx.say(target, &m);
    let look = Look {
        cf,
        ctx,
        target,
        stack,
    };
    let look = &look;
    let r = match ctx.aws.filter(|_| polling.is_default()) {
        // The default: the shared stack poller, one DescribeStacks a second.
        Some(aws) => {
            let watch = aws.stack_poller(region, u.endpoint).watch(stack);
            wait::until_polled(
                &what,
                "UPDATE_COMPLETE",
                &schedule,
                ctx.cancel,
                &progress,
                watch,
                |s: Option<Stack>| async move {
                    let s = s.ok_or_else(|| {
                        ApiError::msg(format!("DescribeStacks: stack {stack} does not exist"))
                    })?;
                    let (status, reason) = status_of(&s)?;
                    look.judge(seen, status, reason).await
                },
            )
            .await
        }
        None => {
            wait::until(
                &what,
                "UPDATE_COMPLETE",
                &schedule,
                ctx.cancel,
                &progress,
                || async move {
                    let (status, reason, _) = describe(cf, stack).await?;
                    look.judge(seen, status, reason).await
                },
            )
            .await
        }
    };
    match r {
        Ok(_) => {
            ctx.say(
                target,
                &format!(
                    "Stack {stack} ({region}) is UPDATE_COMPLETE after {}: {parameter}={ami}",
                    human_duration(started.elapsed())
                ),
            );
            Ok(())
        }
        Err(source) => Err(PpError::Other(format!(
            "{}; {hint}",
            CfnError::Wait {
                stack: stack.to_string(),
                region: region.to_string(),
                ami: ami.to_string(),
                source,
            }
            .to_string()
            .trim_end_matches('.')
        ))),
    }
}

/// What a wait has seen of its stack: the last event printed, this update's events, and at
/// which status and when the events were last read.
struct Seen {
    last_event: Option<String>,
    events: Vec<StackEvent>,
    read: Option<(String, Instant)>,
}

/// The stack a wait looks at, and where its events are printed.
struct Look<'a> {
    cf: &'a aws_sdk_cloudformation::Client,
    ctx: &'a PpContext<'a>,
    target: &'a str,
    stack: &'a str,
}

impl Look<'_> {
    /// Judges one answer (`status`): prints the stack's new events (read at a new status, at
    /// the end, and every [`EVENTS_EVERY`] meanwhile) and says whether the update is done,
    /// still going, or failed (with the failed resources' reasons).
    async fn judge(
        &self,
        seen: &Mutex<Seen>,
        status: String,
        status_reason: Option<String>,
    ) -> Result<Probe<String>, ApiError> {
        let p = phase(&status);
        let due = p != Phase::Pending
            || lock(seen)
                .read
                .as_ref()
                .is_none_or(|(st, at)| *st != status || at.elapsed() >= EVENTS_EVERY);
        if due {
            let stop_at = lock(seen).last_event.clone();
            let new = events_after(self.cf, self.stack, stop_at.as_deref()).await?;
            {
                let mut s = lock(seen);
                if let Some(last) = new.last() {
                    s.last_event = Some(last.id.clone());
                }
                s.events.extend(new.iter().cloned());
                s.read = Some((status.clone(), Instant::now()));
            }
            for e in &new {
                self.ctx
                    .say(self.target, &format!("{}: {}", self.stack, e.line()));
            }
        }
        Ok(match p {
            Phase::Done => Probe::Done(status),
            Phase::Pending => Probe::Pending(status),
            Phase::Failed => {
                let reasons = failure_reasons(&lock(seen).events);
                let reason = if reasons.is_empty() {
                    status_reason.unwrap_or_else(|| "CloudFormation gave no reason".into())
                } else {
                    reasons.join("; ")
                };
                Probe::Failed {
                    state: status,
                    reason,
                }
            }
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testing::*;

    fn ev(id: &str, logical: &str, ty: &str, status: &str, reason: Option<&str>) -> StackEvent {
        StackEvent {
            id: id.into(),
            logical_id: logical.into(),
            resource_type: ty.into(),
            status: status.into(),
            reason: reason.map(str::to_string),
        }
    }

    #[test]
    fn decode_one_stack_and_defaults() {
        let (c, d) = decode(
            r#"{"stack_name": "web_{{user `n`}}", "parameter": "WorkerAMI"}"#,
            CloudFormationConfig::decode,
        );
        assert!(d.items.is_empty(), "{d:?}");
        assert_eq!(
            c,
            CloudFormationConfig {
                stacks: Stacks::One {
                    name: "web_7".into(),
                    region: None
                },
                parameter: "WorkerAMI".into(),
                capabilities: vec![],
                wait: true,
                timeout: DEFAULT_TIMEOUT,
                custom_endpoint: None,
            }
        );
        let (c, d) = decode(
            r#"{"stacks": {"us-east-1": "a", "eu-west-1": "b"}, "parameter": "Ami",
                "capabilities": ["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"], "wait": "false",
                "timeout": "1h", "custom_endpoint_cloudformation": "http://127.0.0.1:1"}"#,
            CloudFormationConfig::decode,
        );
        assert!(d.items.is_empty(), "{d:?}");
        assert_eq!(
            c.stacks,
            Stacks::PerRegion(
                [("eu-west-1", "b"), ("us-east-1", "a")]
                    .iter()
                    .map(|(r, n)| (r.to_string(), n.to_string()))
                    .collect()
            )
        );
        assert_eq!(c.capabilities, ["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"]);
        assert!(!c.wait);
        assert_eq!(c.timeout, Duration::from_secs(3600));
        assert_eq!(c.custom_endpoint.as_deref(), Some("http://127.0.0.1:1"));
    }

    #[test]
    fn decode_errors_name_the_problem() {
        let cases: &[(&str, &[&str])] = &[
            (
                "{}",
                &[
                    "`cloudformation-update` needs `stack_name` or `stacks`",
                    "`cloudformation-update` needs `parameter`: the stack parameter that takes the AMI ID",
                ],
            ),
            (
                r#"{"stack_name": "a", "stacks": {"us-east-1": "b"}, "parameter": "P"}"#,
                &["`stack_name` and `stacks` cannot both be set"],
            ),
            (
                r#"{"stacks": {}, "parameter": "P"}"#,
                &["`stacks` must name at least one stack"],
            ),
            (
                r#"{"stacks": {"us-east-1": "a"}, "region": "us-west-2", "parameter": "P"}"#,
                &["`region` has no meaning with `stacks` (its keys are the regions)"],
            ),
            (
                r#"{"stack_name": "a", "parameter": "Worker-AMI"}"#,
                &["`parameter` \"Worker-AMI\" is not a CloudFormation parameter name"],
            ),
            (
                r#"{"stack_name": "a", "parameter": "P", "capabilities": ["CAPABILITY_IAM", "IAM"]}"#,
                &["unknown capability \"IAM\""],
            ),
            (
                r#"{"stack_name": "a", "parameter": "P", "timeout": "0s"}"#,
                &["`timeout` must be longer than 0s"],
            ),
            (
                r#"{"stack_name": "a", "parameter": "P", "timeout": 30}"#,
                &["`timeout` must be a duration string, found a number"],
            ),
            (
                r#"{"stack_name": "a", "parameter": "P", "wait": "maybe"}"#,
                &["`wait` must be true or false, found \"maybe\""],
            ),
            (
                r#"{"stack_name": "a", "parameter": "P", "stack": "b"}"#,
                &["unknown key `stack` in builder `b`"],
            ),
        ];
        for (text, want) in cases {
            let (_, d) = decode(text, CloudFormationConfig::decode);
            assert_eq!(errors(&d), *want, "{text}");
        }
        let (_, d) = decode(
            r#"{"stack_name": "a", "parameter": "P", "stack": "b"}"#,
            CloudFormationConfig::decode,
        );
        assert!(all_text(&d).contains("did you mean `stacks`?"), "{d:?}");
        // A deferred parameter name is checked when it is rendered, not before.
        let (_, d) = decode(
            r#"{"stack_name": "a", "parameter": "{{ build `X` }}"}"#,
            CloudFormationConfig::decode,
        );
        assert!(!d.has_errors(), "{d:?}");
    }

    #[test]
    fn new_events_stop_at_the_last_one_seen() {
        let page = vec![
            ev(
                "3",
                "web",
                "AWS::CloudFormation::Stack",
                "UPDATE_COMPLETE",
                None,
            ),
            ev(
                "2",
                "LT",
                "AWS::EC2::LaunchTemplate",
                "UPDATE_COMPLETE",
                None,
            ),
            ev(
                "1",
                "web",
                "AWS::CloudFormation::Stack",
                "CREATE_COMPLETE",
                None,
            ),
        ];
        let (new, found) = take_new(&page, Some("1"));
        assert!(found);
        assert_eq!(
            new.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
            ["3", "2"]
        );
        let (new, found) = take_new(&page, Some("3"));
        assert!(found && new.is_empty());
        let (new, found) = take_new(&page, Some("0"));
        assert!(!found && new.len() == 3);
        let (new, found) = take_new(&page, None);
        assert!(!found && new.len() == 3);
    }

    #[test]
    fn failure_reasons_name_the_failed_resources() {
        let events = vec![
            ev(
                "1",
                "web",
                "AWS::CloudFormation::Stack",
                "UPDATE_IN_PROGRESS",
                Some("User Initiated"),
            ),
            ev(
                "2",
                "LaunchTemplate",
                "AWS::EC2::LaunchTemplate",
                "UPDATE_FAILED",
                Some("The image id '[ami-1]' does not exist"),
            ),
            ev(
                "3",
                "Alarm",
                "AWS::CloudWatch::Alarm",
                "UPDATE_FAILED",
                Some("Resource update cancelled"),
            ),
            ev(
                "4",
                "web",
                "AWS::CloudFormation::Stack",
                "UPDATE_ROLLBACK_IN_PROGRESS",
                Some("The following resource(s) failed to update: [LaunchTemplate]."),
            ),
            ev(
                "5",
                "web",
                "AWS::CloudFormation::Stack",
                "UPDATE_ROLLBACK_COMPLETE",
                None,
            ),
        ];
        assert_eq!(
            failure_reasons(&events),
            vec!["LaunchTemplate (AWS::EC2::LaunchTemplate) UPDATE_FAILED: The image id '[ami-1]' does not exist"]
        );
        // Only cancelled resources: they are the reasons there are.
        assert_eq!(
            failure_reasons(&events[2..3]),
            vec!["Alarm (AWS::CloudWatch::Alarm) UPDATE_FAILED: Resource update cancelled"]
        );
        // A stack-level failure only: no resource reasons (the caller uses the stack's reason).
        assert!(failure_reasons(&[events[0].clone(), events[3].clone()]).is_empty());
        assert_eq!(
            events[1].line(),
            "LaunchTemplate (AWS::EC2::LaunchTemplate): UPDATE_FAILED: The image id '[ami-1]' does not exist"
        );
        assert_eq!(
            events[4].line(),
            "web (AWS::CloudFormation::Stack): UPDATE_ROLLBACK_COMPLETE"
        );
    }

    #[test]
    fn stack_states() {
        assert_eq!(phase("UPDATE_COMPLETE"), Phase::Done);
        for s in [
            "UPDATE_IN_PROGRESS",
            "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS",
            "UPDATE_ROLLBACK_IN_PROGRESS",
            "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS",
        ] {
            assert_eq!(phase(s), Phase::Pending, "{s}");
        }
        for s in [
            "UPDATE_ROLLBACK_COMPLETE",
            "UPDATE_ROLLBACK_FAILED",
            "UPDATE_FAILED",
            "ROLLBACK_COMPLETE",
            "DELETE_COMPLETE",
        ] {
            assert_eq!(phase(s), Phase::Failed, "{s}");
        }
        assert!(is_no_update(&ApiError {
            code: Some("ValidationError".into()),
            message: "No updates are to be performed.".into()
        }));
        assert!(!is_no_update(&ApiError::msg(
            "Stack with id x does not exist"
        )));
        assert!(
            is_parameter_name("WorkerAMI") && !is_parameter_name("") && !is_parameter_name("a_b")
        );
    }

    #[test]
    fn the_retry_hint_is_a_command_that_keeps_the_other_values() {
        assert_eq!(
            retry_hint("web", "us-east-1", "WorkerAMI", "ami-1", &["InstanceType".into()]),
            "the AMI ami-1 (us-east-1) exists and was kept; retry the stack update with: \
             aws cloudformation update-stack --region us-east-1 --stack-name web --use-previous-template \
             --parameters ParameterKey=WorkerAMI,ParameterValue=ami-1 ParameterKey=InstanceType,UsePreviousValue=true"
        );
    }
}
