//! Produces 1000 keyed records and prints where the last one landed.
//!
//! `cargo run -p skein-client --example produce -- [BROKERS] [TOPIC]`
//! (defaults `127.0.0.1:9650` and `demo`; create the topic first with `skein topic create demo`).

use skein_client::{Client, ClientConfig, Compression, Producer, ProducerConfig, ProducerRecord};

#[tokio::main]
async fn main() -> Result<(), skein_client::ClientError> {
    let mut args = std::env::args().skip(1);
    let brokers = args.next().unwrap_or_else(|| "127.0.0.1:9650".into());
    let topic = args.next().unwrap_or_else(|| "demo".into());

    let client = Client::new(ClientConfig::new(&brokers))?;
    let producer = Producer::new(
        client,
        ProducerConfig {
            compression: Compression::Lz4,
            ..ProducerConfig::default()
        },
    )
    .await?;
    let mut deliveries = Vec::with_capacity(1000);
    for i in 0..1000 {
        let record = ProducerRecord::new(topic.clone(), format!("event {i}"))
            .key(format!("user-{}", i % 10))
            .header("source", "example");
        deliveries.push(producer.send(record).await?);
    }
    let mut last = None;
    for d in deliveries {
        last = Some(d.await?);
    }
    producer.close().await?;
    if let Some(m) = last {
        println!(
            "last record: {}:{} offset {}",
            m.topic, m.partition, m.offset
        );
    }
    Ok(())
}
