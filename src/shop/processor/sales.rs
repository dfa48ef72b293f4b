//! Sales counted into their cells: one per (SKU, minute) and one per minute,
//! each a sub-row of the input partition the sales came from.
//!
//! A cell is written before the order that led to its sales (see the module
//! doc of [`crate::shop`]), so after a crash a replayed sale may already be in
//! some cells and not in others; each cell's watermark decides for itself.

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap};

use crate::shop::rows::SalesCell;
use crate::store::Versioned;

/// A sale waiting to be added to its cells.
pub(super) struct SaleContribution {
    pub(super) offset: i64,
    pub(super) event_time_ms: i64,
    pub(super) sku: String,
    pub(super) minute_ms: i64,
    pub(super) units: i64,
    pub(super) revenue_cents: i64,
}

/// The keys of the cells a batch's sales changed: (SKU, minute) cells and
/// minute cells.
pub(super) type ChangedCells = (BTreeSet<(String, i64)>, BTreeSet<i64>);

/// Adds each sale to its per-SKU and per-minute cells, skipping, per cell,
/// every event at or below the cell's watermark (already counted before a
/// crash). Returns the cells that changed.
///
/// The lines of one event share its offset and its minute. Whether an event
/// counts for a minute cell is decided once, at its first line, from the
/// watermark the cell had before the event: the first line moves the
/// watermark to the event's own offset, so asking again at a later line
/// would give the wrong answer.
pub(super) fn add_sales(
    sales: &[SaleContribution],
    sku_cells: &mut HashMap<(String, i64), Versioned<SalesCell>>,
    minute_cells: &mut HashMap<i64, Versioned<SalesCell>>,
) -> ChangedCells {
    let mut dirty_sku = BTreeSet::new();
    let mut dirty_minute = BTreeSet::new();
    let mut minute_decisions: HashMap<(i64, i64), bool> = HashMap::new();
    for sale in sales {
        let sku_key = (sale.sku.clone(), sale.minute_ms);
        if let Some(cell) = sku_cells.get_mut(&sku_key) {
            // A SKU appears once per order (lines are merged), so one event
            // adds at most one line to a SKU cell.
            if cell.applied_offset < sale.offset {
                add_line(cell, sale);
                dirty_sku.insert(sku_key);
            }
        }
        let Some(cell) = minute_cells.get_mut(&sale.minute_ms) else {
            continue;
        };
        let (counts, first_line) = match minute_decisions.entry((sale.minute_ms, sale.offset)) {
            Entry::Occupied(decided) => (*decided.get(), false),
            Entry::Vacant(slot) => (*slot.insert(cell.applied_offset < sale.offset), true),
        };
        if counts {
            if first_line {
                cell.value.orders += 1;
            }
            add_line(cell, sale);
            dirty_minute.insert(sale.minute_ms);
        }
    }
    (dirty_sku, dirty_minute)
}

/// Adds one line of a sale to a cell and moves the cell's watermark to it.
fn add_line(cell: &mut Versioned<SalesCell>, sale: &SaleContribution) {
    cell.value.units += sale.units;
    cell.value.revenue_cents += sale.revenue_cents;
    cell.value.updated_at_ms = cell.value.updated_at_ms.max(sale.event_time_ms);
    cell.applied_offset = sale.offset;
}
