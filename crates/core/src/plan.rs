//! Splitting a request into the service requests that carry it out.

use std::collections::BTreeMap;

use serde_json::Value;
use uuid::Uuid;

use crate::{OrchestrationRequest, ServiceCall, ServiceName};

/// One downstream call to make for a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedServiceRequest {
    pub id: Uuid,
    pub item_index: i32,
    pub service_name: ServiceName,
    pub scenario_id: Uuid,
    pub business_type_id: Uuid,
    pub request_payload: Value,
}

/// The id of a task's service request, derived from what identifies it.
///
/// Deriving it (UUIDv5 in the task's namespace) rather than drawing it at random means
/// every process that plans the same task arrives at the same ids, so a record processed
/// twice calls the downstream service again with the same `Idempotency-Key`.
pub fn service_request_id(task_id: Uuid, item_index: i32, service_name: &ServiceName) -> Uuid {
    let name = format!("{item_index}/{service_name}");
    Uuid::new_v5(&task_id, name.as_bytes())
}

/// Splits a request into its service requests: one per (item, service), items in order,
/// services by name within an item.
pub fn plan_service_requests(
    task_id: Uuid,
    request: &OrchestrationRequest,
) -> Vec<PlannedServiceRequest> {
    plan_items(task_id, &request.items)
}

/// [`plan_service_requests`] for a request's items alone, as a stored task's are read
/// ([`OrchestrationRequest::parse_stored_payload`]).
pub fn plan_items(
    task_id: Uuid,
    items: &[BTreeMap<ServiceName, ServiceCall>],
) -> Vec<PlannedServiceRequest> {
    items
        .iter()
        .enumerate()
        .flat_map(|(index, item)| {
            // The item count is bounded far below i32::MAX by RequestLimits.
            let item_index = i32::try_from(index).unwrap_or(i32::MAX);
            item.iter()
                .map(move |(service_name, call)| PlannedServiceRequest {
                    id: service_request_id(task_id, item_index, service_name),
                    item_index,
                    service_name: service_name.clone(),
                    scenario_id: call.scenario_id,
                    business_type_id: call.business_type_id,
                    request_payload: call.to_json(),
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::RequestLimits;

    fn request() -> OrchestrationRequest {
        let call = json!({
            "scenario_id": "3fa85f64-5717-4562-b3fc-2c963f66afa6",
            "business_type_id": "9b2f4e2a-6c4d-4d3e-8f1a-2b3c4d5e6f70",
        });
        let limits = RequestLimits {
            known_services: ["revenue", "rebates", "specialty"]
                .into_iter()
                .map(|name| ServiceName::parse(name).expect("valid"))
                .collect(),
            max_items: 10,
            max_deadline_secs: RequestLimits::DEFAULT_MAX_DEADLINE_SECS,
        };
        let body = json!({
            "task_name": "t",
            "payload": [{"specialty": call, "revenue": call}, {"rebates": call}],
        });
        OrchestrationRequest::parse(&body, &limits).expect("valid")
    }

    #[test]
    fn one_service_request_per_item_and_service() {
        let task_id = Uuid::new_v4();
        let planned = plan_service_requests(task_id, &request());
        let keys: Vec<(i32, &str)> = planned
            .iter()
            .map(|sr| (sr.item_index, sr.service_name.as_str()))
            .collect();
        assert_eq!(keys, vec![(0, "revenue"), (0, "specialty"), (1, "rebates")]);
        assert_eq!(
            planned[0].request_payload,
            json!({
                "scenario_id": "3fa85f64-5717-4562-b3fc-2c963f66afa6",
                "business_type_id": "9b2f4e2a-6c4d-4d3e-8f1a-2b3c4d5e6f70",
            })
        );
    }

    #[test]
    fn ids_are_stable_per_task_and_distinct_within_it() {
        let task_id = Uuid::new_v4();
        let first = plan_service_requests(task_id, &request());
        let again = plan_service_requests(task_id, &request());
        assert_eq!(first, again);
        let mut ids: Vec<Uuid> = first.iter().map(|sr| sr.id).collect();
        ids.dedup();
        assert_eq!(ids.len(), 3);
        let other = plan_service_requests(Uuid::new_v4(), &request());
        assert_ne!(first[0].id, other[0].id);
    }
}
