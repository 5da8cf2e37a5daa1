//! `data "amazon-parameterstore"`: what each block asks for (read while the template loads,
//! with `var.*` known), and the values the build fetched (SSM GetParameter, see
//! `crate::datasource`) put in place of the outputs' marks on the build's second load. Validate
//! and inspect never fetch: there the outputs stay marks, accepted anywhere.

use std::collections::BTreeMap;
use std::sync::Mutex;

use hcl::{Map, Value};

use super::build::Data;
use super::eval::{body_node, Ctx, Cx};
use crate::template::diag::JsonPath;
use crate::template::json::Kind;

/// One parameter a template reads.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The block's name label (`data.amazon-parameterstore.LABEL`).
    pub label: String,
    /// `name`: the parameter's name.
    pub name: String,
    /// `with_decryption`: decrypt a SecureString (default false, as in Packer).
    pub with_decryption: bool,
    /// `region`: default the builder's.
    pub region: Option<String>,
    /// `custom_endpoint_ssm`: default AWS_ENDPOINT_URL(_SSM) through aws-config.
    pub endpoint: Option<String>,
}

/// A fetched parameter.
#[derive(Debug, Clone, Default)]
pub struct Fetched {
    pub value: String,
    pub version: i64,
    pub arn: String,
    /// A SecureString: its value is masked wherever imgbuild writes.
    pub secret: bool,
}

static FETCHED: Mutex<BTreeMap<String, Fetched>> = Mutex::new(BTreeMap::new());

/// Sets the fetched values (by label) the next load uses.
pub fn set_fetched(values: BTreeMap<String, Fetched>) {
    *FETCHED.lock().unwrap_or_else(|e| e.into_inner()) = values;
}

/// The fetched SecureString values (for the redactor).
pub fn secrets() -> Vec<String> {
    let m = FETCHED.lock().unwrap_or_else(|e| e.into_inner());
    m.values()
        .filter(|f| f.secret)
        .map(|f| f.value.clone())
        .collect()
}

/// Reads the `amazon-parameterstore` blocks' arguments; unknown arguments are located errors.
pub fn requests(data: &[Data], ctx: &Ctx, cx: &mut Cx) -> Vec<Request> {
    let mut out = Vec::new();
    for d in data.iter().filter(|d| d.kind == "amazon-parameterstore") {
        let path = JsonPath::root()
            .key("data")
            .key("amazon-parameterstore")
            .key(&d.name);
        let node = body_node(&d.block.body, ctx, cx, &path, &[]);
        let mut r = Request {
            label: d.name.clone(),
            name: String::new(),
            with_decryption: false,
            region: None,
            endpoint: None,
        };
        let mut has_name = false;
        for m in node.as_object().unwrap_or(&[]) {
            let text = m.value.as_str().map(str::to_string);
            if let Some(other) = text.as_deref().and_then(data_use) {
                let d = cx.error(
                    m.value.span,
                    &path.key(&m.key),
                    format!("`{}` uses `data.{other}`, another data source's output: imgbuild reads every parameter before the build starts, so one data source cannot depend on another", m.key),
                );
                d.notes.push(
                    "help: write the value directly, or pass it in a variable (-var, -var-file)"
                        .into(),
                );
                has_name |= m.key == "name";
                continue;
            }
            match (m.key.as_str(), &m.value.kind) {
                ("name", Kind::String(s)) if !s.is_empty() => {
                    r.name = s.clone();
                    has_name = true;
                }
                ("with_decryption", Kind::Bool(b)) => r.with_decryption = *b,
                ("region", Kind::String(_)) => r.region = text,
                ("custom_endpoint_ssm", Kind::String(_)) => r.endpoint = text,
                // The builder's credentials are the data source's here.
                ("access_key" | "secret_key" | "token" | "profile" | "assume_role", _) => {}
                ("name" | "with_decryption" | "region" | "custom_endpoint_ssm", _) => {
                    cx.error(
                        m.value.span,
                        &path.key(&m.key),
                        format!("`{}` has the wrong type: name, region and custom_endpoint_ssm are non-empty strings, with_decryption is true or false", m.key),
                    );
                    has_name |= m.key == "name";
                }
                (other, _) => {
                    cx.error(m.key_span, &path.key(other), format!("imgbuild's amazon-parameterstore data source has no argument `{other}` (it has name, with_decryption, region and custom_endpoint_ssm)"));
                }
            }
        }
        if !has_name {
            cx.error(
                node.span,
                &path,
                "the amazon-parameterstore data source needs `name`: the SSM parameter to read",
            );
        }
        out.push(r);
    }
    out
}

/// The data source output (`TYPE.NAME.OUTPUT`) a value holds, through a local or directly.
fn data_use(text: &str) -> Option<&str> {
    let rest = text.split(super::build::DATA_MARK).nth(1)?;
    rest.split('\u{1}').next()
}

/// Puts the fetched values in place of the outputs' marks in the `data` object.
pub fn apply(data_obj: &mut Map<String, Value>) {
    let fetched = FETCHED.lock().unwrap_or_else(|e| e.into_inner());
    let Some(Value::Object(by_name)) = data_obj.get_mut("amazon-parameterstore") else {
        return;
    };
    for (label, f) in fetched.iter() {
        if let Some(Value::Object(o)) = by_name.get_mut(label) {
            o.insert("value".into(), Value::from(f.value.clone()));
            o.insert("version".into(), Value::from(f.version));
            o.insert("arn".into(), Value::from(f.arn.clone()));
        }
    }
}
