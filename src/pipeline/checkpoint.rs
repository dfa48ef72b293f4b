//! Checkpoints: the input offset a batch ends before, carried by the last
//! record the batch wrote to each changelog partition. The sink reads them
//! to know how far the database holds each input partition, and the same
//! transaction that wrote one committed it as the group's offset.

use rdkafka::message::{Headers, Message, OwnedMessage};

use super::StepError;

/// Header of a batch's last changelog record per partition: the input
/// offset the batch ends before, in decimal.
pub const CHECKPOINT_HEADER: &str = "galley.input_next_offset";

/// The checkpoint a changelog record carries, if it is a batch's last.
pub(super) fn checkpoint_of(m: &OwnedMessage) -> Result<Option<i64>, StepError> {
    let Some(headers) = m.headers() else {
        return Ok(None);
    };
    for h in headers.iter() {
        if h.key == CHECKPOINT_HEADER {
            let text = h.value.and_then(|v| std::str::from_utf8(v).ok());
            return match text.and_then(|t| t.parse::<i64>().ok()) {
                Some(next) => Ok(Some(next)),
                None => Err(StepError::Fatal(format!(
                    "changelog record {}[{}]@{} has an unreadable {CHECKPOINT_HEADER} header",
                    m.topic(),
                    m.partition(),
                    m.offset()
                ))),
            };
        }
    }
    Ok(None)
}
