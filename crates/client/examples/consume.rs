//! Prints every record of a topic from the beginning, then waits for new ones (Ctrl-C stops).
//!
//! `cargo run -p skein-client --example consume -- [BROKERS] [TOPIC]`

use futures_util::StreamExt;
use skein_client::{Client, ClientConfig, Consumer, ConsumerConfig};

#[tokio::main]
async fn main() -> Result<(), skein_client::ClientError> {
    let mut args = std::env::args().skip(1);
    let brokers = args.next().unwrap_or_else(|| "127.0.0.1:9650".into());
    let topic = args.next().unwrap_or_else(|| "demo".into());

    let client = Client::new(ClientConfig::new(&brokers))?;
    let mut consumer = Consumer::new(client, ConsumerConfig::default())?;
    let partitions = consumer.assign_topic(&topic).await?;
    println!("reading {} partitions of {topic}", partitions.len());
    consumer.seek_to_beginning(&[]).await?;
    let mut records = std::pin::pin!(consumer.stream());
    while let Some(record) = records.next().await {
        let r = record?;
        println!(
            "{}:{} @{} key={:?} value={}",
            r.topic,
            r.partition,
            r.offset,
            r.key.as_deref().map(String::from_utf8_lossy),
            String::from_utf8_lossy(r.value.as_deref().unwrap_or_default())
        );
    }
    Ok(())
}
