use crate::template::decode::{Dx, Obj};
#[derive(Debug)]
pub struct AmazonEbsConfig {}
impl AmazonEbsConfig {
    pub fn decode(_obj: Obj, _dx: &mut Dx) -> AmazonEbsConfig {
        AmazonEbsConfig {}
    }
}
