//! STUB (replaced by the configs branch).
use crate::template::decode::{Dx, Obj};
pub const POST_PROCESSOR_TYPES: &[&str] = &["manifest", "shell-local"];
#[derive(Debug)]
pub enum PostProcessorConfig {
    Any,
}
impl PostProcessorConfig {
    pub fn decode(kind: &str, _obj: Obj, _dx: &mut Dx) -> Option<PostProcessorConfig> {
        POST_PROCESSOR_TYPES
            .contains(&kind)
            .then_some(PostProcessorConfig::Any)
    }
}
