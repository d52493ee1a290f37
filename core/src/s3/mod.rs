//! S3 and S3-compatible object stores (MinIO, Ceph, R2, ...): the `s3.*`
//! session settings ([`S3Settings`]) and the cached, error-explaining
//! clients built from them ([`S3BucketStore`]).

mod settings;
mod store;

pub use settings::{S3Options, S3Settings, Secret};
pub use store::{S3AccessError, S3BucketStore, s3_bucket_store};
