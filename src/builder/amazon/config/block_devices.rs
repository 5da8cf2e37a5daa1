//! Block device mappings (`ami_block_device_mappings`, `launch_block_device_mappings`): one
//! entry per device, with Packer's checks of volume types, IOPS, throughput and encryption.

use crate::checks::{error_at, flag, one_of, opt_count, opt_string};
use crate::template::decode::{Dx, Obj};

/// One entry of `ami_block_device_mappings` / `launch_block_device_mappings`. Zero values are
/// unset, as in Packer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockDevice {
    /// `device_name` (required), e.g. `/dev/xvda`.
    pub device_name: String,
    /// `delete_on_termination`. Default false.
    pub delete_on_termination: bool,
    /// `encrypted`. Default unset: as the snapshot or the account default.
    pub encrypted: Option<bool>,
    /// `iops`: provisioned IOPS (io1, io2, gp3).
    pub iops: Option<u32>,
    /// `no_device`: suppress this device of the source image. Default false.
    pub no_device: bool,
    /// `snapshot_id`: create the volume from this snapshot.
    pub snapshot_id: Option<String>,
    /// `throughput`: MiB/s, gp3 only (125-1000).
    pub throughput: Option<u32>,
    /// `virtual_name`: an instance-store device (`ephemeral0` ...).
    pub virtual_name: Option<String>,
    /// `volume_type`: standard, io1, io2, gp2, gp3, sc1 or st1. Default unset: EC2's.
    pub volume_type: Option<String>,
    /// `volume_size`: GiB. Default unset: the snapshot's size.
    pub volume_size: Option<u32>,
    /// `kms_key_id`: KMS key for an encrypted volume (needs `encrypted: true`).
    pub kms_key_id: Option<String>,
}

/// EC2 volume types.
pub const VOLUME_TYPES: &[&str] = &["standard", "io1", "io2", "gp2", "gp3", "sc1", "st1"];

/// The entries of the mapping list `key`, each decoded and checked.
pub(super) fn block_devices(obj: &mut Obj, dx: &mut Dx, key: &'static str) -> Vec<BlockDevice> {
    let Some(items) = obj.array(dx, key) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, (node, path)) in items.into_iter().enumerate() {
        let what = format!("`{key}`[{i}] of {}", obj.what);
        let Some(mut o) = Obj::new(node, path, what, dx) else {
            continue;
        };
        out.push(block_device(&mut o, dx));
        o.finish(dx);
    }
    out
}

fn block_device(o: &mut Obj, dx: &mut Dx) -> BlockDevice {
    let device_name = opt_string(o, dx, "device_name");
    if device_name.is_none() {
        error_at(
            o,
            dx,
            "device_name",
            "The `device_name` must be specified for every device in the block device mapping.",
            Some("e.g. \"device_name\": \"/dev/xvda\" (the root device name of the source AMI for the root volume)"),
        );
    }
    let volume_type = one_of(o, dx, "volume_type", VOLUME_TYPES);
    let size = |o: &mut Obj, dx: &mut Dx, key: &'static str| opt_count(o, dx, key, 1_000_000);
    let d = BlockDevice {
        device_name: device_name.unwrap_or_default(),
        delete_on_termination: flag(o, dx, "delete_on_termination").unwrap_or(false),
        encrypted: flag(o, dx, "encrypted"),
        iops: size(o, dx, "iops"),
        no_device: flag(o, dx, "no_device").unwrap_or(false),
        snapshot_id: opt_string(o, dx, "snapshot_id"),
        throughput: size(o, dx, "throughput"),
        virtual_name: opt_string(o, dx, "virtual_name"),
        volume_type,
        volume_size: size(o, dx, "volume_size"),
        kms_key_id: opt_string(o, dx, "kms_key_id"),
    };
    let dev = d.device_name.as_str();
    let iops = d.iops.unwrap_or(0);
    match d.volume_type.as_deref() {
        Some(t @ ("io1" | "io2")) => {
            // As Packer 1.6.6: checked when the size is known.
            if let Some(size) = d.volume_size {
                let ratio = if t == "io1" { 50 } else { 500 };
                if iops / size > ratio {
                    error_at(
                        o,
                        dx,
                        "iops",
                        format!("{dev}: the maximum ratio of provisioned IOPS to requested volume size (in GiB) is {ratio}:1 for {t} volumes"),
                        None,
                    );
                }
                if !(100..=64000).contains(&iops) {
                    error_at(
                        o,
                        dx,
                        "iops",
                        format!("IOPS must be between 100 and 64000 for device {dev}"),
                        None,
                    );
                }
            }
        }
        Some("gp3") => {
            if let Some(t) = d.throughput {
                if !(125..=1000).contains(&t) {
                    error_at(
                        o,
                        dx,
                        "throughput",
                        format!("Throughput must be between 125 and 1000 for device {dev}"),
                        None,
                    );
                }
            }
            if d.iops.is_some() && !(3000..=16000).contains(&iops) {
                error_at(
                    o,
                    dx,
                    "iops",
                    format!("IOPS must be between 3000 and 16000 for device {dev}"),
                    None,
                );
            }
        }
        other => {
            if d.throughput.is_some() {
                error_at(
                    o,
                    dx,
                    "throughput",
                    format!("Throughput is not available for device {dev}"),
                    Some("throughput can only be set on gp3 volumes"),
                );
            }
            if d.iops.is_some() && other.is_some() {
                error_at(
                    o,
                    dx,
                    "iops",
                    format!("IOPS is not available for device {dev}"),
                    Some("provisioned IOPS can only be set on io1, io2 and gp3 volumes"),
                );
            }
        }
    }
    if d.kms_key_id.is_some() && d.encrypted != Some(true) {
        error_at(
            o,
            dx,
            "kms_key_id",
            format!(
                "The device {dev}, must also have `encrypted: true` when setting a kms_key_id."
            ),
            None,
        );
    }
    d
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;

    #[test]
    fn block_device_rules_as_packer() {
        let bd = |m: &str| format!(r#""launch_block_device_mappings": [{m}]"#);
        assert_eq!(
            errs(&bd(r#"{"volume_type": "gp2"}"#)),
            vec![
                "The `device_name` must be specified for every device in the block device mapping."
            ]
        );
        assert_eq!(
            errs(&bd(r#"{"device_name": "/dev/sda1", "volume_type": "gp9"}"#)),
            vec!["`volume_type` must be one of `standard`, `io1`, `io2`, `gp2`, `gp3`, `sc1`, `st1`, found \"gp9\""]
        );
        assert_eq!(
            errs(&bd(r#"{"device_name": "/dev/sda1", "volume_type": "io1", "iops": 10000, "volume_size": 10}"#)),
            vec!["/dev/sda1: the maximum ratio of provisioned IOPS to requested volume size (in GiB) is 50:1 for io1 volumes"]
        );
        assert_eq!(
            errs(&bd(r#"{"device_name": "/dev/sda1", "volume_type": "io2", "iops": 10000, "volume_size": 10}"#)),
            vec!["/dev/sda1: the maximum ratio of provisioned IOPS to requested volume size (in GiB) is 500:1 for io2 volumes"]
        );
        assert_eq!(
            errs(&bd(
                r#"{"device_name": "/dev/sda1", "volume_type": "io1", "iops": 10, "volume_size": 10}"#
            )),
            vec!["IOPS must be between 100 and 64000 for device /dev/sda1"]
        );
        assert_eq!(
            errs(&bd(
                r#"{"device_name": "/dev/sda1", "volume_type": "io2", "iops": 100000, "volume_size": 1000}"#
            )),
            vec!["IOPS must be between 100 and 64000 for device /dev/sda1"]
        );
        // Without a size Packer 1.6.6 does not check io1/io2 IOPS.
        assert!(errs(&bd(
            r#"{"device_name": "/dev/sda1", "volume_type": "io1", "iops": 100000}"#
        ))
        .is_empty());
        assert_eq!(
            errs(&bd(
                r#"{"device_name": "/dev/sda1", "volume_type": "gp3", "throughput": 2000, "iops": 20000}"#
            )),
            vec![
                "Throughput must be between 125 and 1000 for device /dev/sda1",
                "IOPS must be between 3000 and 16000 for device /dev/sda1",
            ]
        );
        // gp3 without iops/throughput: EC2's baseline (Packer 1.6.6 wrongly demands both).
        let c = ok(&bd(r#"{"device_name": "/dev/sda1", "volume_type": "gp3"}"#));
        assert_eq!(c.launch_block_device_mappings[0].iops, None);
        assert_eq!(
            errs(&bd(
                r#"{"device_name": "/dev/sda1", "volume_type": "gp2", "throughput": 200}"#
            )),
            vec!["Throughput is not available for device /dev/sda1"]
        );
        assert_eq!(
            errs(&bd(
                r#"{"device_name": "/dev/sda1", "volume_type": "gp2", "iops": 300}"#
            )),
            vec!["IOPS is not available for device /dev/sda1"]
        );
        assert_eq!(
            errs(&bd(
                r#"{"device_name": "/dev/sda1", "kms_key_id": "alias/x"}"#
            )),
            vec![
                "The device /dev/sda1, must also have `encrypted: true` when setting a kms_key_id."
            ]
        );
        let c = ok(
            r#""ami_block_device_mappings": [{"device_name": "/dev/sdb", "no_device": true}, {"device_name": "/dev/sdc", "virtual_name": "ephemeral0", "volume_size": 0}]"#,
        );
        assert!(c.ami_block_device_mappings[0].no_device);
        assert_eq!(
            c.ami_block_device_mappings[1].virtual_name.as_deref(),
            Some("ephemeral0")
        );
        assert_eq!(c.ami_block_device_mappings[1].volume_size, None);
        assert_eq!(
            errs(&bd(
                r#"{"device_name": "/dev/sda1", "volume_size": 10, "volum_type": "gp2"}"#
            )),
            vec!["unknown key `volum_type` in `launch_block_device_mappings`[0] of builder `b`"]
        );
    }
}
