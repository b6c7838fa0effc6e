//! Creates a topic (if missing), then prints the cluster, the topics and their end offsets.
//!
//! `cargo run -p skein-client --example admin -- [BROKERS] [TOPIC]`

use skein_client::{
    Admin, Client, ClientConfig, ClientError, NewTopic, OffsetSpec, TopicPartition,
};

#[tokio::main]
async fn main() -> Result<(), ClientError> {
    let mut args = std::env::args().skip(1);
    let brokers = args.next().unwrap_or_else(|| "127.0.0.1:9650".into());
    let topic = args.next().unwrap_or_else(|| "demo".into());

    let admin = Admin::new(Client::new(ClientConfig::new(&brokers))?);
    match admin
        .create_topic(
            NewTopic::new(&topic)
                .partitions(3)
                .config("retention.ms", "86400000"),
        )
        .await
    {
        Ok(t) => println!("created {} with {} partitions", t.name, t.partitions.len()),
        Err(ClientError::TopicAlreadyExists { .. }) => println!("{topic} exists already"),
        Err(e) => return Err(e),
    }
    let cluster = admin.describe_cluster().await?;
    for n in &cluster.nodes {
        println!("node {} at {} ready={}", n.node_id, n.client_addr, n.ready);
    }
    for t in admin.list_topics().await? {
        let queries: Vec<(TopicPartition, OffsetSpec)> = t
            .partitions
            .iter()
            .map(|p| {
                (
                    TopicPartition::new(&t.name, p.partition),
                    OffsetSpec::Latest,
                )
            })
            .collect();
        for o in admin.list_offsets(&queries).await? {
            println!(
                "{} ends at {} (log starts at {})",
                o.tp, o.offset, o.log_start_offset
            );
        }
    }
    Ok(())
}
