//! HCL2 data sources resolved when the build runs: each `data "amazon-parameterstore"` parameter
//! is read with SSM GetParameter (`with_decryption` for a SecureString) through the AWS access
//! of the template's first amazon-ebs builder (or the standard AWS chain when there is none),
//! with the block's `region` and `custom_endpoint_ssm` (else `AWS_ENDPOINT_URL`). `validate`
//! and `inspect` never get here, so they make no AWS call.

use std::collections::BTreeMap;

use aws_sdk_ssm::types::ParameterType;

use crate::aws::{AccessConfig, Api, Aws};
use crate::template::diag::Diagnostic;
use crate::template::hcl2::params::{Fetched, Request};

/// Fetches every parameter; the first failure is a diagnostic naming the data source, the
/// parameter and what to check.
pub fn fetch(
    reqs: &[Request],
    builder: Option<&AccessConfig>,
) -> Result<BTreeMap<String, Fetched>, Diagnostic> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Diagnostic::error(format!("could not start the AWS client: {e}")))?;
    rt.block_on(fetch_all(reqs, builder))
}

async fn fetch_all(
    reqs: &[Request],
    builder: Option<&AccessConfig>,
) -> Result<BTreeMap<String, Fetched>, Diagnostic> {
    let mut out = BTreeMap::new();
    for r in reqs {
        let mut access = builder
            .cloned()
            .unwrap_or_else(|| crate::cleanup::access(None, None));
        if r.region.is_some() {
            access.region = r.region.clone();
        }
        let what = format!("data.amazon-parameterstore.{}", r.label);
        let aws = Aws::connect(&access)
            .await
            .map_err(|e| Diagnostic::error(format!("{what}: {e}")))?;
        let ssm = aws.ssm(&aws.region, r.endpoint.as_deref());
        let got = ssm
            .get_parameter()
            .name(&r.name)
            .with_decryption(r.with_decryption)
            .send()
            .await
            .api()
            .map_err(|e| {
                let mut d = Diagnostic::error(format!(
                    "{what}: could not read the SSM parameter `{}` in {}: {e}",
                    r.name, aws.region
                ));
                d.notes.push("help: check the parameter's name and region, and that the credentials allow ssm:GetParameter (and kms:Decrypt for a SecureString)".into());
                d
            })?;
        let Some(p) = got.parameter else {
            return Err(Diagnostic::error(format!(
                "{what}: SSM returned no parameter `{}`",
                r.name
            )));
        };
        let secret = p.r#type == Some(ParameterType::SecureString);
        out.insert(
            r.label.clone(),
            Fetched {
                value: p.value.unwrap_or_default(),
                version: p.version,
                arn: p.arn.unwrap_or_default(),
                secret,
            },
        );
    }
    Ok(out)
}
