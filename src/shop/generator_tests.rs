//! The generator: determinism, shares, and every journey move against the handler.

use super::*;
use crate::domain::order;

#[test]
fn splitting_keeps_each_order_placed_before_the_rest_of_its_life() {
    let codec = crate::domain::codec().expect("codec");
    let settings = GeneratorSettings {
        count: 2000,
        ..GeneratorSettings::default()
    };
    let (messages, _) = generate(&codec, &settings);
    let (setup, rest) = split_setup(messages.clone());
    assert_eq!(setup.len() + rest.len(), messages.len());
    assert!(setup
        .iter()
        .all(|m| m.label != "PaymentCaptured" && m.label != "OrderShipped"));
    assert!(rest
        .iter()
        .all(|m| m.destination == Destination::Orders && m.label != "OrderPlaced"));
    // Sending setup then the rest keeps every key's messages in their original order.
    let per_key = |part: &[GeneratedMessage]| {
        let mut by_key: std::collections::BTreeMap<Option<String>, Vec<Vec<u8>>> =
            std::collections::BTreeMap::new();
        for m in part {
            by_key
                .entry(m.key.clone())
                .or_default()
                .push(m.payload.clone());
        }
        by_key
    };
    let resent: Vec<GeneratedMessage> = setup.into_iter().chain(rest).collect();
    assert_eq!(per_key(&resent), per_key(&messages));
}

#[test]
fn the_same_seed_generates_the_same_stream() {
    let codec = crate::domain::codec().expect("codec");
    let settings = GeneratorSettings {
        count: 500,
        ..GeneratorSettings::default()
    };
    let (a, _) = generate(&codec, &settings);
    let (b, _) = generate(&codec, &settings);
    assert_eq!(a.len(), 500);
    assert!(a
        .iter()
        .zip(&b)
        .all(|(x, y)| x.payload == y.payload && x.key == y.key));
}

#[test]
fn poison_messages_are_of_the_requested_share_and_all_decode_as_poison() {
    let codec = crate::domain::codec().expect("codec");
    let settings = GeneratorSettings {
        count: 4000,
        poison_fraction: 0.05,
        ..GeneratorSettings::default()
    };
    let (messages, summary) = generate(&codec, &settings);
    let poison: Vec<_> = messages
        .iter()
        .filter(|m| m.poison_class.is_some())
        .collect();
    assert!((100..=300).contains(&poison.len()), "{}", poison.len());
    for m in poison {
        let decoded = codec.decode::<InventoryEvent>(&m.payload);
        match m.poison_class {
            Some("missing_key") => assert!(decoded.is_ok() && m.key.is_none()),
            Some("validation") => {
                let event = decoded.expect("validation poison decodes");
                assert!(event.validate().is_err());
            }
            Some(class) => assert_eq!(decoded.err().map(|e| e.class()), Some(class)),
            None => unreachable!(),
        }
    }
    assert_eq!(summary.total(), 4000);
    assert!(summary.orders > 100);
}

/// One order event applied by the real handler, with ids of its own.
fn handle(
    current: Option<&order::Order>,
    event: &OrderEvent,
    offset: &mut i64,
) -> order::OrderDecision {
    *offset += 1;
    let origin = crate::domain::EventOrigin {
        topic: "journey",
        partition: 0,
        offset: *offset,
    };
    assert_eq!(event.validate(), Ok(()), "not poison: {event:?}");
    order::apply(current, event, &mut crate::domain::EventIds::new(origin))
}

/// Places an order as the generator does and reserves every line of it.
fn placed_and_reserved(
    rng: &mut StdRng,
    catalog: &Catalog,
    order_id: String,
    offset: &mut i64,
) -> (order::Order, JourneyOrder) {
    let (placed, journey) = new_order(rng, catalog, order_id, 1_767_225_600_000);
    let decision = handle(None, &placed, offset);
    let mut current = decision.state.expect("placing creates the order");
    for line in current.lines.clone() {
        let answer = OrderEvent::StockOutcome(crate::domain::StockReservationOutcome {
            event_id: format!("reservation-{offset}"),
            order_id: journey.order_id.clone(),
            sku: line.sku,
            quantity: line.quantity,
            reserved: true,
            event_time_ms: 1_767_225_600_000,
        });
        let decision = handle(Some(&current), &answer, offset);
        assert_eq!(decision.outcome, crate::domain::Outcome::Applied);
        current = decision.state.expect("a reservation keeps the order");
    }
    (current, journey)
}

#[test]
fn every_journey_move_is_accepted_by_the_order_handler() {
    use crate::domain::order::OrderStatus;
    use crate::domain::Outcome;

    let mut moves_seen = std::collections::BTreeSet::new();
    let mut refusals_seen = std::collections::BTreeSet::new();
    let mut offset = 0;
    for seed in 0..2_000u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let catalog = Catalog::new(&mut rng, 20, 50);
        let (mut current, mut journey) =
            placed_and_reserved(&mut rng, &catalog, format!("O-{seed}"), &mut offset);
        let mut time = current.updated_at_ms;
        while !journey.is_over() {
            time += 1_000;
            if let Some((refused, event)) = refused_move(&mut rng, &journey, time) {
                let decision = handle(Some(&current), &event, &mut offset);
                assert_eq!(
                    decision.outcome,
                    Outcome::Rejected {
                        reason: refused.reason
                    },
                    "{event:?} when {}",
                    journey.status
                );
                refusals_seen.insert((journey.status.into_str(), event.type_name()));
            }
            let from = journey.status;
            let event = next_move(&mut rng, &mut journey, time).expect("journey not over");
            let decision = handle(Some(&current), &event, &mut offset);
            assert_eq!(decision.outcome, Outcome::Applied, "{event:?} when {from}");
            current = decision.state.expect("an applied move keeps the order");
            assert_eq!(current.status, journey.status, "{event:?} when {from}");
            moves_seen.insert((from.into_str(), event.type_name()));
        }
        let unplaced = unplaced_order_move(&mut rng, 0, time);
        assert_eq!(
            handle(None, &unplaced, &mut offset).outcome,
            Outcome::Rejected {
                reason: crate::domain::UNPLACED_ORDER_REASON
            }
        );
    }
    // Every entry of both tables was generated at least once.
    let sample = JourneyOrder {
        order_id: "O-sample".into(),
        total_cents: 100,
        paid_cents: 0,
        status: OrderStatus::Placed,
        over: false,
    };
    let every = |from: &'static [OrderStatus], build: crate::domain::BuildMove| {
        let name = build(&sample, draw(&mut StdRng::seed_from_u64(0), 1)).type_name();
        from.iter().map(move |status| (status.into_str(), name))
    };
    for step in crate::domain::JOURNEY {
        for pair in every(step.from, step.build) {
            assert!(moves_seen.contains(&pair), "never generated: {pair:?}");
        }
    }
    for refused in crate::domain::REFUSED_MOVES {
        for pair in every(refused.from, refused.build) {
            assert!(refusals_seen.contains(&pair), "never generated: {pair:?}");
        }
    }
}
