//! Builders: what creates the image. imgbuild has one, `amazon-ebs`.

pub mod amazon;
