//! Feeds arbitrary bytes to every decoder a Kafka record's value reaches:
//! the wire-format header, schema lookup and Avro body decoding for each
//! topic. Whatever the bytes, decoding must return (an event or an error),
//! never panic, and never allocate beyond what libFuzzer's malloc limit
//! allows (`make fuzz` sets it).
#![no_main]

use std::sync::OnceLock;

use galley::codec::Codec;
use galley::domain::{InventoryEvent, OrderEvent, ResultEvent};
use libfuzzer_sys::fuzz_target;

static CODEC: OnceLock<Codec> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    // Schemas are parsed once, as in galley itself.
    let codec = CODEC.get_or_init(|| match galley::domain::codec() {
        Ok(codec) => codec,
        Err(e) => panic!("embedded schemas must load: {e}"),
    });
    let _ = codec.decode::<OrderEvent>(data);
    let _ = codec.decode::<InventoryEvent>(data);
    let _ = codec.decode::<ResultEvent>(data);
});
