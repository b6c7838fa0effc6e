//! `skein cluster status`.

use anyhow::{Context, Result};
use skein_client::{Admin, Client};

use super::print_stdout;
use crate::args::ReadFormat;
use crate::output::{cluster_status_json, cluster_status_text};

pub async fn status(client: &Client, format: ReadFormat) -> Result<()> {
    let admin = Admin::new(client.clone());
    let cluster = admin.describe_cluster().await.context("describe cluster")?;
    let meta = admin.metadata().await.context("read cluster metadata")?;
    match format {
        ReadFormat::Json => print_stdout(&format!(
            "{}\n",
            cluster_status_json(&cluster, &meta.topics)
        )),
        ReadFormat::Table => print_stdout(&cluster_status_text(&cluster, &meta.topics)),
    }
}
