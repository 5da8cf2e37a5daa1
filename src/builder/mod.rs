//! Builders: what creates the image. `amazon-ebs` builds AMIs; `null` (as in Packer) runs the
//! provisioners against a machine that already exists and creates nothing.

pub mod amazon;
pub mod null;
