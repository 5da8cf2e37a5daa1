//! What an AWS call that failed says: [`ApiError`] (the service's error code and message, or
//! what went wrong on the way), made from any SDK error through [`Api::api`], for every module
//! that calls AWS (the builder's steps, teardown and sweep, the post-processors, cleanup).

use aws_sdk_ec2::config::http::HttpResponse;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};

/// An EC2 API error: the code EC2 gave (`UnauthorizedOperation`, `InvalidAMIID.NotFound`, ...)
/// and its message, or what went wrong on the way (connection refused, timeout).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: Option<String>,
    pub message: String,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.code {
            Some(c) if self.message.is_empty() => f.write_str(c),
            Some(c) => write!(f, "{c}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    pub fn from_sdk<E>(e: &SdkError<E, HttpResponse>) -> ApiError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        if let SdkError::ServiceError(s) = e {
            let err = s.err();
            if err.code().is_some() {
                return ApiError {
                    code: err.code().map(str::to_string),
                    message: err.message().unwrap_or_default().to_string(),
                };
            }
            // No EC2 error in the answer (a proxy's or emulator's page): say what came back.
            let raw = s.raw();
            let body = raw
                .body()
                .bytes()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            let text = strip_markup(&body);
            return ApiError {
                code: None,
                message: format!(
                    "HTTP {} with no EC2 error in the answer{}",
                    raw.status().as_u16(),
                    if text.is_empty() {
                        String::new()
                    } else {
                        format!(": {text}")
                    }
                ),
            };
        }
        ApiError {
            code: None,
            message: error_chain(e),
        }
    }

    pub fn msg(message: impl Into<String>) -> ApiError {
        ApiError {
            code: None,
            message: message.into(),
        }
    }

    /// The resource does not exist (any more): `*.NotFound`, or an AMI that is gone.
    pub fn is_not_found(&self) -> bool {
        self.code.as_deref().is_some_and(|c| {
            c.ends_with(".NotFound")
                || c.ends_with(".Malformed.NotFound")
                || c == "InvalidAMIID.Unavailable"
        })
    }

    pub fn code_is(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }
}

/// An error and its sources, `a: b: c`, without repeating a source already in the text.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

/// The text of an HTML or XML answer, shortened, for messages.
fn strip_markup(body: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in body.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                out.push(' ');
            }
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    let words: Vec<&str> = out.split_whitespace().collect();
    let mut text = words.join(" ");
    if text.len() > 200 {
        let mut cut = 200;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("...");
    }
    text
}

/// Maps an SDK result's error to [`ApiError`].
pub trait Api<T> {
    fn api(self) -> Result<T, ApiError>;
}

impl<T, E> Api<T> for Result<T, SdkError<E, HttpResponse>>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    fn api(self) -> Result<T, ApiError> {
        self.map_err(|e| ApiError::from_sdk(&e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_and_message_read_as_aws_gives_them() {
        let e = ApiError {
            code: Some("InvalidAMIID.NotFound".into()),
            message: "The image id '[ami-1]' does not exist".into(),
        };
        assert_eq!(
            e.to_string(),
            "InvalidAMIID.NotFound: The image id '[ami-1]' does not exist"
        );
        assert!(e.is_not_found() && e.code_is("InvalidAMIID.NotFound"));
        assert!(!ApiError::msg("connection refused").is_not_found());
        assert_eq!(
            ApiError::msg("connection refused").to_string(),
            "connection refused"
        );
    }

    #[test]
    fn a_page_without_an_aws_error_is_shortened_text() {
        assert_eq!(
            strip_markup("<html><body><h1>502 Bad Gateway</h1>\n<p>nginx</p></body></html>"),
            "502 Bad Gateway nginx"
        );
        let long = strip_markup(&"é".repeat(300));
        assert!(long.ends_with("...") && long.len() <= 203, "{long}");
    }
}
