//! Consume a topic as a member of a consumer group, committing after each batch.
//!
//! ```sh
//! cargo run -p skein-client --example group_consume -- orders billing
//! ```
//! Run it twice in two terminals: the two members share the topic's partitions.

use skein_client::{
    AssignmentStrategy, Client, ClientConfig, GroupConsumer, GroupConsumerConfig, GroupEvent,
    OffsetReset,
};

#[tokio::main]
async fn main() -> Result<(), skein_client::ClientError> {
    let mut args = std::env::args().skip(1);
    let topic = args.next().unwrap_or_else(|| "orders".to_string());
    let group = args.next().unwrap_or_else(|| "example".to_string());
    let brokers = std::env::var("SKEIN_BROKERS").unwrap_or_else(|_| "127.0.0.1:9650".into());

    let client = Client::new(ClientConfig::new(&brokers))?;
    let config = GroupConsumerConfig {
        strategy: AssignmentStrategy::CooperativeSticky,
        auto_offset_reset: OffsetReset::Earliest,
        enable_auto_commit: false,
        ..GroupConsumerConfig::new(group)
    };
    let mut consumer = GroupConsumer::new(client, config)?;
    consumer.subscribe([topic]);
    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    loop {
        let event = tokio::select! {
            e = consumer.poll_event() => e?,
            _ = &mut stop => break,
        };
        match event {
            GroupEvent::Records(records) if records.is_empty() => {}
            GroupEvent::Records(records) => {
                for r in &records {
                    println!("{}:{} @{} {:?}", r.topic, r.partition, r.offset, r.value);
                }
                // Queue a commit of what was just processed; commits are sent in order.
                drop(consumer.commit_async().await?);
            }
            // Last chance to commit the partitions that move to another member.
            GroupEvent::Revoked(tps) => {
                consumer.commit().await?;
                eprintln!("revoked {tps:?}");
            }
            GroupEvent::Assigned(tps) => eprintln!("assigned {tps:?}"),
            GroupEvent::Lost(tps) => eprintln!("lost {tps:?}"),
        }
    }
    // Commits what was handed out and leaves the group.
    consumer.commit().await?;
    consumer.close().await
}
