//! `skein topic create|list|describe|delete|alter-config`.

use anyhow::{Context, Result};
use skein_client::{Admin, Client, NewTopic};

use super::print_stdout;
use crate::args::{ReadFormat, TopicAlterConfigArgs, TopicCreateArgs};
use crate::output::{topic_describe_text, topic_json, topics_table};

pub async fn create(client: &Client, a: TopicCreateArgs) -> Result<()> {
    let mut topic = NewTopic::new(&a.name);
    topic.partitions = a.partitions;
    topic.replication_factor = a.replication_factor;
    topic.config = a.config.into_iter().collect();
    let t = Admin::new(client.clone())
        .create_topic(topic)
        .await
        .with_context(|| format!("create topic {}", a.name))?;
    print_stdout(&format!(
        "created topic {} with {} partitions (replication factor {})\n",
        t.name,
        t.partitions.len(),
        t.replication_factor
    ))
}

pub async fn list(client: &Client, format: ReadFormat) -> Result<()> {
    let topics = Admin::new(client.clone())
        .list_topics()
        .await
        .context("list topics")?;
    match format {
        ReadFormat::Json => print_stdout(&format!(
            "{}\n",
            serde_json::Value::Array(topics.iter().map(topic_json).collect())
        )),
        ReadFormat::Table if topics.is_empty() => {
            eprintln!("no topics yet: create one with `skein topic create NAME`");
            Ok(())
        }
        ReadFormat::Table => print_stdout(&topics_table(&topics)),
    }
}

pub async fn describe(client: &Client, name: &str, format: ReadFormat) -> Result<()> {
    let t = Admin::new(client.clone())
        .describe_topic(name)
        .await
        .with_context(|| format!("describe topic {name}"))?;
    match format {
        ReadFormat::Json => print_stdout(&format!("{}\n", topic_json(&t))),
        ReadFormat::Table => print_stdout(&topic_describe_text(&t)),
    }
}

pub async fn alter_config(client: &Client, a: TopicAlterConfigArgs) -> Result<()> {
    let t = Admin::new(client.clone())
        .alter_topic_config(&a.name, a.config.into_iter().collect())
        .await
        .with_context(|| format!("alter config of topic {}", a.name))?;
    let cfg: Vec<String> = t.config.iter().map(|(k, v)| format!("{k}={v}")).collect();
    print_stdout(&format!(
        "topic {} now has config: {}\n",
        t.name,
        cfg.join(", ")
    ))
}

pub async fn delete(client: &Client, name: &str) -> Result<()> {
    Admin::new(client.clone())
        .delete_topic(name)
        .await
        .with_context(|| format!("delete topic {name}"))?;
    print_stdout(&format!("deleted topic {name}\n"))
}
