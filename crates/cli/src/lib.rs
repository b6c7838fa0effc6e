//! `skein`: the command-line tool for Skein clusters, built only on `skein-client`.
//!
//! The binary (`src/main.rs`) parses [`args::Cli`] and calls [`run`]; each verb lives in its
//! own module under `commands`. Results go to standard output (tables for people, `--output
//! json` for scripts, record values for `consume`); progress and summaries go to standard
//! error, so pipelines see only data.

pub mod args;
mod commands;
pub mod output;
pub mod parse;

use std::time::Duration;

use anyhow::Result;
use skein_client::{parse_broker_list, Client, ClientConfig};

use crate::args::{Cli, ClusterCommand, Command, GroupCommand, TopicCommand};

/// Runs one command line to completion.
pub async fn run(cli: Cli) -> Result<()> {
    let client = connect(&cli.brokers)?;
    match cli.command {
        Command::Topic(TopicCommand::Create(a)) => commands::topic::create(&client, a).await,
        Command::Topic(TopicCommand::List(o)) => commands::topic::list(&client, o.output).await,
        Command::Topic(TopicCommand::Describe { name, output }) => {
            commands::topic::describe(&client, &name, output.output).await
        }
        Command::Topic(TopicCommand::Delete { name }) => {
            commands::topic::delete(&client, &name).await
        }
        Command::Topic(TopicCommand::AlterConfig(a)) => {
            commands::topic::alter_config(&client, a).await
        }
        Command::Produce(a) => commands::produce::run(&client, a).await,
        Command::Consume(a) => commands::consume::run(&client, a).await,
        Command::Group(GroupCommand::List(o)) => commands::group::list(&client, o.output).await,
        Command::Group(GroupCommand::Describe { group, output }) => {
            commands::group::describe(&client, &group, output.output).await
        }
        Command::Group(GroupCommand::Delete { group }) => {
            commands::group::delete(&client, &group).await
        }
        Command::Group(GroupCommand::Reset(a)) => commands::group::reset(&client, a).await,
        Command::Cluster(ClusterCommand::Status(o)) => {
            commands::cluster::status(&client, o.output).await
        }
    }
}

/// A client for `--brokers`. Retries are kept short: a person is waiting.
fn connect(brokers: &str) -> Result<Client> {
    let config = ClientConfig {
        brokers: parse_broker_list(brokers),
        request_timeout: Duration::from_secs(30),
        connect_timeout: Duration::from_secs(3),
        retry_backoff_min: Duration::from_millis(100),
        retry_backoff_max: Duration::from_secs(1),
        max_retries: 8,
    };
    Ok(Client::new(config)?)
}
