//! Errors fall in three classes: poison records are dead-lettered (see
//! `pipeline.rs` and the fault suite), failures that can pass are retried
//! (the outage scenarios of the fault suite), and failures no retry can fix
//! stop galley with a non-zero status instead of a silent retry loop. This
//! file covers the last class, and the one fatal error galley recovers from
//! by itself: a producer librdkafka declared dead is replaced.

use std::ffi::CString;
use std::time::Duration;

use rdkafka::producer::Producer;

use galley::pipeline::{DeadLetterTarget, Outbox, OutgoingMessage, Publisher};
use galley::shop::projections::ProjectionStore;

use crate::support::process::GalleyProcess;
use crate::support::scenario::{Scenario, INPUT_PARTITIONS};
use crate::support::topics::kafka_config;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_stored_row_stops_galley_with_a_non_zero_status() {
    let scenario = Scenario::new("badrow").await;
    let messages = scenario.generate(200, 71);
    let order_id = messages
        .iter()
        .find(|m| m.label == "OrderPlaced")
        .and_then(|m| m.key.clone())
        .expect("the stream places an order");
    // A row galley could never have written: its document is not JSON.
    scenario
        .keyspace
        .session
        .query_unpaged(
            format!(
                "INSERT INTO {}.order_documents (order_id, document, source_partition, \
                 applied_offset) VALUES (?, '{{not json', 0, -1)",
                scenario.keyspace.name
            ),
            (&order_id,),
        )
        .await
        .expect("insert the unreadable row");
    // A row galley did not write has no recorded key: galley would take the
    // order as never written and not read it. Say, as galley does of rows
    // written without their keys, that the orders partitions' recorded keys
    // are incomplete, so that galley reads every key.
    let store =
        ProjectionStore::prepare(scenario.keyspace.session.clone(), &scenario.keyspace.name)
            .await
            .expect("statements prepare");
    for partition in 0..INPUT_PARTITIONS {
        store
            .known_keys()
            .forget_completeness(&scenario.env.topics.orders, partition)
            .await
            .expect("mark the keys incomplete");
    }

    let mut galley = GalleyProcess::spawn(&scenario.env, "a");
    galley.wait_ready(Duration::from_secs(60)).await;
    scenario.produce(messages, 0).await;

    let status = galley.wait_exit(Duration::from_secs(60));
    let log = galley.log_tail(40);
    let status = status.unwrap_or_else(|| {
        panic!("galley kept running (retrying) over an unreadable row; log:\n{log}")
    });
    assert!(!status.success(), "exit status {status:?}; log:\n{log}");
    for word in ["fatal", "order_documents", order_id.as_str()] {
        assert!(log.contains(word), "`{word}` in:\n{log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_declared_dead_is_replaced_and_the_batch_delivered() {
    let scenario = Scenario::new("deadproducer").await;
    let topics = &scenario.env.topics;
    let publisher = Publisher::new(
        galley::kafka::producer_config(&kafka_config("unused")),
        DeadLetterTarget {
            topic: topics.dead_letter.clone(),
            max_message_bytes: 1_000_000,
            task_id: "deadproducer".into(),
        },
        Duration::from_secs(10),
    )
    .expect("publisher");
    let message = |n: u8| OutgoingMessage {
        topic: topics.results.clone(),
        key: vec![b'k', n],
        payload: vec![n],
        headers: Vec::new(),
        event_type: "Test",
    };
    let first = [message(1)];
    publisher
        .publish(&mut Outbox::new(&first, &[]))
        .await
        .expect("the first publish is delivered");

    // What librdkafka does when an idempotent producer loses its sequence
    // with the broker, through its own test hook.
    let dead = publisher.producer();
    let reason = CString::new("out of order sequence, raised by the test").expect("no NUL");
    // SAFETY: the client pointer is valid while `dead` lives, and the reason
    // outlives the call, which copies it.
    unsafe {
        rdkafka::bindings::rd_kafka_test_fatal_error(
            dead.client().native_ptr(),
            rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
            reason.as_ptr(),
        );
    }
    assert!(
        dead.client().fatal_error().is_some(),
        "the hook took effect"
    );

    let second = [message(2)];
    // One outbox across both tries, as the batch loop keeps it.
    let mut outbox = Outbox::new(&second, &[]);
    let first_try = publisher.publish(&mut outbox).await;
    let error = first_try.expect_err("the dead producer delivers nothing");
    assert!(
        matches!(error, galley::pipeline::StepError::Retryable(_)),
        "a dead producer is replaced, not the end of the process: {error}"
    );
    publisher
        .publish(&mut outbox)
        .await
        .expect("the batch is delivered through the new producer");
    assert!(publisher.producer().client().fatal_error().is_none());

    let payloads: Vec<Vec<u8>> = scenario
        .read_topic(&topics.results)
        .into_iter()
        .filter_map(|m| m.payload)
        .collect();
    assert!(payloads.contains(&vec![2]), "{payloads:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_whose_messages_time_out_gets_a_new_producer() {
    // Nothing listens on port 1: every message times out, as they do from
    // a producer left stuck by a broker restart.
    let mut cfg = kafka_config("unused");
    cfg.brokers = "127.0.0.1:1".into();
    cfg.delivery_timeout = Duration::from_secs(1);
    let publisher = Publisher::new(
        galley::kafka::producer_config(&cfg),
        DeadLetterTarget {
            topic: "dead-letters".into(),
            max_message_bytes: 1_000_000,
            task_id: "timeouts".into(),
        },
        Duration::from_secs(1),
    )
    .expect("publisher");
    let stuck = publisher.producer().client().native_ptr() as usize;
    let message = OutgoingMessage {
        topic: "results".into(),
        key: b"k".to_vec(),
        payload: b"v".to_vec(),
        headers: Vec::new(),
        event_type: "Test",
    };
    let messages = [message];
    let error = publisher
        .publish(&mut Outbox::new(&messages, &[]))
        .await
        .expect_err("nothing can be delivered");
    assert!(
        matches!(&error, galley::pipeline::StepError::Retryable(m) if m.contains("timed out")),
        "{error}"
    );
    let now = publisher.producer().client().native_ptr() as usize;
    assert_ne!(stuck, now, "the batch is re-sent through a new producer");
}
