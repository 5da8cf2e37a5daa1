//! Paginated listings: every page of a call, bounded.

use aws_sdk_ec2::config::http::HttpResponse;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_async::future::pagination_stream::PaginationStream;

use super::error::{Api, ApiError};

/// The pages of a paginated call (`.into_paginator().send()`), in order, at most `max` of them
/// (no request is made for a page beyond); the first error ends the listing.
pub async fn pages<T, E>(
    mut pages: PaginationStream<Result<T, SdkError<E, HttpResponse>>>,
    max: usize,
) -> Result<Vec<T>, ApiError>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let mut out = Vec::new();
    while out.len() < max {
        match pages.try_next().await.api()? {
            Some(page) => out.push(page),
            None => break,
        }
    }
    Ok(out)
}
