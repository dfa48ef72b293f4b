//! The order-by-id projection row: the whole order as one JSON document.
//!
//! # Why one document
//! The row stores the entire [`Order`] state (status, totals, lines,
//! timeline, times) as JSON text in the `document` column of
//! `order_documents`, next to the bookkeeping every row has (the owning
//! `source_partition` and the `applied_offset`, also its write timestamp).
//! The document's JSON is exactly the query API's JSON for an order (its
//! `freshness` aside): the same serde derives make both. So a field added to
//! the order state flows to storage, to the `/v1/orders/{order_id}` answer
//! and to `/openapi.json` without touching row or view code, and no column
//! or mapping can drift from the state it stores.
//!
//! What it costs: the database cannot filter or index on an order's fields,
//! and every write rewrites the whole document. Nothing reads an order but
//! by its id, and an order is small and is rewritten by every event anyway,
//! so neither matters here; the lists that do need columns (a customer's
//! orders) are rows of their own.
//!
//! Reading tolerates what a newer or older galley may have written: a
//! field the state does not know is ignored, and a missing optional one is
//! `None`.

use scylla::SerializeRow;

use crate::domain::order::Order;
use crate::store::{StoreError, Versioned};

/// The table the document lives in, as errors name it.
pub const TABLE: &str = "order_documents";

/// Bound values of the order document upsert.
#[derive(Debug, Clone, PartialEq, SerializeRow)]
#[scylla(flavor = "enforce_order")]
pub struct OrderDocumentValues<'a> {
    pub order_id: &'a str,
    /// The order as JSON, as the query API answers it.
    pub document: String,
    pub source_partition: i32,
    pub applied_offset: i64,
    #[scylla(rename = "[timestamp]")]
    pub write_timestamp: i64,
}

/// The row of an order owned by input partition `partition`. Fails only if
/// the order cannot be encoded as JSON, which its types rule out.
pub fn order_document_values(
    order: &Versioned<Order>,
    partition: i32,
) -> Result<OrderDocumentValues<'_>, StoreError> {
    let document = serde_json::to_string(&order.value).map_err(|e| StoreError::Row {
        table: TABLE,
        message: format!(
            "order {}: cannot encode the document: {e}",
            order.value.order_id
        ),
    })?;
    Ok(OrderDocumentValues {
        order_id: &order.value.order_id,
        document,
        source_partition: partition,
        applied_offset: order.applied_offset,
        write_timestamp: order.applied_offset,
    })
}

/// Rebuilds an order from its stored document; the error says what is
/// malformed. `None` (a row without a document, which galley never writes)
/// is malformed too.
pub fn parse_document(order_id: &str, document: Option<&str>) -> Result<Order, String> {
    let document = document.ok_or_else(|| format!("order {order_id}: the row has no document"))?;
    serde_json::from_str(document).map_err(|e| format!("order {order_id}: document: {e}"))
}

#[cfg(test)]
#[path = "order_tests.rs"]
mod tests;
