// @generated automatically by Diesel CLI.

diesel::table! {
    service_requests (id) {
        id -> Uuid,
        task_id -> Uuid,
        item_index -> Int4,
        service_name -> Text,
        scenario_id -> Uuid,
        business_type_id -> Uuid,
        status -> Text,
        attempts -> Int4,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        started_at -> Nullable<Timestamptz>,
        completed_at -> Nullable<Timestamptz>,
        request_payload -> Jsonb,
        response_payload -> Nullable<Jsonb>,
        error_message -> Nullable<Text>,
    }
}

diesel::table! {
    tasks (id) {
        id -> Int8,
        task_id -> Uuid,
        #[max_length = 255]
        task_name -> Varchar,
        task_description -> Nullable<Text>,
        status -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        payload -> Jsonb,
        error_message -> Nullable<Text>,
        idempotency_key -> Nullable<Text>,
    }
}

diesel::allow_tables_to_appear_in_same_query!(service_requests, tasks,);
