//! The `breakpoint` provisioner's configuration (Packer 1.6.6 `provisioner/breakpoint`): pause
//! the build until the user presses Enter, to look at the instance.

use crate::checks::{flag, opt_string};
use crate::template::decode::{Dx, Obj};

/// `breakpoint`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakpointConfig {
    /// `disable`: skip this breakpoint. Default false.
    pub disable: bool,
    /// `note`: shown while paused.
    pub note: Option<String>,
}

impl BreakpointConfig {
    /// Decodes a `breakpoint` provisioner whose common keys the caller has taken.
    pub fn decode(mut obj: Obj, dx: &mut Dx) -> BreakpointConfig {
        let c = BreakpointConfig {
            disable: flag(&mut obj, dx, "disable").unwrap_or(false),
            note: opt_string(&mut obj, dx, "note"),
        };
        obj.finish(dx);
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testing::*;

    #[test]
    fn disable_and_note() {
        let (c, d) = decode(r#"{}"#, BreakpointConfig::decode);
        assert!(d.items.is_empty());
        assert_eq!(
            c,
            BreakpointConfig {
                disable: false,
                note: None
            }
        );
        let (c, d) = decode(
            r#"{"disable": "{{user `yes`}}", "note": "look at /var/log {{user `n`}}"}"#,
            BreakpointConfig::decode,
        );
        assert!(d.items.is_empty(), "{d:?}");
        assert!(c.disable);
        assert_eq!(c.note.as_deref(), Some("look at /var/log 7"));
        let (_, d) = decode(r#"{"nope": 1}"#, BreakpointConfig::decode);
        assert_eq!(errors(&d), vec!["unknown key `nope` in builder `b`"]);
    }
}
