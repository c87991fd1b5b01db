//! Task row locks: every transition takes them the same way.

use std::collections::HashMap;

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::schema::tasks;
use crate::{StoreError, TaskRow};

/// Locks the tasks' rows (`FOR UPDATE`) until the transaction ends, in task id order so
/// that concurrent transitions of overlapping sets of tasks cannot deadlock, and
/// returns them by task id. Tasks that do not exist are missing from the map.
pub(super) async fn tasks(
    conn: &mut AsyncPgConnection,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, TaskRow>, StoreError> {
    let rows: Vec<TaskRow> = tasks::table
        .filter(tasks::task_id.eq_any(ids))
        .order(tasks::task_id)
        .for_update()
        .select(TaskRow::as_select())
        .load(conn)
        .await?;
    Ok(rows.into_iter().map(|row| (row.task_id, row)).collect())
}
