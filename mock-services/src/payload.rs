//! Request and response bodies of the mock services, and the deterministic answer.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::hash::Fnv1a;

/// Body of `POST /{service}`. Unknown fields are ignored, as a real service would.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRequest {
    pub scenario_id: Uuid,
    pub business_type_id: Uuid,
}

/// Currency of every mock amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Currency {
    #[serde(rename = "USD")]
    Usd,
}

/// The computed part of a successful answer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ServiceResult {
    /// 0.00 ..= 99999.99, in whole cents.
    pub amount: f64,
    pub currency: Currency,
    /// 1 ..= 12.
    pub line_items: u32,
    /// 0.0 ..= 1.0, in steps of 0.001.
    pub confidence: f64,
}

/// A successful answer, as clients (tests) read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceResponse {
    pub service: String,
    pub scenario_id: Uuid,
    pub business_type_id: Uuid,
    pub result: ServiceResult,
}

/// The same shape as [`ServiceResponse`], borrowing the service name so answering
/// allocates nothing but the output buffer.
#[derive(Serialize)]
pub(crate) struct ServiceResponseRef<'a> {
    pub service: &'a str,
    pub scenario_id: Uuid,
    pub business_type_id: Uuid,
    pub result: ServiceResult,
}

/// The answer `service` gives for these ids: a pure function of its inputs, identical
/// in every process, so tests can predict it and compare runs.
pub fn mock_result(service: &str, scenario_id: Uuid, business_type_id: Uuid) -> ServiceResult {
    let mut hasher = Fnv1a::new();
    hasher
        .write(service.as_bytes())
        // A separator byte that cannot occur in a service name keeps ("ab", ..) and
        // ("a", "b"..) apart.
        .write(&[0xff])
        .write(scenario_id.as_bytes())
        .write(business_type_id.as_bytes());
    let hash = hasher.finish_mixed();
    // Each field uses its own range of bits so they vary independently.
    let cents = hash % 10_000_000;
    let line_items = 1 + ((hash >> 32) % 12) as u32;
    let confidence_permille = (hash >> 48) % 1_001;
    ServiceResult {
        amount: cents as f64 / 100.0,
        currency: Currency::Usd,
        line_items,
        confidence: confidence_permille as f64 / 1_000.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCENARIO: Uuid = Uuid::from_u128(0x1111_2222_3333_4444_5555_6666_7777_8888);
    const BUSINESS: Uuid = Uuid::from_u128(0x9999_aaaa_bbbb_cccc_dddd_eeee_ffff_0000);

    #[test]
    fn result_is_a_pure_function_of_its_inputs() {
        let first = mock_result("revenue", SCENARIO, BUSINESS);
        assert_eq!(first, mock_result("revenue", SCENARIO, BUSINESS));
        assert_ne!(first, mock_result("rebates", SCENARIO, BUSINESS));
        assert_ne!(first, mock_result("revenue", BUSINESS, SCENARIO));
    }

    #[test]
    fn result_fields_stay_in_range() {
        for i in 0..2_000u128 {
            let result = mock_result("specialty", Uuid::from_u128(i), BUSINESS);
            assert!((0.0..100_000.0).contains(&result.amount));
            assert!((1..=12).contains(&result.line_items));
            assert!((0.0..=1.0).contains(&result.confidence));
        }
    }

    #[test]
    fn borrowed_and_owned_responses_serialize_alike() {
        let result = mock_result("revenue", SCENARIO, BUSINESS);
        let borrowed = serde_json::to_value(ServiceResponseRef {
            service: "revenue",
            scenario_id: SCENARIO,
            business_type_id: BUSINESS,
            result,
        })
        .expect("serializes");
        let owned: ServiceResponse = serde_json::from_value(borrowed.clone()).expect("parses");
        assert_eq!(owned.result, result);
        assert_eq!(serde_json::to_value(owned).expect("serializes"), borrowed);
        assert_eq!(borrowed["result"]["currency"], "USD");
    }
}
