//! Checking a new table's Parquet files before DataFusion reads them.
//!
//! DataFusion reads every Parquet file's footer to learn a table's schema.
//! A footer that claims more metadata than its file holds made the Parquet
//! reader subtract past zero (a panic where overflow is checked), and every
//! other broken footer failed with an error that did not say which file was
//! broken. [`check_parquet_footers`] reads the last eight bytes of each file
//! first (32 at once) and refuses a file that cannot be Parquet with one
//! line naming it.

use datafusion::datasource::listing::ListingTableUrl;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::CreateExternalTable;
use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};

use crate::error::{ClientError, Result};

/// Bytes at the end of a Parquet file: the metadata's length, then `PAR1`.
const FOOTER_LEN: u64 = 8;

/// How many footers are read at once.
const FOOTER_CHECKS_AT_ONCE: usize = 32;

/// The magic number a Parquet file starts and ends with.
const MAGIC: &[u8; 4] = b"PAR1";

/// Checks the footer of every Parquet file of the table `create` defines.
/// Other formats, and files that cannot be listed (DataFusion reports
/// those), pass.
pub async fn check_parquet_footers(
    state: &SessionState,
    create: &CreateExternalTable,
) -> Result<()> {
    if !create.file_type.eq_ignore_ascii_case("parquet") {
        return Ok(());
    }
    for location in &create.locations {
        check_location(state, location).await?;
    }
    Ok(())
}

/// Checks the Parquet files at one `location`.
async fn check_location(state: &SessionState, location: &str) -> Result<()> {
    let Ok(url) = ListingTableUrl::parse(location) else {
        return Ok(());
    };
    let Ok(store) = state.runtime_env().object_store(&url) else {
        return Ok(());
    };
    let listed = if url.is_collection() {
        store.list(Some(url.prefix())).try_collect().await
    } else {
        store.head(url.prefix()).await.map(|file| vec![file])
    };
    let Ok(files): std::result::Result<Vec<ObjectMeta>, _> = listed else {
        return Ok(());
    };
    // A directory's Parquet files are those DataFusion reads: with the
    // `.parquet` extension, directly in it.
    let directory = url.is_collection();
    let parquet = files.iter().filter(|f| {
        url.contains(&f.location, true) && (!directory || f.location.as_ref().ends_with(".parquet"))
    });
    // Many at once: on S3 each is a round trip, and a table may have
    // thousands of files. The first broken file in listing order is named.
    let checks: Vec<_> = parquet
        .map(|file| check_named_footer(store.as_ref(), &url, file))
        .collect();
    futures::stream::iter(checks)
        .buffered(FOOTER_CHECKS_AT_ONCE)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// [`check_footer`], its failure naming the file.
async fn check_named_footer(
    store: &dyn ObjectStore,
    url: &ListingTableUrl,
    file: &ObjectMeta,
) -> Result<()> {
    check_footer(store, file)
        .await
        .map_err(|reason| ClientError::BadFile {
            path: display_path(url, file),
            reason,
        })
}

/// Where `file` is, as a user would write it.
fn display_path(url: &ListingTableUrl, file: &ObjectMeta) -> String {
    let base = url.get_url();
    match base.scheme() {
        "file" => format!("/{}", file.location),
        scheme => format!(
            "{scheme}://{}/{}",
            base.host_str().unwrap_or_default(),
            file.location
        ),
    }
}

/// Why `file` cannot be a Parquet file, if it cannot.
async fn check_footer(
    store: &dyn ObjectStore,
    file: &ObjectMeta,
) -> std::result::Result<(), String> {
    let size = file.size;
    if size < FOOTER_LEN + MAGIC.len() as u64 {
        return Err(format!("not a Parquet file: it is {size} bytes long"));
    }
    let footer = store
        .get_range(&file.location, size - FOOTER_LEN..size)
        .await
        .map_err(|e| format!("cannot read its footer: {e}"))?;
    if footer.len() as u64 != FOOTER_LEN || &footer[4..] != MAGIC {
        return Err("not a Parquet file: it does not end with PAR1".into());
    }
    let metadata = u64::from(u32::from_le_bytes([
        footer[0], footer[1], footer[2], footer[3],
    ]));
    if metadata + FOOTER_LEN + MAGIC.len() as u64 > size {
        return Err(format!(
            "a broken Parquet file: its footer claims {metadata} bytes of metadata, but the file is {size} bytes long"
        ));
    }
    Ok(())
}
