// @generated automatically by Diesel CLI.

diesel::table! {
    api_tokens (id) {
        id -> Uuid,
        tenant -> Text,
        name -> Nullable<Text>,
        scopes -> Text,
        secret_hash -> Bytea,
        created_at -> Timestamptz,
        expires_at -> Nullable<Timestamptz>,
        revoked_at -> Nullable<Timestamptz>,
        last_used_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    audit_events (id) {
        id -> Int8,
        occurred_at -> Timestamptz,
        tenant -> Nullable<Text>,
        actor -> Text,
        action -> Text,
        target -> Nullable<Text>,
        outcome -> Text,
        request_id -> Nullable<Text>,
        client_address -> Nullable<Text>,
        details -> Nullable<Jsonb>,
    }
}

diesel::table! {
    bulk_operations (id) {
        id -> Uuid,
        tenant -> Text,
        action -> Text,
        filter -> Jsonb,
        state -> Text,
        matched -> Int8,
        last_task -> Int8,
        done_through -> Int8,
        acted -> Int8,
        skipped -> Int8,
        rate_per_second -> Int4,
        actor -> Text,
        request_id -> Nullable<Text>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        finished_at -> Nullable<Timestamptz>,
        claimed_by -> Nullable<Text>,
        claimed_until -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    consumer_members (topic, worker_id) {
        topic -> Text,
        worker_id -> Text,
        joined_at -> Timestamptz,
        heartbeat_at -> Timestamptz,
        expires_at -> Timestamptz,
    }
}

diesel::table! {
    dashboard_sessions (id_hash) {
        id_hash -> Bytea,
        token_id -> Nullable<Uuid>,
        tenant -> Text,
        scopes -> Text,
        created_at -> Timestamptz,
        last_seen_at -> Timestamptz,
        expires_at -> Timestamptz,
        subject -> Nullable<Text>,
    }
}

diesel::table! {
    job_leases (job) {
        job -> Text,
        holder -> Text,
        expires_at -> Timestamptz,
    }
}

diesel::table! {
    oidc_sign_ins (state_hash) {
        state_hash -> Bytea,
        pkce_verifier -> Text,
        nonce -> Text,
        expires_at -> Timestamptz,
    }
}

diesel::table! {
    partition_leases (topic, partition) {
        topic -> Text,
        partition -> Int4,
        owner -> Nullable<Text>,
        epoch -> Int8,
        expires_at -> Nullable<Timestamptz>,
        committed_offset -> Int8,
        updated_at -> Timestamptz,
        lost_before -> Nullable<Timestamptz>,
        recover_at_offset -> Nullable<Int8>,
    }
}

diesel::table! {
    service_request_attempts (service_request_id, attempt) {
        service_request_id -> Uuid,
        attempt -> Int4,
        started_at -> Timestamptz,
        duration_ms -> Int8,
        status_code -> Nullable<Int4>,
        error -> Text,
    }
}

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
    task_events (tx, seq) {
        tx -> Int8,
        seq -> Int8,
        task_id -> Uuid,
        service_request_id -> Nullable<Uuid>,
        status -> Text,
        previous_status -> Nullable<Text>,
        error_message -> Nullable<Text>,
        at -> Timestamptz,
    }
}

diesel::table! {
    task_outbox (task_id) {
        task_id -> Uuid,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    task_redrives (task_id, redrive) {
        task_id -> Uuid,
        redrive -> Int4,
        failed_at -> Timestamptz,
        redriven_at -> Timestamptz,
        error_message -> Nullable<Text>,
    }
}

diesel::table! {
    task_status_counts (id) {
        id -> Int8,
        status -> Text,
        delta -> Int8,
        tenant -> Text,
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
        enqueued_at -> Nullable<Timestamptz>,
        tenant -> Text,
        deadline_seconds -> Nullable<Int4>,
        deadline_at -> Nullable<Timestamptz>,
        callback_url -> Nullable<Text>,
        traceparent -> Nullable<Text>,
    }
}

diesel::table! {
    webhook_attempts (delivery_id, attempt) {
        delivery_id -> Uuid,
        attempt -> Int4,
        attempted_at -> Timestamptz,
        duration_ms -> Int8,
        status_code -> Nullable<Int4>,
        error -> Nullable<Text>,
    }
}

diesel::table! {
    webhook_deliveries (id) {
        id -> Uuid,
        task_id -> Uuid,
        tenant -> Text,
        url -> Text,
        payload -> Jsonb,
        created_at -> Timestamptz,
        next_attempt_at -> Timestamptz,
        claimed_until -> Nullable<Timestamptz>,
        attempts -> Int4,
        delivered_at -> Nullable<Timestamptz>,
        gave_up_at -> Nullable<Timestamptz>,
        delivered_attempted_at -> Nullable<Timestamptz>,
        delivered_duration_ms -> Nullable<Int8>,
        delivered_status_code -> Nullable<Int4>,
    }
}

diesel::joinable!(dashboard_sessions -> api_tokens (token_id));
diesel::joinable!(service_request_attempts -> service_requests (service_request_id));
diesel::joinable!(webhook_attempts -> webhook_deliveries (delivery_id));

diesel::allow_tables_to_appear_in_same_query!(
    api_tokens,
    audit_events,
    bulk_operations,
    consumer_members,
    dashboard_sessions,
    job_leases,
    oidc_sign_ins,
    partition_leases,
    service_request_attempts,
    service_requests,
    task_events,
    task_outbox,
    task_redrives,
    task_status_counts,
    tasks,
    webhook_attempts,
    webhook_deliveries,
);
