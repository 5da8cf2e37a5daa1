//! What every integration test module uses, and the only place that defines it: the test world
//! ([`world`]), the skip macro ([`world_or_skip!`]), running the binary ([`cli`]), builds against
//! the world and their results ([`build`]), a build the test watches and interrupts
//! ([`building`]), the emulator's state ([`state`]), the `null` builder fixture ([`null`]),
//! moto's CloudFormation and SSM ([`cfn`]), the fault proxy ([`faultproxy`]), the delay proxy
//! ([`delayproxy`]) and the fault tables ([`faults`]), a stand-in cloud-init and the SSH builder
//! of the boot tests ([`boot`]). Test modules import from here, never from each other.

#![allow(dead_code)]

/// The test world for this test, or `return` from the test when a dependency is missing.
///
/// `world_or_skip!()` starts a world of the test's own ([`world::TestWorld::start`], for tests
/// that assert on the emulator's global state); `world_or_skip!(shared)` is the world shared
/// by the test binary run ([`world::TestWorld::shared`], for tests that only touch what they
/// name themselves). Outside CI a missing dependency prints `skipped: ...` and the test
/// returns (passes); with `CI=true` it fails the test instead (see [`world`]).
macro_rules! world_or_skip {
    () => {
        match $crate::support::world::TestWorld::start() {
            Some(world) => world,
            None => return,
        }
    };
    (shared) => {
        match $crate::support::world::TestWorld::shared() {
            Some(world) => world,
            None => return,
        }
    };
}

/// Says why a test does not run, for a dependency other than the world (a second sshd,
/// ssh-agent, `script`, packer): outside CI prints `skipped: <why>` (the caller then returns,
/// so the test passes); with `CI=true` panics, so that a missing dependency fails the test, as
/// [`world_or_skip!`] does.
pub fn skip(why: &str) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{why} (CI=true: a missing test dependency fails the test)");
    }
    eprintln!("skipped: {why}");
}

pub mod boot;
pub mod build;
pub mod building;
pub mod cfn;
pub mod cli;
pub mod cloud;
pub mod delayproxy;
pub mod faultproxy;
pub mod faults;
pub mod null;
pub mod state;
pub mod tools;
pub mod world;
