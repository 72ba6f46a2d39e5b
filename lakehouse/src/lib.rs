//! Tarn's lakehouse: the canonical tables as Delta tables on object storage, the catalog
//! (PostgreSQL or SQLite), and the SQL engine over them.
//!
//! The lakehouse knows no wire format and opens no socket: the gateway normalizes what it
//! receives into rows of the canonical tables ([`rows`]), hands them to a
//! [`writer::TableWriter`], and answers queries through [`query::QueryEngine`].

pub mod catalog;
pub mod error;
pub mod query;
pub mod rows;
pub mod schema;
pub mod table;
pub mod writer;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use url::Url;

use crate::catalog::{Catalog, TableEntry};
use crate::error::{Error, Result};
use crate::schema::TableKind;
use crate::table::LakeTable;
use crate::writer::{DirectWriter, TableWriter};

/// Where the lake and its catalog live.
#[derive(Debug, Clone)]
pub struct LakeConfig {
    /// Root of the lake: `file:///abs/path`, `s3://bucket/prefix`, `memory://`, ...
    pub object_store_url: String,
    /// Options for the object store (`AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`, ...).
    pub storage_options: HashMap<String, String>,
    /// `postgres://...` or `sqlite://...`.
    pub catalog_url: String,
}

/// An open lakehouse: catalog, tables, writer.
#[derive(Debug)]
pub struct Lakehouse {
    catalog: Catalog,
    root: Url,
    tables: BTreeMap<TableKind, Arc<LakeTable>>,
    writer: Arc<dyn TableWriter>,
    storage_options: HashMap<String, String>,
}

/// The URL of a table under the lake root.
pub fn table_url(root: &Url, kind: TableKind) -> Result<Url> {
    let mut base = root.clone();
    if !base.path().ends_with('/') {
        base.set_path(&format!("{}/", base.path()));
    }
    base.join(&format!("{}/", kind.name()))
        .map_err(|e| Error::Config(format!("bad lake root {root}: {e}")))
}

impl Lakehouse {
    /// Connects the catalog, opens (or creates) every canonical table and registers it.
    pub async fn open(config: LakeConfig) -> Result<Lakehouse> {
        deltalake::aws::register_handlers(None);
        let root = Url::parse(&config.object_store_url).map_err(|e| {
            Error::Config(format!(
                "bad object store URL {}: {e}",
                config.object_store_url
            ))
        })?;
        let catalog = Catalog::connect(&config.catalog_url).await?;
        let mut tables = BTreeMap::new();
        for kind in TableKind::ALL {
            let url = table_url(&root, kind)?;
            let table =
                LakeTable::open_or_create(kind, url.clone(), &config.storage_options).await?;
            catalog
                .register_table(&TableEntry {
                    name: kind.name().to_owned(),
                    uri: url.to_string(),
                    schema_version: kind.schema_version(),
                })
                .await?;
            tables.insert(kind, Arc::new(table));
        }
        let writer = Arc::new(DirectWriter::new(tables.clone()));
        Ok(Lakehouse {
            catalog,
            root,
            tables,
            writer,
            storage_options: config.storage_options,
        })
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn root(&self) -> &Url {
        &self.root
    }

    pub fn storage_options(&self) -> &HashMap<String, String> {
        &self.storage_options
    }

    /// The writer ingestion hands rows to.
    pub fn writer(&self) -> &dyn TableWriter {
        self.writer.as_ref()
    }

    /// The canonical tables.
    pub fn tables(&self) -> &BTreeMap<TableKind, Arc<LakeTable>> {
        &self.tables
    }

    /// A query engine over the lake.
    pub fn query_engine(&self) -> query::QueryEngine {
        query::QueryEngine::new(self.tables.clone())
    }
}
