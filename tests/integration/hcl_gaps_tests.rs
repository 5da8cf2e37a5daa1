//! HCL2 gaps closed after issue 15: diagnostics name HCL block paths (JSON templates keep JSON
//! paths), variable values are type-checked deeply as cty converts them, `try` works inside
//! `${ }`, component fields are typed as strictly as Packer's HCL2 decoder types them, and data
//! sources may use `local.*` as Packer 1.12+ allows.

use crate::support::cli::Scratch;

/// `validate` of one file in a scratch dir: (exit code, stderr).
fn validate(name: &str, text: &str, args: &[&str]) -> (i32, String) {
    let s = Scratch::new().with(name, text);
    let mut argv = vec!["validate", "-color=false"];
    argv.extend_from_slice(args);
    argv.push(name);
    let r = s.run(&argv);
    (r.code, r.stderr)
}

const SOURCE: &str = r#"source "amazon-ebs" "x" {
  region        = "us-east-1"
  instance_type = "t3.micro"
  source_ami    = "ami-12345678"
  ssh_username  = "ubuntu"
  ami_name      = "x-{{timestamp}}"
"#;

/// A decoder's errors in an HCL2 template name the block path (source, a build's source
/// override, the nth provisioner, a chain's nth post-processor, a nested block), name sources
/// and provisioners as HCL does, say "argument", and never suggest
/// `type` (a label); the same mistakes in JSON keep their JSON paths.
#[test]
fn decoder_errors_in_hcl2_name_block_paths_and_json_keeps_json_paths() {
    let hcl = format!(
        "{SOURCE}  launch_block_device_mappings {{
    device_name = \"/dev/sda1\"
    volume_size = \"big\"
  }}
}}
source \"null\" \"y\" {{
  communicator = \"none\"
}}
build {{
  source \"amazon-ebs.x\" {{
    ssh_port = \"high\"
  }}
  provisioner \"shell\" {{
    inline = [\"true\"]
  }}
  provisioner \"shell\" {{
    inline = [\"true\"]
    nope   = 1
  }}
  post-processors {{
    post-processor \"manifest\" {{
      output = \"m.json\"
    }}
    post-processor \"manifest\" {{
      bogus = true
    }}
  }}
}}
build {{
  sources = [\"source.null.y\"]
  provisioner \"shel\" {{
    inline = [\"true\"]
  }}
}}
"
    );
    let (code, err) = validate("t.pkr.hcl", &hcl, &[]);
    assert_eq!(code, 2, "{err}");
    let want = "error: `volume_size` must be a whole number, found big
 --> t.pkr.hcl:9:19 at source.amazon-ebs.x.launch_block_device_mappings[0].volume_size
  |
9 |     volume_size = \"big\"
  |                   ^^^^^
error: `ssh_port` must be a whole number, found high
  --> t.pkr.hcl:17:16 at build[0].source.amazon-ebs.x.ssh_port
   |
17 |     ssh_port = \"high\"
   |                ^^^^^^
error: unknown argument `nope` in provisioner `shell`
  --> t.pkr.hcl:24:5 at build[0].provisioner[1].nope
   |
24 |     nope   = 1
   |     ^^^^
   = help: did you mean `name`?
error: unknown argument `bogus` in post-processor `manifest`
  --> t.pkr.hcl:31:7 at build[0].post-processors[0].post-processor[1].bogus
   |
31 |       bogus = true
   |       ^^^^^
   = help: see the template reference in README.md for the keys imgbuild knows
error: provisioner type `shel` is not supported by imgbuild
  --> t.pkr.hcl:37:3 at build[1].provisioner[0]
   |
37 |   provisioner \"shel\" {
   |   ^^^^^^^^^^^
   = help: did you mean `shell`?
imgbuild: the template is not valid: 5 errors
";
    assert_eq!(err, want);

    let json = r#"{"builders": [{"type": "amazon-ebs", "region": "us-east-1", "instance_type": "t3.micro",
  "source_ami": "ami-12345678", "ssh_username": "ubuntu", "ami_name": "x-{{timestamp}}",
  "launch_block_device_mappings": [{"device_name": "/dev/sda1", "volume_size": "big"}]}],
 "provisioners": [{"type": "shell", "inline": ["true"]}, {"type": "shell", "inline": ["true"], "nope": 1}]}
"#;
    let (code, err) = validate("t.json", json, &[]);
    assert_eq!(code, 2, "{err}");
    let at: Vec<&str> = err
        .lines()
        .filter_map(|l| l.split_once(" at ").map(|x| x.1))
        .collect();
    assert_eq!(
        at,
        [
            "builders[0].launch_block_device_mappings[0].volume_size",
            "provisioners[1].nope"
        ],
        "{err}"
    );
    assert!(err.contains("unknown key `nope`"), "{err}");
}

/// Data sources may use `local.*` (Packer 1.12+ evaluates locals and data sources as one
/// graph); a data source whose argument is another data source's output (through a local) is
/// refused, saying why.
#[test]
fn data_sources_may_use_locals_but_not_other_data_sources_outputs() {
    let ok = r#"locals {
  owners  = ["099720109477"]
  pattern = "ubuntu/images/*"
  pname   = "/base/ami"
}
data "amazon-ami" "u" {
  owners      = local.owners
  most_recent = true
  filters = {
    name = local.pattern
  }
}
data "amazon-parameterstore" "p" {
  name = local.pname
}
source "amazon-ebs" "x" {
  region        = "us-east-1"
  instance_type = "t3.micro"
  source_ami    = data.amazon-ami.u.id
  ssh_username  = "ubuntu"
  ami_name      = "x-{{timestamp}}"
  tags = {
    Base = data.amazon-parameterstore.p.value
  }
}
build {
  sources = ["source.amazon-ebs.x"]
}
"#;
    let (code, err) = validate("t.pkr.hcl", ok, &[]);
    assert_eq!((code, err.as_str()), (0, ""));
    let s = Scratch::new().with("t.pkr.hcl", ok);
    let r = s.run(&["inspect", "-color=false", "t.pkr.hcl"]);
    assert_eq!(r.code, 0, "{}", r.stderr);

    let chained = ok.replace(
        "  pname   = \"/base/ami\"\n",
        "  pname   = \"/base/ami\"\n  next    = \"${data.amazon-parameterstore.p.value}/next\"\n}\ndata \"amazon-parameterstore\" \"q\" {\n  name = local.next\n",
    );
    let (code, err) = validate("t.pkr.hcl", &chained, &[]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(
        err,
        "error: `name` uses `data.amazon-parameterstore.p.value`, another data source's output: imgbuild reads every parameter before the build starts, so one data source cannot depend on another
 --> t.pkr.hcl:8:10 at data.amazon-parameterstore.q.name
  |
8 |   name = local.next
  |          ^^^^^^^^^^
  = help: write the value directly, or pass it in a variable (-var, -var-file)
imgbuild: the template is not valid: 1 error
"
    );
}

/// Component fields are typed as Packer's HCL2 decoder (cty) types them: no single string for a
/// list of strings, no single number for a list of numbers, no number for a bool, and only
/// "true"/"false"/"1"/"0" as text for a bool; the same values in JSON are accepted weakly, as
/// Packer's JSON decoder accepts them.
#[test]
fn hcl2_component_fields_are_typed_strictly_as_packer_types_them() {
    let hcl = format!(
        "{SOURCE}  ebs_optimized = 1
  encrypt_boot  = \"1\"
}}
build {{
  sources = [\"source.amazon-ebs.x\"]
  provisioner \"shell\" {{
    inline            = \"echo hi\"
    valid_exit_codes  = 0
    expect_disconnect = \"True\"
  }}
}}
"
    );
    let (code, err) = validate("t.pkr.hcl", &hcl, &[]);
    assert_eq!(code, 2, "{err}");
    let want = "error: `ebs_optimized` must be true or false, found a number
 --> t.pkr.hcl:7:19 at source.amazon-ebs.x.ebs_optimized
  |
7 |   ebs_optimized = 1
  |                   ^
error: `inline` must be a list of strings, found a string
  --> t.pkr.hcl:13:25 at build.provisioner[0].inline
   |
13 |     inline            = \"echo hi\"
   |                         ^^^^^^^^^
   = help: HCL2 takes no single string for a list: write inline = [\"...\"]
error: `valid_exit_codes` must be a list of whole numbers, found a number
  --> t.pkr.hcl:14:25 at build.provisioner[0].valid_exit_codes
   |
14 |     valid_exit_codes  = 0
   |                         ^
   = help: HCL2 takes no single value for a list: write valid_exit_codes = [0]
error: `expect_disconnect` must be true or false, found \"True\"
  --> t.pkr.hcl:15:25 at build.provisioner[0].expect_disconnect
   |
15 |     expect_disconnect = \"True\"
   |                         ^^^^^^
   = help: HCL2 converts only lowercase text: write true
imgbuild: the template is not valid: 4 errors
";
    assert_eq!(err, want);

    let json = r#"{"builders": [{"type": "amazon-ebs", "region": "us-east-1", "instance_type": "t3.micro",
  "source_ami": "ami-12345678", "ssh_username": "ubuntu", "ami_name": "x-{{timestamp}}",
  "ebs_optimized": 1, "encrypt_boot": "1"}],
 "provisioners": [{"type": "shell", "inline": "echo hi", "valid_exit_codes": 0, "expect_disconnect": "True"}]}
"#;
    let (code, err) = validate("t.json", json, &[]);
    assert_eq!((code, err.as_str()), (0, ""));

    // `hcl2_upgrade` writes a single value for a list option as a list, so its HCL2 validates.
    let json = r#"{"builders": [{"type": "null", "communicator": "none"}],
 "provisioners": [{"type": "shell-local", "inline": "echo hi", "valid_exit_codes": 0}]}
"#;
    let s = Scratch::new().with("t.json", json);
    let r = s.run(&["hcl2_upgrade", "t.json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let text = std::fs::read_to_string(s.path("t.pkr.hcl")).expect("t.pkr.hcl");
    assert!(
        text.contains("    inline = [\"echo hi\"]\n    valid_exit_codes = [0]\n"),
        "{text}"
    );
    let r = s.run(&["validate", "-color=false", "t.pkr.hcl"]);
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
}

const TYPED: &str = r#"variable "disks" {
  type = list(object({
    name = string
    size = optional(number, 8)
  }))
  default = [{ name = "root", extra = true }]
}
variable "tags" {
  type    = map(string)
  default = { a = 1 }
}
variable "n" {
  type    = number
  default = "3"
}
source "null" "x" {
  communicator = "none"
}
build {
  sources = ["source.null.x"]
  provisioner "shell-local" {
    inline = ["printf '%s %s %s' '${jsonencode(var.disks)}' '${jsonencode(var.tags)}' '${jsonencode(var.n)}' > out.txt"]
  }
}
"#;

/// Variable values are converted to their declared types deeply, as cty converts them, from
/// every source (default, -var-file .pkrvars.hcl and JSON, -var, PKR_VAR_*): a value that does
/// not convert is an error that says which element or attribute is wrong and what it wanted,
/// located at that part in a file, or naming the flag or environment variable.
#[test]
fn variable_values_are_type_checked_deeply_from_every_source() {
    // What converts: numbers to strings, text to numbers, optional attributes defaulted, extra
    // attributes dropped.
    let s = Scratch::new().with("t.pkr.hcl", TYPED);
    let r = s.run(&["build", "-color=false", "t.pkr.hcl"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let out = std::fs::read_to_string(s.path("out.txt")).expect("out.txt");
    assert_eq!(out, r#"[{"name":"root","size":8}] {"a":"1"} 3"#);

    let bad_default = TYPED.replace(
        "default = [{ name = \"root\", extra = true }]",
        "default = [{ name = \"root\" }, { name = {} }]",
    );
    let (code, err) = validate("t.pkr.hcl", &bad_default, &[]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(
        err,
        "error: the default of `disks` is not a valid list(object({name=string, size=optional(number)})): at `[1].name`: a string is required, found an object
 --> t.pkr.hcl:6:42 at variable.disks.default
  |
6 |   default = [{ name = \"root\" }, { name = {} }]
  |                                          ^^
imgbuild: the template is not valid: 1 error
"
    );

    let s = Scratch::new()
        .with("t.pkr.hcl", TYPED)
        .with(
            "v.pkrvars.hcl",
            "disks = [\n  { size = 1 },\n]\ntags = {\n  b = [\"y\"]\n}\n",
        )
        .with(
            "v.json",
            "{\"n\": \"many\", \"tags\": {\"a\": {\"b\": 1}}}\n",
        )
        .with("d.json", "{\"n\": 1,\n \"n\": 2}\n");
    let r = crate::support::cli::imgbuild_env(
        s.dir.path(),
        &[
            "validate",
            "-color=false",
            "-var-file=v.pkrvars.hcl",
            "-var-file=v.json",
            "-var-file=d.json",
            "-var",
            "disks=[{name = \"a\", size = \"big\"}]",
            "t.pkr.hcl",
        ],
        None,
        &[("PKR_VAR_n", "x1")],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert_eq!(
        r.stderr,
        "error: the var file sets `disks` to a value that is not a valid list(object({name=string, size=optional(number)})): at `[0]`: attribute \"name\" is required (the type is object({name=string, size=optional(number)}))
 --> v.pkrvars.hcl:2:3
  |
2 |   { size = 1 },
  |   ^^^^^^^^^^^^
error: the var file sets `tags` to a value that is not a valid map(string): at `b`: a string is required, found a list
 --> v.pkrvars.hcl:5:7
  |
5 |   b = [\"y\"]
  |       ^^^^^
error: the var file sets `n` to a value that is not a valid number: a number is required, found the string \"many\"
 --> v.json:1:7
  |
1 | {\"n\": \"many\", \"tags\": {\"a\": {\"b\": 1}}}
  |       ^^^^^^
error: the var file sets `tags` to a value that is not a valid map(string): at `a`: a string is required, found an object
 --> v.json:1:29
  |
1 | {\"n\": \"many\", \"tags\": {\"a\": {\"b\": 1}}}
  |                             ^^^^^^^^
error: the var file sets `n` twice
 --> d.json:2:2
  |
2 |  \"n\": 2}
  |  ^^^
  = note: first set at d.json:1:2
error: PKR_VAR_n is not a valid number: a number is required, found the string \"x1\"
error: -var disks: not a valid list(object({name=string, size=optional(number)})): at `[0].size`: a number is required, found the string \"big\"
imgbuild: the template is not valid: 7 errors
"
    );
}
