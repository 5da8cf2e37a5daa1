//! The EC2 seam: the calls the build's steps make, as a trait ([`Ec2`]) over the SDK's request
//! builders and answers, implemented for [`aws_sdk_ec2::Client`]. Steps call through it, so a
//! step can be unit-tested against a fake that records what was sent and answers as scripted
//! (`fake::Fake`, in tests); moto remains the integration world. [`Regions`] gives the client of
//! a region (steps that copy, tag or check names work in several).

use std::future::Future;

use aws_sdk_ec2::operation;
use aws_sdk_ec2::Client;

use crate::aws::{Api, ApiError, Aws};

macro_rules! ec2_calls {
    ($( $(#[$doc:meta])* $name:ident: $op:ident :: $Input:ident => $Output:ident; )*) => {
        /// The EC2 calls of the amazon-ebs steps: each takes the request as the SDK builds it and
        /// answers with the SDK's output or an [`ApiError`].
        pub trait Ec2: Send + Sync {
            $(
                $(#[$doc])*
                fn $name(
                    &self,
                    req: operation::$op::builders::$Input,
                ) -> impl Future<Output = Result<operation::$op::$Output, ApiError>> + Send;
            )*
        }

        impl Ec2 for Client {
            $(
                fn $name(
                    &self,
                    req: operation::$op::builders::$Input,
                ) -> impl Future<Output = Result<operation::$op::$Output, ApiError>> + Send {
                    async move { req.send_with(self).await.api() }
                }
            )*
        }

        #[cfg(test)]
        impl Ec2 for fake::Fake {
            $(
                fn $name(
                    &self,
                    req: operation::$op::builders::$Input,
                ) -> impl Future<Output = Result<operation::$op::$Output, ApiError>> + Send {
                    let r = self.call(stringify!($name), req, || {
                        operation::$op::$Output::builder().build()
                    });
                    async move { r }
                }
            )*
        }
    };
}

ec2_calls! {
    describe_images: describe_images::DescribeImagesInputBuilder => DescribeImagesOutput;
    describe_vpcs: describe_vpcs::DescribeVpcsInputBuilder => DescribeVpcsOutput;
    describe_subnets: describe_subnets::DescribeSubnetsInputBuilder => DescribeSubnetsOutput;
    describe_security_groups:
        describe_security_groups::DescribeSecurityGroupsInputBuilder => DescribeSecurityGroupsOutput;
    describe_key_pairs: describe_key_pairs::DescribeKeyPairsInputBuilder => DescribeKeyPairsOutput;
    describe_instances: describe_instances::DescribeInstancesInputBuilder => DescribeInstancesOutput;
    import_key_pair: import_key_pair::ImportKeyPairInputBuilder => ImportKeyPairOutput;
    create_security_group:
        create_security_group::CreateSecurityGroupInputBuilder => CreateSecurityGroupOutput;
    authorize_security_group_ingress:
        authorize_security_group_ingress::AuthorizeSecurityGroupIngressInputBuilder
        => AuthorizeSecurityGroupIngressOutput;
    run_instances: run_instances::RunInstancesInputBuilder => RunInstancesOutput;
    stop_instances: stop_instances::StopInstancesInputBuilder => StopInstancesOutput;
    modify_instance_attribute:
        modify_instance_attribute::ModifyInstanceAttributeInputBuilder => ModifyInstanceAttributeOutput;
    deregister_image: deregister_image::DeregisterImageInputBuilder => DeregisterImageOutput;
    delete_snapshot: delete_snapshot::DeleteSnapshotInputBuilder => DeleteSnapshotOutput;
    create_image: create_image::CreateImageInputBuilder => CreateImageOutput;
    copy_image: copy_image::CopyImageInputBuilder => CopyImageOutput;
    create_tags: create_tags::CreateTagsInputBuilder => CreateTagsOutput;
    delete_tags: delete_tags::DeleteTagsInputBuilder => DeleteTagsOutput;
    modify_image_attribute:
        modify_image_attribute::ModifyImageAttributeInputBuilder => ModifyImageAttributeOutput;
    modify_snapshot_attribute:
        modify_snapshot_attribute::ModifySnapshotAttributeInputBuilder => ModifySnapshotAttributeOutput;
}

/// The EC2 client of each region a build works in.
pub trait Regions: Sync {
    type Ec2: Ec2;
    fn ec2_in(&self, region: &str) -> Self::Ec2;
}

impl Regions for Aws {
    type Ec2 = Client;
    fn ec2_in(&self, region: &str) -> Client {
        self.ec2(region)
    }
}

/// A scripted EC2 for the steps' unit tests: records every call (region, name, request) and
/// answers from a queue per call name, or with an empty answer when none is queued.
#[cfg(test)]
pub mod fake {
    use std::any::Any;
    use std::collections::{HashMap, VecDeque};
    use std::sync::{Arc, Mutex};

    use crate::aws::ApiError;

    type Answer = Result<Box<dyn Any + Send>, ApiError>;

    /// One call the fake received.
    pub struct Call {
        pub region: String,
        pub name: &'static str,
        pub request: Box<dyn Any + Send>,
    }

    #[derive(Default)]
    struct Shared {
        calls: Mutex<Vec<Call>>,
        answers: Mutex<HashMap<&'static str, VecDeque<Answer>>>,
    }

    /// The fake client of one region; clones (and [`super::Regions::ec2_in`]) share the record.
    #[derive(Clone)]
    pub struct Fake {
        region: String,
        shared: Arc<Shared>,
    }

    impl Fake {
        pub fn new(region: &str) -> Fake {
            Fake {
                region: region.to_string(),
                shared: Arc::default(),
            }
        }

        /// Queues the answer to the next `name` call.
        pub fn answer<T: Any + Send>(&self, name: &'static str, answer: Result<T, ApiError>) {
            let a: Answer = answer.map(|t| Box::new(t) as Box<dyn Any + Send>);
            let mut answers = self.shared.answers.lock().unwrap();
            answers.entry(name).or_default().push_back(a);
        }

        /// Queues an EC2 error with `code` as the answer to the next `name` call.
        pub fn fail(&self, name: &'static str, code: &str) {
            self.answer::<()>(
                name,
                Err(ApiError {
                    code: Some(code.to_string()),
                    message: format!("{code} (scripted)"),
                }),
            );
        }

        /// The calls so far, as `region name`.
        pub fn calls(&self) -> Vec<String> {
            let calls = self.shared.calls.lock().unwrap();
            calls
                .iter()
                .map(|c| format!("{} {}", c.region, c.name))
                .collect()
        }

        /// The requests of the `name` calls so far.
        pub fn sent<T: Any + Clone>(&self, name: &str) -> Vec<T> {
            let calls = self.shared.calls.lock().unwrap();
            calls
                .iter()
                .filter(|c| c.name == name)
                .filter_map(|c| c.request.downcast_ref::<T>().cloned())
                .collect()
        }

        pub(super) fn call<Req: Any + Send, Out: Any>(
            &self,
            name: &'static str,
            request: Req,
            empty: impl FnOnce() -> Out,
        ) -> Result<Out, ApiError> {
            self.shared.calls.lock().unwrap().push(Call {
                region: self.region.clone(),
                name,
                request: Box::new(request),
            });
            let next = {
                let mut answers = self.shared.answers.lock().unwrap();
                answers.get_mut(name).and_then(VecDeque::pop_front)
            };
            match next {
                None => Ok(empty()),
                Some(Err(e)) => Err(e),
                Some(Ok(a)) => Ok(*a.downcast::<Out>().unwrap_or_else(|_| {
                    panic!("the scripted answer to {name} has the wrong type")
                })),
            }
        }
    }

    impl super::Regions for Fake {
        type Ec2 = Fake;
        fn ec2_in(&self, region: &str) -> Fake {
            Fake {
                region: region.to_string(),
                shared: self.shared.clone(),
            }
        }
    }
}
