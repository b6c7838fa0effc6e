//! Settings of the Kafka listener.

use std::time::Duration;

/// Kafka's `socket.request.max.bytes` default: 100 MiB.
pub const FRAME_BYTES_MAX_DEFAULT: usize = 100 * 1024 * 1024;

/// The smallest request a client can send: api key, api version and correlation id (8 bytes).
pub const REQUEST_BYTES_MIN: usize = 8;

const _: () = assert!(FRAME_BYTES_MAX_DEFAULT > REQUEST_BYTES_MIN);
const _: () = assert!(FRAME_BYTES_MAX_DEFAULT <= i32::MAX as usize);

/// Limits of the Kafka listener. `node` fills this from its configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaConfig {
    /// Largest request frame accepted, without its 4-byte size prefix. A larger size prefix closes
    /// the connection before any buffer for the frame is allocated.
    pub frame_bytes_max: usize,
    /// Most client connections open at once; a connection beyond it is closed at accept.
    pub connections_max: usize,
    /// Most requests of one connection being handled at once (pipelining). The listener stops
    /// reading from a connection that has this many requests without a written response.
    pub in_flight_max: usize,
    /// A connection with no request in flight and no request received for this long is closed
    /// (Kafka's `connections.max.idle.ms`).
    pub idle_timeout: Duration,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            frame_bytes_max: FRAME_BYTES_MAX_DEFAULT,
            connections_max: 10_000,
            // librdkafka pipelines up to 1 000 000 requests by default but in practice keeps a
            // handful in flight per connection; Java producers use 5.
            in_flight_max: 16,
            idle_timeout: Duration::from_secs(600),
        }
    }
}

/// A [`KafkaConfig`] that [`KafkaConfig::validate`] refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// `frame_bytes_max` is below the smallest request or above what the size prefix can hold.
    #[error("kafka frame_bytes_max {value} must be in [{min}, {max}]")]
    FrameBytesMax {
        /// The refused value.
        value: usize,
        /// Smallest allowed value.
        min: usize,
        /// Largest allowed value.
        max: usize,
    },
    /// A limit that must be at least 1 is 0.
    #[error("kafka {name} must be at least 1")]
    Zero {
        /// The setting's name.
        name: &'static str,
    },
}

impl KafkaConfig {
    /// Checks the limits: every one at least 1, the frame limit within what a size prefix holds.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let (min, max) = (REQUEST_BYTES_MIN, i32::MAX as usize);
        if !(min..=max).contains(&self.frame_bytes_max) {
            return Err(ConfigError::FrameBytesMax {
                value: self.frame_bytes_max,
                min,
                max,
            });
        }
        if self.connections_max == 0 {
            return Err(ConfigError::Zero {
                name: "connections_max",
            });
        }
        if self.in_flight_max == 0 {
            return Err(ConfigError::Zero {
                name: "in_flight_max",
            });
        }
        if self.idle_timeout.is_zero() {
            return Err(ConfigError::Zero {
                name: "idle_timeout",
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        assert_eq!(KafkaConfig::default().validate(), Ok(()));
    }

    #[test]
    fn validate_refuses_out_of_range_limits() {
        let base = KafkaConfig::default();
        let tiny = KafkaConfig {
            frame_bytes_max: 7,
            ..base.clone()
        };
        assert!(matches!(
            tiny.validate(),
            Err(ConfigError::FrameBytesMax { value: 7, .. })
        ));
        let huge = KafkaConfig {
            frame_bytes_max: i32::MAX as usize + 1,
            ..base.clone()
        };
        assert!(huge.validate().is_err());
        let no_conn = KafkaConfig {
            connections_max: 0,
            ..base.clone()
        };
        assert_eq!(
            no_conn.validate(),
            Err(ConfigError::Zero {
                name: "connections_max"
            })
        );
        let no_flight = KafkaConfig {
            in_flight_max: 0,
            ..base.clone()
        };
        assert_eq!(
            no_flight.validate(),
            Err(ConfigError::Zero {
                name: "in_flight_max"
            })
        );
        let no_idle = KafkaConfig {
            idle_timeout: Duration::ZERO,
            ..base
        };
        assert_eq!(
            no_idle.validate(),
            Err(ConfigError::Zero {
                name: "idle_timeout"
            })
        );
    }
}
