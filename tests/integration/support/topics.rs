//! Topics created for one test and deleted when it ends.

use std::time::Duration;

use galley::config::KafkaConfig;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;

use super::{brokers, clean_up_blocking, unique_name};

pub fn kafka_config(group: &str) -> KafkaConfig {
    KafkaConfig {
        brokers: brokers(),
        group_id: group.to_string(),
        client_id: "galley-test".into(),
        ..KafkaConfig::default()
    }
}

/// Topics deleted when the guard goes out of scope, even on panic.
pub struct TestTopics {
    pub names: Vec<String>,
}

impl TestTopics {
    pub async fn create(names: Vec<String>, partitions: i32) -> Self {
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        galley::kafka::ensure_topics(&kafka_config("unused"), &refs, partitions, 1)
            .await
            .expect("create topics");
        Self { names }
    }

    /// One unique topic.
    pub async fn single(prefix: &str, partitions: i32) -> Self {
        Self::create(vec![unique_name(prefix)], partitions).await
    }

    pub fn name(&self) -> &str {
        &self.names[0]
    }
}

impl Drop for TestTopics {
    fn drop(&mut self) {
        if self.names.is_empty() {
            return;
        }
        let names = self.names.clone();
        clean_up_blocking(async move {
            let admin: Result<AdminClient<DefaultClientContext>, _> =
                galley::kafka::base_config(&kafka_config("unused")).create();
            if let Ok(admin) = admin {
                let refs: Vec<&str> = names.iter().map(String::as_str).collect();
                let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
                let _ = admin.delete_topics(&refs, &opts).await;
            }
        });
    }
}
