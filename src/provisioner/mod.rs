//! STUB (replaced by the configs branch).
use crate::template::decode::{Dx, Obj};
pub const PROVISIONER_TYPES: &[&str] = &["shell", "file", "shell-local", "breakpoint"];
#[derive(Debug)]
pub enum ProvisionerConfig {
    Any,
}
impl ProvisionerConfig {
    pub fn decode(kind: &str, _obj: Obj, _dx: &mut Dx) -> Option<ProvisionerConfig> {
        PROVISIONER_TYPES
            .contains(&kind)
            .then_some(ProvisionerConfig::Any)
    }
}
