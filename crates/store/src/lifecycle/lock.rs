//! Task row locks: every transition takes them the same way.

use std::collections::HashMap;

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::start::TaskToStart;
use crate::json_text::StoredJson;
use crate::schema::tasks;
use crate::{StoreError, TaskState};

/// Locks the tasks' rows (`FOR UPDATE`) until the transaction ends, in task id order so
/// that concurrent transitions of overlapping sets of tasks cannot deadlock, and
/// returns their state by task id. Tasks that do not exist are missing from the map.
pub(super) async fn tasks(
    conn: &mut AsyncPgConnection,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, TaskState>, StoreError> {
    let rows: Vec<TaskState> = tasks::table
        .filter(tasks::task_id.eq_any(ids))
        .order(tasks::task_id)
        .for_update()
        .select(TaskState::as_select())
        .load(conn)
        .await?;
    Ok(rows.into_iter().map(|row| (row.task_id, row)).collect())
}

/// As [`tasks`], with the requests they stored, for the start to plan them.
pub(super) async fn tasks_to_start(
    conn: &mut AsyncPgConnection,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, TaskToStart>, StoreError> {
    let rows: Vec<(TaskState, StoredJson)> = tasks::table
        .filter(tasks::task_id.eq_any(ids))
        .order(tasks::task_id)
        .for_update()
        .select((TaskState::as_select(), tasks::payload))
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(state, StoredJson(payload))| (state.task_id, TaskToStart { state, payload }))
        .collect())
}
