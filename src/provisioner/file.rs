//! The `file` provisioner's configuration (Packer 1.6.6 `provisioner/file`, plus `content` from
//! later Packer): copy files or directories to the instance, or from it.

use crate::checks::{
    error_at, flag, is_deferred, local_path_problem, opt_string, relative_path_help, strings_at,
    Located, Want,
};
use crate::template::decode::{Dx, Obj};

/// `direction`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Local to the instance (the default).
    Upload,
    /// The instance to local.
    Download,
}

/// `file`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileConfig {
    /// `source` and `sources`, merged (`sources` first, then `source`, as Packer does). Upload
    /// sources are local files or directories (`dir` copies the directory, `dir/` its
    /// contents); download sources are paths on the instance. Empty with `content`.
    pub sources: Vec<String>,
    /// `content` (later Packer): upload this text as the file `destination`.
    pub content: Option<String>,
    /// `destination` (required): where to put the files; must end in `/` (a directory) when
    /// there are several sources.
    pub destination: String,
    /// `direction`: `upload` (default) or `download`.
    pub direction: Direction,
    /// `generated`: the upload sources are created during the build, so they are not checked
    /// when the template is validated. Default false.
    pub generated: bool,
}

impl FileConfig {
    /// Decodes and checks a `file` provisioner whose common keys the caller has taken.
    pub fn decode(mut obj: Obj, dx: &mut Dx) -> FileConfig {
        let o = &mut obj;
        let direction = match opt_string(o, dx, "direction").as_deref() {
            None | Some("upload") => Direction::Upload,
            Some("download") => Direction::Download,
            Some(_) => {
                error_at(
                    o,
                    dx,
                    "direction",
                    "Direction must be one of: download, upload.",
                    None,
                );
                Direction::Upload
            }
        };
        let generated = flag(o, dx, "generated").unwrap_or(false);
        let content = o.string(dx, "content");
        let mut located: Vec<Located<String>> = strings_at(o, dx, "sources").unwrap_or_default();
        located.extend(strings_at(o, dx, "source").unwrap_or_default());
        located.retain(|s| !s.value.is_empty());
        let destination = opt_string(o, dx, "destination");

        match (&content, located.is_empty()) {
            (Some(_), false) => error_at(
                o,
                dx,
                "content",
                "Only one of content or source/sources can be specified.",
                None,
            ),
            (Some(_), true) if direction == Direction::Download => error_at(
                o,
                dx,
                "content",
                "content can only be uploaded, not downloaded.",
                Some("remove \"direction\": \"download\", or download a `source` instead"),
            ),
            (None, true) => error_at(
                o,
                dx,
                "source",
                "Source must be specified.",
                Some("give a local file or directory in \"source\" (or several in \"sources\"), or the text in \"content\""),
            ),
            _ => {}
        }
        if destination.is_none() {
            error_at(o, dx, "destination", "Destination must be specified.", None);
        }
        if let Some(dst) = &destination {
            if located.len() > 1 && !dst.ends_with('/') {
                error_at(
                    o,
                    dx,
                    "destination",
                    "Destination must end in a slash (/) when there are several sources.",
                    Some(&format!(
                        "write \"{dst}/\": the sources are copied into that directory"
                    )),
                );
            }
        }
        if direction == Direction::Upload && !generated {
            for s in &located {
                if is_deferred(&s.value) {
                    continue;
                }
                let path = std::path::Path::new(&s.value);
                if let Some(why) = local_path_problem(path, Want::FileOrDir) {
                    let d = dx.error(s.span, &s.path, format!("Bad source '{}': {why}", s.value));
                    d.notes.push(format!("help: {}", relative_path_help(path)));
                    d.notes.push(
                        "help: if a provisioner or the build creates the file, add \"generated\": true"
                            .into(),
                    );
                }
            }
        }
        obj.finish(dx);
        FileConfig {
            sources: located.into_iter().map(|s| s.value).collect(),
            content,
            destination: destination.unwrap_or_default(),
            direction,
            generated,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testing::*;
    use crate::template::diag::Diagnostics;

    fn file(text: &str) -> (FileConfig, Diagnostics) {
        decode(text, FileConfig::decode)
    }

    #[test]
    fn upload_of_an_existing_file_or_directory() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("app.conf");
        std::fs::write(&f, "x").unwrap();
        let (c, d) = file(&format!(
            r#"{{"source": {}, "destination": "/etc/app.conf"}}"#,
            js(f.display().to_string())
        ));
        assert!(d.items.is_empty(), "{d:?}");
        assert_eq!(c.sources, vec![f.display().to_string()]);
        assert_eq!(c.direction, Direction::Upload);
        assert_eq!(c.destination, "/etc/app.conf");
        assert!(!c.generated);
        assert_eq!(c.content, None);
        let (_, d) = file(&format!(
            r#"{{"source": {}, "destination": "/opt/"}}"#,
            js(format!("{}/", dir.path().display()))
        ));
        assert!(!d.has_errors(), "{d:?}");
    }

    #[test]
    fn packers_messages_for_missing_keys_and_bad_values() {
        let (_, d) = file("{}");
        assert_eq!(
            errors(&d),
            vec![
                "Source must be specified.",
                "Destination must be specified."
            ]
        );
        let (_, d) = file(r#"{"source": "", "destination": "/tmp/x"}"#);
        assert_eq!(errors(&d), vec!["Source must be specified."]);
        let (_, d) = file(
            r#"{"source": "/etc/hostname", "destination": "/tmp/x", "direction": "sideways"}"#,
        );
        assert_eq!(
            errors(&d),
            vec!["Direction must be one of: download, upload."]
        );
    }

    #[test]
    fn upload_sources_must_exist_unless_generated() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope").display().to_string();
        let (_, d) = file(&format!(
            r#"{{"source": {}, "destination": "/tmp/x"}}"#,
            js(&missing)
        ));
        assert_eq!(
            errors(&d),
            vec![format!("Bad source '{missing}': no such file or directory")]
        );
        assert!(all_text(&d).contains("\"generated\": true"));
        let (_, d) = file(r#"{"source": "files/nope.conf", "destination": "/tmp/x"}"#);
        let text = all_text(&d);
        assert!(
            text.contains("current directory") && text.contains("{{template_dir}}"),
            "{text}"
        );
        let (c, d) = file(&format!(
            r#"{{"source": {}, "destination": "/tmp/x", "generated": true}}"#,
            js(&missing)
        ));
        assert!(!d.has_errors(), "{d:?}");
        assert!(c.generated);
        // Downloads are not checked locally.
        let (c, d) = file(
            r#"{"source": "/var/log/cloud-init.log", "destination": "logs/", "direction": "download"}"#,
        );
        assert!(!d.has_errors(), "{d:?}");
        assert_eq!(c.direction, Direction::Download);
        // Build-time values are not checked.
        let (_, d) = file(r#"{"source": "out/{{ build `ID` }}.txt", "destination": "/tmp/x"}"#);
        assert!(!d.has_errors(), "{d:?}");
    }

    #[test]
    fn several_sources_need_a_directory_destination() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        std::fs::write(&a, "a").unwrap();
        std::fs::write(&b, "b").unwrap();
        let (a, b) = (js(a.display().to_string()), js(b.display().to_string()));
        let (_, d) = file(&format!(
            r#"{{"sources": [{a}, {b}], "destination": "/tmp/x"}}"#
        ));
        assert_eq!(
            errors(&d),
            vec!["Destination must end in a slash (/) when there are several sources."]
        );
        // source and sources merge, sources first (Packer appends source).
        let (c, d) = file(&format!(
            r#"{{"sources": [{a}], "source": {b}, "destination": "/tmp/"}}"#
        ));
        assert!(!d.has_errors(), "{d:?}");
        assert_eq!(c.sources.len(), 2);
        assert!(c.sources[1].ends_with("/b"));
        // One item in `sources` is like `source`.
        let (_, d) = file(&format!(r#"{{"sources": [{a}], "destination": "/tmp/x"}}"#));
        assert!(!d.has_errors(), "{d:?}");
    }

    #[test]
    fn content_is_exclusive_and_upload_only() {
        let (c, d) = file(r#"{"content": "hello {{user `n`}}\n", "destination": "/etc/motd"}"#);
        assert!(!d.has_errors(), "{d:?}");
        assert_eq!(c.content.as_deref(), Some("hello 7\n"));
        assert!(c.sources.is_empty());
        let (_, d) =
            file(r#"{"content": "x", "source": "/etc/hostname", "destination": "/tmp/x"}"#);
        assert_eq!(
            errors(&d),
            vec!["Only one of content or source/sources can be specified."]
        );
        let (_, d) = file(r#"{"content": "x", "destination": "x", "direction": "download"}"#);
        assert_eq!(
            errors(&d),
            vec!["content can only be uploaded, not downloaded."]
        );
    }
}
