//! Spot build instances: `spot_price` (a price or `auto`), `spot_instance_types`, `spot_tags`,
//! `spot_allocation_strategy`, `fleet_tags`, `block_duration_minutes`.
//!
//! imgbuild requests a spot instance with `RunInstances` and spot market options (a one-time
//! request that closes when the instance terminates), so the only thing created is the
//! instance, which the ledger and the journal already know; Packer's launch template and
//! instant fleet (known to leak) are not created, so `spot_allocation_strategy` and
//! `fleet_tags` make no difference; `spot_instance_types` are tried in order instead
//! (`step/launch.rs`).

use std::collections::BTreeMap;

use crate::checks::{error_at, opt_string, warning_at};
use crate::template::decode::{Dx, Obj};

use super::tags::decode_tags;

/// `spot_price`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpotPrice {
    /// `auto`: up to the on-demand price (no maximum sent).
    Auto,
    /// A maximum price in USD per hour, as written (`"0.05"`).
    Max(String),
}

/// The spot options of a build; `price` `None` means on-demand.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpotConfig {
    pub price: Option<SpotPrice>,
    /// `spot_instance_types`: tried in order (the next when EC2 refuses one for capacity or price).
    pub instance_types: Vec<String>,
    /// `spot_tags` / `spot_tag`: tags of the spot request.
    pub tags: BTreeMap<String, String>,
}

impl SpotConfig {
    pub fn decode(obj: &mut Obj, dx: &mut Dx, instance_type: &str) -> SpotConfig {
        let price = match opt_string(obj, dx, "spot_price").as_deref() {
            None => None,
            Some("auto") => Some(SpotPrice::Auto),
            Some(p) if p.parse::<f64>().is_ok_and(|v| v > 0.0) => Some(SpotPrice::Max(p.into())),
            Some(p) if crate::checks::is_deferred(p) => Some(SpotPrice::Max(p.into())),
            Some(p) => {
                error_at(
                    obj,
                    dx,
                    "spot_price",
                    format!("spot_price \"{p}\" is not a price: write a number of USD per hour (\"0.05\") or \"auto\""),
                    None,
                );
                None
            }
        };
        let instance_types = obj.strings(dx, "spot_instance_types").unwrap_or_default();
        let tags = decode_tags(obj, dx, "spot_tags", "spot_tag");
        let fleet_tags = decode_tags(obj, dx, "fleet_tags", "fleet_tag");
        let strategy = opt_string(obj, dx, "spot_allocation_strategy");
        let block = obj.int(dx, "block_duration_minutes").unwrap_or(0);
        if block != 0 {
            error_at(
                obj,
                dx,
                "block_duration_minutes",
                "EC2 no longer offers spot blocks (defined-duration spot instances): it would refuse the request",
                Some("remove block_duration_minutes; a spot instance without it runs until the build ends (or EC2 reclaims it)"),
            );
        }
        if price.is_none() {
            if !instance_types.is_empty() {
                error_at(
                    obj,
                    dx,
                    "spot_instance_types",
                    "spot_instance_types needs spot_price",
                    Some("set \"spot_price\": \"auto\" (or a maximum price), or use instance_type"),
                );
            }
            return SpotConfig::default();
        }
        if !instance_types.is_empty() && !instance_type.is_empty() {
            error_at(
                obj,
                dx,
                "spot_instance_types",
                "Only one of instance_type or spot_instance_types may be specified",
                None,
            );
        }
        if !fleet_tags.is_empty() {
            warning_at(obj, dx, "fleet_tags", "fleet_tags make no difference: imgbuild creates no fleet (the spot instance is requested with RunInstances)", None);
        }
        if strategy.is_some() {
            warning_at(obj, dx, "spot_allocation_strategy", "spot_allocation_strategy makes no difference: imgbuild creates no fleet; it tries spot_instance_types in the order written, one RunInstances each", None);
        }
        SpotConfig {
            price,
            instance_types,
            tags,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testing::*;

    fn spot(text: &str, instance_type: &str) -> (SpotConfig, crate::template::diag::Diagnostics) {
        decode(text, |mut o, dx| {
            let c = SpotConfig::decode(&mut o, dx, instance_type);
            o.finish(dx);
            c
        })
    }

    #[test]
    fn prices_types_and_tags_as_packer_takes_them() {
        let (c, d) = spot(
            r#"{"spot_price": "auto", "spot_tags": {"a": "b"}}"#,
            "t3.micro",
        );
        assert!(d.items.is_empty(), "{d:?}");
        assert_eq!(c.price, Some(SpotPrice::Auto));
        assert_eq!(c.tags.get("a").map(String::as_str), Some("b"));
        let (c, d) = spot(
            r#"{"spot_price": "0.05", "spot_instance_types": ["t3.small", "t3.micro"], "fleet_tags": {"x": "y"}, "spot_allocation_strategy": "lowest-price"}"#,
            "",
        );
        assert!(errors(&d).is_empty(), "{d:?}");
        assert_eq!(c.price, Some(SpotPrice::Max("0.05".into())));
        assert_eq!(warnings(&d).len(), 2, "{d:?}");
        assert_eq!(c.instance_types, ["t3.small", "t3.micro"]);
        let (c, d) = spot(r#"{"spot_price": ""}"#, "t3.micro");
        assert!(d.items.is_empty() && c.price.is_none());
        let (_, d) = spot(
            r#"{"spot_price": "cheap", "block_duration_minutes": 60}"#,
            "t3.micro",
        );
        let e = errors(&d);
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[1].contains("would refuse"), "{e:?}");
    }
}
