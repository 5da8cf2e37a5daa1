//! Tags: a map and its repeatable block form (`tag: [{"key": ..., "value": ...}]`), as
//! Packer takes them for the AMI, the instance, the volumes and the snapshots.

use std::collections::BTreeMap;

use crate::checks::required_nonempty;
use crate::template::decode::{Dx, Obj};
use crate::template::diag::JsonPath;
use crate::template::json::{Kind, Node};

/// Tags: key to value. Values may still hold build-time actions (`{{ .SourceAMI }}`), rendered
/// when the build knows them.
pub type Tags = BTreeMap<String, String>;

/// A tag map and its repeatable block form (`tag: [{key, value}, ...]`), merged (the blocks
/// win on equal keys).
pub(super) fn decode_tags(
    obj: &mut Obj,
    dx: &mut Dx,
    map_key: &'static str,
    block_key: &'static str,
) -> Tags {
    let mut out = obj.string_map(dx, map_key).unwrap_or_default();
    let Some((node, path)) = obj.take(block_key) else {
        return out;
    };
    let items: Vec<(&Node, JsonPath)> = match &node.kind {
        Kind::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, n)| (n, path.index(i)))
            .collect(),
        Kind::Object(_) => vec![(node, path.clone())],
        _ => {
            let d = dx.error(
                node.span,
                &path,
                format!(
                    "`{block_key}` must be a list of {{\"key\": ..., \"value\": ...}} objects, found {}",
                    node.type_name()
                ),
            );
            d.notes.push(format!(
                "help: or write the tags as an object in `{map_key}`"
            ));
            return out;
        }
    };
    let what = format!("`{block_key}` of {}", obj.what);
    for (n, p) in items {
        let Some(mut o) = Obj::new(n, p, what.clone(), dx) else {
            continue;
        };
        let key = required_nonempty(&mut o, dx, "key", None);
        let value = o.string(dx, "value").unwrap_or_default();
        o.finish(dx);
        if !key.is_empty() {
            out.insert(key, value);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;

    #[test]
    fn tag_blocks_merge_into_maps() {
        let c = ok(
            r#""tags": {"a": "1", "b": "2"}, "tag": [{"key": "b", "value": "two"}, {"key": "c", "value": "{{user `n`}}"}],
            "run_tag": {"key": "r", "value": "x"}, "snapshot_tag": [{"key": "s"}], "run_volume_tag": [{"key": "v", "value": "w"}]"#,
        );
        assert_eq!(
            c.ami
                .tags
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>(),
            vec!["a=1", "b=two", "c=7"]
        );
        assert_eq!(c.run.run_tags.get("r").map(String::as_str), Some("x"));
        assert_eq!(c.ami.snapshot_tags.get("s").map(String::as_str), Some(""));
        assert_eq!(c.run_volume_tags.get("v").map(String::as_str), Some("w"));
        assert_eq!(
            errs(r#""tag": [{"value": "x"}]"#),
            vec!["`tag` of builder `b` is missing the required key `key`"]
        );
        assert_eq!(
            errs(r#""tag": "x""#),
            vec!["`tag` must be a list of {\"key\": ..., \"value\": ...} objects, found a string"]
        );
    }
}
