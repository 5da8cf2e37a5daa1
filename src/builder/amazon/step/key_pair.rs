//! Step 4: the key pair (Packer's `StepKeyPair`): the template's key pair, none (the image
//! trusts the user's key, or nothing connects), or a temporary one generated locally and
//! imported, recorded in the ledger.

use aws_sdk_ec2::operation::describe_key_pairs::DescribeKeyPairsInput;
use aws_sdk_ec2::operation::import_key_pair::ImportKeyPairInput;
use aws_sdk_ec2::types::ResourceType;

use super::{tag_spec, Env};
use crate::builder::amazon::ec2::Ec2;
use crate::builder::amazon::error::BuildError;
use crate::builder::amazon::ids::KeyPairName;
use crate::builder::amazon::keys::{self, TempKey};
use crate::builder::amazon::plan::TAG_RUN_ID;
use crate::communicator::ssh::Communicator;
use crate::ledger::Undo;

/// The key pair to launch with and, when imgbuild made it, its private key.
#[derive(Default)]
pub struct KeyPair {
    pub name: Option<KeyPairName>,
    pub temp: Option<TempKey>,
}

/// The build's key pair.
pub async fn key_pair(env: &Env<'_>, ec2: &impl Ec2, region: &str) -> Result<KeyPair, BuildError> {
    let ssh = &env.cfg.ssh;
    if ssh.communicator == Communicator::None {
        return Ok(KeyPair::default());
    }
    if let Some(name) = &ssh.ssh_keypair_name {
        env.say(format!("Using the existing key pair {name}"));
        return Ok(KeyPair {
            name: Some(KeyPairName(name.clone())),
            temp: None,
        });
    }
    if ssh.ssh_private_key_file.is_some() || ssh.ssh_agent_auth {
        // The image already trusts the user's key (Packer launches without a key pair).
        return Ok(KeyPair::default());
    }
    let name = ssh
        .temporary_key_pair_name
        .clone()
        .unwrap_or_else(|| format!("packer_{}", uuid::Uuid::now_v7()));
    let kind = ssh.temporary_key_pair_type;
    env.say(format!(
        "Creating a temporary {} key pair locally and importing it: {name}",
        kind.as_str()
    ));
    let key = tokio::task::spawn_blocking({
        let bits = ssh.temporary_key_pair_bits;
        let name = name.clone();
        move || keys::generate(kind, bits, &name)
    })
    .await
    .map_err(|e| BuildError::KeyGen {
        kind: kind.as_str(),
        message: e.to_string(),
    })?
    .map_err(|message| BuildError::KeyGen {
        kind: kind.as_str(),
        message,
    })?;
    env.check_cancel()?;
    let req = ImportKeyPairInput::builder()
        .key_name(&name)
        .public_key_material(aws_sdk_ec2::primitives::Blob::new(
            key.public_openssh.as_bytes(),
        ))
        .tag_specifications(tag_spec(ResourceType::KeyPair, &env.run_tags()));
    match ec2.import_key_pair(req).await {
        Ok(_) => {}
        // The SDK retried a call whose answer was lost, and the first try had imported it:
        // a name of this run's own (generated, or tagged with this run) is this run's.
        Err(e)
            if e.code_is("InvalidKeyPair.Duplicate")
                && (ssh.temporary_key_pair_name.is_none()
                    || key_pair_is_ours(env, ec2, &name).await) =>
        {
            tracing::debug!(name = %name, "ImportKeyPair: adopted after a lost answer");
        }
        Err(source) => {
            return Err(BuildError::ImportKeyPair {
                region: region.to_string(),
                name: name.clone(),
                source,
            })
        }
    }
    env.record(
        Undo::DeleteKeyPair {
            region: region.to_string(),
            name: name.clone(),
        },
        None,
    )?;
    Ok(KeyPair {
        name: Some(KeyPairName(name)),
        temp: Some(key),
    })
}

/// The key pair `name` carries this run's tag.
async fn key_pair_is_ours(env: &Env<'_>, ec2: &impl Ec2, name: &str) -> bool {
    let req = DescribeKeyPairsInput::builder().key_names(name);
    let Ok(out) = ec2.describe_key_pairs(req).await else {
        return false;
    };
    out.key_pairs().iter().any(|k| {
        k.tags()
            .iter()
            .any(|t| t.key() == Some(TAG_RUN_ID) && t.value() == Some(env.run_id))
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::World;
    use super::*;
    use crate::builder::amazon::ec2::fake::Fake;
    use aws_sdk_ec2::operation::describe_key_pairs::DescribeKeyPairsOutput;
    use aws_sdk_ec2::operation::import_key_pair::builders::ImportKeyPairInputBuilder;
    use aws_sdk_ec2::types::{KeyPairInfo, Tag};

    fn delete(name: &str) -> Undo {
        Undo::DeleteKeyPair {
            region: "us-east-1".into(),
            name: name.into(),
        }
    }

    #[tokio::test]
    async fn a_temporary_key_pair_is_imported_tagged_and_recorded() {
        let w = World::with("");
        let ec2 = Fake::new("us-east-1");
        let kp = key_pair(&w.env(), &ec2, "us-east-1").await.unwrap();
        let name = kp.name.unwrap().0;
        assert!(name.starts_with("packer_"), "{name}");
        let sent: Vec<ImportKeyPairInputBuilder> = ec2.sent("import_key_pair");
        assert_eq!(sent[0].get_key_name().as_deref(), Some(name.as_str()));
        let tags = sent[0].get_tag_specifications().clone().unwrap();
        assert_eq!(tags[0].resource_type(), Some(&ResourceType::KeyPair));
        assert!(tags[0]
            .tags()
            .iter()
            .any(|t| t.key() == Some(TAG_RUN_ID) && t.value() == Some("run-1")));
        let public = kp.temp.unwrap().public_openssh;
        assert!(public.starts_with("ssh-ed25519 "), "{public}");
        assert_eq!(w.undos(), vec![delete(&name)]);
    }

    #[tokio::test]
    async fn a_lost_answer_then_duplicate_adopts_a_generated_name() {
        let w = World::with("");
        let ec2 = Fake::new("us-east-1");
        ec2.fail("import_key_pair", "InvalidKeyPair.Duplicate");
        let kp = key_pair(&w.env(), &ec2, "us-east-1").await.unwrap();
        let name = kp.name.unwrap().0;
        assert_eq!(ec2.calls(), ["us-east-1 import_key_pair"]);
        assert_eq!(w.undos(), vec![delete(&name)]);
    }

    #[tokio::test]
    async fn a_duplicate_of_a_chosen_name_is_adopted_only_with_this_runs_tag() {
        let w = World::with(r#""temporary_key_pair_name": "mine""#);
        let ec2 = Fake::new("us-east-1");
        let tagged = |run: &str| {
            DescribeKeyPairsOutput::builder()
                .key_pairs(
                    KeyPairInfo::builder()
                        .key_name("mine")
                        .tags(Tag::builder().key(TAG_RUN_ID).value(run).build())
                        .build(),
                )
                .build()
        };
        ec2.fail("import_key_pair", "InvalidKeyPair.Duplicate");
        ec2.answer("describe_key_pairs", Ok(tagged("run-1")));
        let kp = key_pair(&w.env(), &ec2, "us-east-1").await.unwrap();
        assert_eq!(kp.name, Some(KeyPairName::from("mine")));
        assert_eq!(w.undos(), vec![delete("mine")]);

        ec2.fail("import_key_pair", "InvalidKeyPair.Duplicate");
        ec2.answer("describe_key_pairs", Ok(tagged("someone-else")));
        let e = key_pair(&w.env(), &ec2, "us-east-1").await.err().unwrap();
        assert_eq!(
            e.to_string(),
            "ImportKeyPair mine in us-east-1: InvalidKeyPair.Duplicate: InvalidKeyPair.Duplicate (scripted)"
        );
        assert_eq!(w.undos().len(), 1, "a refused key pair is not recorded");
    }

    #[tokio::test]
    async fn an_existing_key_pair_is_used_as_it_is() {
        let w = World::with(r#""ssh_keypair_name": "kp", "ssh_agent_auth": true"#);
        let ec2 = Fake::new("us-east-1");
        let kp = key_pair(&w.env(), &ec2, "us-east-1").await.unwrap();
        assert_eq!(kp.name, Some(KeyPairName::from("kp")));
        assert!(kp.temp.is_none());
        assert!(ec2.calls().is_empty());
        assert!(w.undos().is_empty());
    }
}
